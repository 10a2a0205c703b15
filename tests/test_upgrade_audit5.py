"""Three defects an audit of upgrades found (its scripts: /tmp/audit-upgrade/, scenario_csvpath.py, scenario_sync.py).

- A state whose versions predate series (every project tagged ``annotations-vN`` whatever its ``--csv-path``),
  restarted with the same ``--csv-path annotations/labels.csv``: the exporter read the missing series cursor as a
  change of prefix, forgot the versions and started ``labels-v1`` counting every annotation as added. Now it refuses
  in one line naming both ``--tag-prefix`` choices, writing nothing; ``--tag-prefix annotations`` goes on with
  ``annotations-v3``, and ``--tag-prefix labels`` starts the new series as before.
- The first version after an upgrade from a state whose baseline hashed whole rows without ``annotated_revision``
  counted every exported annotation as changed once (``+2 ~6 -0``): the rows are now compared in the columns that
  version's CSV had.
- A local repo's git LFS files left out of a listing (objects not fetched) waited for the branch's next commit, since
  ``git lfs fetch`` does not move it: the import cycle now lists the unmoved head again every
  :data:`labelhub.sync.files.importer.LFS_RELIST_SECONDS` while files are left out.

A local git repository, a stand-in Label Studio project (:mod:`tests.test_versions_url_changes`,
:mod:`tests.test_follow_audit5`), no server.
"""
from __future__ import annotations

import hashlib
import json
import logging

import pytest

from labelhub.errors import ConfigurationError
from labelhub.file_urls import FileURLs
from labelhub.repos.git import LocalGitRepo
from labelhub.sync.files import importer as importer_module
from labelhub.sync.files.importer import FileImporter
from labelhub.sync.state import SyncState
from labelhub.sync.versions.exporter import EXPORTED_GENERATION, SERIES, Exporter
from labelhub.sync.versions.incremental import build_rows, forget
from tests import sample_repos
from tests.conftest import FILE_SECRET
from tests.test_follow_audit5 import IMAGE, _Project as _FileProject
from tests.test_lfs_and_rename import ATTRIBUTES, PNG, pointer
from tests.test_versions_url_changes import _Project, _annotation, _task

LABELS = "annotations/labels.csv"


def _annotate(state: SyncState, *ids: int) -> None:
    for aid in ids:
        state.upsert_task(aid, _task(aid, "host:9090", 1))
        state.apply_annotations(aid, [_annotation(aid)], complete=False)


def _exporter_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "labelhub.sync.versions.exporter" and r.levelno >= logging.WARNING]


# ---- 1. versions made before series: the user chooses the series ----------------------------------------------

def test_versions_made_before_series_with_another_csv_path_are_refused_until_tag_prefix_chooses(tmp_path, caplog):
    repo_path = sample_repos.local_repo_with(tmp_path / "repo", {"a.png": b"png"})
    repo = LocalGitRepo(str(repo_path))
    path = tmp_path / "s.sqlite3"
    state = SyncState(path, 1, repo.repo_id)
    state.set_users({1: "ann@example.com"})
    # as a LabelHub before series left it: annotations-vN of --csv-path annotations/labels.csv, no series cursor
    old = Exporter(repo, _Project(), state, csv_path=LABELS, tag_prefix="annotations")
    _annotate(state, 11, 12)
    assert old.export().number == 1
    _annotate(state, 13)
    assert old.export().number == 2
    assert state.cursor(SERIES) == ""
    _annotate(state, 14)  # annotated while the sync was upgraded
    state.close()
    forget(state)

    state = SyncState(path, 1, repo.repo_id)
    generation, tags = state.cursor(EXPORTED_GENERATION), repo.tags()
    with pytest.raises(ConfigurationError) as refused:  # the same flags as before the upgrade
        Exporter(repo, _Project(), state, csv_path=LABELS)
    said = str(refused.value)
    assert "\n" not in said and "made before series existed" in said and "annotations-vN" in said, said
    assert "--tag-prefix annotations to go on with them" in said and "--tag-prefix labels to start the series " \
        "labels-vN (its first version counts every annotation as added)" in said, said
    # nothing recorded before the user chose
    assert state.last_version()["version"] == 2 and state.cursor(SERIES) == ""
    assert state.cursor(EXPORTED_GENERATION) == generation and repo.tags() == tags

    caplog.set_level(logging.INFO, logger="labelhub.sync.versions.exporter")
    going_on = Exporter(repo, _Project(), state, csv_path=LABELS, tag_prefix="annotations").export()
    assert (going_on.tag, going_on.added, going_on.changed, going_on.removed) == ("annotations-v3", 1, 0, 0)
    assert _exporter_warnings(caplog) == []  # no "lacks the files of annotations-v2" (no labels-v1 in between)
    manifest = json.loads(repo.read_file(going_on.commit, "annotations/manifest.json"))
    assert manifest["parent_version"] == "annotations-v2" and manifest["csv_path"] == LABELS

    # another run without --tag-prefix is refused again (the choice is not recorded as a series)
    with pytest.raises(ConfigurationError, match="made before series existed"):
        Exporter(repo, _Project(), state, csv_path=LABELS)
    # --tag-prefix labels given: the user chose a new series, started as before
    caplog.clear()
    _annotate(state, 15)
    started = Exporter(repo, _Project(), state, csv_path=LABELS, tag_prefix="labels").export()
    assert (started.tag, started.added, started.changed) == ("labels-v1", 5, 0)
    assert any("the tag prefix changed from 'annotations' to 'labels'" in m for m in _exporter_warnings(caplog))


# ---- 2. an upgrade from before annotated_revision counts no exported annotation as changed ----------------------

@pytest.mark.parametrize("form", ["whole rows with the annotator", "stored rows and the annotator beside"])
def test_an_upgrade_from_rows_without_annotated_revision_counts_only_real_changes(tmp_path, form):
    repo = LocalGitRepo(str(sample_repos.local_repo_with(tmp_path / "repo", {"a.png": b"png"})))
    path = tmp_path / "s.sqlite3"
    state = SyncState(path, 1, repo.repo_id)
    state.set_users({1: "ann@example.com"})
    _annotate(state, 11, 12, 13)
    first = Exporter(repo, _Project(), state).export()
    assert first.number == 1
    older = {}  # the version's hashes as a LabelHub whose CSV had no annotated_revision made them
    for text, *_ in state.export_rows():
        row = json.loads(text)
        assert row.pop("annotated_revision")  # the column this LabelHub adds
        if form.startswith("whole"):
            whole = json.dumps({**row, "annotator": "ann@example.com"}, sort_keys=True, default=str)
            older[row["annotation_id"]] = hashlib.sha256(whole.encode()).hexdigest()
        else:
            text = json.dumps(row, sort_keys=True, default=str)
            older[row["annotation_id"]] = f"{hashlib.sha256(text.encode()).hexdigest()}:ann@example.com"
    state.db.execute("UPDATE versions SET hashes=?, content_hashes=NULL", (json.dumps(older),))
    state.db.execute("DELETE FROM export_rows")  # that LabelHub stored no rows of this form
    relabelled = {**_annotation(12), "updated_at": "2026-02-01T00:00:00Z",
                  "result": [{**_annotation(12)["result"][0], "value": {"choices": ["b"]}}]}
    state.apply_annotations(12, [relabelled], complete=False)  # received by that LabelHub, not exported yet
    state.close()
    forget(state)

    state = SyncState(path, 1, repo.repo_id)
    exporter = Exporter(repo, _Project(), state)  # the upgrade
    built = build_rows(state, {"kind": "Choices"}, "image")
    assert state.exported_hashes() == {11: built.contents[11], 12: older[12], 13: built.contents[13]}
    _annotate(state, 14)
    version = exporter.export()
    assert (version.number, version.added, version.changed, version.removed) == (2, 1, 1, 0)  # was +1 ~3 -0


# ---- 3. git LFS files fetched after a listing left them out become tasks at the same head ----------------------

def test_lfs_files_fetched_after_a_listing_left_them_out_become_tasks_without_a_new_commit(tmp_path, caplog,
                                                                                          monkeypatch):
    repo_path = tmp_path / "lfs-clone"
    sample_repos.init_local_repo(repo_path)
    later = PNG + b"later"
    sample_repos.commit_local(repo_path, {".gitattributes": ATTRIBUTES, "img/a.png": pointer(repo_path, PNG),
                                          "img/later.png": pointer(repo_path, later, fetched=False)}, message="lfs")
    repo = LocalGitRepo(repo_path, file_urls=FileURLs(secret=FILE_SECRET))
    project, state = _FileProject(IMAGE), SyncState(tmp_path / "s.sqlite3", 1, repo.repo_id)
    run = lambda: FileImporter(repo, project, state).run()  # noqa: E731
    caplog.set_level(logging.WARNING, logger="labelhub.repos.git")
    assert run().created == 1
    said = [r.getMessage() for r in caplog.records if r.name == "labelhub.repos.git"]
    assert len(said) == 1 and "img/later.png" in said[0] and "every few minutes" in said[0], said
    assert "next commit" not in said[0]
    assert run().unchanged  # within LFS_RELIST_SECONDS: the short-circuit, no listing

    pointer(repo_path, later)  # git lfs fetch: the branch does not move
    clock = importer_module.time.time()
    monkeypatch.setattr(importer_module.time, "time", lambda: clock + importer_module.LFS_RELIST_SECONDS)
    report = run()
    assert not report.unchanged and report.created == 1
    assert sorted(t["data"]["hf_path"] for t in project.tasks.values()) == ["img/a.png", "img/later.png"]
    monkeypatch.setattr(importer_module.time, "time", lambda: clock + 10 * importer_module.LFS_RELIST_SECONDS)
    assert run().unchanged  # nothing left out any more: the head is not listed again
