"""Unit tests of the backend's pieces: label config, settings, state, event application, media."""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import threading
import time

import numpy as np
import pytest

from labelhub.backend.errors import MediaFetchError, MediaNotAllowedError
from labelhub.errors import LabelConfigError
from labelhub.backend.events import apply_event
from labelhub.label_config import choices_spec, parsed_label_config
from labelhub.backend.media import MediaFetcher, parse_hub_url, safe_url
from labelhub.backend.embedding_cache import EmbeddingCache
from labelhub.backend.settings import Settings
from labelhub.backend.state import ProjectState, Store, atomic_write_json, project_key_from_webhook
from labelhub.locks import file_lock
from labelhub.signing import sign_url
from tests.backend_fixtures import IMAGE_CONFIG, TEXT_CONFIG, MediaServer, annotation_event, choices_config


# label config -----------------------------------------------------------------------------------------
def test_choices_over_image_reads_from_name_to_name_and_value_key():
    spec = choices_spec(IMAGE_CONFIG)
    assert (spec.from_name, spec.to_name, spec.object_type, spec.value_key) == ("label", "image", "image", "image")
    assert spec.labels[0] == "T-shirt/top" and not spec.multiple


def test_choices_over_text_multiple_and_url_text():
    spec = choices_spec(choices_config(["a", "b"], object_tag="Text", multiple=True, value="review"))
    assert (spec.object_type, spec.value_key, spec.multiple) == ("text", "review", True)
    cfg = ('<View><Text name="t" value="$doc" valueType="url"/>'
           '<Choices name="c" toName="t"><Choice value="x" alias="X"/><Choice value="y"/></Choices></View>')
    spec = choices_spec(cfg)
    assert spec.text_is_url and spec.labels == ("X", "y")


@pytest.mark.parametrize("config, words", [
    ("", "empty"),
    ("<View><Image", "not valid XML"),
    ('<View><Image name="i" value="$i"/><RectangleLabels name="r" toName="i"><Label value="a"/>'
     "</RectangleLabels></View>", "RectangleLabels"),
    ('<View><Image name="i" value="$i"/><Choices name="c" toName="i"><Choice value="a"/></Choices></View>',
     "at least two"),
])
def test_unsupported_label_config_says_why(config, words):
    with pytest.raises(LabelConfigError, match=words):
        choices_spec(config)


def test_parsed_label_config_has_label_studio_ml_shape():
    parsed = parsed_label_config(TEXT_CONFIG)
    assert parsed["label"]["type"] == "Choices"
    assert parsed["label"]["to_name"] == ["text"]
    assert parsed["label"]["inputs"] == [{"type": "Text", "value": "text"}]
    assert parsed["label"]["labels"] == ["fresh", "rotten"]


# settings ---------------------------------------------------------------------------------------------
def test_settings_read_env_and_overrides(tmp_path):
    s = Settings.from_env({"MODEL_DIR": str(tmp_path), "LABELHUB_ALLOWED_HOSTS": "Img.Example.org, cdn:8080",
                           "LABELHUB_TRAINER": "false", "BASIC_AUTH_USER": "u", "BASIC_AUTH_PASS": "s3cr3t-pass"},
                          image_size=64)
    assert s.model_dir == tmp_path and s.allowed_hosts == ("img.example.org", "cdn:8080")
    assert not s.start_trainer and s.auth_enabled and s.image_size == 64
    assert "s3cr3t-pass" not in repr(s)


def test_settings_name_the_variable_that_does_not_parse():
    with pytest.raises(ValueError, match="LABELHUB_IMAGE_SIZE"):
        Settings.from_env({"LABELHUB_IMAGE_SIZE": "big"})


# state ------------------------------------------------------------------------------------------------
def test_webhook_project_key_matches_the_setup_key():
    # MLApi._create_project_uid: f"{id}.{int(created_at.timestamp())}"
    assert project_key_from_webhook({"id": 7, "created_at": "2024-06-10T08:00:00.123456Z"}) == "7.1718006400"
    assert project_key_from_webhook({"id": 7}) == "7"
    assert project_key_from_webhook({"name": "x"}) is None


def test_store_matches_a_bare_project_id_to_the_known_project(tmp_path):
    store = Store(tmp_path)
    store.project("7.1718006400").update_project(label_config=IMAGE_CONFIG)
    assert store.resolve_webhook_project({"id": 7}) == "7.1718006400"


def test_project_key_refuses_path_tricks(tmp_path):
    from labelhub.backend.errors import InvalidPayloadError

    with pytest.raises(InvalidPayloadError):
        Store(tmp_path).project("../../etc")


def _writer(path, n):
    for i in range(n):
        atomic_write_json(path, {"i": i, "pad": "x" * 5000})


def test_atomic_writes_are_never_seen_half_written(tmp_path):
    path = tmp_path / "kv.json"
    atomic_write_json(path, {"i": -1})
    proc = multiprocessing.get_context("fork").Process(target=_writer, args=(path, 300))
    proc.start()
    reads = 0
    while proc.is_alive() or reads < 10:
        json.loads(path.read_bytes())  # never a partial file
        reads += 1
    proc.join()
    assert json.loads(path.read_bytes())["i"] == 299
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_file_lock_excludes_another_holder(tmp_path):
    with file_lock(tmp_path / "l") as held:
        assert held
        with file_lock(tmp_path / "l", blocking=False) as second:
            assert second is False
    with file_lock(tmp_path / "l", blocking=False) as again:
        assert again


def test_file_lock_excludes_another_thread_of_the_process(tmp_path):
    # the trainer thread of a worker and a request thread writing state must not both hold it
    held, release, seen = threading.Event(), threading.Event(), []

    def holder():
        with file_lock(tmp_path / "l") as ok:
            seen.append(ok)
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    assert held.wait(10)
    with file_lock(tmp_path / "l", blocking=False) as second:
        assert second is False
    waited = []

    def waiter():
        started = time.monotonic()
        with file_lock(tmp_path / "l") as ok:
            waited.append((ok, time.monotonic() - started))

    blocked = threading.Thread(target=waiter)
    blocked.start()
    time.sleep(0.3)
    assert not waited  # a blocking acquire waits for the holder
    release.set()
    thread.join(10)
    blocked.join(10)
    assert seen == [True] and waited and waited[0][0] is True and waited[0][1] >= 0.25


def _hold_lock(path, ready):
    with file_lock(path) as ok:
        assert ok
        ready.set()
        time.sleep(60)


def test_file_lock_passes_on_when_its_holder_process_dies(tmp_path):
    # the trainer election: a worker killed while it trains must not keep the lock
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    proc = ctx.Process(target=_hold_lock, args=(tmp_path / "trainer.lock", ready))
    proc.start()
    try:
        assert ready.wait(20)
        with file_lock(tmp_path / "trainer.lock", blocking=False) as held:
            assert held is False
    finally:
        proc.kill()
        proc.join(10)
    with file_lock(tmp_path / "trainer.lock", blocking=False) as held:
        assert held is True


def test_kv_change_is_seen_by_another_reader(tmp_path):
    a, b = ProjectState(tmp_path / "p", "1.1"), ProjectState(tmp_path / "p", "1.1")
    a.update_kv(model_version="v1")
    assert b.kv()["model_version"] == "v1"
    stamp = b.kv_stamp()
    a.update_kv(model_version="v2")
    assert b.kv_stamp() != stamp and b.kv()["model_version"] == "v2"


# applying events ----------------------------------------------------------------------------------------
def _data():
    return {"annotations": {}, "tombstones": {}, "tasks": {}}


TASK = {"id": 5, "data": {"image": "data:,x"}}


def test_duplicate_event_changes_nothing():
    data = _data()
    event = annotation_event(1, TASK, "Bag")
    assert apply_event(data, event["action"], event)
    snapshot = json.dumps(data, sort_keys=True)
    assert not apply_event(data, event["action"], event)
    assert json.dumps(data, sort_keys=True) == snapshot


def test_older_update_arriving_late_does_not_overwrite_newer():
    data = _data()
    new = annotation_event(1, TASK, "Bag", action="ANNOTATION_UPDATED", updated_at="2024-06-10T10:00:00Z")
    old = annotation_event(1, TASK, "Coat", action="ANNOTATION_CREATED", updated_at="2024-06-10T09:00:00Z")
    apply_event(data, new["action"], new)
    apply_event(data, old["action"], old)
    assert data["annotations"]["1"]["result"][0]["value"]["choices"] == ["Bag"]


def test_deleted_annotation_stays_deleted_when_its_update_arrives_late():
    data = _data()
    created = annotation_event(1, TASK, "Bag")
    apply_event(data, created["action"], created)
    apply_event(data, "ANNOTATIONS_DELETED", {"annotations": [{"id": 1}]})
    late = annotation_event(1, TASK, "Coat", action="ANNOTATION_UPDATED", updated_at="2024-06-10T11:00:00Z")
    apply_event(data, late["action"], late)
    assert data["annotations"] == {}


def test_deleted_task_removes_its_annotations_and_ignores_late_ones():
    data = _data()
    apply_event(data, "ANNOTATION_CREATED", annotation_event(1, TASK, "Bag"))
    apply_event(data, "TASKS_DELETED", {"tasks": [{"id": 5}]})
    apply_event(data, "ANNOTATION_CREATED", annotation_event(2, TASK, "Bag"))
    assert data["annotations"] == {} and data["tasks"] == {}


def test_bulk_annotations_created_and_cancelled_annotation():
    data = _data()
    t2 = {"id": 6, "data": {"image": "data:,y"}}
    e1, e2 = annotation_event(1, TASK, "Bag"), annotation_event(2, t2, "Coat")
    bulk = {"action": "ANNOTATIONS_CREATED", "annotation": [e1["annotation"], e2["annotation"]],
            "task": [e1["task"], e2["task"]], "project": e1["project"]}
    apply_event(data, "ANNOTATIONS_CREATED", bulk)
    assert set(data["annotations"]) == {"1", "2"} and set(data["tasks"]) == {"5", "6"}
    cancelled = annotation_event(2, t2, "Coat", action="ANNOTATION_UPDATED", updated_at="2024-06-10T12:00:00Z")
    cancelled["annotation"]["was_cancelled"] = True
    apply_event(data, "ANNOTATION_UPDATED", cancelled)
    assert set(data["annotations"]) == {"1"}


# media ------------------------------------------------------------------------------------------------
def test_hub_urls_parse_to_repo_revision_and_path():
    endpoint = "https://huggingface.co"
    assert parse_hub_url("hf://datasets/me/pics/img/0.png", endpoint) == ("me/pics", "dataset", "main", "img/0.png")
    assert parse_hub_url("hf://me/model@v2/w.bin", endpoint) == ("me/model", "model", "v2", "w.bin")
    assert parse_hub_url("https://huggingface.co/datasets/me/pics/resolve/refs%2Fpr%2F1/a/b.png", endpoint) == (
        "me/pics", "dataset", "refs/pr/1", "a/b.png")
    assert parse_hub_url("https://evil.example/datasets/me/pics/resolve/main/a.png", endpoint) is None


def test_safe_url_drops_query_tokens():
    assert safe_url("https://s3.example/b/k.png?X-Amz-Signature=SECRET") == "https://s3.example/b/k.png"
    assert safe_url("/data/local-files/?d=imgs/a.png") == "/data/local-files/?d=imgs/a.png"
    assert safe_url("http://alice:Sup3rS3cret@example.org:81/cat.png") == "http://example.org:81/cat.png"


def test_label_studio_media_under_another_loopback_name_and_a_label_studio_url_of_another_host(tmp_path, caplog):
    with MediaServer({"/data/upload/1/a.png": b"IMG"}, token="legacy0token") as ls:
        port = ls.url.rsplit(":", 1)[1]
        fetcher = MediaFetcher(Settings(model_dir=tmp_path, label_studio_url=f"http://localhost:{port}",
                                        label_studio_api_key="legacy0token"))
        assert fetcher.fetch(f"http://127.0.0.1:{port}/data/upload/1/a.png") == b"IMG"  # one server, two names
        assert ls.requests[-1][2] == "Token legacy0token"
        with pytest.raises(MediaNotAllowedError, match="looks like a Label Studio media URL, but LABEL_STUDIO_URL "
                                                        "names another host"):
            fetcher.fetch("http://labelstudio.internal:8080/data/upload/1/a.png")
    with pytest.raises(MediaNotAllowedError) as refused:
        fetcher.fetch("http://alice:Sup3rS3cret@example.org/cat.png")
    assert "Sup3rS3cret" not in str(refused.value) and "example.org" in str(refused.value)


def test_media_refuses_hosts_off_the_allowlist_and_local_paths(tmp_path):
    fetcher = MediaFetcher(Settings(model_dir=tmp_path))
    for url in ("http://169.254.169.254/latest/meta-data", "file:///etc/passwd", "/etc/passwd",
                "ftp://x.example/a", "/data/upload/1/a.png"):
        with pytest.raises(MediaNotAllowedError):
            fetcher.fetch(url)


def test_media_from_an_allowlisted_host_without_redirects(tmp_path):
    with MediaServer({"/a.png": b"PNGDATA"}) as server:
        host = server.url.split("//")[1]
        fetcher = MediaFetcher(Settings(model_dir=tmp_path, allowed_hosts=(host,)))
        assert fetcher.fetch(server.url + "/a.png") == b"PNGDATA"
        assert fetcher.fetch(server.url + "/a.png") == b"PNGDATA" and fetcher.hits == 1
        with pytest.raises(MediaFetchError, match="404"):
            fetcher.fetch(server.url + "/missing.png")
        with pytest.raises(MediaFetchError, match="redirect"):
            fetcher.fetch(server.url + "/redirect")


def test_media_too_large_is_refused(tmp_path):
    with MediaServer({"/big": b"x" * 5000}) as server:
        fetcher = MediaFetcher(Settings(model_dir=tmp_path, allowed_hosts=(server.url.split("//")[1],),
                                        media_max_bytes=1000))
        with pytest.raises(MediaFetchError, match="larger"):
            fetcher.fetch(server.url + "/big")


def test_media_cache_is_bounded_by_total_bytes_and_skips_big_files(tmp_path):
    fetcher = MediaFetcher(Settings(model_dir=tmp_path, media_cache_bytes=1000))
    for i in range(5):
        fetcher._keep(f"u{i}", b"x" * 250)  # a quarter each: four fit
    assert "u0" not in fetcher.cache and all(f"u{i}" in fetcher.cache for i in range(1, 5))
    assert fetcher.cache.currsize == 1000
    fetcher._keep("big", b"x" * 251)  # over a quarter: not cached
    assert "big" not in fetcher.cache
    tiny = MediaFetcher(Settings(model_dir=tmp_path, media_cache_bytes=0))
    tiny._keep("u", b"x")
    assert not tiny.cache


def test_embedding_cache_drops_the_least_recently_used():
    cache = EmbeddingCache(2)
    a, b, c = (np.full(2, v) for v in (1.0, 2.0, 3.0))
    cache.put("a", a)
    cache.put("b", b)
    assert cache.get("a") is a  # a is now the most recently used
    cache.put("c", c)
    assert cache.get("b") is None and cache.get("a") is a and cache.get("c") is c
    off = EmbeddingCache(0)
    off.put("a", a)
    assert off.get("a") is None


def test_embedding_store_keeps_what_the_lru_dropped_across_instances_and_a_broken_one_is_left_out(tmp_path, caplog):
    cache = EmbeddingCache(1, tmp_path / "embeddings", store_bytes=10_000_000)
    a, b = np.arange(4, dtype=np.float32), np.ones(4, dtype=np.float32)
    cache.put("a", a)
    cache.put("b", b)  # the LRU holds b only; the store both
    assert np.array_equal(cache.get("a"), a) and cache.get("a").dtype == np.float32
    restarted = EmbeddingCache(0, tmp_path / "embeddings", store_bytes=10_000_000)  # another process, no LRU
    assert np.array_equal(restarted.get("b"), b) and restarted.get("c") is None
    (tmp_path / "file").write_text("not a folder")
    broken = EmbeddingCache(2, tmp_path / "file", store_bytes=10_000_000)
    broken.put("a", a)
    assert broken.get("a") is a and "embedding store" in caplog.text


def test_label_studio_media_with_a_legacy_token(tmp_path):
    with MediaServer({"/data/upload/1/a.png": b"IMG"}, token="legacy0token") as ls:
        fetcher = MediaFetcher(Settings(model_dir=tmp_path, label_studio_url=ls.url,
                                        label_studio_api_key="legacy0token"))
        assert fetcher.fetch("/data/upload/1/a.png") == b"IMG"
        assert ls.requests[-1][2] == "Token legacy0token"


def test_label_studio_media_with_a_personal_access_token_refreshes_once(tmp_path):
    jwt = "eyJhbGciOi.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2ln"
    files = {f"/data/upload/1/{i}.png": b"IMG" for i in range(3)}
    with MediaServer(files, personal_token=jwt) as ls:
        fetcher = MediaFetcher(Settings(model_dir=tmp_path, label_studio_url=ls.url, label_studio_api_key=jwt))
        for i in range(3):
            assert fetcher.fetch(f"{ls.url}/data/upload/1/{i}.png") == b"IMG"
        assert ls.refreshes == 1
        assert all(auth == "Bearer access-ok" for method, _, auth in ls.requests if method == "GET")


def test_label_studio_rejected_token_is_a_clear_error_without_the_token(tmp_path):
    jwt = "eyJhbGciOi.eyJ3cm9uZyI6MX0.c2ln"
    with MediaServer({"/data/upload/1/a.png": b"IMG"}, personal_token="eyJother.x.y") as ls:
        fetcher = MediaFetcher(Settings(model_dir=tmp_path, label_studio_url=ls.url, label_studio_api_key=jwt))
        with pytest.raises(MediaFetchError) as info:
            fetcher.fetch("/data/upload/1/a.png")
        assert "refused" in str(info.value) and jwt not in str(info.value)


def test_hub_media_through_the_hub_cache_with_hf_token(tmp_path, hub, monkeypatch):
    from tests.conftest import HUB_TOKEN

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    from huggingface_hub import HfApi

    api = HfApi(endpoint=os.environ["HF_ENDPOINT"], token=HUB_TOKEN)
    api.create_repo("me/pics", repo_type="dataset", private=True)
    api.upload_file(path_or_fileobj=b"HUBIMG", path_in_repo="img/0.png", repo_id="me/pics", repo_type="dataset")
    fetcher = MediaFetcher(Settings(model_dir=tmp_path, hf_token=HUB_TOKEN))
    assert fetcher.fetch("hf://datasets/me/pics/img/0.png") == b"HUBIMG"
    url = f"{os.environ['HF_ENDPOINT']}/datasets/me/pics/resolve/main/img/0.png"
    assert fetcher.fetch(url) == b"HUBIMG"
    anonymous = MediaFetcher(Settings(model_dir=tmp_path / "other"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf2"))
    with pytest.raises(MediaFetchError) as info:
        anonymous.fetch("hf://datasets/me/pics/img/0.png")
    assert HUB_TOKEN not in str(info.value)


def test_hub_media_over_the_size_limit_is_refused_from_its_head_before_any_download(tmp_path, hub, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    hub.create_repo("me/sizes")
    hub.commit_files("me/sizes", {"big.bin": b"x" * 5000, "small.png": b"SMALL"})
    fetcher = MediaFetcher(Settings(model_dir=tmp_path, media_max_bytes=1000))
    with pytest.raises(MediaFetchError, match=r"big\.bin is larger than LABELHUB_MEDIA_MAX_BYTES"):
        fetcher.fetch("hf://datasets/me/sizes/big.bin")
    assert hub.count_calls("HEAD", r"big\.bin") == 1 and hub.count_calls("GET", r"big\.bin") == 0
    assert not list((tmp_path / "hf").rglob("blobs/*"))  # nothing of it in the cache
    secret = "labelhub-test-secret-0123456789"
    signed = MediaFetcher(Settings(model_dir=tmp_path, media_max_bytes=1000, file_repos=("me/sizes",), secret=secret))
    with pytest.raises(MediaFetchError, match=r"big\.bin is larger than LABELHUB_MEDIA_MAX_BYTES"):
        signed.fetch(sign_url("http://backend.example", secret, "me--sizes", hub.head("me/sizes"), "big.bin"))
    assert hub.count_calls("GET", r"big\.bin") == 0 and not list((tmp_path / "hf").rglob("blobs/*"))
    assert fetcher.fetch("hf://datasets/me/sizes/small.png") == b"SMALL"
    assert (hub.count_calls("HEAD", r"small\.png"), hub.count_calls("GET", r"small\.png")) == (2, 1)
    hub.reset_calls()
    again = MediaFetcher(Settings(model_dir=tmp_path, media_max_bytes=1000))  # another worker: the disk cache
    assert again.fetch("hf://datasets/me/sizes/small.png") == b"SMALL"
    assert hub.count_calls() == 1 and hub.count_calls("HEAD", r"small\.png") == 1
    hub.faults.add(method="HEAD", path=r"small\.png", kind="500", count=10)  # the Hub down: the cache answers
    assert MediaFetcher(Settings(model_dir=tmp_path, media_max_bytes=1000)).fetch(
        "hf://datasets/me/sizes/small.png") == b"SMALL"


def test_media_timeout_bounds_the_whole_download_not_each_read(tmp_path):
    with MediaServer({"/slow.png?token=SECRET": b"x" * 40}, drip=0.1) as server:  # 4 s in all, a byte every 0.1 s
        fetcher = MediaFetcher(Settings(model_dir=tmp_path, allowed_hosts=(server.url.split("//")[1],),
                                        media_timeout=1.0))
        started = time.monotonic()
        with pytest.raises(MediaFetchError) as info:
            fetcher.fetch(server.url + "/slow.png?token=SECRET")
        assert time.monotonic() - started < 2.0
        assert str(info.value) == f"{server.url}/slow.png took longer than LABELHUB_MEDIA_TIMEOUT (1 s)"


def test_media_session_keeps_no_cookie_reads_no_netrc_and_keeps_the_environment_proxies(tmp_path, monkeypatch):
    with MediaServer({"/data/upload/1/a.png": b"LS"}, token="legacy0token", cookie="ls_session=s1; Path=/") as ls, \
            MediaServer({"/a.png": b"ALLOWED"}, cookie="tracker=t1; Path=/") as allowed:
        netrc = tmp_path / "netrc"
        netrc.write_text("machine 127.0.0.1 login someone password netrc-password\n")
        netrc.chmod(0o600)
        monkeypatch.setenv("NETRC", str(netrc))
        settings = Settings(model_dir=tmp_path, label_studio_url=ls.url, label_studio_api_key="legacy0token",
                            allowed_hosts=(allowed.url.split("//")[1],))
        fetcher = MediaFetcher(settings)
        for url in ("/data/upload/1/a.png", allowed.url + "/a.png"):
            fetcher.fetch(url)
            fetcher.cache.clear()
            fetcher.fetch(url)  # both servers on 127.0.0.1: a kept cookie would go to either
        assert ls.cookies + allowed.cookies == [""] * 4
        assert [r[2] for r in ls.requests] == ["Token legacy0token"] * 2
        assert [r[2] for r in allowed.requests] == [""] * 2
    with MediaServer({"http://127.0.0.1:9/via-proxy.png": b"PROXIED"}) as proxy:
        for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        fetcher = MediaFetcher(Settings(model_dir=tmp_path, allowed_hosts=("127.0.0.1:9",)))
        assert fetcher.fetch("http://127.0.0.1:9/via-proxy.png") == b"PROXIED"
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        with pytest.raises(MediaFetchError):  # straight to port 9: nothing there
            fetcher.fetch("http://127.0.0.1:9/elsewhere.png")
        assert [r[1] for r in proxy.requests] == ["http://127.0.0.1:9/via-proxy.png"]


@pytest.mark.parametrize("url", [
    "hf://datasets/me/pics@..%2F..%2F..%2Fescaped/a.png",
    "hf://datasets/me/pics@refs%2F..%2F..%2Fescaped/a.png",
    "hf://datasets/me/pics@%2Fetc/a.png",
    "hf://datasets/me/pics@refs%2F%2Fpr/a.png",
    "hf://datasets/me/pics@.%2Fmain/a.png",
    "{HF_ENDPOINT}/datasets/me/pics/resolve/..%2F..%2Fescaped/a.png",  # the endpoint is known at run time only:
    "{HF_ENDPOINT}/datasets/me/pics/resolve/main/..%2F..%2Fa.png",  # each xdist worker has its own Hub test server
])
def test_hub_revisions_and_paths_with_dot_dot_or_empty_parts_are_refused_as_task_data(tmp_path, hub, url):
    url = url.replace("{HF_ENDPOINT}", os.environ["HF_ENDPOINT"])
    with pytest.raises(MediaNotAllowedError, match=r"the Hub (revision|path) '.*' has a '\.\.', '\.' or empty part"):
        parse_hub_url(url, os.environ["HF_ENDPOINT"])
    with pytest.raises(MediaNotAllowedError):
        MediaFetcher(Settings(model_dir=tmp_path)).fetch(url)
    assert hub.count_calls() == 0


def test_setup_logging_quiets_huggingface_hubs_http_client(tmp_path, hub, monkeypatch, capfd):
    from huggingface_hub import hf_hub_download

    from labelhub.redaction import setup_logging

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    hub.create_repo("me/quiet")
    hub.commit_files("me/quiet", {"a.txt": b"A"})
    root = logging.getLogger()
    names = ("httpx", "httpcore", "httpx2", "httpcore2", "urllib3", "filelock")
    saved = root.handlers[:], root.level, {n: logging.getLogger(n).level for n in names}
    try:
        setup_logging("INFO")
        logging.getLogger("labelhub.test").info("before the download")
        hf_hub_download("me/quiet", "a.txt", repo_type="dataset")
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)
    err = capfd.readouterr().err
    assert "before the download" in err and "HTTP Request" not in err, err


def test_without_userinfo_drops_credentials_with_or_without_a_scheme_and_nothing_else():
    from labelhub.redaction import without_userinfo

    assert without_userinfo("http://me:pw@ls.example:8080/x?y=1") == "http://ls.example:8080/x?y=1"
    assert without_userinfo("me:pw@ls.example:8080") == "ls.example:8080"  # a setting typed without its scheme
    assert without_userinfo("https://a:b@[::1]:80/") == "https://[::1]:80/"
    for kept in ("http://host/p@x", "http://host?q=a@b", "http://host#a@b", "localhost:8080", ""):
        assert without_userinfo(kept) == kept


def test_a_batch_result_from_a_newer_or_older_worker_keeps_the_fields_this_version_knows():
    """A rolling upgrade: an RQ worker of another LabelHub version returns more or fewer fields."""
    from labelhub.backend.job_status import BatchResult, batch_result

    got = batch_result({"model_version": "v2", "written": [1, 2], "field_of_a_later_version": {"x": 1}})
    assert got == BatchResult(model_version="v2", written=[1, 2])
