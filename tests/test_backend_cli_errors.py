"""The backend's commands (``labelhub backend``, ``predict``, ``worker``) refuse what cannot work in one line that
names the option or variable and says how to fix it: a taken port, a host that is not this machine's, an
unreachable Redis or Label Studio, a refused API key, a ``--model-dir`` that cannot be made, a project id that is
no number; and their ``--help`` explains ``--log-level``.

Each runs the real CLI in a subprocess (:func:`tests.conftest.run_labelhub`), against a real socket, a real Label
Studio, or a port where nothing listens.
"""
from __future__ import annotations

import socket
import time

from tests.conftest import run_labelhub
from tests.in_process import invoke_labelhub
from tests.labelstudio import free_port

SECRET = "labelhub0wrong0key0000000000000000000"


def _listening() -> socket.socket:
    """A socket that listens on a free port of 127.0.0.1 (close it when done)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_backend_on_a_port_in_use_ends_at_once_with_one_line_naming_the_port_and_its_option():
    with _listening() as taken:
        port = taken.getsockname()[1]
        started = time.monotonic()
        answer = run_labelhub("backend", "--port", str(port), timeout=60)
        seconds = time.monotonic() - started
    assert answer.returncode == 1, answer.stderr
    assert answer.stderr == (f"Error: port {port} (--port / LABELHUB_PORT) is in use on 127.0.0.1: stop what listens "
                             "there, or choose another port\n")
    assert answer.stdout == "" and seconds < 10  # gunicorn retried for about 3 s and printed 13 lines


def test_backend_on_a_host_that_does_not_resolve_or_is_not_this_machines_is_a_usage_error_naming_host():
    for host, says in (("999.1.1.1", "is neither an IP address nor a name this machine resolves"),
                       ("192.0.2.1", "is not an address of this machine")):  # TEST-NET-1: never local
        answer = run_labelhub("backend", "--host", host, "--port", str(free_port()), timeout=60)
        assert answer.returncode == 2, answer.stderr
        error = answer.stderr.splitlines()[-1]
        assert error.startswith("Error: Invalid value for '--host' / LABELHUB_HOST: ") and says in error, error
        assert "Traceback" not in answer.stderr and "gunicorn" not in answer.stderr.lower()


def test_every_log_level_option_says_what_it_sets_and_predict_logs_at_info_by_default():
    for command in ("backend", "predict", "worker"):
        helped = invoke_labelhub(command, "--help")
        text = " ".join(helped.stdout.split())
        assert helped.returncode == 0
        assert "--log-level [DEBUG|INFO|WARNING|ERROR] How much the log (stderr) says: DEBUG" in text, text  # as README
        assert "LABELHUB_LOG_LEVEL; default: INFO]" in text, (command, text)


def test_predict_refuses_a_project_id_that_is_no_number_as_a_plain_integer_error():
    answer = invoke_labelhub("predict", "--project", "abc", "--api-key", SECRET)
    assert answer.returncode == 2
    assert answer.stderr.splitlines()[-1] == ("Error: Invalid value for '--project' (env var: 'LABELHUB_PROJECT'): "
                                              "'abc' is not a valid integer.")


def test_predict_with_a_model_dir_that_is_not_there_names_the_option_and_the_variable(tmp_path):
    """Without Redis the model is in MODEL_DIR: one that does not exist is said (and not created, which left an empty
    folder behind and then said it held no model)."""
    (tmp_path / "file").write_text("not a folder")
    for model_dir in ("/proc/md", str(tmp_path / "file" / "md")):
        answer = invoke_labelhub("predict", "--project", "1", "--api-key", SECRET, "--model-dir", model_dir)
        assert answer.returncode == 1, answer.stderr
        assert answer.stderr == (f"Error: --model-dir / MODEL_DIR {model_dir!r} does not exist: point it at the "
                                 "backend's MODEL_DIR (the demo's is .labelhub-demo/models)\n")


def test_predict_with_a_refused_api_key_says_which_tokens_work_and_never_prints_the_key(label_studio, tmp_path):
    answer = invoke_labelhub("predict", "--project", "1", "--api-key", SECRET, "--model-dir", str(tmp_path),
                             "--label-studio-url", label_studio.url, env={"TQDM_DISABLE": "1"})
    assert answer.returncode == 1, answer.stderr
    error = answer.stderr.splitlines()[-1]
    assert error.startswith(f"Error: Label Studio at {label_studio.url} refused LABEL_STUDIO_API_KEY (401): ")
    assert "personal access token (Account & Settings → Personal Access Token)" in error
    assert "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true" in error and SECRET not in answer.stderr + answer.stdout
    assert "Traceback" not in answer.stderr


def test_predict_against_no_label_studio_names_its_url_option_and_variable(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    answer = invoke_labelhub("predict", "--project", "1", "--api-key", SECRET, "--model-dir", str(tmp_path),
                             "--label-studio-url", url, env={"TQDM_DISABLE": "1"})
    assert answer.returncode == 1, answer.stderr
    error = answer.stderr.splitlines()[-1]
    assert error.startswith(f"Error: project 1: no answer from Label Studio at {url} (ConnectError"), error
    assert error.endswith("check that it runs and that LABEL_STUDIO_URL (--label-studio-url) is its URL")
    assert SECRET not in answer.stderr
    host = url.split("//")[1]
    answer = invoke_labelhub("predict", "--project", "1", "--api-key", SECRET, "--model-dir", str(tmp_path),
                             "--label-studio-url", f"http://me:pw-{SECRET}@{host}", env={"TQDM_DISABLE": "1"})
    assert answer.returncode == 1 and f"Label Studio at {url} (" in answer.stderr, answer.stderr
    assert SECRET not in answer.stderr  # nor the URL's password


def test_worker_without_redis_names_its_host_and_port_never_its_password():
    port = free_port()
    answer = run_labelhub("worker", env={"LABELHUB_REDIS_URL": f"redis://:{SECRET}@127.0.0.1:{port}/0"}, timeout=60)
    assert answer.returncode == 1, answer.stderr
    assert answer.stderr.splitlines()[-1] == (
        f"Error: LABELHUB_REDIS_URL: Redis at 127.0.0.1:{port} does not answer (ConnectionError: Connection refused): "
        "start it, or correct the URL's host and port")
    assert SECRET not in answer.stderr + answer.stdout


def test_auto_predict_without_label_studio_settings_is_said_when_the_backend_starts(tmp_path, caplog):
    """Found by a walkthrough: the backend started without a word and said it only at the first request."""
    from labelhub.backend.settings import Settings
    from labelhub.backend.startup import check_settings

    check_settings(Settings(model_dir=tmp_path, auto_predict=True, label_studio_api_key=""))
    assert any("LABELHUB_AUTO_PREDICT is on but LABEL_STUDIO_URL or LABEL_STUDIO_API_KEY is not set" in r.getMessage()
               and r.levelname == "WARNING" for r in caplog.records), caplog.text
