"""What an audit of ``labelhub sync`` against the Hub test server with injected faults found: a tag made by hand
with the next version's name, ``Retry-After`` and signals during waits, the parent of an export after someone
else's push, the Hub failing at start, the Hub's refusals said plainly, a repo made private mid-run, and the
import cycle's log lines.

Real Label Studio, the test Hub through the real ``huggingface_hub`` client (its fault injection:
``tests/hubserver/faults.py``), the real ``labelhub`` command (the model: ``tests/test_sync_export_faults.py``).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from huggingface_hub import HfApi

from labelhub.errors import ConfigurationError, HubError, RepoNotFound, TransientHubError
import labelhub.repos.hub as hub_module
import labelhub.sync.files.importer as importer_module
from labelhub.file_urls import FileURLs
from labelhub.errors import PrivateRepoRefused
from labelhub.repos.hub import HubRepo
from labelhub.sync.annotations.intake import AnnotationIntake
from labelhub.sync.files.importer import FileImporter
from labelhub.sync.labelstudio.project import LabelStudioProject
from labelhub.sync.service import SyncService
from labelhub.sync.state import SyncState
from labelhub.errors import ForeignTag
from labelhub.sync.versions.exporter import Exporter
from tests import sample_repos
from tests.conftest import HUB_TOKEN, ROOT, sigterm_timed
from tests.in_process import invoke_labelhub
from tests.test_sync_export import CONFIG, choice

N = 4


def api() -> HfApi:
    return HfApi(token=HUB_TOKEN)


def commit_titles(repo_id):
    return [c.title for c in api().list_repo_commits(repo_id, repo_type="dataset")]


@pytest.fixture
def synced(label_studio, hub, make_project, tmp_path):
    """A Hub repo with N images imported as tasks, one annotation per task: ``(exporter, importer, annotate)``;
    ``annotate(i)`` adds an annotation to task ``i`` and reconciles."""
    repo_id = f"labelhub/audit-{time.monotonic_ns() % 10**9}"
    hub.create_repo(repo_id)
    hub.commit_files(repo_id, sample_repos.image_files(0, N), message="images")
    client = label_studio.client()
    created = make_project("hub audit", CONFIG)
    project = LabelStudioProject(label_studio.url, label_studio.api_key, created.id)
    repo = HubRepo(repo_id, token=HUB_TOKEN)
    state = SyncState(tmp_path / "state.sqlite3", created.id, repo_id)
    importer = FileImporter(repo, project, state)
    importer.run()
    task_ids = sorted(t.id for t in client.tasks.list(project=created.id, page_size=100))
    intake = AnnotationIntake(project, state)

    def annotate(i: int, label: str = "illustrated") -> None:
        client.annotations.create(task_ids[i], result=[choice(label)])
        intake.reconcile()

    for i in range(N):
        client.annotations.create(task_ids[i], result=[choice("illustrated")])
    intake.reconcile()
    exporter = Exporter(repo, project, state, sleep=lambda s: None)
    return exporter, importer, annotate


def test_a_hand_made_tag_of_the_next_version_waits_for_its_deletion_and_a_stale_poll_does_not_keep_it(synced):
    exporter, importer, annotate = synced
    repo_id = exporter.repo.repo_id
    assert exporter.export().tag == "annotations-v1"
    images = api().list_repo_commits(repo_id, repo_type="dataset")[-1].commit_id  # the first commit: no manifest
    api().create_tag(repo_id, tag="annotations-v2", revision=images, repo_type="dataset")
    importer.run()  # the poll keeps the refs, with the hand-made tag, in the state
    annotate(0, "text-only")
    with pytest.raises(ForeignTag) as err:
        exporter.export()
    assert not isinstance(err.value, ConfigurationError)  # the daemon keeps importing
    text = str(err.value)
    assert "annotations-v2" in text and "not made by LabelHub" in text and "delete" in text
    assert "--tag-prefix" not in text
    api().delete_tag(repo_id, tag="annotations-v2", repo_type="dataset")
    # no poll since: the state still shows the tag; a new exporter (the daemon's start) and the export go on
    again = Exporter(exporter.repo, exporter.project, exporter.state, sleep=lambda s: None)
    version = again.export()
    assert version.tag == "annotations-v2" and version.added == 1


def test_a_hand_made_tag_taken_during_our_tag_call_leaves_our_commit_tagged_later_not_twice(synced):
    exporter, importer, annotate = synced
    repo_id = exporter.repo.repo_id
    assert exporter.export().tag == "annotations-v1"
    images = api().list_repo_commits(repo_id, repo_type="dataset")[-1].commit_id
    annotate(1, "text-only")
    create_tag = exporter.repo.create_tag

    def someone_tags_first(tag, sha, **kwargs):  # a hand-made tag lands between our commit and our tag
        exporter.repo.create_tag = create_tag
        api().create_tag(repo_id, tag=tag, revision=images, repo_type="dataset")
        return create_tag(tag, sha, **kwargs)

    exporter.repo.create_tag = someone_tags_first
    with pytest.raises(ForeignTag) as err:
        exporter.export()
    assert "stays on main untagged" in str(err.value) and "annotations-v2" in str(err.value)
    ours = exporter.state.last_version()
    assert ours["status"] == "committed" and ours["version"] == 2
    with pytest.raises(ForeignTag):  # still taken: nothing committed again
        exporter.export()
    api().delete_tag(repo_id, tag="annotations-v2", repo_type="dataset")
    version = exporter.export()
    assert version is not None and version.tag == "annotations-v2" and version.commit == ours["commit_sha"]
    titles = commit_titles(repo_id)
    assert sum(t.startswith("annotations v2:") for t in titles) == 1, titles
    refs = api().list_repo_refs(repo_id, repo_type="dataset")
    assert {t.name: t.target_commit for t in refs.tags}["annotations-v2"] == ours["commit_sha"]


def test_our_version_tags_deleted_by_hand_are_said_once_and_their_numbers_not_reused(synced, caplog):
    """The next export numbered on after a tag of ours was deleted, silently: the series showed a gap (v1, v3). It is
    said once, with the commit and how to tag it again; the tag is not made again, nor its number reused."""
    exporter, importer, annotate = synced
    repo_id = exporter.repo.repo_id
    exporter.export()
    annotate(0, "text-only")
    assert exporter.export().tag == "annotations-v2"
    v2 = exporter.state.last_version()["commit_sha"]
    api().delete_tag(repo_id, tag="annotations-v2", repo_type="dataset")
    caplog.set_level("WARNING", logger="labelhub.sync.versions.exporter")

    def said():
        return [r.getMessage() for r in caplog.records if "tags of versions this sync exported" in r.getMessage()]

    annotate(1, "text-only")  # no poll since the deletion: the kept refs still show the tag (no call, nothing said)
    assert exporter.export().tag == "annotations-v3" and said() == []
    importer.run()  # the poll sees it gone
    annotate(2, "text-only")
    assert exporter.export().tag == "annotations-v4"
    assert said() == [f"tags of versions this sync exported are gone from {repo_id} (deleted by hand?): annotations-v2 "
                      f"(commit {v2[:12]}). They are not made again and a version number is never reused: the next "
                      f"version is annotations-v4. The commits stay in the history of main; to tag one again: "
                      f"HfApi().create_tag({repo_id!r}, tag='annotations-v2', revision={v2!r}, repo_type='dataset')"]
    annotate(3, "text-only")
    assert exporter.export().tag == "annotations-v5" and len(said()) == 1  # once
    tags = {t.name for t in api().list_repo_refs(repo_id, repo_type="dataset").tags}
    assert tags == {"annotations-v1", "annotations-v3", "annotations-v4", "annotations-v5"}, tags


def test_a_lost_state_after_the_newest_tag_was_deleted_numbers_on_after_the_untagged_version(synced, tmp_path):
    """A fresh ``--state`` adopted the newest tag left (v1) and made a second ``annotations v2`` commit, counted
    against v1; the manifest at the head names v2, which it now takes as the last version."""
    exporter, importer, annotate = synced
    repo_id = exporter.repo.repo_id
    exporter.export()
    annotate(0, "text-only")
    assert exporter.export().tag == "annotations-v2"
    api().delete_tag(repo_id, tag="annotations-v2", repo_type="dataset")
    lost = SyncState(tmp_path / "lost.sqlite3", exporter.project.project_id, repo_id)
    FileImporter(exporter.repo, exporter.project, lost).run()
    AnnotationIntake(exporter.project, lost).reconcile()
    fresh = Exporter(exporter.repo, exporter.project, lost, sleep=lambda _: None)
    annotate(1, "text-only")  # the old state's intake; the fresh one reads it below
    AnnotationIntake(exporter.project, lost).reconcile()
    version = fresh.export()
    assert version.tag == "annotations-v3" and (version.added, version.changed, version.removed) == (1, 0, 0)
    titles = commit_titles(repo_id)
    assert sum(t.startswith("annotations v2:") for t in titles) == 1, titles


def test_a_retry_after_longer_than_the_cap_gives_up_the_attempt_and_the_export_stays_pending(synced, hub):
    exporter, _, _ = synced
    sleeps = []
    exporter.sleep = sleeps.append
    hub.faults.add(method="POST", path=r"/commit/", kind="429", count=10, retry_after=45)
    hub.reset_calls()
    with pytest.raises(TransientHubError):
        exporter.export()
    assert sleeps == [] and hub.count_calls("POST", r"/commit/") == 1  # no 45 s wait, no second attempt
    assert exporter.pending()
    hub.faults.clear()
    assert exporter.export().tag == "annotations-v1"


def test_sigterm_during_a_retry_wait_stops_the_daemon_in_seconds_and_the_flush_tries_once(
        label_studio, hub, make_project, tmp_path):
    repo_id = f"labelhub/sigterm-{time.monotonic_ns() % 10**9}"
    hub.create_repo(repo_id)
    hub.commit_files(repo_id, sample_repos.image_files(0, N), message="images")
    project = make_project("sigterm", CONFIG)
    env = {**os.environ, "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.api_key,
           "HF_TOKEN": HUB_TOKEN}
    state = str(tmp_path / "s.sqlite3")
    invoke_labelhub("sync", "--repo", repo_id, "--project", str(project.id), "--state", state, "--once", env=env,
                    check=True)
    client = label_studio.client()
    for task in client.tasks.list(project=project.id, page_size=100):
        client.annotations.create(task.id, result=[choice("text-only")])
    hub.faults.add(method="POST", path=r"/commit/", kind="429", count=100, retry_after=20)
    hub.reset_calls()
    log_path = tmp_path / "daemon.log"
    with open(log_path, "w") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "tests.guarded", "sync", "--repo", repo_id, "--project", str(project.id),
             "--state", state, "--interval", "1", "--reconcile-interval", "1", "--export-interval", "0"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 120
            while hub.count_calls("POST", r"/commit/") < 1:
                assert time.monotonic() < deadline and daemon.poll() is None, log_path.read_text()[-3000:]
                time.sleep(0.2)
            time.sleep(1.5)  # in its 20 s wait
            commits = hub.count_calls("POST", r"/commit/")
            code, took = sigterm_timed(daemon, 60)
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
    text = log_path.read_text()
    assert code == 0 and took < 8, (took, text)
    assert hub.count_calls("POST", r"/commit/") - commits <= 1, text  # the flush: one attempt, no retry loop
    assert "stopped" in text and "Traceback" not in text
    hub.faults.clear()
    done = invoke_labelhub("sync", "--repo", repo_id, "--project", str(project.id), "--state", state, "--once",
                           env=env, check=True)
    assert "exported annotations-v1" in done.stdout + done.stderr  # the pending export was kept in the state


def test_an_export_after_someone_elses_push_seen_by_the_poll_is_built_on_their_head_in_one_commit(synced, hub):
    exporter, importer, annotate = synced
    repo_id = exporter.repo.repo_id
    assert exporter.export().tag == "annotations-v1"
    hub.commit_files(repo_id, {"notes.txt": b"theirs"}, message="someone else")
    importer.run()  # the poll sees their head
    annotate(2, "text-only")
    hub.reset_calls()
    version = exporter.export()
    assert version.tag == "annotations-v2" and (version.added, version.changed, version.removed) == (1, 0, 0)
    assert hub.count_calls("POST", r"/commit/") == 1  # no commit certain to fail first
    files = api().list_repo_files(repo_id, repo_type="dataset", revision="annotations-v2")
    assert "notes.txt" in files and "annotations/annotations.csv" in files
    annotate(3, "text-only")
    hub.reset_calls()
    assert exporter.export().tag == "annotations-v3" and hub.count_calls("POST", r"/commit/") == 1


def test_a_hub_5xx_at_the_syncs_start_is_retried(label_studio, hub, make_project, tmp_path):
    repo_id = f"labelhub/start-{time.monotonic_ns() % 10**9}"
    hub.create_repo(repo_id)
    hub.commit_files(repo_id, sample_repos.image_files(0, N), message="images")
    project = make_project("start 503", CONFIG)
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.api_key, "HF_TOKEN": HUB_TOKEN}
    hub.faults.add(method="GET", path=rf"^/api/datasets/{repo_id}/revision/", kind="503", count=1)
    done = invoke_labelhub("sync", "--repo", repo_id, "--project", str(project.id), "--state",
                           str(tmp_path / "s.sqlite3"), "--once", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "retrying in" in done.stdout + done.stderr and len(hub.faults) == 0
    assert len(list(label_studio.client().tasks.list(project=project.id, page_size=100))) == N


def test_hub_errors_name_the_repo(hub):
    repo = HubRepo(f"labelhub/absent-{time.monotonic_ns() % 10**9}", token=HUB_TOKEN)
    for call in (lambda: repo.find_commit("x"), lambda: repo.create_tag("t", "0" * 40),
                 lambda: repo.commit_info("0" * 40)):
        with pytest.raises(RepoNotFound) as err:
            call()
        assert f"dataset {repo.repo_id} not found" in str(err.value)


def test_a_write_refused_says_what_the_token_needs_and_is_retried_with_a_growing_wait(synced, hub, caplog):
    exporter, importer, _ = synced
    repo_id = exporter.repo.repo_id
    hub.faults.add(method="POST", path=r"/commit/", kind="403", count=100)
    hub.reset_calls()
    service = SyncService(importer, AnnotationIntake(exporter.project, exporter.state), exporter, poll_interval=3600,
                          reconcile_interval=3600, export_interval=0, sweep_interval=3600)
    with caplog.at_level("DEBUG", logger="labelhub.sync.service"):
        for _ in range(3):
            service.tick()
    assert hub.count_calls("POST", r"/commit/") == 1  # not every tick: the next try waits a minute, then longer
    said = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(said) == 1 and f"HF_TOKEN needs write access to dataset {repo_id}" in said[0], said
    assert "--no-export only imports" in said[0] and HUB_TOKEN not in said[0]
    assert service._export_wait(HubError("x", 403)) == 120  # doubling
    hub.faults.clear()


def test_a_refused_token_is_said_as_such_never_shown(synced, hub):
    exporter, _, _ = synced
    hub.faults.add(method="POST", path=r"/commit/", kind="401", count=1)
    with pytest.raises(HubError) as err:
        exporter.export()
    assert "refused HF_TOKEN" in str(err.value) and HUB_TOKEN not in str(err.value)


def test_a_repo_made_private_mid_run_without_a_secret_gets_no_task_until_it_is_public_again(
        label_studio, hub, make_project, tmp_path):
    repo_id = f"labelhub/private-{time.monotonic_ns() % 10**9}"
    hub.create_repo(repo_id)
    hub.commit_files(repo_id, sample_repos.image_files(0, 2), message="images")
    created = make_project("made private", CONFIG)
    project = LabelStudioProject(label_studio.url, label_studio.api_key, created.id)
    repo = HubRepo(repo_id, token=HUB_TOKEN, file_urls=FileURLs(mode="auto", secret=None))
    state = SyncState(tmp_path / "state.sqlite3", created.id, repo_id)
    importer = FileImporter(repo, project, state)
    importer.run()
    client = label_studio.client()
    assert len(list(client.tasks.list(project=created.id, page_size=100))) == 2
    api().update_repo_settings(repo_id, private=True, repo_type="dataset")
    hub.commit_files(repo_id, sample_repos.image_files(2, 4), message="more")
    service = SyncService(importer, poll_interval=3600)
    service.tick()  # logged, not raised: the daemon goes on
    with pytest.raises(PrivateRepoRefused) as err:
        importer.run()
    assert str(err.value).startswith("no loadable file URLs for " + repo_id) and "LABELHUB_SECRET" in str(err.value)
    assert len(list(client.tasks.list(project=created.id, page_size=100))) == 2
    api().update_repo_settings(repo_id, private=False, repo_type="dataset")
    importer.run()
    assert len(list(client.tasks.list(project=created.id, page_size=100))) == 4


def test_a_gated_dataset_counts_as_private_so_its_tasks_get_urls_a_browser_can_load(hub):
    """A gated dataset's ``repo_info`` says ``private: false`` (and ``gated: "auto"``), and its resolve URLs refuse a
    browser, which sends no token: its tasks got Hub URLs that never loaded (the fidelity audit of the test Hub)."""
    repo_id = f"labelhub/gated-{time.monotonic_ns() % 10**9}"
    hub.create_repo(repo_id)
    hub.commit_files(repo_id, sample_repos.image_files(0, 1), message="images")
    api().update_repo_settings(repo_id, gated="auto", repo_type="dataset")
    assert api().repo_info(repo_id, repo_type="dataset").gated == "auto"
    repo = HubRepo(repo_id, token=HUB_TOKEN, file_urls=FileURLs(mode="auto", secret=None))
    sha = repo.resolve("main")
    assert repo.private is True
    with pytest.raises(PrivateRepoRefused):  # auto without a secret: as a private repo, no URL could load
        next(iter(repo.iter_files(sha)))
    api().update_repo_settings(repo_id, gated=False, repo_type="dataset")
    repo.resolve(sha)
    assert repo.private is False


def test_a_commit_the_hub_holds_long_is_said_in_the_log(synced, hub, monkeypatch, caplog):
    exporter, _, _ = synced
    handle = hub.app.handle

    def slow(request):  # the test Hub answers the commit 1.5 s late
        if request.method == "POST" and "/commit/" in request.path:
            time.sleep(1.5)
        return handle(request)

    monkeypatch.setattr(hub.app, "handle", slow)
    monkeypatch.setattr(hub_module, "COMMIT_PATIENCE", 0.5)
    with caplog.at_level("WARNING", logger="labelhub.repos.hub"):
        assert exporter.export().tag == "annotations-v1"
    said = [r.getMessage() for r in caplog.records if "waited" in r.getMessage()]
    assert said and "still waiting" in said[0] and exporter.repo.repo_id in said[0], said


def test_urls_checked_of_adopted_tasks_are_logged_as_checks_not_updates(synced, monkeypatch, caplog, tmp_path):
    exporter, importer, _ = synced
    monkeypatch.setattr(importer_module, "LOG_EVERY", 1)
    lost = SyncState(tmp_path / "lost.sqlite3", exporter.project.project_id, exporter.repo.repo_id)
    with caplog.at_level("INFO", logger="labelhub.sync.files.importer"):
        FileImporter(exporter.repo, exporter.project, lost).run()  # a lost state adopts the tasks, checks their URLs
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert f"checking tasks' URLs: {N} of {N}" in text and "updating tasks" not in text, text
    assert f"the {N} tasks adopted from Label Studio" in text and "rewritten" not in text, text


def test_another_revision_at_the_same_commit_is_said_in_a_log_line(synced, caplog):
    exporter, _, _ = synced
    repo_id = exporter.repo.repo_id
    for name in ("dev", "dev2"):
        api().create_branch(repo_id, branch=name, repo_type="dataset")
    FileImporter(exporter.repo, exporter.project, exporter.state, revision="dev").run()
    with caplog.at_level("INFO", logger="labelhub.sync.files.importer"):
        FileImporter(exporter.repo, exporter.project, exporter.state, revision="dev2").run()
    assert any("selected otherwise than at the last cycle" in r.getMessage() for r in caplog.records), \
        [r.getMessage() for r in caplog.records]


def test_the_wait_a_429_asks_is_read_from_the_hubs_ratelimit_header_or_a_retry_after_date():
    """The Hub's 429 says its wait in ``RateLimit`` (https://huggingface.co/docs/hub/rate-limits), not read before:
    the calls without a retry of their own retried every 2 to 16 s inside the window; a ``Retry-After`` given as an
    HTTP date (RFC 9110) raised ``ValueError`` from inside the error handler."""
    from datetime import datetime, timedelta, timezone
    from email.utils import format_datetime

    from labelhub.repos.hub import _wait_asked

    assert _wait_asked({"RateLimit": '"api";r=0;t=120', "RateLimit-Policy": '"fixed window";"api";q=500;w=300'}) == 120
    assert _wait_asked({"RateLimit": '"api";r=3;t=120', "Retry-After": "4"}) == 4  # requests left: not a wait
    soon = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 25 <= _wait_asked({"Retry-After": soon}) <= 30
    assert _wait_asked({"Retry-After": "7"}) == 7 and _wait_asked({"Retry-After": "soon"}) is None
    assert _wait_asked({}) is None


def test_a_card_the_hub_refuses_is_a_hub_error_naming_the_card_and_a_gateways_page_a_transient_one(hub):
    """``create_commit`` checks ``README.md`` first (``/api/validate-yaml``) and raised a bare ``ValueError`` on its 400
    (a ``JSONDecodeError`` on a gateway's HTML page): the export's error handling let both through."""
    import json

    from labelhub.repos.hub import _card_refused

    repo_id = f"labelhub/card-{time.monotonic_ns() % 10**9}"
    hub.create_repo(repo_id)
    repo = HubRepo(repo_id, token=HUB_TOKEN)
    head = repo.resolve("main")
    with pytest.raises(HubError) as err:
        repo.commit({"README.md": b"---\nconfigs: [unclosed\n---\n# card\n"}, "annotations v1", "", head, "main")
    assert err.value.status == 400 and "refused the metadata of README.md" in str(err.value)
    assert not isinstance(err.value, TransientHubError)
    page = _card_refused(json.JSONDecodeError("Expecting value", "<html>", 0), hub.url)
    assert isinstance(page, TransientHubError) and "README.md" in str(page)
