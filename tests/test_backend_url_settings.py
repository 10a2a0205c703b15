"""``labelhub backend`` refuses, before gunicorn starts, the URL settings that parse as text but fail at the first
fetch: a ``LABEL_STUDIO_URL`` or ``HF_ENDPOINT`` without its ``http://`` (an audit's ``localhost:18300`` failed
later as ``could not fetch localhost://18300/... (InvalidSchema)``) and a URL in ``LABELHUB_ALLOWED_HOSTS`` (an
audit's ``http://127.0.0.1:18303/`` made every fetch of that host answer "host '127.0.0.1' is not allowed"). One
line naming the variable and the form expected, never a password the URL holds.

The CLI runs in a subprocess (:func:`tests.conftest.run_labelhub`); the form checks themselves run on
:meth:`Settings.from_env`, which ``labelhub predict`` and ``labelhub worker`` read too.
"""
from __future__ import annotations

import pytest

from labelhub.backend.settings import Settings
from tests.conftest import run_labelhub
from tests.labelstudio import free_port

PASSWORD = "pw0secret0in0the0url"


def _backend(tmp_path, **env: str):
    return run_labelhub("backend", "--port", str(free_port()),
                        env={"MODEL_DIR": str(tmp_path / "models"), "HF_HUB_OFFLINE": "1", **env}, timeout=60)


@pytest.mark.parametrize(("env", "error"), [
    ({"LABEL_STUDIO_URL": "localhost:18300"},
     "Error: LABEL_STUDIO_URL='localhost:18300' is not an http(s) URL: write http://localhost:18300"),
    ({"LABEL_STUDIO_URL": f"me:{PASSWORD}@localhost:18300"},
     "Error: LABEL_STUDIO_URL='localhost:18300' is not an http(s) URL: write http://localhost:18300"),
    ({"LABEL_STUDIO_URL": f"ftp://me:{PASSWORD}@ls.example"},
     "Error: LABEL_STUDIO_URL='ftp://ls.example' is not an http(s) URL: write it as http://host:port or "
     "https://host[:port][/path], e.g. http://localhost:8080"),
    ({"LABELHUB_ALLOWED_HOSTS": "images.example.org, http://127.0.0.1:18303/"},
     "Error: LABELHUB_ALLOWED_HOSTS: 'http://127.0.0.1:18303/' is a URL, not a host: write 127.0.0.1:18303"),
    ({"LABELHUB_ALLOWED_HOSTS": f"https://me:{PASSWORD}@cdn.example.org/x"},
     "Error: LABELHUB_ALLOWED_HOSTS: 'https://cdn.example.org/x' is a URL, not a host: write cdn.example.org"),
    ({"HF_ENDPOINT": "127.0.0.1:18302"},
     "Error: HF_ENDPOINT='127.0.0.1:18302' is not an http(s) URL: write http://127.0.0.1:18302"),
])
def test_backend_refuses_a_url_setting_of_the_wrong_form_in_one_line_without_its_password(tmp_path, env, error):
    answer = _backend(tmp_path, **env)
    assert answer.returncode == 1, answer.stderr
    assert answer.stderr == error + "\n"
    assert PASSWORD not in answer.stderr + answer.stdout


@pytest.mark.parametrize(("value", "says"), [
    ("*.example.org", "is a pattern; no wildcards are read"),
    ("cdn:http", "is not a host name or IP address, optionally with :port"),
    ("cdn:0", "is not a host name or IP address, optionally with :port"),
    ("a host", "is not a host name or IP address, optionally with :port"),
])
def test_an_allowed_host_that_could_never_match_is_refused(value, says):
    with pytest.raises(ValueError, match="LABELHUB_ALLOWED_HOSTS") as info:
        Settings.from_env({"LABELHUB_ALLOWED_HOSTS": value})
    assert says in str(info.value)


def test_hosts_ports_ip_addresses_and_http_urls_with_a_path_or_userinfo_are_accepted():
    settings = Settings.from_env({"LABELHUB_ALLOWED_HOSTS": "Img.Example.org, cdn:8080, 10.0.0.1:80, ::1, my_host",
                                  "LABEL_STUDIO_URL": f"https://me:{PASSWORD}@ls.example/label-studio/"})
    assert settings.allowed_hosts == ("img.example.org", "cdn:8080", "10.0.0.1:80", "::1", "my_host")
    for url in ("http://localhost:8080", "http://127.0.0.1:18300/", "https://[::1]:8443"):
        assert Settings.from_env({"LABEL_STUDIO_URL": url}).label_studio_url == url


@pytest.mark.parametrize(("url", "says"), [
    ("http://ls.example:99999", "its port must be a number from 1 to 65535"),
    ("http://ls.example:8080/?x=1", "without a query or fragment"),
    ("http://", "write it as http://host:port"),
])
def test_a_label_studio_url_whose_port_or_parts_cannot_work_is_refused(url, says):
    with pytest.raises(ValueError, match="LABEL_STUDIO_URL") as info:
        Settings.from_env({"LABEL_STUDIO_URL": url})
    assert says in str(info.value) and "\n" not in str(info.value)
