"""What people do to the repo an export writes to, and what the next export makes of it: a history rewritten under
the versions (squash, force-push, gc), a commit from a stale index of a local work tree that drops the exported
files, a README without a YAML block, a followed tag, a local repository that moved.

Real Label Studio, the Hub test server through huggingface_hub, real git."""
from __future__ import annotations

import logging
import shutil
import subprocess
import time

import pytest

from labelhub.repos.git import LocalGitRepo
from labelhub.repos.hub import HubRepo
from labelhub.sync.annotations.intake import AnnotationIntake
from labelhub.sync.files.importer import FileImporter
from labelhub.sync.labelstudio.project import LabelStudioProject
from labelhub.sync.state import SyncState
from labelhub.sync.versions.exporter import Exporter
from tests import sample_repos
from tests.conftest import HUB_TOKEN
from tests.in_process import invoke_labelhub
from tests.test_sync_export import CONFIG, choice

N = 4
EXPORTED = ("annotations/annotations.csv", "annotations/manifest.json", "README.md")


class Setup:
    """N images in a repo (local or on the Hub test server) imported into a new project, one annotation per task,
    and an exporter with no-op sleeps."""

    def __init__(self, label_studio, make_project, tmp_path, repo, repo_arg: str):
        self.client = label_studio.client()
        self.created = make_project("repairs", CONFIG)
        self.project = LabelStudioProject(label_studio.url, label_studio.api_key, self.created.id)
        self.repo, self.arg, self.tmp_path = repo, repo_arg, tmp_path
        self.state = SyncState(tmp_path / "state.sqlite3", self.created.id, repo.repo_id)
        self.importer = FileImporter(repo, self.project, self.state, revision="main")
        self.importer.run()
        self.tasks = sorted(t.id for t in self.client.tasks.list(project=self.created.id, page_size=100))
        for task_id in self.tasks:
            self.client.annotations.create(task_id, result=[choice("illustrated")])
        self.exporter = Exporter(repo, self.project, self.state, revision="main", sleep=lambda _: None)
        self.env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.api_key,
                    "HF_TOKEN": HUB_TOKEN}
        self.reconcile()

    def reconcile(self):
        AnnotationIntake(self.project, self.state).reconcile()

    def annotate(self, index: int, label: str = "text-only"):
        self.client.annotations.create(self.tasks[index], result=[choice(label)])
        self.reconcile()

    def sync(self, *extra, repo_arg: str | None = None, check: bool = True):
        """``labelhub sync --once`` of the repo (or ``repo_arg``) into the project, in-process
        (:func:`tests.in_process.invoke_labelhub`): its exit code and output."""
        return invoke_labelhub("sync", "--repo", repo_arg or self.arg, "--project", str(self.created.id), "--state",
                               str(self.tmp_path / "state.sqlite3"), "--once", *extra, env=self.env, check=check)


@pytest.fixture
def local(label_studio, make_project, tmp_path):
    path = sample_repos.local_repo_with(tmp_path / "repo", {**sample_repos.image_files(0, N),
                                                             "README.md": b"# Scans\n\nNo YAML block here.\n"})
    return Setup(label_studio, make_project, tmp_path, LocalGitRepo(path), str(path))


@pytest.fixture
def on_hub(label_studio, make_project, tmp_path, hub):
    repo_id = sample_repos.hub_repo_with(hub, f"labelhub/repairs-{time.monotonic_ns() % 10**9}",
                                         sample_repos.image_files(0, N))
    setup = Setup(label_studio, make_project, tmp_path, HubRepo(repo_id, token=HUB_TOKEN), repo_id)
    setup.hub = hub
    return setup


def git(path, *args) -> str:
    return sample_repos.git(path, *args)


def squash(git_dir, branch: str = "main") -> str:
    """Rewrite ``branch`` of the repository at ``git_dir`` into one commit of its head's tree (as a squash and a
    force-push leave it); returns the new head."""
    tree = git(git_dir, "rev-parse", f"{branch}^{{tree}}")
    new = git(git_dir, "commit-tree", tree, "-m", "squashed history")
    git(git_dir, "update-ref", f"refs/heads/{branch}", new)
    return new


def rewrite_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "was rewritten" in r.getMessage()]


@pytest.mark.parametrize("tags", ["kept", "deleted-and-gc"])
def test_a_rewritten_local_history_is_exported_on_its_new_head_with_one_warning(local, caplog, tags):
    path = local.repo.path
    v1 = local.exporter.export()
    assert v1.number == 1
    new_head = squash(path)
    if tags == "deleted-and-gc":  # nothing keeps the version's commit: git gc drops it
        git(path, "tag", "-d", "annotations-v1")
        git(path, "reflog", "expire", "--expire=now", "--all")
        git(path, "gc", "-q", "--prune=now")
        assert subprocess.run(["git", "cat-file", "-e", v1.commit], cwd=path).returncode != 0
    local.annotate(0)
    caplog.set_level(logging.INFO)
    v2 = local.exporter.export()
    assert v2.number == 2 and (v2.added, v2.changed, v2.removed) == (1, 0, 0)
    assert git(path, "rev-parse", "main") == git(path, "rev-parse", "annotations-v2^{commit}") == v2.commit
    assert git(path, "rev-parse", f"{v2.commit}^") == new_head
    assert len(rewrite_warnings(caplog)) == 1, caplog.text
    assert (tags == "kept") == ("annotations-v1" in git(path, "tag", "--list").split())
    local.annotate(1)  # the next export is a plain one on v2
    caplog.clear()
    assert local.exporter.export().number == 3 and not rewrite_warnings(caplog)


def test_a_rewritten_hub_history_is_exported_on_its_new_head(on_hub):
    hub, repo_id = on_hub.hub, on_hub.repo.repo_id
    v1 = on_hub.exporter.export()
    new_head = squash(hub.git_dir(repo_id))  # the Hub's super-squash: main is one new commit, the tags stay
    on_hub.annotate(0)
    hub.reset_calls()
    v2 = on_hub.exporter.export()
    assert v2.number == 2 and hub.head(repo_id) == hub.head(repo_id, "annotations-v2") == v2.commit
    assert hub.count_calls("POST", r"/commit/") == 2  # the 412 on the gone parent, then the rebuilt commit
    assert git(hub.git_dir(repo_id), "rev-parse", f"{v2.commit}^") == new_head
    assert hub.head(repo_id, "annotations-v1") == v1.commit


def test_a_readme_without_yaml_block_gets_no_card_metadata_warning(local):
    result = local.sync()
    assert "annotations-v1" in git(local.repo.path, "tag", "--list")
    assert "metadata block was not found" not in result.stderr + result.stdout
    card = git(local.repo.path, "show", "annotations-v1:README.md")
    assert card.startswith("---\nconfigs:") and "# Scans\n\nNo YAML block here." in card


def test_a_readme_a_person_replaced_whole_keeps_their_text_and_gets_the_versions_part_back(local, caplog):
    path = local.repo.path
    v1 = local.exporter.export()
    theirs = b"# Fashion subset\n\nOUR TEXT: how we collected these images.\n"
    sample_repos.commit_local(path, {"README.md": theirs}, message="our own README")  # no LabelHub section
    local.importer.run()
    caplog.set_level(logging.WARNING)
    assert local.exporter.export() is None  # no annotation changed: the card's part is put back, no version
    card = git(path, "show", "main:README.md")
    assert "OUR TEXT: how we collected these images." in card  # the last version's card whole before
    assert "<!-- labelhub:begin -->" in card and "config_name: default" in card
    assert "annotations-v1" in card.split("<!-- labelhub:begin -->")[0]  # its configs name the version
    assert git(path, "log", "-1", "--format=%s", "main") == "annotations v1: files restored"
    said = [r.getMessage() for r in caplog.records if "README.md of main" in r.getMessage()]
    assert len(said) == 1 and "putting that part back" in said[0] and "work tree" not in said[0]
    local.annotate(0)
    v2 = local.exporter.export()  # the next version writes into their card
    assert v2.number == 2 and v1.number == 1
    card = git(path, "show", "annotations-v2:README.md")
    assert "OUR TEXT" in card and card.count("<!-- labelhub:begin -->") == 1


def test_a_version_tag_moved_by_hand_is_said_to_have_moved_not_blamed_on_another_state(local, caplog):
    path = local.repo.path
    v1 = local.exporter.export()
    theirs = sample_repos.commit_local(path, {"notes.txt": b"ours"}, message="notes")
    git(path, "tag", "-f", "annotations-v1", theirs)
    local.importer.run()
    local.annotate(0)
    caplog.set_level(logging.WARNING)
    assert local.exporter.export().number == 2
    said = [r.getMessage() for r in caplog.records if "annotations-v1 of" in r.getMessage()]
    assert len(said) == 1 and f"now names commit {theirs[:12]}, not {v1.commit[:12]}" in said[0], said
    assert "a daemon or a cron job" not in said[0]


@pytest.mark.parametrize("where", ["local", "hub"])
def test_following_a_tag_with_exports_is_refused_at_start_and_no_export_imports(label_studio, make_project, tmp_path,
                                                                              hub, where):
    files = sample_repos.image_files(0, N)
    if where == "local":
        path = sample_repos.local_repo_with(tmp_path / "repo", files)
        git(path, "tag", "v1.0")
        repo_arg = str(path)
    else:
        repo_arg = sample_repos.hub_repo_with(hub, f"labelhub/tagged-{time.monotonic_ns() % 10**9}", files)
        HubRepo(repo_arg, token=HUB_TOKEN).create_tag("v1.0", hub.head(repo_arg))
    project = make_project("tagged", CONFIG)
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.api_key, "HF_TOKEN": HUB_TOKEN}
    args = ["sync", "--repo", repo_arg, "--project", str(project.id), "--state", str(tmp_path / "s.sqlite3"), "--once",
            "--revision", "v1.0"]
    refused = invoke_labelhub(*args, env=env)
    assert refused.returncode == 1 and refused.stderr.strip().count("\n") == 0, refused.stderr
    assert "--revision 'v1.0' is not a branch" in refused.stderr and "--no-export" in refused.stderr
    assert label_studio.client().projects.get(project.id).task_number == 0
    invoke_labelhub(*args, "--no-export", env=env, check=True)
    assert label_studio.client().projects.get(project.id).task_number == N


def test_a_commit_the_hub_refuses_for_its_revision_names_the_repo_and_the_revision(hub):
    from labelhub.errors import RevisionNotFound

    repo_id = sample_repos.hub_repo_with(hub, f"labelhub/commit-tag-{time.monotonic_ns() % 10**9}",
                                         sample_repos.image_files(0, 1))
    repo = HubRepo(repo_id, token=HUB_TOKEN)
    head = hub.head(repo_id)
    repo.create_tag("v1.0", head)
    with pytest.raises(RevisionNotFound) as raised:
        repo.commit({"notes.txt": b"x"}, "notes", "", head, revision="v1.0")
    assert str(raised.value) == f"revision 'v1.0' not found in dataset {repo_id}"


def stale_index_commit(path, name: str = "new.png") -> str:
    """``git add NAME && git commit`` in the work tree, whose index is as it was before the exports."""
    (path / name).write_bytes(sample_repos.image_files(N, N + 1)[sample_repos.image_path(N)])
    git(path, "add", name)
    git(path, "commit", "-q", "-m", f"add {name}")
    return git(path, "rev-parse", "main")


def exported_files_at(path, rev: str) -> dict[str, str]:
    return {p: git(path, "rev-parse", f"{rev}:{p}") for p in (*EXPORTED, "metadata.jsonl", "consensus.jsonl")}


@pytest.mark.parametrize("annotated", [False, True])
def test_a_commit_from_a_stale_index_gets_the_versions_files_back_with_one_warning(local, caplog, annotated):
    path = local.repo.path
    v1 = local.exporter.export()
    assert "annotations/annotations.csv" not in git(path, "ls-files")  # the work tree's index predates the export
    theirs = stale_index_commit(path)
    assert "annotations/annotations.csv" not in git(path, "ls-tree", "-r", "--name-only", theirs)
    local.importer.run()  # the poll sees their commit
    assert local.exporter.pending()
    if annotated:
        local.annotate(0)
    caplog.set_level(logging.INFO)
    made = local.exporter.export()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "git reset --keep" in
                r.getMessage()]
    assert len(warnings) == 1 and "annotations/annotations.csv" in warnings[0] and "annotations-v1" in warnings[0]
    head = git(path, "rev-parse", "main")
    assert git(path, "rev-parse", f"{head}^") == theirs and "new.png" in git(path, "ls-tree", "--name-only", head)
    if annotated:  # the version itself writes them back
        assert made.number == 2 and made.commit == head and "annotations-v2" in git(path, "tag", "--list")
    else:  # no version: one commit restores them as annotations-v1 wrote them
        assert made is None and git(path, "log", "-1", "--format=%s", head) == "annotations v1: files restored"
        assert exported_files_at(path, head) == exported_files_at(path, v1.commit)
        assert git(path, "tag", "--list").split() == ["annotations-v1"]
    local.importer.run()
    assert not local.exporter.pending()
    local.annotate(1)
    caplog.clear()
    assert local.exporter.export().number == (3 if annotated else 2)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_a_git_reset_hard_the_poll_saw_first_is_said_to_be_a_rewritten_history_not_a_stale_index(local, caplog):
    """An audit: ``git reset --hard`` to before the version, seen by the import cycle before the export, was said to be
    a commit from a stale index (with ``git reset --keep`` advice); the files come back either way."""
    path = local.repo.path
    v1 = local.exporter.export()
    git(path, "reset", "-q", "--hard", f"{v1.commit}^")
    local.importer.run()  # the poll sees the reset branch
    caplog.set_level(logging.INFO)
    local.exporter.export()
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(said) == 1 and "was rewritten (a git reset, a rebase or a force-push)" in said[0], said
    assert v1.commit[:12] in said[0] and "annotations-v1" in said[0] and "git reset --keep" not in said[0]
    assert exported_files_at(path, "main") == exported_files_at(path, v1.commit)


def test_git_reset_keep_before_committing_in_the_work_tree_keeps_the_versions_files(local, caplog):
    path = local.repo.path
    local.exporter.export()
    git(path, "reset", "-q", "--keep")  # the advice the warning gives
    theirs = stale_index_commit(path)
    assert exported_files_at(path, theirs) == exported_files_at(path, "annotations-v1")
    local.importer.run()
    caplog.set_level(logging.INFO)
    assert local.exporter.pending()  # a head not checked yet: one look, nothing to do
    assert local.exporter.export() is None and git(path, "rev-parse", "main") == theirs
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert not local.exporter.pending()


def test_a_moved_local_repo_is_refused_until_repo_moved_from_and_then_keeps_its_tasks_and_versions(local):
    local.sync()  # annotations-v1, from the repo's first path
    old = local.repo.path
    moved = old.parent / "repo-moved"
    shutil.move(old, moved)
    task_count = lambda: local.client.projects.get(local.created.id).task_number  # noqa: E731
    refused = local.sync(repo_arg=str(moved), check=False)
    assert refused.returncode == 1 and refused.stderr.strip().count("\n") == 0, refused.stderr
    assert f"from the local repository {old}, none from {moved}" in refused.stderr
    assert f"--repo-moved-from {old}" in refused.stderr and task_count() == N
    sample_repos.commit_local(moved, sample_repos.image_files(N, N + 1))  # one new file
    local.annotate(0)
    done = local.sync("--repo-moved-from", str(old), repo_arg=str(moved))
    assert "the repository moved from" in done.stderr
    assert task_count() == N + 1  # the new file alone
    tags = git(moved, "tag", "--list").split()
    assert tags == ["annotations-v1", "annotations-v2"]
    assert "+1 ~0 -0" in git(moved, "log", "-1", "--format=%s", "annotations-v2")
    local.sync("--repo-moved-from", str(old), repo_arg=str(moved))  # the option left in place: nothing more
    assert task_count() == N + 1
