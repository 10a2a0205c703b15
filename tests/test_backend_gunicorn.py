"""The backend under real gunicorn (4 workers x 8 threads) with concurrent clients."""
from __future__ import annotations

import os
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.backend_fixtures import (IMAGE_CONFIG, BackendServer, annotation_event, image_tasks, project_key,
                                    wait_for)

KEY = project_key()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with BackendServer(tmp_path_factory.mktemp("backend"), workers=4, threads=8) as srv:
        yield srv


def _version_number(version: str) -> int:
    m = re.match(r"labelhub-(\d+)-", version)
    return int(m.group(1)) if m else -1


def _run(server, jobs, clients=16):
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=clients, pool_maxsize=clients)
    session.mount("http://", adapter)

    def one(job):
        kind, body = job
        sent = time.monotonic()
        path = {"predict": "/predict", "setup": "/setup", "webhook": "/webhook"}[kind]
        answer = session.post(server.url + path, json=body, timeout=60)
        received = time.monotonic()
        version = None
        if answer.status_code == 200 and kind == "setup":
            version = answer.json()["model_version"]
        elif answer.status_code == 200 and kind == "predict":
            versions = {r["model_version"] for r in answer.json()["results"]}
            assert len(versions) == 1
            version = versions.pop()
            assert len(answer.json()["results"]) == len(body["tasks"])
        return kind, answer.status_code, sent, received, version

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one, jobs))


def test_1000_mixed_requests_from_concurrent_clients_no_errors_no_stale_model_version(server):
    tasks, labels = image_tasks(60)
    events = [annotation_event(100 + i, t, y) for i, (t, y) in enumerate(zip(tasks[:50], labels[:50]))]
    rng = random.Random(4)

    def predict_job():
        chosen = rng.sample(tasks[50:], rng.randint(1, 3))
        return ("predict", {"tasks": chosen, "project": KEY, "label_config": IMAGE_CONFIG,
                            "params": {"context": None}})

    setup_job = ("setup", {"project": KEY, "schema": IMAGE_CONFIG, "hostname": "http://ls", "access_token": "t"})
    assert requests.post(server.url + "/setup", json=setup_job[1], timeout=10).json()["model_version"].startswith("labelhub-0-")

    # phase 1: annotations arrive while predictions and setups go on; the trainer fits in the background
    jobs = [("webhook", e) for e in events] + [predict_job() for _ in range(250)] + [setup_job] * 200
    rng.shuffle(jobs)
    first = _run(server, jobs)
    pending = server.model_dir / "events" / "pending"
    wait_for(lambda: not os.listdir(pending), timeout=120, message="the event queue to drain")
    final = wait_for(lambda: (v := requests.post(server.url + "/setup", json=setup_job[1], timeout=10)
                              .json()["model_version"]) and not v.startswith("labelhub-0-") and v, timeout=60, message="a trained model")

    # phase 2: more traffic, duplicate events (no refit), every answer carries the trained version
    jobs = [("webhook", e) for e in events] + [predict_job() for _ in range(250)] + [setup_job] * 200
    rng.shuffle(jobs)
    second = _run(server, jobs)
    results = first + second
    assert len(results) == 1000
    errors = [r for r in results if r[1] != 200]
    assert errors == [], server.log_tail()

    # no worker answered an older model_version after any answer showed a newer one
    seen = sorted(((rec, _version_number(v)) for _, _, _, rec, v in results if v), key=lambda x: x[0])
    for kind, status, sent, received, version in results:
        if version is None:
            continue
        newest_before = max((n for rec, n in seen if rec < sent), default=-1)
        assert _version_number(version) >= newest_before, (kind, version, newest_before)
    assert all(v == final for _, _, _, _, v in second if v)
    assert "Traceback" not in server.log_tail(400)


def test_health_and_setup_stay_fast_under_load(server):
    for _ in range(20):
        started = time.monotonic()
        assert requests.get(server.url + "/health", timeout=1).status_code == 200
        assert time.monotonic() - started < 0.5
    started = time.monotonic()
    requests.post(server.url + "/setup", json={"project": "77.1", "schema": IMAGE_CONFIG}, timeout=3)
    assert time.monotonic() - started < 3


def test_metrics_aggregate_all_workers(server):
    text = requests.get(server.url + "/metrics", timeout=5).text
    counts = [float(v) for v in re.findall(r'labelhub_requests_total\{endpoint="setup",status="200"\} (\S+)', text)]
    assert counts and sum(counts) >= 400


def test_an_error_answer_says_why_in_its_status_line_which_label_studio_shows(server):
    """Label Studio keeps only ``str(HTTPError)`` of a failed call (the status line), never the body."""
    config = '<View><Audio name="a" value="$audio"/><Choices name="c" toName="a"><Choice value="x"/></Choices></View>'
    answer = requests.post(f"{server.url}/setup", json={"project": "1.1718006400", "schema": config}, timeout=30)
    assert answer.status_code == 422 and answer.json()["code"] == "unsupported_label_config"
    with pytest.raises(requests.HTTPError, match="<Choices name='c'> over <Audio>"):  # what Label Studio shows
        answer.raise_for_status()


def test_a_backend_removes_the_metrics_folder_it_made_and_opens_no_shared_control_socket(tmp_path):
    """Every start left a labelhub-prometheus-* folder in the temporary directory (140 on this machine), and
    gunicorn 24+ opened its control socket at one path for every instance, which another backend then removed."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    srv = BackendServer(tmp_path / "models", workers=1, threads=2, env={"TMPDIR": str(scratch)})
    srv.env.pop("PROMETHEUS_MULTIPROC_DIR")
    with srv:
        made = list(scratch.glob("labelhub-prometheus-*"))
        assert len(made) == 1
        assert requests.get(srv.url + "/metrics", timeout=10).status_code == 200
    assert not made[0].exists()
    assert "control socket" not in srv.log_path.read_text().lower()


def test_gunicorns_master_has_imported_what_each_worker_would_import_in_its_first_requests(server):
    """``labelhub backend`` imports :data:`labelhub.backend.startup.PREIMPORTS` before gunicorn forks: scikit-learn's
    compiled modules are mapped in the master itself (its workers inherit them)."""
    maps = open(f"/proc/{server.proc.pid}/maps").read()
    assert "/sklearn/" in maps
