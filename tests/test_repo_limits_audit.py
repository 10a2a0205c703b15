"""What an audit of real repos found at the limits of a request: a deep path of non-ASCII folder names, whose signed
URL passed gunicorn's default request line (414) while the sync made its task silently; one text file over Label
Studio's request limit, which stopped every later file's import; and ``LABELHUB_FILE_REPOS`` paths holding ``=``.

Real Label Studio, the backend under real gunicorn (:class:`tests.backend_fixtures.BackendServer`), local git
repositories (the models: ``tests/test_file_urls.py``, ``tests/test_hub_faults_audit.py``).
"""
from __future__ import annotations

import logging
import subprocess

import pytest
import requests

import labelhub.sync.files.importer as importer_module
from labelhub.backend.files import parse_file_repos
from labelhub.backend.settings import Settings
from labelhub.file_urls import MAX_URL_LENGTH, FileURLs
from labelhub.repos.git import LocalGitRepo
from labelhub.signing import sign_url
from labelhub.sync.files.importer import FileImporter
from labelhub.sync.labelstudio.project import LabelStudioProject
from labelhub.sync.state import SyncState
from tests import sample_repos
from tests.backend_fixtures import IMAGE_CONFIG, BackendServer
from tests.conftest import HUB_TOKEN
from tests.in_process import invoke_labelhub

SECRET = "labelhub-test-secret-limits-0123456789"
FOLDER = "日本語フォルダ名" * 10  # 240 UTF-8 bytes: under the 255 a file system allows a name
DEEP = "/".join([FOLDER] * 6) + "/画像.png"  # 1,445 bytes: a signed URL of ~4,470 characters (gunicorn's default: 4094)
DEEPER = "/".join([FOLDER] * 12) + "/画像2.png"  # ~2,900 bytes: ~8,800 characters, over any bound the backend keeps
TEXT_CONFIG = ('<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">'
               '<Choice value="Positive"/><Choice value="Negative"/></Choices></View>')


def _env(label_studio) -> dict:
    return {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.personal_token,
            "HF_TOKEN": HUB_TOKEN, "LABELHUB_SECRET": SECRET}


def _tasks(label_studio, project_id) -> dict:
    tasks = label_studio.client().tasks.list(project=project_id, page_size=100, fields="task_only")
    return {t.data["hf_path"]: t for t in tasks}


# ---- 1. a deep path: the backend takes its URL, the sync names the files whose URL nothing takes ------------------

def test_a_deep_non_ascii_path_loads_through_the_backend_and_a_longer_url_is_named_in_a_warning(
        label_studio, make_project, tmp_path):
    png = next(iter(sample_repos.image_files(0, 1).values()))
    files = {DEEP: png, DEEPER: png, "short.png": png}
    repo = sample_repos.local_repo_with(tmp_path / "deep", files)
    project = make_project("deep paths", IMAGE_CONFIG)
    env = {**_env(label_studio), "HF_HOME": str(tmp_path / "hf"), "LABELHUB_FILE_REPOS": str(repo),
           "LABELHUB_IMAGE_EMBEDDER": "pixels"}
    with BackendServer(tmp_path / "models", workers=1, threads=2, env=env) as backend:
        done = invoke_labelhub("sync", "--repo", str(repo), "--project", str(project.id), "--state",
                               str(tmp_path / "state.sqlite3"), "--once", "--no-export", "--public-url", backend.url,
                               env=_env(label_studio))
        assert done.returncode == 0, done.stderr
        tasks = _tasks(label_studio, project.id)
        assert sorted(tasks) == sorted(files)  # decided: the file of a long URL still gets its task

        deep = tasks[DEEP].data["image"]
        assert 4094 < len(deep) < MAX_URL_LENGTH, len(deep)
        answer = requests.get(deep, timeout=30)  # gunicorn's default limit_request_line answered 414
        assert answer.status_code == 200 and answer.content == png, answer.status_code

        deeper = tasks[DEEPER].data["image"]
        assert len(deeper) > MAX_URL_LENGTH
        assert requests.get(deeper, timeout=30).status_code == 414  # the bound the warning names
    warnings = [line for line in done.stderr.splitlines() if "task URL longer than" in line]
    assert len(warnings) == 1, done.stderr[-3000:]
    assert f"1 files have a task URL longer than {MAX_URL_LENGTH} characters" in warnings[0]
    assert DEEPER in warnings[0] and DEEP not in warnings[0] and "short.png" not in warnings[0]


# ---- 2. a text too large for a task: left out, named, and every other file imported ------------------------------

def test_a_text_too_large_for_a_task_is_left_out_named_and_the_files_after_it_are_imported(
        label_studio, make_project, tmp_path, monkeypatch, caplog):
    """The audit's ``big.txt`` had 283 MB, over Label Studio's 250 MiB ``DATA_UPLOAD_MAX_MEMORY_SIZE``: its import
    call failed (500), every run, before ``z.txt``. The limit lowered to 1 MB keeps the test fast."""
    monkeypatch.setattr(importer_module, "MAX_TEXT_BYTES", 1_000_000, raising=False)
    big = b"word " * 600_000  # 3 MB
    repo_path = sample_repos.local_repo_with(tmp_path / "texts", {"a.txt": b"first", "big.txt": big,
                                                                   "z.txt": b"last"})
    created = make_project("big text", TEXT_CONFIG)
    project = LabelStudioProject(label_studio.url, label_studio.api_key, created.id)
    repo = LocalGitRepo(repo_path, file_urls=FileURLs(secret=SECRET))
    state = SyncState(tmp_path / "state.sqlite3", created.id, repo.repo_id)
    with caplog.at_level(logging.WARNING, logger="labelhub.sync.files.importer"):
        report = FileImporter(repo, project, state).run()
    assert report.created == 2
    tasks = _tasks(label_studio, created.id)
    assert {path: t.data["text"] for path, t in tasks.items()} == {"a.txt": "first", "z.txt": "last"}
    said = [r.getMessage() for r in caplog.records if "too large" in r.getMessage()]
    assert len(said) == 1 and "big.txt (3.0 MB)" in said[0] and "1 files are left out" in said[0], said

    # a new commit: the big file stays out (not taken as removed or unselected), a new file comes in
    caplog.clear()
    sample_repos.commit_local(repo_path, {"m.txt": b"middle"})
    with caplog.at_level(logging.INFO, logger="labelhub.sync.files.importer"):
        report = FileImporter(repo, project, state).run()
    assert report.created == 1 and not report.removed
    assert sorted(_tasks(label_studio, created.id)) == ["a.txt", "m.txt", "z.txt"]
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "big.txt (3.0 MB)" in text and "not selected" not in text, text


# ---- 3. LABELHUB_FILE_REPOS: a path is a path as a whole, '=' and all ---------------------------------------------

@pytest.fixture
def eq_repo(tmp_path, monkeypatch):
    """A local git repository at ``<tmp>/run=3/ds`` (cwd: ``<tmp>``, ``HOME``: ``<tmp>``): ``(path, sha, png)``."""
    png = next(iter(sample_repos.image_files(0, 1).values()))
    path = sample_repos.local_repo_with(tmp_path / "run=3" / "ds", {"a.png": png})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, check=True).stdout
    return path, sha.strip(), png


def _file_repos(value: str) -> dict:
    return parse_file_repos(Settings.from_env({"LABELHUB_FILE_REPOS": value}).file_repos)


def test_file_repo_paths_holding_an_equals_sign_are_paths_and_key_names_them(eq_repo, tmp_path):
    path, _, _ = eq_repo
    local = {"ds": ("local", str(path.resolve()))}
    for value in ("run=3/ds", str(path), "./run=3/ds", "~/run=3/ds", f" {path} "):  # once: 'run' naming Hub '3/ds'
        assert {k: (r.kind, r.source) for k, r in _file_repos(value).items()} == local, value
    named = _file_repos("shelf=./run=3/ds,pics=me/pics")  # key= names a path holding '=' when it begins with ./
    assert {k: (r.kind, r.source) for k, r in named.items()} == {"shelf": ("local", str(path.resolve())),
                                                                "pics": ("hub", "me/pics")}
    assert {k: r.kind for k, r in _file_repos("me/pics,k=other/ds").items()} == {"me--pics": "hub", "k": "hub"}
    with pytest.raises(ValueError, match=r"LABELHUB_FILE_REPOS: '.*/run=4/ds' is not a directory"):
        _file_repos(str(tmp_path / "run=4" / "ds"))  # was: "bad key '/tmp/.../run'"
    with pytest.raises(ValueError, match="is not a directory"):
        _file_repos("./missing")


def test_a_repo_given_by_a_relative_path_with_an_equals_sign_serves_its_files(eq_repo, tmp_path):
    from labelhub.backend.app import create_app

    path, sha, png = eq_repo
    comma = tmp_path / "a,b"  # a comma separates entries: the README's way, a symlink whose path holds none
    (tmp_path / "run=3" / "ds").rename(comma)
    (tmp_path / "run=3" / "ds").symlink_to(comma)
    (tmp_path / "ab").symlink_to(comma)
    file_repos = Settings.from_env({"LABELHUB_FILE_REPOS": f"run=3/ds,pics={tmp_path / 'ab'}"}).file_repos
    app = create_app({"model_dir": tmp_path / "models", "start_trainer": False, "warmup": False, "secret": SECRET,
                      "file_repos": file_repos})
    client = app.test_client()
    for key in ("a,b", "pics"):  # the directory's real name, as the sync's key (LocalGitRepo(...).key); and key=
        answer = client.get(sign_url("", SECRET, key, sha, "a.png"))  # was 404: "repo not configured"
        assert answer.status_code == 200 and answer.data == png, key
    assert LocalGitRepo(tmp_path / "ab").key == "a,b"
