"""Two defects an audit found (its scripts: a local repo cloned from a Hub dataset with git LFS, a renamed Hub dataset).

- A local repo whose files are in git LFS (``.gitattributes`` says ``filter=lfs``): git's objects hold ~130-byte
  pointers, and the sync made tasks of them (a Text task held the pointer's text; the backend's file route answered
  an Image URL ``200 image/png`` with the pointer's bytes). Now a pointer's file is read from ``.git/lfs/objects``
  (:class:`labelhub.repos.git.GitObjects`: the listing's size, ``read_file``, the export's texts, the file route),
  and one whose object is not there (``GIT_LFS_SKIP_SMUDGE=1``, no ``git lfs fetch``) is left out of the listing
  with one warning, an ``EntryNotFound`` to ``read_file`` and a 404 of the file route, never its pointer.
- A Hub dataset renamed (``owner/old`` → ``owner/new``, the same history) and synced at its new id with the same
  state and project made a second task of every file: the move guard ran for local repositories only. Now the sync
  refuses in one line naming the old id and ``--repo-moved-from``, which moves the state's rows (and adopts the old
  id's tasks for a lost state).

The LFS repositories are made by the real git as git-lfs leaves a clone (pointer blobs committed, the objects under
``.git/lfs/objects``; git-lfs itself is not needed); the file route in process (the Flask app). The rename: the Hub
test server (:mod:`tests.hubserver`, the dataset's git directory moved to the new id), a real Label Studio and
``labelhub sync`` in process (:func:`tests.in_process.invoke_labelhub`).
"""
from __future__ import annotations

import hashlib
import logging
import os
import time

import pytest

from labelhub.errors import EntryNotFound
from labelhub.repos.git import LocalGitRepo
from labelhub.repos.texts import FileTexts
from labelhub.signing import sign_url
from tests import sample_repos
from tests.conftest import HUB_TOKEN
from tests.in_process import invoke_labelhub

SECRET = "labelhub-test-secret-0123456789"
ATTRIBUTES = b"*.png filter=lfs diff=lfs merge=lfs -text\n*.txt filter=lfs diff=lfs merge=lfs -text\n"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
TEXT = "The quick brown fox jumps over the lazy dog, in LFS.\n".encode()
#: A file that is not a pointer but has a pointer's size (126 to 199 bytes): read as it is.
NOT_A_POINTER = b"version 1 of a note that is not a git LFS pointer" + b"." * 100 + b"\n"


def pointer(repo, data: bytes, fetched: bool = True) -> bytes:
    """The LFS pointer of ``data``, its object put in ``repo``'s LFS storage as ``git lfs fetch`` puts it when
    ``fetched``."""
    oid = hashlib.sha256(data).hexdigest()
    if fetched:
        folder = repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / oid).write_bytes(data)
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(data)}\n".encode()


@pytest.fixture
def lfs_repo(tmp_path):
    """A local repo as a ``git clone`` of a Hub dataset in LFS leaves it: ``(path, first sha, head sha)``; the first
    commit's ``doc/a.txt`` is an older text, then an image and a text whose objects are fetched, two images whose
    objects are not (one never fetched, one damaged: a partial download), and a regular file of a pointer's size."""
    path = tmp_path / "lfs-clone"
    sample_repos.init_local_repo(path)
    first = sample_repos.commit_local(path, {".gitattributes": ATTRIBUTES,
                                             "doc/a.txt": pointer(path, b"an older text\n")}, message="first")
    damaged = b"\x89PNG damaged" * 20
    head = sample_repos.commit_local(path, {
        "img/a.png": pointer(path, PNG), "doc/a.txt": pointer(path, TEXT),
        "img/unfetched.png": pointer(path, PNG + b"2", fetched=False), "img/damaged.png": pointer(path, damaged),
        "notes/plain.md": NOT_A_POINTER}, message="lfs files")
    oid = hashlib.sha256(damaged).hexdigest()
    (path / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid).write_bytes(damaged[:-5])
    return path, first, head


def test_lfs_files_are_listed_and_read_as_their_objects_reading_only_blobs_of_a_pointers_size(lfs_repo, monkeypatch):
    path, first, head = lfs_repo
    repo = LocalGitRepo(path)
    asked = []
    read_pointers = getattr(LocalGitRepo, "_lfs_pointers", None)
    monkeypatch.setattr(LocalGitRepo, "_lfs_pointers", lambda self, oids: asked.append(set(oids)) or
                        read_pointers(self, oids), raising=False)
    files = {f.path: f for f in repo.list_files(head)}
    assert {p: f.size for p, f in files.items() if p != ".gitattributes"} == {
        "img/a.png": len(PNG), "doc/a.txt": len(TEXT), "notes/plain.md": len(NOT_A_POINTER)}  # was the pointers'
    blob_ids = repo.blob_ids(head, sorted(files))
    assert all(files[p].oid == blob_ids[p] for p in files)  # the pointer's blob id, as on the Hub
    sizes = dict(line.split()[2:4] for line in sample_repos.git(path, "ls-tree", "-r", "-l", head).splitlines())
    assert asked == [{oid for oid, size in sizes.items() if 126 <= int(size) < 200}]  # never the other blobs
    assert repo.read_file(head, "img/a.png") == PNG and repo.read_file(head, "doc/a.txt") == TEXT
    assert repo.read_file(head, "notes/plain.md") == NOT_A_POINTER
    assert repo.objects.blob(head, "img/a.png") == (files["img/a.png"].oid, PNG)
    # the export's texts of tasks made at an older commit, and at the head
    texts = FileTexts(repo).texts([(first, "doc/a.txt"), (head, "doc/a.txt")], as_url=False)
    assert texts == {(first, "doc/a.txt"): "an older text\n", (head, "doc/a.txt"): TEXT.decode()}


def test_lfs_files_whose_objects_are_not_there_are_left_out_in_one_warning_and_never_read_as_pointers(lfs_repo,
                                                                                                   caplog):
    path, _, head = lfs_repo
    repo = LocalGitRepo(path)
    caplog.set_level(logging.WARNING, logger="labelhub.repos.git")
    listed = {f.path for f in repo.list_files(head)}
    assert "img/unfetched.png" not in listed and "img/damaged.png" not in listed  # were tasks of their pointers
    said = [r.getMessage() for r in caplog.records if r.name == "labelhub.repos.git"]
    assert len(said) == 1, said
    assert said[0].startswith(f"2 git LFS files of {path} at {head[:12]} are left out: their objects are not in "
                              f"{path}/.git/lfs/objects"), said
    assert "git lfs fetch" in said[0] and "img/damaged.png, img/unfetched.png" in said[0]
    for missing in ("img/unfetched.png", "img/damaged.png"):
        with pytest.raises(EntryNotFound, match="is a git LFS file whose object is not in .* run git lfs fetch"):
            repo.read_file(head, missing)
        assert repo.objects.blob(head, missing) is None


def test_the_file_route_serves_an_lfs_files_object_and_answers_404_for_one_not_fetched(lfs_repo, tmp_path, caplog):
    from labelhub.backend.app import create_app

    path, _, head = lfs_repo
    client = create_app({"model_dir": tmp_path / "models", "start_trainer": False, "warmup": False,
                         "secret": SECRET, "file_repos": (str(path),)}).test_client()
    served = client.get(sign_url("", SECRET, path.name, head, "img/a.png"))
    assert served.status_code == 200 and served.data == PNG  # was 200 image/png with the pointer's bytes
    assert served.headers["Content-Type"] == "image/png"
    caplog.set_level(logging.INFO, logger="labelhub.backend.files")
    for missing in ("img/unfetched.png", "img/damaged.png"):
        answer = client.get(sign_url("", SECRET, path.name, head, missing))
        assert answer.status_code == 404 and answer.json["code"] == "not_found", answer.data
    reasons = [r.getMessage() for r in caplog.records if r.name == "labelhub.backend.files"]
    assert len(reasons) == 2 and all("a git LFS file whose object is not in" in r for r in reasons), reasons


# ---- a renamed Hub dataset ---------------------------------------------------------------------------------------

N = 3
CONFIG = ('<View><Image name="image" value="$image"/><Choices name="c" toName="image"><Choice value="a"/>'
          '</Choices></View>')


@pytest.fixture
def renamed(label_studio, hub, make_project, tmp_path):
    """A private Hub dataset synced once into a new project (N tasks, signed URLs of the backend), then renamed on the
    Hub (its git directory moved to the new id: the same history): ``(sync(repo_id, *options, state=...), tasks(),
    old id, new id, the Hub)``."""
    stamp = time.monotonic_ns() % 10**9
    old, new = f"labelhub/before-{stamp}", f"labelhub/after-{stamp}"
    sample_repos.hub_repo_with(hub, old, sample_repos.image_files(0, N))
    project = make_project("renamed dataset", CONFIG)
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.personal_token,
           "HF_TOKEN": HUB_TOKEN}

    def sync(repo_id, *options, state="state.sqlite3"):
        return invoke_labelhub("sync", "--repo", repo_id, "--project", str(project.id), "--state",
                               str(tmp_path / state), "--once", "--no-export", *options, env=env)

    def tasks() -> list[tuple[str, str]]:
        listed = label_studio.client().tasks.list(project=project.id, page_size=100, fields="task_only")
        return sorted((t.data["hf_repo"], t.data["hf_path"]) for t in listed)

    assert sync(old).returncode == 0 and len(tasks()) == N
    os.makedirs(hub.git_dir(new).parent, exist_ok=True)
    os.rename(hub.git_dir(old), hub.git_dir(new))
    return sync, tasks, old, new, hub


def _one_line_refusal(proc) -> str:
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert proc.returncode == 1 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return errors[0]


def test_a_renamed_hub_dataset_is_refused_until_repo_moved_from_and_then_keeps_its_tasks(renamed):
    sync, tasks, old, new, hub = renamed
    made = tasks()
    other = sample_repos.hub_repo_with(hub, f"{new}-other", sample_repos.image_files(N, N + 1), private=False)
    assert sync(other).returncode == 0  # another dataset into the same state and project: not refused
    refused = _one_line_refusal(sync(new))  # was: exit 0 and a second task of every file
    assert f"holds {N} files of project" in refused and f"from the Hub dataset {old}, none from {new}" in refused
    assert f"pass --repo-moved-from {old} once" in refused, refused
    assert len(tasks()) == N + 1
    done = sync(new, "--repo-moved-from", old)
    assert done.returncode == 0, done.stderr
    assert f"the Hub dataset {old} is now {new}: its {N} files keep their tasks" in done.stderr, done.stderr
    old_key = old.replace("/", "--")
    assert f"LABELHUB_FILE_REPOS needs {old_key}={new} beside {new}" in done.stderr  # the old tasks' signed URLs
    hub.commit_files(new, sample_repos.image_files(N + 1, N + 2), message="one more")
    assert sync(new, "--repo-moved-from", old).returncode == 0  # the option left in place: nothing more
    assert tasks() == sorted([*made, (other, sample_repos.image_path(N)), (new, sample_repos.image_path(N + 1))])


def test_a_lost_state_after_a_hub_rename_is_refused_and_repo_moved_from_adopts_the_old_ids_tasks(renamed):
    sync, tasks, old, new, _ = renamed
    made = tasks()
    refused = _one_line_refusal(sync(new, state="lost.sqlite3"))
    assert f"has tasks of this dataset's files from {old}" in refused and f"--repo-moved-from {old}" in refused
    assert tasks() == made
    done = sync(new, "--repo-moved-from", old, state="lost.sqlite3")
    assert done.returncode == 0, done.stderr
    assert f"adopted the {N} tasks of {old}'s files" in done.stderr, done.stderr
    assert tasks() == made
