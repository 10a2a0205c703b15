"""Secrets an audit found printed, and how they stay out now: an ``HF_TOKEN`` with a trailing CR or LF (httpx
refused the header in an error quoting it, escaped: ``b'Bearer hf_...\\r'``), a URL password holding an unencoded
``/``, ``?`` or ``#`` (``http://u:Pa#ss@host:1``: the ``user:password@`` was taken to end there, and httpx and
huggingface_hub read the password as a port), and a Redis help text the URL redaction garbled.

Real parts: the ``labelhub`` CLI (in-process, and in a subprocess where the import of huggingface_hub is what
failed), the Hub test server through the real ``huggingface_hub`` client (``tests/hubserver``), local git repos.
"""
from __future__ import annotations

import logging
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelhub.redaction import RedactSecrets, check_http_url, one_line, redact, urls_without_userinfo, \
    without_userinfo
from tests import sample_repos
from tests.conftest import HUB_PORT, HUB_TOKEN, ROOT, run_labelhub
from tests.in_process import invoke_labelhub
from tests.test_cli_errors import assert_one_line

#: A password with each character an unencoded one cannot hold, the characters the audit used.
PASSWORDS = ["S3cretPw/x", "S3cretPw?x", "S3cretPw#x"]
#: What a token (or key) is read with around it: a CRLF ``.env`` file, a secret made from a file, a paste.
AROUND = st.text(st.sampled_from(" \t\r\n\x0b\x0c"), max_size=4)
#: A token's own characters (those of Hub tokens, keys and JWTs).
TOKEN_CHARS = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-."),
                      min_size=6, max_size=40)


# ---- HF_TOKEN with whitespace around it ---------------------------------------------------------------------------

@given(TOKEN_CHARS, AROUND, AROUND)
@settings(max_examples=300, deadline=None)
def test_a_secret_read_with_whitespace_around_it_never_shows_in_any_form_it_is_printed_in(core, before, after):
    secret = before + core + after
    printed = [secret, repr(secret), repr(f"Bearer {secret}".encode()), f"Illegal header value {secret!r}",
               one_line(secret), core, f"{secret}!"]
    for text in printed:
        assert core not in redact(f"Error: {text} refused", [secret]), text
    message = f"LocalProtocolError: Illegal header value {f'Bearer {secret}'.encode()!r}"
    record = logging.LogRecord("httpx", logging.ERROR, __file__, 1, "%s", (message,), None)
    assert RedactSecrets([secret]).filter(record) and core not in record.getMessage()


def test_a_secret_with_an_escaped_character_inside_is_masked_in_its_escaped_form_too():
    secret = "hf_abc\x1bdef012345"
    said = f"Illegal header value {f'Bearer {secret}'.encode()!r}"
    assert said == "Illegal header value b'Bearer hf_abc\\x1bdef012345'"
    assert redact(said, [secret]) == "Illegal header value b'Bearer ***'"
    assert "def012345" not in redact(repr(secret.encode()), [secret])


@pytest.mark.parametrize("around", ["\r", "\n", "\r\n", " "], ids=["cr", "lf", "crlf", "space"])
def test_versions_reads_a_private_repo_with_an_hf_token_ending_in_a_line_break_and_never_prints_it(hub, around):
    """``HF_TOKEN`` from a CRLF ``.env`` file: httpx refused the header ``Bearer hf_...\\r`` and the error quoted it,
    escaped, past the redaction of the token itself; the token is stripped as it is read now (as the Label Studio
    key), so the private repo reads."""
    repo_id = sample_repos.hub_repo_with(hub, f"labelhub/crlf-token-{time.monotonic_ns() % 10**9}", {"a.txt": b"a"})
    proc = invoke_labelhub("versions", "--repo", repo_id, env={"HF_TOKEN": HUB_TOKEN + around})
    assert proc.returncode == 0, proc.stderr
    assert "no versions of the series 'annotations'" in proc.stdout, proc.stdout  # read with the token: private
    assert HUB_TOKEN[3:] not in proc.stdout + proc.stderr


def test_a_hub_token_with_a_line_break_inside_is_one_line_never_the_token(hub):
    """Stripping leaves a line break inside: httpx refuses the header, said as such without its text."""
    from labelhub.errors import HubUnreachable
    from labelhub.repos.hub import HubRepo

    repo_id = sample_repos.hub_repo_with(hub, f"labelhub/split-token-{time.monotonic_ns() % 10**9}", {"a.txt": b"a"})
    broken = HUB_TOKEN[:12] + "\n" + HUB_TOKEN[12:]
    with pytest.raises(HubUnreachable) as err:
        HubRepo(repo_id, token=broken).resolve("main")
    said = str(err.value)
    assert "not valid HTTP" in said and "HF_TOKEN" in said, said
    assert HUB_TOKEN[:12] not in said and HUB_TOKEN[12:] not in said, said


def test_the_backend_settings_strip_hf_token():
    from labelhub.backend.settings import Settings

    assert Settings.from_env({"HF_TOKEN": "hf_abc123def456\r\n"}).hf_token == "hf_abc123def456"


# ---- a URL password with an unencoded / ? # -----------------------------------------------------------------------

@given(st.text(st.sampled_from("abcXYZ019:/?#@%!$&'()*+,;=~._-"), max_size=20),
       st.sampled_from(["", "/api/projects", "/x?y=1", "/a@b"]))
@settings(max_examples=300, deadline=None)
def test_a_url_password_with_any_character_but_whitespace_never_shows(tail, path):
    password = "Pw" + tail
    url = f"http://me:{password}@ls.example:8080{path}"
    assert password not in without_userinfo(url)
    assert password not in urls_without_userinfo(f"cannot reach {url}: refused")
    assert password not in urls_without_userinfo(f"cannot reach {url!r} (for admin@example.org)")


def test_a_url_whose_at_sign_is_in_its_path_query_or_fragment_is_kept_unless_a_colon_comes_before_it():
    """No ``:`` before the last ``@``: no password can be there, the URL is kept whole. With one (a port), what comes
    before the ``@`` goes, as a password with a ``/`` would: too much gone rather than a password shown."""
    for kept in ("http://host/path?x=a@b", "http://host/p@x", "http://host#a@b", "hf://datasets/o/n@v1/a.png"):
        assert without_userinfo(kept) == kept and urls_without_userinfo(f"see {kept} (a@b)") == f"see {kept} (a@b)"
    assert without_userinfo("http://u:S3cretPw#x@127.0.0.1:1") == "http://127.0.0.1:1"
    assert without_userinfo("http://host:8080/p?x=a@b") == "http://b"
    assert urls_without_userinfo("GET http://u:p@h:1/x failed; ask a@b") == "GET http://h:1/x failed; ask a@b"


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_label_studio_url_whose_password_holds_a_reserved_character_is_refused_without_it(password):
    from labelhub.backend.settings import Settings

    with pytest.raises(ValueError) as err:
        Settings.from_env({"LABEL_STUDIO_URL": f"http://u:{password}@127.0.0.1:1"})
    said = str(err.value)
    assert said == ("LABEL_STUDIO_URL='http://127.0.0.1:1' is not an http(s) URL: its user:password holds a /, ? or # "
                    "(not shown): write them %2F, %3F and %23 (pa#ss as pa%23ss)")
    assert redact(said, []) == said  # printed as it is


@pytest.mark.parametrize("url, why", [
    ("http://u:S3cretPw@127.0.0.1:notaport", "its port is no number, or its user:password holds a /, ? or #"),
    ("http://u:S3cretPw#x@127.0.0.1:1", "its port is no number, or its user:password holds a /, ? or #"),
    ("http://127.0.0.1:notaport", "Invalid port: 'notaport'"),
], ids=["port", "password", "no-password"])
def test_sync_with_a_label_studio_url_httpx_cannot_read_is_one_line_never_the_password(tmp_path, url, why):
    """httpx's ``InvalidURL`` is no ``httpx.HTTPError``: it went past every handler, a traceback whose last line
    quoted the password as the port httpx read."""
    repo = sample_repos.local_repo_with(tmp_path / "repo", {"a.txt": b"a"})
    proc = invoke_labelhub("sync", "--repo", str(repo), "--project", "1", "--once", "--state",
                           str(tmp_path / "s.sqlite3"), "--label-studio-url", url,
                           env={"LABEL_STUDIO_API_KEY": "k" * 20})
    shown = without_userinfo(url)
    assert_one_line(proc, 1, f"cannot reach Label Studio at {shown} (--label-studio-url, LABEL_STUDIO_URL): "
                             f"InvalidURL: {why}")
    assert "S3cretPw" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize("command", [["versions"], ["sync", "--project", "1", "--once", "--label-studio-api-key",
                                                    "k" * 20]], ids=["versions", "sync"])
def test_an_hf_endpoint_whose_password_holds_a_reserved_character_is_one_line_before_huggingface_hub(command,
                                                                                                    password):
    """huggingface_hub parses ``HF_ENDPOINT`` as it is imported (``_HUB_ORIGINS``): a password with a ``/``, ``?`` or
    ``#`` was read as the port, and the traceback's last line showed it. A subprocess: this one has huggingface_hub
    imported already."""
    endpoint = f"http://u:{password}@127.0.0.1:{HUB_PORT}"
    proc = run_labelhub(*command, "--repo", "labelhub/any", env={"HF_ENDPOINT": endpoint})
    assert_one_line(proc, 1, f"HF_ENDPOINT='http://127.0.0.1:{HUB_PORT}' is not an http(s) URL: its user:password "
                             "holds a /, ? or # (not shown)")
    assert "S3cretPw" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("command", [["backend", "--port", "1"], ["worker"], ["predict", "--project", "1"]],
                         ids=["backend", "worker", "predict"])
def test_the_backends_commands_say_such_an_hf_endpoint_in_one_line_too(command, tmp_path):
    """They import :mod:`labelhub.repos` on their way (its refusal was a traceback, without the password):
    :class:`labelhub.cli.LazyGroup` makes a ``ConfigurationError`` that reaches it one line."""
    proc = run_labelhub(*command, env={"HF_ENDPOINT": "http://u:S3cretPw#x@127.0.0.1:1", "MODEL_DIR": str(tmp_path),
                                       "LABEL_STUDIO_URL": "http://127.0.0.1:1", "LABEL_STUDIO_API_KEY": "k" * 20,
                                       "LABELHUB_REDIS_URL": "redis://127.0.0.1:1"})
    assert_one_line(proc, 1, "HF_ENDPOINT='http://127.0.0.1:1' is not an http(s) URL: its user:password holds")
    assert "S3cretPw" not in proc.stdout + proc.stderr


def test_an_hf_endpoint_flag_whose_password_holds_a_reserved_character_is_refused_naming_the_flag():
    proc = invoke_labelhub("versions", "--repo", "labelhub/any", "--hf-endpoint", "http://u:S3cretPw#x@127.0.0.1:1")
    assert_one_line(proc, 1, "--hf-endpoint='http://127.0.0.1:1' is not an http(s) URL")
    assert "S3cretPw" not in proc.stdout + proc.stderr


def test_importing_the_repos_with_such_an_hf_endpoint_is_a_configuration_error_without_the_password():
    """Any other way in (``labelhub demo`` imports :mod:`labelhub.repos` with its module): the package checks
    ``HF_ENDPOINT`` before it imports huggingface_hub."""
    proc = subprocess.run([sys.executable, "-c", "import labelhub.repos"], cwd=ROOT, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "HF_ENDPOINT": "http://u:S3cretPw?x@127.0.0.1:1"}, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1].startswith("labelhub.errors.ConfigurationError: HF_ENDPOINT="), proc.stderr
    assert "S3cretPw" not in proc.stderr


def test_check_http_url_still_says_a_port_that_is_no_number_with_a_password_in_the_url():
    with pytest.raises(ValueError) as err:
        check_http_url("HF_ENDPOINT", "http://u:S3cretPw@127.0.0.1:notaport")
    assert str(err.value) == ("HF_ENDPOINT='http://127.0.0.1:notaport' is not an http(s) URL: its port must be a "
                              "number from 1 to 65535, e.g. http://localhost:8080")


# ---- the Redis URL's help text --------------------------------------------------------------------------------------

def test_the_redis_url_help_text_reads_the_same_once_redacted():
    """``redis://[:password@]host:port/db`` became ``redis://]host:port/db``: the redaction drops a URL's
    ``user:password@``, and took ``[:password@`` for one."""
    from labelhub.backend.redis_state import connect
    from labelhub.errors import ConfigurationError

    url = "redis://:S3cretPw@127.0.0.1:notaport/0"
    with pytest.raises(ConfigurationError) as err:
        connect(url)
    said = str(err.value)
    assert redact(said, [url]) == said and "redis://host:port/db, with :password@ or user:password@" in said, said
    assert "S3cretPw" not in said
