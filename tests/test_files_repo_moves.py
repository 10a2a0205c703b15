"""A local repo served through ``LABELHUB_FILE_REPOS`` that moves or is renamed (an audit of repo moves).

- Its directory gone under a running backend: the file route answered 500 with dulwich's ``NotGitRepository``
  traceback, for every request. Now 503, one warning naming the key and the path (not one per request), and the
  files are served again when it is back, from a reader opened anew (not a handle of the moved directory).
- Renamed: the old tasks' signed URLs keep the old key (``/files/images/...``) while ``LABELHUB_FILE_REPOS`` names
  the new path (key ``images-renamed``). The log said only ``repo not configured`` and predictions said to set
  ``LABELHUB_FILE_REPOS`` and ``LABELHUB_SECRET``, both set. Now both name the key and ``images=<its path>``, and
  listing the old key beside the new path (the README's advice) serves the old URLs and the new.

The route in process (the Flask app) and under gunicorn (``BackendServer``), predictions' reads through the real
:class:`labelhub.backend.media.MediaFetcher`; local git repos from :mod:`tests.sample_repos`.
"""
from __future__ import annotations

import logging

import pytest
import requests

from labelhub.backend.errors import MediaFetchError, MediaNotAllowedError
from labelhub.backend.media import MediaFetcher
from labelhub.backend.settings import Settings
from labelhub.signing import sign_url
from tests import sample_repos
from tests.backend_fixtures import BackendServer

SECRET = "labelhub-test-secret-0123456789"
LOGGER = "labelhub.backend.files"


@pytest.fixture
def images(tmp_path):
    """A local repo ``images`` of 3 Fashion-MNIST PNGs: ``(path, sha, {path_in_repo: bytes})``."""
    files = sample_repos.image_files(0, 3)
    repo = sample_repos.local_repo_with(tmp_path / "images", files)
    return repo, sample_repos.git(repo, "rev-parse", "HEAD"), files


def _app(tmp_path, *file_repos):
    from labelhub.backend.app import create_app

    return create_app({"model_dir": tmp_path / "models", "start_trainer": False, "warmup": False,
                       "secret": SECRET, "file_repos": tuple(str(r) for r in file_repos)}).test_client()


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]


def test_a_repo_gone_under_the_backend_answers_503_said_once_and_is_served_again_when_back(images, tmp_path,
                                                                                           caplog):
    repo, sha, files = images
    client = _app(tmp_path, repo)
    caplog.set_level(logging.INFO, logger=LOGGER)
    paths = sorted(files)
    urls = [sign_url("", SECRET, "images", sha, p) for p in paths]
    assert client.get(urls[0]).data == files[paths[0]]  # opened: its reader holds the repository

    moved = repo.rename(tmp_path / "elsewhere")
    for url in urls * 2:  # also a file never read (no cached tree or blob)
        answer = client.get(url)
        assert answer.status_code == 503, answer.text  # was 500 (NotGitRepository) or 404 (a stale handle)
        assert answer.json == {"error": "the file's repo is not available", "code": "repo_unavailable"}
        assert answer.headers["Cache-Control"] == "no-store"
    said = _warnings(caplog)
    assert len(said) == 1 and "key 'images' is gone from " + str(repo) in said[0], said
    assert "images=<its new path>" in said[0] and "sig=" not in said[0]

    repo.mkdir()  # a directory at its path that is no git repository: still gone, not "back" and gone again
    for url in urls:
        assert client.get(url).status_code == 503
    assert len(_warnings(caplog)) == 1 and not any("is back:" in r.getMessage() for r in caplog.records)
    repo.rmdir()

    moved.rename(repo)  # back: served again, and said once
    for url, path in zip(urls, paths):
        answer = client.get(url)
        assert answer.status_code == 200 and answer.data == files[path]
    back = [r.getMessage() for r in caplog.records if r.name == LOGGER and "is back:" in r.getMessage()]
    assert len(back) == 1 and len(_warnings(caplog)) == 1


def test_predictions_on_a_gone_repo_say_it_is_gone_without_a_traceback(images, tmp_path):
    repo, sha, files = images
    fetcher = MediaFetcher(Settings(model_dir=tmp_path / "models", secret=SECRET, file_repos=(str(repo),)))
    path = sorted(files)[0]
    url = sign_url("http://127.0.0.1:9090", SECRET, "images", sha, path)
    repo.rename(tmp_path / "elsewhere")
    with pytest.raises(MediaFetchError) as refused:  # was NotGitRepository out of the fetcher
        fetcher.fetch(url)
    message = str(refused.value)
    assert "key 'images' is gone from " + str(repo) in message and "images=<its new path>" in message
    assert "sig=" not in message
    (tmp_path / "elsewhere").rename(repo)
    assert fetcher.fetch(url) == files[path]


def test_old_tasks_of_a_renamed_repo_name_their_key_and_load_when_it_is_listed(images, tmp_path, caplog):
    repo, sha, files = images
    renamed = repo.rename(repo.with_name("images-renamed"))
    path = sorted(files)[0]
    old_url = sign_url("", SECRET, "images", sha, path)  # what the old tasks hold
    caplog.set_level(logging.INFO, logger=LOGGER)
    client = _app(tmp_path, renamed)
    for _ in range(3):
        answer = client.get(old_url)
        assert answer.status_code == 404 and answer.json == {"error": "not found", "code": "not_found"}
    said = _warnings(caplog)  # once per key, not once per request
    assert len(said) == 1, said
    assert "repo key 'images' is not in LABELHUB_FILE_REPOS (it names images-renamed)" in said[0]
    assert "add images=<its path> to LABELHUB_FILE_REPOS" in said[0] and "sig=" not in said[0]
    assert client.get(sign_url("", SECRET, "other", sha, path)).status_code == 404
    assert len(_warnings(caplog)) == 2 and "'other'" in _warnings(caplog)[1]
    assert client.get(old_url.split("sig=")[0] + "sig=AAAA").status_code == 403  # not signed: not said
    assert len(_warnings(caplog)) == 2

    # predictions: the same words, not "set LABELHUB_FILE_REPOS (the repo) and LABELHUB_SECRET" (both set)
    fetcher = MediaFetcher(Settings(model_dir=tmp_path / "models", secret=SECRET, file_repos=(str(renamed),)))
    with pytest.raises(MediaNotAllowedError) as refused:
        fetcher.fetch("http://127.0.0.1:9090" + old_url)
    message = str(refused.value)
    assert "repo key 'images' is not in LABELHUB_FILE_REPOS" in message and "images=<its path>" in message
    assert "set LABELHUB_FILE_REPOS (the repo)" not in message and "sig=" not in message
    other_secret = sign_url("http://127.0.0.1:9090", "another-secret-0123456789", "images", sha, path)
    with pytest.raises(MediaNotAllowedError, match=r"LABELHUB_SECRET \(the one the sync signed it with\)"):
        fetcher.fetch(other_secret)  # not this secret's URL: the key is not the (only) thing to fix
    unset = MediaFetcher(Settings(model_dir=tmp_path / "models", secret=SECRET))  # none named: as before
    with pytest.raises(MediaNotAllowedError, match=r"set LABELHUB_FILE_REPOS \(the repo\) and LABELHUB_SECRET"):
        unset.fetch("http://127.0.0.1:9090" + old_url)

    # the README's advice: the old key beside the new path keeps the old tasks loading, and the new ones
    both = (f"images={renamed}", str(renamed))
    client = _app(tmp_path, *both)
    assert client.get(old_url).data == files[path]
    assert client.get(sign_url("", SECRET, "images-renamed", sha, path)).data == files[path]
    listed = MediaFetcher(Settings(model_dir=tmp_path / "models", secret=SECRET, file_repos=both))
    assert listed.fetch("http://127.0.0.1:9090" + old_url) == files[path]


def test_under_gunicorn_a_moved_repo_answers_503_said_once_then_is_served_again(images, tmp_path):
    repo, sha, files = images
    env = {"LABELHUB_SECRET": SECRET, "LABELHUB_FILE_REPOS": str(repo), "LABELHUB_IMAGE_EMBEDDER": "pixels"}
    paths = sorted(files)
    with BackendServer(tmp_path / "models", workers=1, threads=4, env=env) as backend:
        urls = [sign_url(backend.url, SECRET, "images", sha, p) for p in paths]
        assert requests.get(urls[0], timeout=30).content == files[paths[0]]
        repo.rename(tmp_path / "elsewhere")
        for url in urls * 3:
            assert requests.get(url, timeout=30).status_code == 503
        log = backend.log_tail(400)
        assert "Traceback" not in log and "NotGitRepository" not in log, log
        assert log.count("key 'images' is gone from") == 1, log
        (tmp_path / "elsewhere").rename(repo)
        for url, path in zip(urls, paths):
            answer = requests.get(url, timeout=30)
            assert answer.status_code == 200 and answer.content == files[path]
        log = backend.log_tail(400)
        assert "is back:" in log and "sig=" not in log and SECRET not in log
