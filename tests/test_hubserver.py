"""The test Hub (`tests/hubserver`) driven by the real `huggingface_hub` client.

Self-contained: its own module-scoped server on loopback; `endpoint=` is passed everywhere so it
does not depend on `HF_ENDPOINT` (which huggingface_hub reads once, at import).
"""

import os

os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import re  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import httpx2  # noqa: E402
import pytest  # noqa: E402
from huggingface_hub import (  # noqa: E402
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    HfFileSystem,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
)
from huggingface_hub.errors import (  # noqa: E402
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import sha as hf_sha  # noqa: E402

from tests.hubserver import HubServer  # noqa: E402

TOKEN = "hf_hubserver_test_token"
DS = "dataset"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with HubServer(tmp_path_factory.mktemp("hub"), token=TOKEN) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean_faults(srv):
    srv.faults.clear()
    yield
    srv.faults.clear()


@pytest.fixture
def api(srv):
    return HfApi(endpoint=srv.url, token=TOKEN)


@pytest.fixture
def repo(srv, request):
    """A fresh dataset repo named after the test."""
    repo_id = "user/" + re.sub(r"[^A-Za-z0-9_.-]", "-", request.node.name)[:80]
    srv.create_repo(repo_id)
    return repo_id


def add(path, data):
    return CommitOperationAdd(path_in_repo=path, path_or_fileobj=data if isinstance(data, bytes) else data.encode())


def files(api, repo_id, revision=None):
    return sorted(api.list_repo_files(repo_id, repo_type=DS, revision=revision))


# ---- repos & commits ---------------------------------------------------------------------------


def test_create_repo_exist_ok_and_delete(api, srv):
    url = api.create_repo("user/created", repo_type=DS)
    assert url.repo_id == "user/created" and url.repo_type == DS
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo("user/created", repo_type=DS)
    assert err.value.response.status_code == 409
    assert api.create_repo("user/created", repo_type=DS, exist_ok=True).repo_id == "user/created"
    assert files(api, "user/created") == [".gitattributes"]  # the Hub's initial commit
    assert api.repo_exists("user/created", repo_type=DS)
    assert srv.git_dir("user/created").is_dir()
    api.delete_repo("user/created", repo_type=DS)
    assert not api.repo_exists("user/created", repo_type=DS)
    with pytest.raises(RepositoryNotFoundError):
        api.delete_repo("user/created", repo_type=DS)
    api.delete_repo("user/created", repo_type=DS, missing_ok=True)


def test_model_repo(api, srv):
    api.create_repo("user/a-model")  # repo_type=None -> model
    api.create_commit("user/a-model", [add("config.json", "{}")], commit_message="cfg")
    assert api.model_info("user/a-model").sha == srv.head("user/a-model", repo_type="model")
    url = hf_hub_url("user/a-model", "config.json", endpoint=srv.url)
    assert "/datasets/" not in url
    assert httpx2.get(url, headers={"authorization": f"Bearer {TOKEN}"}).content == b"{}"


def test_create_commit_add_delete_and_noop(api, srv, repo):
    info = api.create_commit(repo, [add("a.txt", "A"), add("d/b.txt", "B"), add("d/e/c.txt", "C")],
                             commit_message="three", commit_description="more words", repo_type=DS)
    assert info.oid == srv.head(repo) and info.commit_url.endswith(f"/datasets/{repo}/commit/{info.oid}")
    assert files(api, repo) == [".gitattributes", "a.txt", "d/b.txt", "d/e/c.txt"]

    info2 = api.create_commit(repo, [CommitOperationDelete("a.txt"), add("d/b.txt", "B2")],
                              commit_message="change", repo_type=DS)
    assert info2.oid != info.oid
    assert files(api, repo) == [".gitattributes", "d/b.txt", "d/e/c.txt"]

    # unchanged content: the client sees the same blob oid in /preupload and skips the commit
    srv.reset_calls()
    info3 = api.create_commit(repo, [add("d/b.txt", "B2")], commit_message="noop", repo_type=DS)
    assert info3.oid == info2.oid and srv.count_calls("POST", "/commit/") == 0
    # ... and a commit that changes nothing server-side answers the current head
    assert srv.commit_files(repo, {"d/b.txt": b"B2"}) == info2.oid

    api.create_commit(repo, [CommitOperationDelete("d/e/")], commit_message="rm folder", repo_type=DS)
    assert files(api, repo) == [".gitattributes", "d/b.txt"]
    with pytest.raises(EntryNotFoundError):
        api.create_commit(repo, [CommitOperationDelete("missing.txt")], commit_message="x", repo_type=DS)
    with pytest.raises(RevisionNotFoundError):
        api.create_commit(repo, [add("z", "z")], commit_message="x", repo_type=DS, revision="no-branch")

    commits = api.list_repo_commits(repo, repo_type=DS)
    assert [c.title for c in commits] == ["rm folder", "change", "three", "initial commit"]
    assert commits[2].message == "more words" and commits[2].authors == ["user"]


def test_readme_card_data_and_yaml_validation(api, repo):
    api.create_commit(repo, [add("README.md", "---\nlicense: mit\n---\n# hi\n")], commit_message="card",
                      repo_type=DS)
    assert api.dataset_info(repo).card_data.license == "mit"
    with pytest.raises(ValueError, match="Invalid metadata"):
        api.create_commit(repo, [add("README.md", "---\nkey: [unclosed\n---\n")], commit_message="bad",
                          repo_type=DS)


def test_seed_helpers(srv, api, repo):
    sha = srv.commit_files(repo, {"x.bin": b"\x00\x01", "y.txt": "y"}, message="seed")
    assert srv.head(repo) == sha
    sha2 = srv.commit_files(repo, deletes=["y.txt"], message="drop y")
    assert files(api, repo) == [".gitattributes", "x.bin"]
    assert api.list_repo_commits(repo, repo_type=DS)[0].commit_id == sha2


# ---- reading -----------------------------------------------------------------------------------


def test_repo_info_at_branch_tag_sha(api, srv, repo):
    first = srv.commit_files(repo, {"a.txt": "1"})
    api.create_tag(repo, tag="v1", repo_type=DS)
    second = srv.commit_files(repo, {"b.txt": "2"})
    api.create_branch(repo, branch="feat/x", revision=first, repo_type=DS)

    info = api.dataset_info(repo)
    assert info.sha == second and info.id == repo and info.private is False and info.last_modified
    assert sorted(s.rfilename for s in info.siblings) == [".gitattributes", "a.txt", "b.txt"]
    assert api.dataset_info(repo, revision="v1").sha == first
    assert api.dataset_info(repo, revision="feat/x").sha == first
    assert api.dataset_info(repo, revision=first).sha == first
    assert {s.rfilename: s.size for s in api.dataset_info(repo, files_metadata=True).siblings}["b.txt"] == 1
    with pytest.raises(RevisionNotFoundError):
        api.dataset_info(repo, revision="nope")
    with pytest.raises(RevisionNotFoundError):
        api.dataset_info(repo, revision="0" * 40)
    with pytest.raises(RepositoryNotFoundError):
        api.dataset_info("user/does-not-exist")
    assert not api.revision_exists(repo, "nope", repo_type=DS)

    refs = api.list_repo_refs(repo, repo_type=DS)
    assert {b.name: b.target_commit for b in refs.branches} == {"main": second, "feat/x": first}
    assert [(t.name, t.ref, t.target_commit) for t in refs.tags] == [("v1", "refs/tags/v1", first)]
    assert refs.converts == []
    api.delete_branch(repo, branch="feat/x", repo_type=DS)
    assert [b.name for b in api.list_repo_refs(repo, repo_type=DS).branches] == ["main"]


def test_list_repo_tree_pages_over_2500_files(api, srv, repo):
    srv.commit_files(repo, {f"data/part{i % 5}/f{i:04d}.txt": str(i) for i in range(2500)})
    srv.reset_calls()
    entries = list(api.list_repo_tree(repo, repo_type=DS, recursive=True))
    got = sorted(e.path for e in entries if hasattr(e, "blob_id"))
    assert len(got) == 2501 and got[0] == ".gitattributes" and got[-1] == "data/part4/f2499.txt"
    assert len(entries) == 2501 + 6  # data/ and data/part0..4
    assert srv.count_calls("GET", "/tree/") == 3  # 1,000 a page

    top = list(api.list_repo_tree(repo, path_in_repo="data", repo_type=DS))
    assert sorted(e.path for e in top) == [f"data/part{i}" for i in range(5)]
    assert len(list(api.list_repo_tree(repo, path_in_repo="data/part1", repo_type=DS))) == 500
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(repo, path_in_repo="nope", repo_type=DS))


def test_get_paths_info(api, srv, repo):
    srv.commit_files(repo, {"d/a.txt": "hello", "b.txt": "bb"})
    infos = api.get_paths_info(repo, ["d", "d/a.txt", "missing"], repo_type=DS)
    assert [(type(i).__name__, i.path) for i in infos] == [("RepoFolder", "d"), ("RepoFile", "d/a.txt")]
    assert infos[1].size == 5 and infos[1].blob_id == hf_sha.git_hash(b"hello")
    [expanded] = api.get_paths_info(repo, "b.txt", expand=True, repo_type=DS)
    assert expanded.last_commit.oid == srv.head(repo) and expanded.last_commit.title == "seed"


def test_list_repo_commits_pages(api, srv, repo):
    for i in range(60):
        srv.commit_files(repo, {"n.txt": str(i)}, message=f"c{i}")
    srv.reset_calls()
    commits = api.list_repo_commits(repo, repo_type=DS)
    assert len(commits) == 61 and commits[0].title == "c59" and commits[-1].title == "initial commit"
    assert commits[0].created_at.tzinfo is not None
    assert srv.count_calls("GET", "/commits/") == 2


def test_hf_hub_download_and_metadata(api, srv, repo, tmp_path):
    sha = srv.commit_files(repo, {"sub dir/file é.txt": b"0123456789"})
    path = hf_hub_download(repo, "sub dir/file é.txt", repo_type=DS, endpoint=srv.url, token=TOKEN,
                           cache_dir=tmp_path)
    assert Path(path).read_bytes() == b"0123456789" and sha in path

    url = hf_hub_url(repo, "sub dir/file é.txt", repo_type=DS, endpoint=srv.url)
    meta = get_hf_file_metadata(url, token=TOKEN)
    assert meta.commit_hash == sha and meta.etag == hf_sha.git_hash(b"0123456789") and meta.size == 10

    auth = {"authorization": f"Bearer {TOKEN}"}
    r = httpx2.get(url, headers={**auth, "Range": "bytes=2-4"})
    assert r.status_code == 206 and r.content == b"234" and r.headers["Content-Range"] == "bytes 2-4/10"
    assert httpx2.get(url, headers={**auth, "Range": "bytes=-3"}).content == b"789"
    assert httpx2.get(url, headers={**auth, "Range": "bytes=10-"}).status_code == 416
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo, "nope.txt", repo_type=DS, endpoint=srv.url, token=TOKEN, cache_dir=tmp_path)


def test_hf_filesystem(srv, repo):
    srv.commit_files(repo, {"dir/a.txt": b"abcdef", "dir/sub/b.txt": b"b"})
    fs = HfFileSystem(endpoint=srv.url, token=TOKEN, skip_instance_cache=True)
    assert sorted(fs.ls(f"datasets/{repo}/dir", detail=False)) == [f"datasets/{repo}/dir/a.txt",
                                                                    f"datasets/{repo}/dir/sub"]
    assert fs.cat(f"hf://datasets/{repo}/dir/a.txt") == b"abcdef"
    with fs.open(f"datasets/{repo}/dir/a.txt", "rb", block_size=2) as f:
        f.seek(3)
        assert f.read(2) == b"de"
    assert sorted(fs.glob(f"datasets/{repo}/**/*.txt")) == [f"datasets/{repo}/dir/a.txt",
                                                           f"datasets/{repo}/dir/sub/b.txt"]


# ---- tags, parents, concurrency ----------------------------------------------------------------


def test_create_tag_on_sha_409_and_delete(api, srv, repo):
    first = srv.commit_files(repo, {"a": "1"})
    srv.commit_files(repo, {"a": "2"})
    api.create_tag(repo, tag="v0.1", revision=first, tag_message="release", repo_type=DS)
    with pytest.raises(HfHubHTTPError) as err:
        api.create_tag(repo, tag="v0.1", repo_type=DS)
    assert err.value.response.status_code == 409
    api.create_tag(repo, tag="v0.1", repo_type=DS, exist_ok=True)
    assert api.dataset_info(repo, revision="v0.1").sha == first  # annotated tag peeled to its commit
    api.delete_tag(repo, tag="v0.1", repo_type=DS)
    with pytest.raises(RevisionNotFoundError):
        api.dataset_info(repo, revision="v0.1")
    with pytest.raises(RevisionNotFoundError):
        api.delete_tag(repo, tag="v0.1", repo_type=DS)


def test_stale_parent_commit_gets_412(api, srv, repo):
    parent = srv.head(repo)
    ok = api.create_commit(repo, [add("a", "1")], commit_message="a", parent_commit=parent, repo_type=DS)
    with pytest.raises(HfHubHTTPError) as err:
        api.create_commit(repo, [add("b", "1")], commit_message="b", parent_commit=parent, repo_type=DS)
    assert err.value.response.status_code == 412
    assert srv.head(repo) == ok.oid


def _race(fn, n=2):
    barrier, results = threading.Barrier(n), [None] * n

    def run(i):
        barrier.wait()
        try:
            results[i] = fn(i)
        except Exception as e:  # noqa: BLE001
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_commits(api, srv, repo):
    # without a parent both land
    results = _race(lambda i: api.create_commit(repo, [add(f"t{i}.txt", str(i))], commit_message=f"t{i}",
                                                repo_type=DS))
    assert all(not isinstance(r, Exception) for r in results)
    assert {"t0.txt", "t1.txt"} <= set(files(api, repo))
    assert {c.commit_id for c in api.list_repo_commits(repo, repo_type=DS)} >= {r.oid for r in results}

    # with the same parent exactly one lands, the other gets 412
    parent = srv.head(repo)
    results = _race(lambda i: api.create_commit(repo, [add(f"p{i}.txt", str(i))], commit_message=f"p{i}",
                                                parent_commit=parent, repo_type=DS))
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1 and isinstance(errors[0], HfHubHTTPError)
    assert errors[0].response.status_code == 412
    assert len({"p0.txt", "p1.txt"} & set(files(api, repo))) == 1


def test_compare_and_swap_under_contention(srv, repo):
    """Many writers at once on the store: every commit lands (lost CAS races are retried)."""
    _race(lambda i: [srv.commit_files(repo, {f"w{i}/{j}": f"{i}-{j}"}, message=f"w{i}-{j}") for j in range(5)], 8)
    history = srv.store.log(srv.git_dir(repo), srv.head(repo), 0, 100)
    assert len(history) == 41  # 40 + initial commit
    assert len(srv.store.snapshot(srv.git_dir(repo), srv.head(repo)).files()) == 41


# ---- auth --------------------------------------------------------------------------------------


def test_private_repo_needs_token(api, srv, tmp_path):
    srv.create_repo("user/secret", private=True)
    srv.commit_files("user/secret", {"s.txt": "s"})
    anon = HfApi(endpoint=srv.url, token=False)
    with pytest.raises(RepositoryNotFoundError):
        anon.dataset_info("user/secret")
    with pytest.raises(RepositoryNotFoundError):
        list(anon.list_repo_tree("user/secret", repo_type=DS))
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("user/secret", "s.txt", repo_type=DS, endpoint=srv.url, token=False, cache_dir=tmp_path)
    with pytest.raises(HfHubHTTPError) as err:
        HfApi(endpoint=srv.url, token="wrong").dataset_info("user/secret")
    assert err.value.response.status_code == 401
    assert api.dataset_info("user/secret").private is True
    assert hf_hub_download("user/secret", "s.txt", repo_type=DS, endpoint=srv.url, token=TOKEN,
                           cache_dir=tmp_path)

    api.create_repo("user/secret2", repo_type=DS, private=True)
    assert api.dataset_info("user/secret2").private is True
    api.update_repo_settings("user/secret2", private=False, repo_type=DS)
    assert anon.dataset_info("user/secret2").private is False


def test_writes_need_token(srv, repo):
    anon = HfApi(endpoint=srv.url, token=False)
    assert anon.dataset_info(repo).id == repo  # public read is fine
    for call in (
        lambda: anon.create_commit(repo, [add("a", "a")], commit_message="a", repo_type=DS),
        lambda: anon.create_repo("user/anon-repo", repo_type=DS),
        lambda: anon.create_tag(repo, tag="t", repo_type=DS),
    ):
        with pytest.raises(HfHubHTTPError) as err:
            call()
        assert err.value.response.status_code == 401


# ---- faults & call counting --------------------------------------------------------------------


def test_call_recording(api, srv, repo):
    srv.reset_calls()
    api.dataset_info(repo)
    api.list_repo_refs(repo, repo_type=DS)
    assert srv.calls == [("GET", f"/api/datasets/{repo}"), ("GET", f"/api/datasets/{repo}/refs")]
    assert srv.count_calls("GET") == 2 and srv.count_calls(path="/refs$") == 1


def test_faults_apply_in_order_and_are_consumed(srv, repo):
    url = f"{srv.url}/api/datasets/{repo}/refs"
    srv.faults.add(method="GET", path="/refs$", kind="500")
    srv.faults.add(method="GET", path="/refs$", kind="429", retry_after=7)
    srv.faults.add(method="POST", path="/refs$", kind="503")  # other method: never matches
    r1, r2, r3 = (httpx2.get(url) for _ in range(3))
    assert (r1.status_code, r2.status_code, r3.status_code) == (500, 429, 200)
    assert r2.headers["Retry-After"] == "7"
    assert len(srv.faults) == 1
    srv.faults.clear()
    assert len(srv.faults) == 0
    with pytest.raises(ValueError):
        srv.faults.add(kind="teapot")


def test_fault_429_and_500_are_retried_by_the_client(api, srv, repo):
    srv.faults.add(method="GET", path="/tree/", kind="429", retry_after=0)
    srv.reset_calls()
    assert files(api, repo) == [".gitattributes"]
    assert srv.count_calls("GET", "/tree/") == 2

    srv.faults.add(method="POST", path="/preupload/", kind="500")
    api.create_commit(repo, [add("a", "a")], commit_message="after 500", repo_type=DS)
    assert "a" in files(api, repo)


def test_fault_412_on_commit(api, srv, repo):
    head = srv.head(repo)
    srv.faults.add(method="POST", path="/commit/", kind="412")
    with pytest.raises(HfHubHTTPError) as err:
        api.create_commit(repo, [add("a", "a")], commit_message="a", repo_type=DS)
    assert err.value.response.status_code == 412 and srv.head(repo) == head


def test_fault_drop_processes_then_hangs_up(api, srv, repo):
    head = srv.head(repo)
    srv.faults.add(method="POST", path="/commit/", kind="drop")
    with pytest.raises(httpx2.TransportError):
        api.create_commit(repo, [add("landed.txt", "x")], commit_message="ambiguous", repo_type=DS)
    assert srv.head(repo) != head and "landed.txt" in files(api, repo)


def test_fault_drop_before_does_not_process(api, srv, repo):
    head = srv.head(repo)
    srv.faults.add(method="POST", path="/commit/", kind="drop_before")
    with pytest.raises(httpx2.TransportError):
        api.create_commit(repo, [add("lost.txt", "x")], commit_message="lost", repo_type=DS)
    assert srv.head(repo) == head and "lost.txt" not in files(api, repo)


# ---- CLI ---------------------------------------------------------------------------------------


def test_cli_runs_in_foreground(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.hubserver", "--root", str(tmp_path), "--port", str(port), "--token", "t"],
        cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.time() + 20
        while True:
            try:
                r = httpx2.post(f"http://127.0.0.1:{port}/api/repos/create", headers={"authorization": "Bearer t"},
                                json={"name": "x", "organization": "user", "type": "dataset"})
                break
            except httpx2.ConnectError:
                assert time.time() < deadline and proc.poll() is None, proc.stderr.read()
                time.sleep(0.05)
        assert r.status_code == 200 and r.json()["url"] == f"http://127.0.0.1:{port}/datasets/user/x"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
