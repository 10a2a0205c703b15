"""What an audit of how the sync follows a repo's history found (its findings 1, 4, 5 and 6):

1. A move or a re-pin made labels on older content look current: a span annotated on a file, the file edited (the
   export rightly said the annotation was made on an older revision), then renamed: every annotation of the task
   took the rename's commit. Now only the annotations made on the content the task showed are re-pinned, after a
   move and after a rewritten history alike; older ones keep their revision.
4. A move across the ``--include``/``--exclude`` boundary lost the task (marked ``hf_removed`` though its file is in
   the commit), and moving it back made a second task. Now the ledger follows the file out of the selection (its
   task left as it is), and the move back is followed by the same task.
5. Without ``--webhook-url``, an annotation saved just before its file changed was stored by the next
   reconciliation with the revision the import had just given its task. Now the import stores a task's annotations
   before it changes the task's data.
6. The adopted-duplicates check rebuilt the set of the gone files' tasks once per adopted path (quadratic).

An in-memory project for the ledger's side (fast), real Label Studio where its answers are the point (5).
"""
from __future__ import annotations

import copy
import itertools
import logging

from labelhub.file_urls import FileURLs
from labelhub.repos import RepoFile, open_repo
from labelhub.repos.git import LocalGitRepo
from labelhub.sync.annotations.intake import AnnotationIntake
from labelhub.sync.files.importer import FileImporter
from labelhub.sync.labelstudio.project import LabelStudioProject
from labelhub.sync.ledger import Known
from labelhub.sync.state import SyncState
from tests import sample_repos
from tests.conftest import FILE_SECRET

TEXT = '<View><Text name="text" value="$text"/><Labels name="l" toName="text"><Label value="X"/></Labels></View>'
IMAGE = ('<View><Image name="image" value="$image"/><Choices name="c" toName="image"><Choice value="a"/>'
         '</Choices></View>')


class _Project:
    """An in-memory Label Studio project: what :class:`FileImporter` asks of one."""

    def __init__(self, label_config: str):
        self.project_id, self.label_config, self.url = 1, label_config, "http://ls.test"
        self.tasks: dict[int, dict] = {}
        self.ids = itertools.count(1)

    def repo_file_tasks(self, repo_id, after_task_id=0):
        return [(i, t["data"]["hf_path"], t["data"]["hf_revision"]) for i, t in sorted(self.tasks.items())
                if i > after_task_id]

    def prepare_import(self, tasks):
        return list(tasks)

    def import_tasks(self, tasks):
        ids = [next(self.ids) for _ in tasks]
        self.tasks.update({i: {"data": copy.deepcopy(t["data"]), "meta": {}, "annotations": []}
                           for i, t in zip(ids, tasks)})
        return ids

    def tasks_fields(self, ids):
        return {i: (copy.deepcopy(self.tasks[i]["data"]), dict(self.tasks[i]["meta"])) for i in ids if i in self.tasks}

    def tasks_by_id(self, ids):
        return [{"id": i, "data": copy.deepcopy(self.tasks[i]["data"]), "updated_at": None,
                 "annotations": copy.deepcopy(self.tasks[i]["annotations"])} for i in ids if i in self.tasks]

    def update_data(self, task_id, changes, current=None, drop=()):
        current = self.tasks[task_id]["data"] if current is None else current
        self.tasks[task_id]["data"] = {**{k: v for k, v in current.items() if k not in drop}, **changes}

    def update_meta(self, task_id, changes, current=None):
        current = self.tasks[task_id]["meta"] if current is None else current
        self.tasks[task_id]["meta"] = {**current, **changes}


def _span(annotation_id: int, text: str) -> dict:
    return {"id": annotation_id, "updated_at": f"2026-01-0{annotation_id % 9 + 1}T00:00:00Z", "completed_by": 1,
            "result": [{"from_name": "l", "to_name": "text", "type": "labels",
                        "value": {"start": 0, "end": len(text), "text": text, "labels": ["X"]}}]}


def _annotate(project: _Project, state: SyncState, task_id: int, annotations: list[dict], revision: str) -> None:
    """The task's annotations in Label Studio, read by a reconciliation while the task showed ``revision``."""
    project.tasks[task_id]["annotations"] = copy.deepcopy(annotations)
    state.apply_annotations(task_id, annotations, True, None, revision)


def _revisions(state: SyncState) -> dict[int, str]:
    return dict(state.db.execute("SELECT annotation_id, revision FROM annotations WHERE deleted=0"))


# ---- 1. a move or a re-pin re-pins only the annotations made on the content the task showed ----------------------

def test_a_rename_after_an_edit_keeps_the_older_annotations_revision(tmp_path):
    repo_path = sample_repos.local_repo_with(tmp_path / "repo", {"doc.txt": b"alpha beta"})
    first = sample_repos.git(repo_path, "rev-parse", "HEAD")
    repo, project = open_repo(str(repo_path)), _Project(TEXT)
    state = SyncState(tmp_path / "s.sqlite3", 1, repo.repo_id)
    run = lambda: FileImporter(repo, project, state).run()  # noqa: E731
    run()
    _annotate(project, state, 1, [_span(10, "alpha")], first)  # made on "alpha beta"
    edited = sample_repos.commit_local(repo_path, {"doc.txt": b"zzzzz changed"}, message="edit")
    assert run().changed == ["doc.txt"]
    _annotate(project, state, 1, [_span(10, "alpha"), _span(11, "zzzzz")], edited)  # made on the edit
    renamed = sample_repos.commit_local(repo_path, {"renamed.txt": b"zzzzz changed"}, deletes=("doc.txt",),
                                        message="rename")
    assert run().moved == [("doc.txt", "renamed.txt")]
    assert _revisions(state) == {10: first, 11: renamed}  # the older one was the whole task's rename before
    assert project.tasks[1]["data"]["hf_path"] == "renamed.txt" and project.tasks[1]["data"]["hf_revision"] == renamed


def test_a_re_pin_after_a_rewritten_history_keeps_the_older_annotations_revision(tmp_path):
    repo_path = sample_repos.local_repo_with(tmp_path / "repo", {"a.txt": b"one", "b.txt": b"other"})
    first = sample_repos.git(repo_path, "rev-parse", "HEAD")
    repo, project = open_repo(str(repo_path)), _Project(TEXT)
    state = SyncState(tmp_path / "s.sqlite3", 1, repo.repo_id)
    run = lambda: FileImporter(repo, project, state).run()  # noqa: E731
    run()
    (task,) = [i for i, t in project.tasks.items() if t["data"]["hf_path"] == "a.txt"]
    _annotate(project, state, task, [_span(10, "one")], first)
    edited = sample_repos.commit_local(repo_path, {"a.txt": b"two"}, message="edit")
    assert run().changed == ["a.txt"]
    _annotate(project, state, task, [_span(10, "one"), _span(11, "two")], edited)
    # a squash: one commit with the head's tree, the old commits pruned (both annotations' commits are gone)
    squashed = sample_repos.git(repo_path, "commit-tree", f"{edited}^{{tree}}", "-m", "squash")
    sample_repos.git(repo_path, "reset", "-q", "--hard", squashed)
    sample_repos.git(repo_path, "reflog", "expire", "--expire=now", "--all")
    sample_repos.git(repo_path, "gc", "-q", "--prune=now")
    report = run()
    assert sorted(report.repinned) == ["a.txt", "b.txt"] and not report.changed
    # "one" is not what the squashed commit holds: the annotation made on it keeps its (gone) commit
    assert _revisions(state) == {10: first, 11: squashed}


# ---- 4. a move out of the selection and back keeps the task ------------------------------------------------------

def test_a_move_out_of_the_selection_and_back_keeps_its_task(tmp_path, caplog):
    images = sample_repos.image_files(0, 2)
    a, b = (images[sample_repos.image_path(i)] for i in range(2))
    repo_path = sample_repos.local_repo_with(tmp_path / "repo", {"img/a.png": a, "img/b.png": b})
    repo = LocalGitRepo(repo_path, file_urls=FileURLs(secret=FILE_SECRET))
    project, state = _Project(IMAGE), SyncState(tmp_path / "s.sqlite3", 1, repo.repo_id)
    run = lambda: FileImporter(repo, project, state, exclude=["raw/*"]).run()  # noqa: E731
    assert run().created == 2
    first = sample_repos.git(repo_path, "rev-parse", "HEAD")
    _annotate(project, state, 1, [_span(10, "a")], first)

    sample_repos.commit_local(repo_path, {"raw/a.png": a, "raw/b.png": b}, deletes=("img/a.png", "img/b.png"))
    caplog.set_level(logging.INFO, logger="labelhub.sync.files.importer")
    report = run()
    assert report.removed == [] and report.moved == [] and report.created == 0
    assert "2 files with a task moved to paths that are not selected" in caplog.text
    assert "img/a.png → raw/a.png" in caplog.text
    assert all(t["meta"] == {} for t in project.tasks.values())  # left as they are: not marked removed
    assert project.tasks[1]["data"]["hf_path"] == "img/a.png" and project.tasks[1]["data"]["hf_revision"] == first
    assert set(state.ledger.entries()) == {"raw/a.png", "raw/b.png"}

    back = sample_repos.commit_local(repo_path, {"img2/a.png": a}, deletes=("raw/a.png", "raw/b.png"))
    report = run()
    assert report.moved == [("raw/a.png", "img2/a.png")] and report.created == 0
    assert report.removed == ["raw/b.png"]  # deleted while out of the selection: its task is marked removed
    assert len(project.tasks) == 2 and project.tasks[2]["meta"]["hf_removed"] is True
    assert project.tasks[1]["meta"] == {}
    assert project.tasks[1]["data"]["hf_path"] == "img2/a.png" and project.tasks[1]["data"]["hf_revision"] == back
    assert _revisions(state) == {10: back}  # the same content: its annotation names the commit of the move


# ---- 6. the adopted duplicates' check is linear -------------------------------------------------------------------

class _Counting(dict):
    reads = 0

    def __getitem__(self, key):
        _Counting.reads += 1
        return super().__getitem__(key)


def test_the_adopted_duplicates_check_reads_each_gone_task_once():
    present, deleted = 400, 100
    known = _Counting({f"f{i}.png": Known(i, "a" * 40, None, f"{i:040x}") for i in range(present + deleted)})
    by_path = {f"f{i}.png": RepoFile(f"f{i}.png", 1, f"{i:040x}") for i in range(present)}
    gone = [f"f{i}.png" for i in range(present, present + deleted)]
    _Counting.reads = 0
    assert FileImporter._adopted_duplicates(None, gone, set(by_path), by_path, known) == []
    assert _Counting.reads < 3 * (present + deleted), _Counting.reads  # 40,000 before: a set per adopted path


# ---- 5. an annotation saved just before its file changes keeps the revision it was made on -----------------------

def test_an_annotation_saved_just_before_its_file_changes_keeps_its_revision(label_studio, make_project, tmp_path):
    """No webhook: the annotations are saved after a reconciliation, the files change, then the import runs and
    the next reconciliation reads them (the order of ``labelhub sync --once``)."""
    client = label_studio.client()
    created = make_project("saved before the change", TEXT)
    project = LabelStudioProject(label_studio.url, label_studio.api_key, created.id)
    repo_path = sample_repos.local_repo_with(tmp_path / "repo", {"edited.txt": b"one two", "moved.txt": b"three"})
    repo = open_repo(str(repo_path))
    state = SyncState(tmp_path / "s.sqlite3", created.id, repo.repo_id)
    intake, importer = AnnotationIntake(project, state), FileImporter(repo, project, state)
    importer.run()
    intake.reconcile()
    before = sample_repos.git(repo_path, "rev-parse", "HEAD")
    ids = {t.data["hf_path"]: t.id for t in client.tasks.list(project=created.id)}
    for path, text in (("edited.txt", "one"), ("moved.txt", "three")):
        client.annotations.create(ids[path], result=[{"from_name": "l", "to_name": "text", "type": "labels",
                                                      "value": {"start": 0, "end": len(text), "text": text,
                                                                "labels": ["X"]}}])
    after = sample_repos.commit_local(repo_path, {"edited.txt": b"XYZ new content", "elsewhere/moved.txt": b"three"},
                                      deletes=("moved.txt",), message="edit and move")
    report = importer.run()
    assert report.changed == ["edited.txt"] and report.moved == [("moved.txt", "elsewhere/moved.txt")]
    intake.reconcile()
    stored = dict(state.db.execute("SELECT task_id, revision FROM annotations WHERE deleted=0"))
    assert stored == {ids["edited.txt"]: before,  # made on "one two"; the reconciliation read the new revision
                      ids["moved.txt"]: after}  # the same content, at the path the move's commit has
