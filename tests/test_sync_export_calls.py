"""The Hub calls of an export, against the Hub test server and the real Label Studio: four for the first version
of a process (its head and tags come from the import cycle's poll) and three for each later one (the upload modes
are known), and a branch someone else moved is caught by the commit's compare-and-swap, a stale numbering
included."""
from __future__ import annotations

from huggingface_hub import HfApi

from labelhub.repos.hub import HubRepo
from labelhub.sync.annotations.intake import AnnotationIntake
from labelhub.sync.files.importer import FileImporter
from labelhub.sync.labelstudio.project import LabelStudioProject
from labelhub.sync.state import SyncState
from labelhub.sync.versions.exporter import Exporter
from tests.conftest import HUB_TOKEN
from tests.test_sync_export import CONFIG, choice
from tests.test_sync_export_faults import hub_repo_with_images

#: ``create_commit`` (validate-yaml: README.md is committed; preupload; commit), then ``create_tag``.
FIRST_VERSION = ["POST validate-yaml", "POST preupload", "POST commit", "POST tag"]
#: A later version: the Hub's upload modes of the same paths are reused, so no preupload.
LATER_VERSION = ["POST validate-yaml", "POST commit", "POST tag"]


def names(calls) -> list[str]:
    """``METHOD route`` of recorded Hub calls (the route under ``/api/datasets/owner/name/``, else the last segment)."""
    out = []
    for method, path, *_ in calls:
        parts = path.strip("/").split("/")
        out.append(f"{method} {parts[4] if parts[:2] == ['api', 'datasets'] and len(parts) > 4 else parts[-1]}")
    return out


def polled_exporter(label_studio, hub, make_project, tmp_path, name):
    """An import cycle over a Hub repo of real images, one annotation per task, and the exporter of that state."""
    repo_id = hub_repo_with_images(hub, name)
    created = make_project(name, CONFIG)
    project = LabelStudioProject(label_studio.url, label_studio.api_key, created.id)
    repo = HubRepo(repo_id, token=HUB_TOKEN)
    state = SyncState(tmp_path / "state.sqlite3", created.id, repo_id)
    importer = FileImporter(repo, project, state)
    importer.run()
    client = label_studio.client()
    task_ids = [t.id for t in client.tasks.list(project=created.id, page_size=100)]
    for task_id in task_ids:
        client.annotations.create(task_id, result=[choice("illustrated")])
    AnnotationIntake(project, state).reconcile()
    return Exporter(repo, project, state, sleep=lambda s: None), importer, client, task_ids


def annotate(exporter, client, task_id, label):
    client.annotations.create(task_id, result=[choice(label)])
    AnnotationIntake(exporter.project, exporter.state).reconcile()


def test_a_first_export_makes_four_hub_calls_and_each_later_one_three(label_studio, hub, make_project, tmp_path):
    exporter, _, client, task_ids = polled_exporter(label_studio, hub, make_project, tmp_path, "calls")
    hub.reset_calls()
    assert exporter.export().number == 1
    assert names(hub.calls) == FIRST_VERSION
    for number, label in ((2, "text-only"), (3, "illustrated")):
        annotate(exporter, client, task_ids[0], label)
        hub.reset_calls()
        assert exporter.export().number == number
        assert names(hub.calls) == LATER_VERSION


def test_a_commit_of_someone_else_the_poll_saw_costs_no_412(label_studio, hub, make_project, tmp_path):
    exporter, importer, client, task_ids = polled_exporter(label_studio, hub, make_project, tmp_path, "polled")
    exporter.export()
    theirs = hub.commit_files(exporter.repo.repo_id, {"notes.txt": b"theirs"}, message="someone else")
    importer.run()  # the poll lists their commit: its README.md is our card (its blob id), so it is not downloaded
    annotate(exporter, client, task_ids[0], "text-only")
    hub.reset_calls()
    version = exporter.export()
    assert names(hub.calls) == LATER_VERSION  # built on the head the poll saw (their commit): no 412
    commits = HfApi(token=HUB_TOKEN).list_repo_commits(exporter.repo.repo_id, repo_type="dataset")
    assert commits[0].commit_id == version.commit and commits[1].commit_id == theirs


def test_a_first_export_on_stale_refs_is_numbered_again_after_the_412(label_studio, hub, make_project, tmp_path):
    exporter, _, client, task_ids = polled_exporter(label_studio, hub, make_project, tmp_path, "stale")
    # a lost state file's daemon (the same project and series) exports meanwhile: our poll's head and tags are stale
    other = Exporter(exporter.repo, exporter.project, SyncState(tmp_path / "other.sqlite3", exporter.project.project_id,
                                                                exporter.repo.repo_id))
    AnnotationIntake(other.project, other.state).reconcile()
    theirs = other.export()
    annotate(exporter, client, task_ids[0], "text-only")  # one more than theirs holds
    hub.reset_calls()
    ours = exporter.export()
    assert (theirs.number, ours.number) == (1, 2)
    assert (ours.added, ours.changed, ours.removed) == (1, 0, 0)  # counted against theirs, which it adopted
    assert hub.count_calls("POST", r"/commit/") == 2  # the 412 on the stale head, then version 2 on theirs
    tags = {t.name: t.target_commit for t in HfApi(token=HUB_TOKEN).list_repo_refs(
        exporter.repo.repo_id, repo_type="dataset").tags}
    assert tags == {"annotations-v1": theirs.commit, "annotations-v2": ours.commit}
    assert exporter.state.last_version()["status"] == "tagged"


def test_a_commit_refused_with_remembered_upload_modes_asks_the_hub_again(label_studio, hub, make_project, tmp_path):
    exporter, _, client, task_ids = polled_exporter(label_studio, hub, make_project, tmp_path, "modes")
    exporter.export()
    annotate(exporter, client, task_ids[0], "text-only")
    hub.faults.add(method="POST", path="/commit/", kind="400")  # as the Hub refuses an inline file it wants in LFS
    hub.reset_calls()
    assert exporter.export().number == 2
    assert names(hub.calls) == LATER_VERSION[:2] + FIRST_VERSION
