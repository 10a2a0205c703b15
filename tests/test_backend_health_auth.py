"""Smaller findings of an audit under many annotators: a wrong webhook secret or basic auth is told from a missing
one; a Redis that refuses the URL's password says so; ``/versions`` names each version once; ``/health`` names the
same trainer from every gunicorn worker; the start banner counts one worker in the singular. Real gunicorn
(:class:`tests.backend_fixtures.BackendServer`) and redis-server (:class:`tests.backend_fixtures.RedisServer`)."""
from __future__ import annotations

import base64

import pytest
import requests

from labelhub.errors import ConfigurationError
from tests.backend_fixtures import BackendServer, RedisServer

SECRET = "s3cret-webhook-value"


def _basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_a_wrong_secret_or_password_is_told_from_a_missing_one(tmp_path):
    from labelhub.backend.app import create_app

    http = create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False, "basic_auth_user": "ls",
                       "basic_auth_pass": "pw", "webhook_secret": SECRET}).test_client()
    body = {"action": "START_TRAINING", "project": {"id": 1, "created_at": "2024-06-10T08:00:00Z"}}

    def refusal(path, method="post", **kwargs):
        answer = getattr(http, method)(path, **kwargs)
        assert answer.status_code == 401
        return answer.get_json()["error"]

    wrong = refusal("/webhook", json=body, headers={"X-LabelHub-Secret": "not-" + SECRET})
    assert wrong == "/webhook: the X-LabelHub-Secret header does not match LABELHUB_WEBHOOK_SECRET"
    assert refusal("/webhook", json=body) == \
        "/webhook needs basic auth or the X-LabelHub-Secret header (LABELHUB_WEBHOOK_SECRET)"
    assert refusal("/webhook", json=body, headers=_basic("ls", "wrong")) == \
        "basic auth user or password is wrong (BASIC_AUTH_USER / BASIC_AUTH_PASS)"
    assert refusal("/versions", "get", headers=_basic("ls", "wrong")) == \
        "basic auth user or password is wrong (BASIC_AUTH_USER / BASIC_AUTH_PASS)"
    assert refusal("/versions", "get") == "basic auth required (BASIC_AUTH_USER / BASIC_AUTH_PASS)"


def test_a_redis_refusing_the_urls_password_is_said_to_refuse_it(tmp_path):
    from labelhub.backend.startup import check_redis

    with RedisServer(tmp_path / "redis") as server:  # no requirepass
        url = server.url.replace("redis://", "redis://:hunter2-pass@") + "/0"
        with pytest.raises(ConfigurationError) as caught:
            check_redis(url)
    message = str(caught.value)
    assert message.startswith(f"LABELHUB_REDIS_URL: Redis at 127.0.0.1:{server.port} answers but refused to "
                              "authenticate (AuthenticationError"), message
    assert "does not answer" not in message and "hunter2" not in message


def test_versions_names_each_version_once_in_order(tmp_path):
    from labelhub.backend.app import create_app

    app = create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False})
    store = app.extensions["labelhub"].store
    store.project("7.1718006400").update_kv(versions=["labelhub-0-a", "labelhub-764-af962b60", "labelhub-764-af962b60",
                                                      "labelhub-800-b"])
    store.project("8.1718006400").update_kv(versions=["labelhub-800-b", "labelhub-900-c"])
    assert app.test_client().get("/versions").get_json()["versions"] == [
        "labelhub-0-a", "labelhub-764-af962b60", "labelhub-800-b", "labelhub-900-c"]
    assert app.test_client().get("/versions?project=7.1718006400").get_json()["versions"] == [
        "labelhub-0-a", "labelhub-764-af962b60", "labelhub-800-b"]


def test_health_names_the_same_trainer_from_every_worker(tmp_path):
    with BackendServer(tmp_path / "two", workers=2, threads=2) as server:
        def answers():
            return [requests.get(server.url + "/health", timeout=10).json() for _ in range(40)]

        from tests.backend_fixtures import wait_for

        seen = wait_for(lambda: (a := answers()) and all(h["trainer"] for h in a) and len({h["pid"] for h in a}) == 2
                        and a, timeout=60, message="both workers answering, a trainer named")
        assert len({(h["trainer"]["host"], h["trainer"]["pid"]) for h in seen}) == 1
        trainer = seen[0]["trainer"]["pid"]
        assert trainer in server.worker_pids()
        assert all(h["trainer_leader"] == (h["pid"] == trainer) for h in seen)
        assert "(2 workers x 2 threads," in server.log_path.read_text()


def test_the_banner_counts_one_worker_in_the_singular(tmp_path):
    with BackendServer(tmp_path / "one", workers=1, threads=1) as server:
        assert "(1 worker x 1 thread," in server.log_path.read_text()
        health = requests.get(server.url + "/health", timeout=10).json()
        assert health["trainer"] is None or health["trainer"]["pid"] == health["pid"]


def test_health_names_the_trainer_across_hosts_with_redis(tmp_path):
    """With ``LABELHUB_REDIS_URL`` every worker of every host names the one trainer (``labelhub:trainer:holder``)."""
    from labelhub.backend.app import create_app
    from tests.backend_fixtures import wait_for

    with RedisServer(tmp_path / "redis") as server:
        config = {"model_dir": tmp_path / "a", "warmup": False, "redis_url": f"{server.url}/0"}
        trainer_app = create_app({**config, "start_trainer": True})
        other = create_app({**config, "model_dir": tmp_path / "b", "start_trainer": False})
        try:
            health = wait_for(lambda: (h := other.test_client().get("/health").get_json())["trainer"] and h,
                              timeout=30, message="a trainer named")
            assert health["trainer_leader"] is False
            import os
            assert health["trainer"]["pid"] == os.getpid()  # the first app's trainer thread runs in this process
        finally:
            trainer_app.extensions["labelhub"].trainer.stop()
        assert other.test_client().get("/health").get_json()["trainer"] is None
