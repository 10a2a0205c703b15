"""What a third audit of the imports found:

1. ``labelhub import-labels`` stopped at a sync task deleted in Label Studio: the repo's ledger still listed it, and
   the read of it turned Label Studio's 404 into "Label Studio project N not found"; the later rows were never
   imported, and every rerun failed the same way. Now the url is reported (where: the url and its task; why: deleted
   in Label Studio), recorded as deleted (the sync imports a deleted task's file no more), and the rest goes on; a
   project that is really gone still says so.
2. A task listing stopped after one page when Label Studio caps the page size (``TASK_API_PAGE_SIZE_MAX``): a page
   shorter than asked was taken for the last. Now the list ends at the ``total`` Label Studio reports (or an empty
   page, or the 404 past the last), with as many calls as before when nothing caps it.
3. A file removed, then added back with another content, got two PATCHes of one task at once (its ``data`` and its
   ``meta``); Label Studio's PATCH saves the whole row, so one was lost while the ledger recorded both. Now one
   task's updates run one after the other.
4. Recovery skipped its query of the sync's tasks when Label Studio's project summary counted no ``hf_path``; that
   count can be lost to a concurrent import (an unlocked read-modify-write in Label Studio), and a lost state then
   imported every file again. Now the query is always made.

Real Label Studio where its behaviour is the point (its 404 of a deleted task, its PATCH), a stub of its HTTP API
behind the real label-studio-sdk client for the capped pages (Django REST framework's cap, as
``TaskPagination.max_page_size`` applies it), and an in-memory project that models a PATCH for the overlap.
"""
from __future__ import annotations

import copy
import logging
import threading
import time
from types import SimpleNamespace

import httpx
import pytest
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from labelhub.errors import ProjectNotFound
from labelhub.file_urls import FileURLs
from labelhub.labelstudio_client import list_tasks
from labelhub.repos import open_repo
from labelhub.repos.git import LocalGitRepo
from labelhub.sync.files.importer import FileImporter
from labelhub.sync.labels.importer import LabelImporter, summary_lines
from labelhub.sync.labels.parsed import ImportTask, ParsedLabels, ProjectLabels
from labelhub.sync.labelstudio.project import LabelStudioProject
from labelhub.sync.ledger import LABELS_SOURCE, Entry, ImportLedger
from labelhub.sync.state import SyncState
from tests import sample_repos
from tests.conftest import FILE_SECRET
from tests.test_import_labels_to_tasks import CONFIG, HEADER, invoke_import_labels

P0, P1, P2 = (sample_repos.image_path(i) for i in range(3))
TEXT_CONFIG = ('<View><Text name="text" value="$text"/><Choices name="c" toName="text"><Choice value="a"/>'
               '</Choices></View>')


# ---- 1. import-labels past a sync task deleted in Label Studio ---------------------------------------------------

@pytest.fixture
def invoke(label_studio, tmp_path):
    """``labelhub import-labels ARGS --state tmp/state.sqlite3`` in-process (as in test_import_labels_to_tasks.py)."""
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.personal_token,
           "TQDM_DISABLE": "1", "LABELHUB_SECRET": FILE_SECRET}
    return lambda *args: invoke_import_labels(env, tmp_path / "state.sqlite3", *args)


def test_import_labels_reports_a_deleted_sync_task_and_imports_the_other_rows(label_studio, make_project, invoke,
                                                                             tmp_path):
    client = label_studio.client()
    repo_path = sample_repos.local_repo_with(tmp_path / "repo", sample_repos.image_files(0, 3))
    created = make_project("labels past a deleted task", CONFIG)
    project = LabelStudioProject(label_studio.url, label_studio.api_key, created.id)
    repo = LocalGitRepo(repo_path, file_urls=FileURLs(secret=FILE_SECRET))
    state = SyncState(tmp_path / "state.sqlite3", created.id, repo.repo_id)
    assert FileImporter(repo, project, state).run().created == 3
    gone = state.ledger.task_ids([P0])[P0]
    client.tasks.delete(str(gone))  # an annotator or a manager deletes a bad image's task
    state.db.close()

    labels = tmp_path / "labels.csv"  # the deleted file's row first: it stopped every later row
    labels.write_text(HEADER + f"{P0},Bag,,,,,,\n{P1},Bag,,,0.1,0.2,0.3,0.4\nhttps://example.test/c.png,Dress,,,,,,\n")
    first = invoke(str(labels), "--project", str(created.id), "--repo", str(repo_path))
    assert first.exit_code == 1 and "not found" not in first.output, first.output  # a url not imported: 1
    lines = first.output.splitlines()
    assert "tasks created: 1 (1 sync tasks labelled), regions: 1, as predictions" in lines, first.output
    assert (f"not imported: 1 urls whose file's task was deleted in Label Studio: {P0} (task {gone}) (the sync does "
            "not import a deleted task's file again; delete its row from the state to import it)") in lines
    tasks = {t.data.get("source_url") or t.data["hf_path"]: t
             for t in client.tasks.list(project=created.id, fields="all")}
    assert sorted(tasks) == sorted([P1, P2, "https://example.test/c.png"])  # no second task of P0
    assert len(tasks[P1].predictions) == 1 and len(tasks["https://example.test/c.png"].predictions) == 1

    state = SyncState(tmp_path / "state.sqlite3", created.id, repo.repo_id)
    assert state.ledger.entries()[P0].deleted  # as the sync records it: the file is not imported again
    assert FileImporter(repo, project, state).run().created == 0
    state.db.close()
    again = invoke(str(labels), "--project", str(created.id), "--repo", str(repo_path))  # no call for it: the state
    assert again.exit_code == 1 and "tasks created: 0 (2 already imported), regions: 0" in again.output, again.output
    assert f"not imported: 1 urls whose file's task was deleted in Label Studio: {P0} (task {gone})" in again.output


class _Tasks:
    """``client.tasks.get`` of an in-memory project: Label Studio's 404 for a task it lacks."""

    def __init__(self, tasks: dict):
        self.tasks = tasks

    def get(self, task_id):
        if int(task_id) not in self.tasks:
            raise ApiError(status_code=404, headers={}, body={"detail": "Not found."})
        return self.tasks[int(task_id)]


class _LabelsProject:
    """What :class:`LabelImporter` asks of a project, in memory: its calls go through the real
    :meth:`LabelStudioProject.call` (which turns a 404 into :class:`ProjectNotFound`)."""

    call = LabelStudioProject.call
    _full_url = url = "http://ls.test"

    def __init__(self, project_gone: bool = False):
        self.project_id, self.label_config = 7, CONFIG
        self.tasks: dict[int, dict] = {}
        self.predictions: list[dict] = []

        def project(project_id):
            if project_gone:
                raise ApiError(status_code=404, headers={}, body={"detail": "Not found."})
            return SimpleNamespace(id=project_id)

        self.client = SimpleNamespace(tasks=_Tasks(self.tasks), projects=SimpleNamespace(get=project),
                                      predictions=SimpleNamespace(create=lambda **kw: self.predictions.append(kw)))

    def add(self, data: dict) -> int:
        task_id = max(self.tasks, default=0) + 1
        self.tasks[task_id] = {"id": task_id, "data": data, "predictions": []}
        return task_id

    def task_data(self, after_task_id=0, before_task_id=None, **where):
        return [(i, t["data"]) for i, t in sorted(self.tasks.items()) if i > after_task_id and
                (before_task_id is None or i < before_task_id) and t["data"].get("source_url")]

    def repo_file_tasks(self, repo_id, after_task_id=0):
        return [(i, t["data"]["hf_path"], "") for i, t in sorted(self.tasks.items())
                if i > after_task_id and t["data"].get("hf_repo") == repo_id]

    def other_repo_file_tasks(self, repo_id, limit=5):
        return []

    def prepare_import(self, tasks):
        return list(tasks)

    def import_tasks(self, tasks):
        return [self.add(t["data"]) for t in tasks]


def _labels_run(project: _LabelsProject, tmp_path):
    """The sync's tasks of a.png and b.png, a.png's deleted in Label Studio (its ledger row stays); then an import
    of a.png, b.png and an url elsewhere. Returns ``(report or the error, state)``."""
    repo_id, sha = "owner/name", "a" * 40
    state = SyncState(tmp_path / "s.sqlite3", project.project_id, repo_id)
    for path in ("a.png", "b.png"):
        task_id = project.add({"image": f"http://x/{path}", "hf_repo": repo_id, "hf_path": path, "hf_revision": sha})
        state.ledger.record([Entry(path, task_id, sha)])
    del project.tasks[1]
    rows = [ImportTask(p, f"http://x/{p}", concepts=["Bag"], hf=(repo_id, p, sha)) for p in ("a.png", "b.png")]
    rows.append(ImportTask("http://elsewhere/c.png", "http://elsewhere/c.png", concepts=["Bag"]))
    importer = LabelImporter(project, ImportLedger(state.db, project.project_id, LABELS_SOURCE),
                             ProjectLabels.from_config(CONFIG))
    try:
        return importer.run(rows), rows, state
    except ProjectNotFound as exc:
        return exc, rows, state


def test_a_task_gone_is_reported_and_a_project_gone_still_says_so(tmp_path, caplog):
    """The audit's repro (its in-memory project): the import went no further than a.png's row; and a 404 of every
    task because the project itself is gone must stay "project N not found"."""
    caplog.set_level(logging.WARNING, logger="labelhub.sync.labels.importer")
    project = _LabelsProject()
    report, rows, state = _labels_run(project, tmp_path / "here")
    assert report.deleted_tasks == [("a.png", 1)] and report.labelled_sync_tasks == 1 and report.created == 1
    assert [p["task"] for p in project.predictions] == [2]
    assert state.ledger.entries()["a.png"].deleted and not state.ledger.entries()["b.png"].deleted
    said = [r.getMessage() for r in caplog.records]
    assert any("a.png (task 1)" in m and "deleted in Label Studio" in m for m in said), said
    lines = summary_lines(ParsedLabels(rows=3, tasks=rows), report, "predictions", False)
    assert any(line.startswith("not imported: 1 urls whose file's task was deleted in Label Studio: a.png (task 1)")
               for line in lines), lines
    again = LabelImporter(project, ImportLedger(state.db, project.project_id, LABELS_SOURCE),
                          ProjectLabels.from_config(CONFIG)).run(rows)
    assert again.deleted_tasks == [("a.png", 1)] and again.created == 0 and len(project.predictions) == 1

    gone, _, state = _labels_run(_LabelsProject(project_gone=True), tmp_path / "gone")
    assert isinstance(gone, ProjectNotFound) and "Label Studio project 7 not found" in str(gone)
    assert not state.ledger.entries()["a.png"].deleted  # nothing recorded of a project that is gone


# ---- 2. listings past a capped page size ----------------------------------------------------------------------------

class _TaskAPI:
    """``GET /api/tasks`` as Label Studio 1.23 answers it (``TaskPagination``: Django REST framework's page number
    pagination, ``page_size`` capped at ``TASK_API_PAGE_SIZE_MAX`` when that is set; the page past the last 404),
    and ``GET /api/projects/1/``; every request is kept in ``asked``."""

    def __init__(self, total: int, cap: int | None = None):
        self.total, self.cap, self.asked = total, cap, []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        self.asked.append(params)
        if request.url.path.rstrip("/") == "/api/projects/1":
            return httpx.Response(200, json={"id": 1, "title": "stub", "label_config": CONFIG,
                                             "created_at": "2026-12-07T00:00:00Z"})
        size = int(params.get("page_size", 100))
        size = min(size, self.cap) if self.cap else size
        page = int(params.get("page", 1))
        ids = list(range(1, self.total + 1))[(page - 1) * size:page * size]
        if not ids and page > 1:
            return httpx.Response(404, json={"detail": "Invalid page."})
        return httpx.Response(200, json={"tasks": [{"id": i, "data": {"n": i}} for i in ids], "total": self.total,
                                         "total_annotations": 0, "total_predictions": 0})


def _client(api: _TaskAPI) -> LabelStudio:
    return LabelStudio(base_url="http://ls.test", api_key="0" * 40,
                       httpx_client=httpx.Client(transport=httpx.MockTransport(api)))


def test_a_listing_goes_past_a_page_label_studio_capped(monkeypatch):
    api = _TaskAPI(250, cap=100)  # TASK_API_PAGE_SIZE_MAX=100 while the listing asks 500 a page
    listing = list_tasks(_client(api), lambda fn: fn(), project=1, page_size=500, fields="task_only")
    assert [t.id for t in listing.tasks] == list(range(1, 251)) and listing.held_still  # was 100, held still
    assert [a["page"] for a in api.asked] == ["1", "2", "3"]  # ends at the total: no page past the last
    api = _TaskAPI(300, cap=100)
    assert len(list_tasks(_client(api), lambda fn: fn(), project=1, page_size=500).tasks) == 300
    assert len(api.asked) == 3

    import labelhub.sync.labelstudio.project as project_module

    api = _TaskAPI(250, cap=100)  # the sync's own listings (task_data, task_ids, ...) read every page too
    monkeypatch.setattr(project_module, "label_studio_client", lambda url, key, timeout: _client(api))
    project = LabelStudioProject("http://ls.test", "0" * 40, 1)
    assert project.task_ids() == list(range(1, 251))
    assert [i for i, _ in project.task_data()] == list(range(1, 251))


@pytest.mark.parametrize("total, calls", [(0, 1), (250, 1), (500, 1), (1000, 2), (1001, 3)])
def test_an_uncapped_listing_makes_as_many_calls_as_before(total, calls):
    api = _TaskAPI(total)
    listing = list_tasks(_client(api), lambda fn: fn(), project=1, page_size=500)
    assert len(listing.tasks) == total and listing.held_still and len(api.asked) == calls


# ---- 3. one task, one PATCH at a time ----------------------------------------------------------------------------

class _PatchedProject:
    """An in-memory project whose update is Label Studio 1.23's PATCH: the row read, one field set, the whole row
    saved after the request's work (``TaskSimpleSerializer`` then ``Task.save()``); PATCHes of one task that overlap
    are kept in ``overlaps``."""

    def __init__(self):
        self.project_id, self.label_config, self.url = 1, TEXT_CONFIG, "http://ls.test"
        self.tasks: dict[int, dict] = {}
        self.in_flight: dict[int, int] = {}
        self.overlaps: list[int] = []
        self.lock = threading.Lock()

    def repo_file_tasks(self, repo_id, after_task_id=0):
        return []

    def prepare_import(self, tasks):
        return list(tasks)

    def import_tasks(self, tasks):
        start = len(self.tasks) + 1
        for n, task in enumerate(tasks):
            self.tasks[start + n] = {"data": copy.deepcopy(task["data"]), "meta": {}}
        return list(range(start, start + len(tasks)))

    def tasks_fields(self, ids):
        return {i: (copy.deepcopy(self.tasks[i]["data"]), dict(self.tasks[i]["meta"])) for i in ids}

    def tasks_by_id(self, ids):  # the annotations stored before a task's data changes: none here
        return [{"id": i, "data": copy.deepcopy(self.tasks[i]["data"]), "annotations": []} for i in ids]

    def _patch(self, task_id, name, value):
        with self.lock:
            if self.in_flight.get(task_id):
                self.overlaps.append(task_id)
            self.in_flight[task_id] = self.in_flight.get(task_id, 0) + 1
        row = copy.deepcopy(self.tasks[task_id])
        time.sleep(0.05)
        row[name] = value
        self.tasks[task_id] = row
        with self.lock:
            self.in_flight[task_id] -= 1

    def update_data(self, task_id, changes, current=None, drop=()):
        current = self.tasks[task_id]["data"] if current is None else current
        self._patch(task_id, "data", {**{k: v for k, v in current.items() if k not in drop}, **changes})

    def update_meta(self, task_id, changes, current=None):
        current = self.tasks[task_id]["meta"] if current is None else current
        self._patch(task_id, "meta", {**current, **changes})


def _remove_then_change(repo_path, run) -> str:
    """Remove a.txt (a cycle), add it back with another text (a cycle); return the last commit."""
    sample_repos.commit_local(repo_path, deletes=("a.txt",), message="drop a")
    assert run().removed == ["a.txt"]
    head = sample_repos.commit_local(repo_path, {"a.txt": b"corrected text"}, message="a again")
    report = run()
    assert report.changed == ["a.txt"] and report.restored == ["a.txt"]
    return head


def test_a_file_back_with_another_content_gets_its_updates_one_after_the_other(tmp_path):
    repo_path = sample_repos.local_repo_with(tmp_path / "repo", {"a.txt": b"old text", "b.txt": b"other"})
    repo, project = open_repo(str(repo_path)), _PatchedProject()
    state = SyncState(tmp_path / "s.sqlite3", 1, repo.repo_id)
    run = lambda: FileImporter(repo, project, state).run()  # noqa: E731
    run()
    head = _remove_then_change(repo_path, run)
    assert project.overlaps == []
    (task,) = [t for t in project.tasks.values() if t["data"]["hf_path"] == "a.txt"]
    assert task["data"]["text"] == "corrected text" and task["data"]["hf_revision"] == head
    assert task["meta"] == {"hf_removed": False, "hf_removed_in": None}


def test_label_studio_keeps_both_updates_of_a_file_back_with_another_content(label_studio, make_project, tmp_path):
    repo_path = sample_repos.local_repo_with(tmp_path / "repo", {"a.txt": b"old text", "b.txt": b"other"})
    created = make_project("removed then changed", TEXT_CONFIG)
    project = LabelStudioProject(label_studio.url, label_studio.api_key, created.id)
    repo = open_repo(str(repo_path))
    state = SyncState(tmp_path / "s.sqlite3", created.id, repo.repo_id)
    run = lambda: FileImporter(repo, project, state).run()  # noqa: E731
    run()
    head = _remove_then_change(repo_path, run)
    tasks = [t for t in label_studio.client().tasks.list(project=created.id, fields="task_only")
             if t.data["hf_path"] == "a.txt"]
    assert len(tasks) == 1 and tasks[0].data["text"] == "corrected text" and tasks[0].data["hf_revision"] == head
    assert tasks[0].meta == {"hf_removed": False, "hf_removed_in": None}
    assert state.ledger.entries()["a.txt"].removed_in is None


# ---- 4. recovery never trusts Label Studio's count of data keys -------------------------------------------------

def test_a_lost_state_adopts_the_sync_tasks_even_when_label_studios_summary_lost_their_count(label_studio,
                                                                                            make_project, tmp_path):
    """Label Studio counts the tasks having each data key in the project summary by reading, adding and writing the
    count back without a lock (``ProjectSummary.update_data_columns``): an import at the same time can lose the
    sync's ``hf_path``. A recovery that skipped its query on that count adopted nothing and imported every file
    again (found by an audit)."""
    import sqlite3

    repo_path = sample_repos.local_repo_with(tmp_path / "repo", sample_repos.image_files(0, 3))
    created = make_project("summary count lost", CONFIG)
    project = LabelStudioProject(label_studio.url, label_studio.api_key, created.id)
    repo = LocalGitRepo(repo_path, file_urls=FileURLs(secret=FILE_SECRET))
    assert FileImporter(repo, project, SyncState(tmp_path / "a.sqlite3", created.id, repo.repo_id)).run().created == 3
    with sqlite3.connect(label_studio.data_dir / "label_studio.sqlite3", timeout=30) as db:  # what the race leaves
        db.execute("UPDATE projects_projectsummary SET all_data_columns='{}' WHERE project_id=?", (created.id,))
    lost = SyncState(tmp_path / "b.sqlite3", created.id, repo.repo_id)  # the sync's state file is lost
    assert FileImporter(repo, project, lost).run().created == 0
    assert len(list(label_studio.client().tasks.list(project=created.id))) == 3
