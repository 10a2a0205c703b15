"""Private datasets and local repos: tasks get signed URLs of the backend's file route.

End to end with the real Label Studio, the Hub test server (whose private repos need the token for
every read) and the backend under gunicorn: ``labelhub sync`` writes signed URLs, a plain HTTP client
(a browser: no token, no cookie) loads them, and the backend predicts on those tasks from the same
cache. The route's refusals and headers are also checked on an in-process app.
"""
from __future__ import annotations

import logging
import subprocess
import time
from urllib.parse import quote

import pytest
import requests

from labelhub.file_urls import REFUSED, FileURLs, parse_lifetime
from labelhub.signing import (ExpiredSignature, SignatureError, parse_file_url, repo_key, sign_url, signature,
                          verify)
from tests import sample_repos
from tests.backend_fixtures import IMAGE_CLASSES, BackendServer, choices_config, wait_for
from tests.conftest import HUB_TOKEN
from tests.in_process import invoke_labelhub

SECRET = "labelhub-test-secret-0123456789"
SHA = "0123456789abcdef0123456789abcdef01234567"
N = 12


# ---- signing and URL forms (pure) ----------------------------------------------------------------

def test_signature_binds_repo_revision_path_and_expiry():
    url = sign_url("http://files.test/lh", SECRET, "me--pics", SHA, "img/a b.png", lifetime=60, now=1000)
    ref = parse_file_url(url)
    assert (ref.key, ref.sha, ref.path, ref.expires) == ("me--pics", SHA, "img/a b.png", "1060")
    verify(SECRET, *ref[:3], ref.expires, ref.sig, now=1059)
    for changed in [("other--pics", SHA, "img/a b.png", "1060"), ("me--pics", "f" * 40, "img/a b.png", "1060"),
                    ("me--pics", SHA, "img/a c.png", "1060"), ("me--pics", SHA, "img/a b.png", "99999")]:
        with pytest.raises(SignatureError):
            verify(SECRET, *changed, ref.sig, now=1000)
    with pytest.raises(SignatureError):
        verify(SECRET + "-rotated", *ref[:4], ref.sig, now=1000)  # rotating the secret revokes
    with pytest.raises(ExpiredSignature):
        verify(SECRET, *ref[:4], ref.sig, now=1061)
    verify(SECRET, *ref[:4], ref.sig, now=1061, check_expiry=False)
    forever = parse_file_url(sign_url("http://x", SECRET, "k", SHA, "a.png"))
    assert forever.expires is None and "exp=" not in sign_url("http://x", SECRET, "k", SHA, "a.png")
    verify(SECRET, "k", SHA, "a.png", None, forever.sig, now=4e9)
    with pytest.raises(ValueError):
        sign_url("http://x", SECRET, "k", "main", "a.png")
    with pytest.raises(ValueError):
        sign_url("http://x", SECRET, "k", SHA, "../a.png")


def test_url_form_is_chosen_per_repo_and_overridable():
    auto = FileURLs(secret=SECRET)
    assert auto.form(local=False, private=False) == "resolve"
    assert auto.form(local=False, private=True) == "proxy"
    assert auto.form(local=True, private=True) == "proxy"
    assert FileURLs(mode="proxy", secret=SECRET).form(local=False, private=False) == "proxy"
    assert FileURLs(mode="resolve", secret=SECRET).form(local=False, private=True) == "resolve"
    with pytest.raises(ValueError):
        FileURLs(mode="resolve").form(local=True, private=True)
    assert FileURLs().form(local=False, private=True) == "resolve"  # nothing to sign with
    assert "WARNING" in FileURLs(mode="resolve").describe("me/pics", local=False, private=True)  # asked for
    assert FileURLs().describe("me/pics", local=False, private=True).startswith(REFUSED)  # test_file_url_policy
    assert SECRET not in auto.describe("me/pics", local=False, private=True)
    assert (parse_lifetime("12h"), parse_lifetime("90m"), parse_lifetime("never"), parse_lifetime("30")) == \
        (43200, 5400, 0, 30)
    url = FileURLs(secret=SECRET, lifetime=3600).proxy_url("k", SHA, "a.png", now=100)
    assert "exp=3700&sig=" in url
    assert repo_key("me/pics") == "me--pics" and repo_key("/srv/repos/pics/", local=True) == "pics"


# ---- the route, in process -----------------------------------------------------------------------

@pytest.fixture
def local_repo(tmp_path):
    repo = tmp_path / "shelf"
    sample_repos.init_local_repo(repo)
    files = sample_repos.image_files(0, 3)
    sha = sample_repos.commit_local(repo, {**files, "notes/readme.txt": b"plain text\n"})
    (repo / "img-link.png").symlink_to(sample_repos.image_path(0))
    (repo / "escape.png").symlink_to("/etc/hostname")
    sha_links = sample_repos.commit_local(repo, message="symlinks")
    return repo, sha, sha_links, files


@pytest.fixture
def app_client(local_repo, tmp_path):
    from labelhub.backend.app import create_app

    app = create_app({"model_dir": tmp_path / "models", "start_trainer": False, "warmup": False,
                      "secret": SECRET, "file_repos": (str(local_repo[0]),)})
    return app.test_client()


def test_route_serves_exact_bytes_with_immutable_caching_ranges_and_conditional_get(app_client, local_repo):
    _, sha, _, files = local_repo
    path = sample_repos.image_path(1)
    url = sign_url("", SECRET, "shelf", sha, path)
    answer = app_client.get(url)
    assert answer.status_code == 200 and answer.data == files[path]
    blob = subprocess.run(["git", "hash-object", "--stdin"], input=files[path], capture_output=True).stdout
    assert answer.headers["ETag"] == f'"{blob.decode().strip()}"'
    assert answer.headers["Cache-Control"] == "private, max-age=31536000, immutable"
    assert answer.headers["Content-Type"] == "image/png"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    part = app_client.get(url, headers={"Range": "bytes=8-23"})
    assert part.status_code == 206 and part.data == files[path][8:24]
    assert part.headers["Content-Range"] == f"bytes 8-23/{len(files[path])}"
    assert app_client.get(url, headers={"If-None-Match": answer.headers["ETag"]}).status_code == 304
    head = app_client.head(url)
    assert head.status_code == 200 and head.data == b"" and int(head.headers["Content-Length"]) == len(files[path])
    text = app_client.get(sign_url("", SECRET, "shelf", sha, "notes/readme.txt"))
    assert text.data == b"plain text\n" and text.headers["Content-Type"].startswith("text/plain")


def test_a_large_local_file_is_kept_once_and_ranges_read_it_without_the_blob(app_client, local_repo, tmp_path,
                                                                             monkeypatch):
    """A local repo's blob came whole from dulwich for every request: a 150 MB video cost 1 s and its size in memory
    for each 100-byte Range request (an audit). A file over BLOB_FILE_BYTES is kept in MODEL_DIR/blobs after its first
    request, and the next ones (ranges too) read that file, not the blob."""
    from labelhub.backend import files
    from labelhub.repos.git import GitObjects

    _, sha, _, data = local_repo
    path = sample_repos.image_path(2)
    monkeypatch.setattr(files, "BLOB_FILE_BYTES", 100)  # the test images are a few hundred bytes
    url = sign_url("", SECRET, "shelf", sha, path)
    first = app_client.get(url)
    assert first.status_code == 200 and first.data == data[path]
    kept = tmp_path / "models" / "blobs" / first.headers["ETag"].strip('"')
    assert kept.read_bytes() == data[path]
    monkeypatch.setattr(GitObjects, "blob", lambda *_: pytest.fail("the blob was read again"))
    part = app_client.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.data == data[path][10:20]
    assert part.headers["ETag"] == first.headers["ETag"]


def test_route_refuses_without_detail(app_client, local_repo):
    _, sha, sha_links, _ = local_repo
    path = sample_repos.image_path(1)
    good = sign_url("", SECRET, "shelf", sha, path)

    def status(url):
        answer = app_client.get(url)
        assert answer.json["code"] in ("not_found", "forbidden")
        assert not any(word in answer.text for word in ("signature", "expired", "configured", "outside", "sha"))
        assert answer.headers.get("Cache-Control") in (None, "no-store")
        return answer.status_code

    assert status(good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")) == 403  # tampered
    assert status(good.split("?")[0]) == 403  # unsigned
    expired = sign_url("", SECRET, "shelf", sha, path, lifetime=60, now=time.time() - 120)
    assert status(expired) == 403
    assert status(sign_url("", "another-secret-0123456789", "shelf", sha, path)) == 403
    assert status(sign_url("", SECRET, "elsewhere", sha, path)) == 404  # repo not configured
    for bad in ["../../etc/passwd", "fmnist/../../../etc/hostname", "/etc/passwd", "fmnist//x.png"]:
        sig = signature(SECRET, "shelf", sha, bad)  # even with a valid signature
        assert status(f"/files/shelf/{sha}/{quote(bad)}?sig={sig}") == 404, bad
    sig = signature(SECRET, "shelf", sha, "../x")
    assert status(f"/files/shelf/{sha}/%2e%2e/x?sig={sig}") == 404
    sig = signature(SECRET, "shelf", "main", path)  # a branch name: content could change
    assert status(f"/files/shelf/main/{path}?sig={sig}") == 404
    for link in ("img-link.png", "escape.png"):  # symlinks (git mode 120000)
        assert status(sign_url("", SECRET, "shelf", sha_links, link)) == 404
    assert status(sign_url("", SECRET, "shelf", sha, "fmnist")) == 404  # a directory
    assert status(sign_url("", SECRET, "shelf", sha, "missing.png")) == 404


def test_a_commit_the_repo_no_longer_holds_is_logged_as_such_not_as_a_missing_file(app_client, local_repo, caplog):
    """A task pinned to a commit pruned after a rewrite answered 404 logged as "no such regular file at that commit",
    as a missing path would: the log says the commit is gone (the answer stays a bare 404)."""
    _, sha, _, _ = local_repo
    caplog.set_level(logging.INFO, logger="labelhub.backend.files")
    pruned = "0123456789abcdef" * 2 + "01234567"
    assert app_client.get(sign_url("", SECRET, "shelf", pruned, sample_repos.image_path(1))).status_code == 404
    assert app_client.get(sign_url("", SECRET, "shelf", sha, "missing.png")).status_code == 404
    lines = [r.getMessage() for r in caplog.records if r.name == "labelhub.backend.files"]
    assert "commit 0123456789ab is not in the repository (a rewritten history" in lines[0], lines
    assert lines[1].endswith("no such regular file at that commit"), lines



def test_route_refusals_log_the_path_escaped_so_it_cannot_forge_log_lines(app_client, local_repo, caplog):
    _, sha, _, _ = local_repo
    forged = "%0d2026-01-01 00:00:00 INFO labelhub.backend.files: forged%1b[31m"
    caplog.set_level(logging.INFO, logger="labelhub.backend.files")
    assert app_client.get(f"/files/shelf/{sha}/x{forged}.png?sig=x").status_code == 404  # control characters
    assert app_client.get(f"/files/sh%0Aelf/{sha}/x.png?sig=x").status_code == 403
    lines = [r.getMessage() for r in caplog.records if r.name == "labelhub.backend.files"]
    assert len(lines) == 2 and not any(c in line for line in lines for c in "\r\n\x1b"), lines
    assert "/x\\r2026-01-01 00:00:00 INFO labelhub.backend.files: forged\\x1b[31m.png" in lines[0]
    assert "/files/sh\\nelf/" in lines[1] and "sig=" not in "".join(lines)

# ---- end to end: real Label Studio, Hub test server, gunicorn backend ------------------------------

CONFIG = choices_config(IMAGE_CLASSES)


class Repos:
    """A private Hub dataset and a local git repository with the same N Fashion-MNIST images."""

    def __init__(self, hub, tmp):
        self.files = sample_repos.image_files(0, N)
        self.labels = sample_repos.labels(N)
        self.hub = hub
        self.hub_id = f"labelhub/private-{time.monotonic_ns() % 10**9}"
        hub.create_repo(self.hub_id, private=True)
        self.hub_sha = hub.commit_files(self.hub_id, self.files, message="images")
        self.local = tmp / "local-shelf"
        sample_repos.init_local_repo(self.local)
        self.local_sha = sample_repos.commit_local(self.local, self.files, message="images")

    def arg(self, kind):
        return self.hub_id if kind == "hub" else str(self.local)

    def key(self, kind):
        return repo_key(self.hub_id) if kind == "hub" else self.local.name

    def commit(self, kind, files):
        if kind == "hub":
            return self.hub.commit_files(self.hub_id, files, message="update")
        return sample_repos.commit_local(self.local, files)


@pytest.fixture(scope="module")
def repos(hub_server, tmp_path_factory):
    return Repos(hub_server, tmp_path_factory.mktemp("file-url-repos"))


@pytest.fixture(scope="module")
def backend(label_studio, repos, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("file-url-backend")
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.personal_token,
           "HF_TOKEN": HUB_TOKEN, "HF_HOME": str(tmp / "hf"), "LABELHUB_SECRET": SECRET,
           "LABELHUB_FILE_REPOS": f"{repos.hub_id},{repos.local}", "LABELHUB_IMAGE_EMBEDDER": "pixels"}
    with BackendServer(tmp / "models", workers=2, threads=4, env=env) as server:
        yield server


@pytest.fixture
def project(make_project):
    return make_project("private files", CONFIG)


def _sync(label_studio, backend, repos, kind, project, tmp_path, *extra):
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.personal_token,
           "HF_TOKEN": HUB_TOKEN, "LABELHUB_SECRET": SECRET}
    return invoke_labelhub("sync", "--repo", repos.arg(kind), "--project", str(project.id), "--state",
                           str(tmp_path / "state.sqlite3"), "--once", "--no-export", "--public-url", backend.url,
                           *extra, env=env, check=True)


def _tasks(label_studio, project_id):
    tasks = label_studio.client().tasks.list(project=project_id, page_size=1000, fields="task_only")
    return {t.data["hf_path"]: t for t in tasks}


@pytest.mark.parametrize("kind", ["hub", "local"])
def test_task_urls_load_without_token_pinned_ranged_and_refuse_tampering(label_studio, hub, repos, backend, project,
                                                                         tmp_path, kind):
    first = _sync(label_studio, backend, repos, kind, project, tmp_path)
    assert f"signed proxy URLs {backend.url}/files/{repos.key(kind)}/<sha>/<path>" in first.stderr
    assert ("private Hub repo" if kind == "hub" else "local git repository") in first.stderr
    assert SECRET not in first.stderr + first.stdout and HUB_TOKEN not in first.stderr
    tasks = _tasks(label_studio, project.id)
    assert sorted(tasks) == sorted(repos.files)
    sha = repos.hub_sha if kind == "hub" else repos.local_sha
    browser = requests.Session()  # no token, no cookie
    for path, task in tasks.items():
        url = task.data["image"]
        assert url.startswith(f"{backend.url}/files/{repos.key(kind)}/{sha}/") and "sig=" in url
        answer = browser.get(url, timeout=30)
        assert answer.status_code == 200 and answer.content == repos.files[path]
        assert answer.headers["Content-Type"] == "image/png"
        assert answer.headers["Cache-Control"] == "private, max-age=31536000, immutable"
    if kind == "hub":  # what the proxy fixes: the Hub wants the token for the private repo
        resolve = f"{hub.url}/datasets/{repos.hub_id}/resolve/{sha}/{sample_repos.image_path(0)}"
        assert browser.get(resolve, timeout=10).status_code == 401

    path = sample_repos.image_path(3)
    url = tasks[path].data["image"]
    part = browser.get(url, headers={"Range": "bytes=100-199"}, timeout=10)
    assert part.status_code == 206 and part.content == repos.files[path][100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(repos.files[path])}"
    assert browser.get(url, headers={"If-None-Match": part.headers["ETag"]}, timeout=10).status_code == 304

    # a new commit changes the file: the task's URL still answers the bytes of its revision
    changed = sample_repos.image_files(N, N + 1)[sample_repos.image_path(N)]
    new_sha = repos.commit(kind, {path: changed})
    try:
        assert browser.get(url, timeout=10).content == repos.files[path]
        newer = sign_url(backend.url, SECRET, repos.key(kind), new_sha, path)
        assert browser.get(newer, timeout=30).content == changed
    finally:
        repos.commit(kind, {path: repos.files[path]})

    # refused, without detail
    ref = parse_file_url(url)
    base = f"{backend.url}/files/{repos.key(kind)}/{sha}"
    tampered = url[:-2] + ("AA" if not url.endswith("AA") else "BB")
    expired = sign_url(backend.url, SECRET, repos.key(kind), sha, path, lifetime=1, now=time.time() - 10)
    dotdot_sig = signature(SECRET, repos.key(kind), sha, f"../{path}")
    unconfigured = sign_url(backend.url, SECRET, "someone--else", sha, path)
    cases = {tampered: 403, expired: 403, url.split("?")[0]: 403, f"{base}/%2E%2E/{quote(path)}?sig={dotdot_sig}": 404,
             unconfigured: 404, url.replace(f"/{sha}/", "/main/"): 404}
    for bad, expected in cases.items():
        answer = browser.get(bad, timeout=10)
        assert answer.status_code == expected, bad
        assert set(answer.json()) == {"error", "code"} and answer.json()["error"] in ("forbidden", "not found")
    assert ref.sig not in backend.log_tail(400) and SECRET not in backend.log_tail(400)


@pytest.mark.parametrize("kind", ["hub", "local"])
def test_backend_predicts_on_signed_url_tasks_from_the_same_cache(label_studio, hub, repos, backend, project,
                                                                  tmp_path, kind):
    _sync(label_studio, backend, repos, kind, project, tmp_path)
    tasks = _tasks(label_studio, project.id)
    for task in tasks.values():  # the annotators' browsers load every file through the proxy
        assert requests.get(task.data["image"], timeout=30).status_code == 200
    hub.reset_calls()

    client = label_studio.client()
    ml = client.ml.create(project=project.id, url=backend.url, title="labelhub", is_interactive=False)
    assert client.ml.get(id=ml.id).state == "CO"
    paths = sorted(tasks)
    train, held_out = paths[:8], paths[8:]
    for path in train:  # Label Studio sends each annotation to the backend's /webhook; it trains on them
        client.annotations.create(id=tasks[path].id, result=[{"from_name": "label", "to_name": "image",
                                                              "type": "choices",
                                                              "value": {"choices": [repos.labels[path]]}}])
    def predicted():
        client.actions.create(id="retrieve_tasks_predictions", project=project.id,
                              selected_items={"all": False, "included": [tasks[p].id for p in held_out]})
        made = [client.predictions.list(task=tasks[p].id) for p in held_out]
        if not all(made):  # the model is not trained yet: the backend answered no prediction for some task
            return False
        latest = [predictions[-1] for predictions in made]
        return all(p.result for p in latest) and latest

    latest = wait_for(predicted, timeout=60, interval=1, message="predictions of the trained model")
    assert all(p.result[0]["value"]["choices"][0] in IMAGE_CLASSES for p in latest)
    assert hub.count_calls() == 0, hub.calls  # training and predictions read the files the proxy cached
