"""A scale audit's three costs (figures in the docstrings of ``sync/ledger.py``, ``LocalGitRepo.pack_loose_objects``,
``FileImporter._sweep`` and ``HubRepo.held_commits``; measured by scripts, not here):

1. ``ImportLedger.set_deleted`` and ``max_task_id`` scanned the project's ledger for each task id (no index on
   ``task_id``): the index ``imported_by_task`` comes with the schema, also into a state file made before it.
2. Each export's commit rewrites the root tree of a flat repo, and the packing every ``PACK_EVERY`` commits kept
   every copy whole (no deltas): ``git repack -d`` stores them as deltas.
3. The hourly re-pin sweep asked the repo once per distinct commit the tasks show: ``held_commits`` asks in one go
   (one ``git cat-file --batch-check``; a Hub repo's history read first), with the answers of a ``resolve`` each.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import subprocess

import pytest

from labelhub.repos import git as gitmod
from labelhub.repos.git import LocalGitRepo
from labelhub.sync.ledger import Entry
from labelhub.sync.state import SyncState


def _fast_import(path, commits: int, files_per_commit: int = 1, branch: str = "main") -> list[str]:
    """``commits`` commits on ``branch`` of the repo at ``path`` (made if missing), each adding files; the shas,
    newest first."""
    if not os.path.isdir(path):
        subprocess.run(["git", "init", "-q", "--bare", "-b", branch, str(path)], check=True)
    lines = []
    n = 0
    for i in range(commits):
        lines.append(b"commit refs/heads/%s\ncommitter t <t@t> %d +0000\ndata 1\nc\n" % (branch.encode(),
                                                                                          1700000000 + i))
        if i == 0 and files_per_commit == 0:
            continue
        for _ in range(files_per_commit):
            data = f"file {n}\n".encode()
            lines.append(b"M 100644 inline f%06d.png\ndata %d\n%s\n" % (n, len(data), data))
            n += 1
    subprocess.run(["git", "fast-import", "--quiet"], input=b"".join(lines), cwd=path, check=True)
    return subprocess.run(["git", "rev-list", branch], cwd=path, capture_output=True, check=True,
                          text=True).stdout.split()


def _git_processes(monkeypatch) -> list[str]:
    """The git subcommands LocalGitRepo runs from now on."""
    ran: list[str] = []
    real = subprocess.run

    def counted(args, *a, **kw):
        if list(args[:2]) == ["git", "-c"]:  # git() runs git -c safe.directory=... SUBCOMMAND
            ran.append(args[3])
        return real(args, *a, **kw)

    monkeypatch.setattr(gitmod.subprocess, "run", counted)
    return ran


# 1. the ledger's index by task id

def test_an_old_state_file_gets_the_task_index_at_connect_and_set_deleted_uses_it(tmp_path):
    state = SyncState(tmp_path / "s.sqlite3", 1, "o/d")
    state.ledger.record([Entry(f"img/{i}.png", i + 1, "a" * 40) for i in range(50)])
    state.db.execute("DROP INDEX imported_by_task")  # a state file written before the index
    state.db.close()
    with sqlite3.connect(tmp_path / "s.sqlite3") as db:
        assert "imported_by_task" not in {row[1] for row in db.execute("PRAGMA index_list(imported)")}

    state = SyncState(tmp_path / "s.sqlite3", 1, "o/d")
    assert "imported_by_task" in {row[1] for row in state.db.execute("PRAGMA index_list(imported)")}
    plan = state.db.execute("EXPLAIN QUERY PLAN UPDATE imported SET task_deleted=1 WHERE project_id=? AND task_id=?",
                            (1, 5)).fetchall()
    assert "imported_by_task" in str(plan) and "task_id=?" in str(plan), plan
    state.ledger.set_deleted([3, 7])
    entries = state.ledger.entries()
    assert {key for key, known in entries.items() if known.deleted} == {"img/2.png", "img/6.png"}
    assert state.ledger.max_task_id() == 50
    other = SyncState(tmp_path / "s.sqlite3", 1, "o/d")  # a second connect: nothing made again
    assert other.ledger.max_task_id() == 50


# 2. the export's packing

def _objects_bytes(git_dir) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(os.path.join(git_dir, "objects"))
               for f in fs)


def _loose(git_dir) -> int:
    return sum(len(fs) for d, _, fs in os.walk(os.path.join(git_dir, "objects"))
               if len(os.path.basename(d)) == 2)


def test_the_packs_of_many_export_commits_into_a_flat_repo_hold_deltas(tmp_path, monkeypatch):
    """3,000 files at the root: each commit writes a root tree of 117 kB; 12 commits packed every 6 keep two whole
    trees (one per pack) and deltas, not 12 trees."""
    path = tmp_path / "flat.git"
    _fast_import(path, 1, files_per_commit=3000)
    subprocess.run(["git", "repack", "-a", "-d", "-q"], cwd=path, check=True)
    tree = subprocess.run(["git", "cat-file", "-s", "main^{tree}"], cwd=path, capture_output=True, check=True,
                          text=True)
    tree_bytes = int(tree.stdout)
    assert tree_bytes > 80_000
    monkeypatch.setattr(LocalGitRepo, "PACK_EVERY", 6)
    repo = LocalGitRepo(path)
    parent, before = repo.resolve("main"), _objects_bytes(path)
    ran = _git_processes(monkeypatch)
    for i in range(12):
        files = {"README.md": f"card v{i}\n".encode(), "annotations/annotations.csv": f"a,b\n{i},x\n".encode()}
        parent = repo.commit(files, f"v{i}", "", parent, "main")
    assert ran.count("repack") == 2 and _loose(path) == 0
    grown = _objects_bytes(path) - before
    # 2 packs of a whole tree and deltas: 150 kB (tree_bytes: 117 kB); packed without deltas: 867 kB
    assert grown < 3 * tree_bytes, (grown, tree_bytes)
    subprocess.run(["git", "fsck", "--no-dangling", "--strict"], cwd=path, check=True, capture_output=True)
    assert repo.read_file(parent, "annotations/annotations.csv") == b"a,b\n11,x\n"  # read in-process after it
    assert repo.read_file(parent, "f002999.png") == b"file 2999\n"


def test_a_failed_repack_is_a_warning_and_the_commit_stands(tmp_path, monkeypatch, caplog):
    path = tmp_path / "r.git"
    _fast_import(path, 1, files_per_commit=3)
    monkeypatch.setattr(LocalGitRepo, "PACK_EVERY", 1)
    repo = LocalGitRepo(path)
    real = gitmod.git

    def failing(repo_dir, *args, **kw):
        if args[:1] == ("repack",):
            raise subprocess.CalledProcessError(128, ["git", *args], stderr=b"fatal: out of disk")
        return real(repo_dir, *args, **kw)

    monkeypatch.setattr(gitmod, "git", failing)
    with caplog.at_level(logging.WARNING, logger="labelhub.repos.git"):
        sha = repo.commit({"README.md": b"card\n"}, "v1", "", repo.resolve("main"), "main")
    assert repo.resolve("main") == sha and repo.read_file(sha, "README.md") == b"card\n"
    assert "packing the loose objects failed" in caplog.text and "out of disk" in caplog.text


# 3. the re-pin sweep's look-ups in one go

def _sweep(repo, state, revisions, head):
    from labelhub.sync.files.importer import FileImporter

    importer = FileImporter.__new__(FileImporter)  # the sweep needs the repo and the state only
    importer.repo, importer.state = repo, state
    return importer._sweep(revisions, head)


def _answers_of_resolve(repo, revisions) -> set[str]:
    from labelhub.errors import RevisionNotFound

    held = set()
    for rev in revisions:
        try:
            repo.resolve(rev)
        except RevisionNotFound:
            continue
        held.add(rev)
    return held


def test_the_sweep_of_a_local_repo_asks_git_once_and_answers_as_resolve(tmp_path, monkeypatch):
    path = tmp_path / "r.git"
    shas = _fast_import(path, 200)
    subprocess.run(["git", "tag", "-a", "-m", "v1", "v1", shas[5]], cwd=path, check=True)
    tag_object = subprocess.run(["git", "rev-parse", "v1"], cwd=path, capture_output=True, text=True).stdout.strip()
    tree = subprocess.run(["git", "rev-parse", f"{shas[0]}^{{tree}}"], cwd=path, capture_output=True,
                          text=True).stdout.strip()
    missing = ["%040x" % (0xdead00 + i) for i in range(3)]
    odd = [tag_object, tree, "main", shas[3][:10], shas[4].upper()]  # a tag object, a tree, a branch, short, caps
    revisions = shas + missing + odd
    repo = LocalGitRepo(path)
    expected = _answers_of_resolve(repo, revisions)
    assert expected == set(shas) | {tag_object, "main", shas[3][:10], shas[4].upper()}

    state = SyncState(tmp_path / "s.sqlite3", 1, repo.repo_id)
    ran = _git_processes(monkeypatch)
    gone = _sweep(repo, state, revisions, shas[0])
    assert sorted(gone) == sorted(set(revisions) - expected) == sorted(missing + [tree])
    assert ran.count("cat-file") == 1 and ran.count("rev-parse") == 2, ran  # "main" and the short sha: resolve
    assert state.cursor("import_repin_sweep", "")  # the sweep's time is kept

    ran.clear()
    assert _sweep(repo, state, [missing[0]], shas[0]) == [missing[0]] and "cat-file" not in ran  # one: resolve
    ran.clear()
    assert _sweep(repo, state, [], shas[0]) == [] and ran == []


@pytest.fixture
def hub_history(hub):
    """A Hub test repo of 160 commits (its initial one, then 159 of one file each); its shas, newest first."""
    from tests.conftest import HUB_TOKEN
    from labelhub.repos.hub import HubRepo

    repo_id = "user/scale-audit4-history"
    if not os.path.isdir(hub.git_dir(repo_id)):
        hub.create_repo(repo_id)
        lines = []
        for i in range(159):
            data = f"file {i}\n".encode()
            lines.append(b"commit refs/heads/main\ncommitter t <t@t> %d +0000\ndata 1\nc\n" % (1700000000 + i))
            if i == 0:
                lines.append(b"from refs/heads/main^0\n")
            lines.append(b"M 100644 inline f%06d.png\ndata %d\n%s\n" % (i, len(data), data))
        subprocess.run(["git", "fast-import", "--quiet"], input=b"".join(lines), cwd=hub.git_dir(repo_id),
                       check=True)
    shas = subprocess.run(["git", "rev-list", "main"], cwd=hub.git_dir(repo_id), capture_output=True, check=True,
                          text=True).stdout.split()
    assert len(shas) == 160
    hub.reset_calls()
    return HubRepo(repo_id, token=HUB_TOKEN), shas


def test_the_sweep_of_a_hub_repo_reads_the_history_once_and_answers_as_resolve(hub, hub_history, tmp_path):
    repo, shas = hub_history
    missing = ["%040x" % (0xbeef00 + i) for i in range(2)]
    revisions = shas[:120] + missing + ["main"]
    state = SyncState(tmp_path / "s.sqlite3", 1, repo.repo_id)
    gone = _sweep(repo, state, revisions, shas[0])
    assert sorted(gone) == sorted(missing)
    # 120 shas in the newest 120 commits: 3 pages of 50; then one repo_info for each sha not in them
    assert hub.count_calls("GET", r"/commits/") == 3 and hub.count_calls("GET", r"/revision/") == 3, hub.calls
    hub.reset_calls()
    assert _answers_of_resolve(repo, revisions) == set(revisions) - set(missing)  # as before: one call each
    assert hub.count_calls("GET", r"/revision/") == len(revisions)


def test_the_hub_sweep_stops_reading_the_history_once_reading_costs_more_than_resolving(hub, hub_history, tmp_path):
    """Two shas at the far end of 160 commits and one the repo lacks: the reading stops after 3 pages (as many as
    shas were left), then resolves the three: 6 calls, never the whole history (4 pages)."""
    repo, shas = hub_history
    revisions = [shas[-1], shas[-2], "%040x" % 0xbeef]
    state = SyncState(tmp_path / "s.sqlite3", 1, repo.repo_id)
    assert _sweep(repo, state, revisions, shas[0]) == ["%040x" % 0xbeef]
    assert hub.count_calls("GET", r"/commits/") == 3 and hub.count_calls("GET", r"/revision/") == 3, hub.calls
    hub.reset_calls()
    assert _sweep(repo, state, [shas[-1]], shas[0]) == [] and hub.count_calls("GET", r"/commits/") == 0
    assert hub.count_calls("GET", r"/revision/") == 1


def test_a_hub_head_gone_meanwhile_leaves_every_sha_to_resolve(hub, hub_history):
    repo, shas = hub_history
    revisions = [shas[0], shas[1], "%040x" % 0xbeef]
    assert repo.held_commits(revisions, "%040x" % 0xdead) == {shas[0], shas[1]}  # /commits/<it> answers 404
    assert hub.count_calls("GET", r"/commits/") == 1 and hub.count_calls("GET", r"/revision/") == 3, hub.calls
