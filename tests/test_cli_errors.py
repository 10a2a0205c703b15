"""How the sync's commands fail: one line naming the option (or its environment variable) and the fix, exit 2 for
a usage error and 1 for a runtime one, no traceback, no secret; and the warnings a person must see at
``--log-level WARNING``. Real parts: the ``labelhub`` CLI in a subprocess, a real Label Studio, local git repos and
the Hub test server."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests import sample_repos
from tests.conftest import FILE_SECRET, ROOT, run_labelhub
from tests.in_process import invoke_labelhub
from tests.labelstudio import free_port
from tests.test_sync_files_to_tasks import env_for

CONFIG = ('<View><Image name="image" value="$image"/><Choices name="kind" toName="image">'
          '<Choice value="Bag"/><Choice value="Coat"/></Choices></View>')
N = 6


def assert_one_line(proc: subprocess.CompletedProcess, code: int, *parts: str) -> str:
    """``proc`` exited ``code`` with an ``Error:`` line holding ``parts``, no traceback; returns that line."""
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, proc.stderr
    for part in parts:
        assert part in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def repo(tmp_path):
    """A local git repository of N real images, with the inventory CSV (keys: the volume, part -3)."""
    files = {**sample_repos.image_files(0, N), sample_repos.INVENTORY: sample_repos.inventory_csv(N)}
    return sample_repos.local_repo_with(tmp_path / "repo", files)


@pytest.fixture
def project(make_project):
    return make_project("cli errors", CONFIG)


@pytest.fixture
def env(label_studio):
    return env_for(label_studio)  # Label Studio's URL and personal token, the Hub token


# ---- --repo ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["./nope", "~/labelhub-no-such-dir", "owner/na..me"])
@pytest.mark.parametrize("command", [["versions"], ["diff", "annotations-v1", "annotations-v2"],
                                     ["sync", "--project", "1", "--once", "--label-studio-api-key", "k"],
                                     ["restore", "--tag", "annotations-v1", "--project", "1",
                                      "--label-studio-api-key", "k"]])
def test_a_repo_that_is_no_directory_nor_a_repo_id_is_one_line_naming_repo(command, value):
    proc = invoke_labelhub(*command, "--repo", value)  # refused before any work: in-process (tests/in_process.py)
    assert_one_line(proc, 1, f"--repo {value!r}: no such directory (a local git repository), and not a Hub "
                             "repo_id owner/name")


# ---- the webhook receiver ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("port", ["70000", "0", "-1"])
def test_webhook_port_out_of_range_is_a_usage_error(port):
    proc = invoke_labelhub("sync", "--repo", "owner/name", "--project", "1", "--label-studio-api-key", "k",
                           "--webhook-port", port)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "'--webhook-port'" in proc.stderr and "1<=x<=65535" in proc.stderr


def test_webhook_port_in_use_or_a_host_not_of_this_machine_is_one_line(label_studio, project, repo, env, tmp_path):
    args = ["sync", "--repo", str(repo), "--project", str(project.id), "--state", str(tmp_path / "s.sqlite3"),
            "--webhook-url", "http://127.0.0.1:1/webhook", "--interval", "3600"]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_labelhub(*args, "--webhook-port", str(port), env=env, timeout=120)
    line = assert_one_line(proc, 1, f"--webhook-port {port} (LABELHUB_WEBHOOK_PORT)", "in use")
    assert "Either identify and stop that program" not in proc.stderr  # Werkzeug's own lines
    proc = run_labelhub(*args, "--webhook-host", "999.1.1.1", "--webhook-port", str(free_port()), env=env,
                        timeout=120)
    assert_one_line(proc, 1, "--webhook-host '999.1.1.1' (LABELHUB_WEBHOOK_HOST)")
    assert label_studio.personal_token not in line + proc.stderr


# ---- --state -----------------------------------------------------------------------------------------------------

def test_state_errors_name_state_and_an_uncreatable_lock_is_not_taken_for_a_held_one(label_studio, project, repo,
                                                                                       env, tmp_path):
    def sync(state):
        return run_labelhub("sync", "--repo", str(repo), "--project", str(project.id), "--once", "--state",
                            str(state), env=env)

    assert_one_line(sync("/proc/s.sqlite3"), 1, f"--state /proc/s.sqlite3: cannot create "
                                                f"/proc/s.sqlite3.{project.id}.lock (No such file or directory")
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    assert_one_line(sync(a_file / "s.sqlite3"), 1, f"--state {a_file / 's.sqlite3'}: cannot create",
                    f"(File exists: {a_file})")
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"these bytes are no SQLite database, whatever their name says" * 20)
    assert_one_line(sync(garbage), 1, f"--state {garbage}: not a LabelHub state file: move it or choose another "
                                      "--state")


# ---- warnings a person must see ----------------------------------------------------------------------------------

def test_private_repo_resolve_url_warning_shows_at_log_level_warning(label_studio, project, hub, env, tmp_path):
    repo_id = sample_repos.hub_repo_with(hub, f"labelhub/private-{time.monotonic_ns() % 10**9}",
                                         sample_repos.image_files(0, 2))
    proc = run_labelhub("sync", "--repo", repo_id, "--project", str(project.id), "--once", "--state",
                        str(tmp_path / "s.sqlite3"), "--log-level", "WARNING", "--file-urls", "resolve",  # asked for:
                        env={**env, "LABELHUB_SECRET": ""}, check=True)  # without it, refused (test_file_url_policy)
    assert "WARNING: annotators' browsers cannot load a private repo's resolve URLs" in proc.stderr


def test_a_metadata_join_that_matches_no_file_warns_once_naming_the_key_column(label_studio, project, repo, env,
                                                                                tmp_path):
    proc = run_labelhub("sync", "--repo", str(repo), "--project", str(project.id), "--once", "--state",
                        str(tmp_path / "s.sqlite3"), "--metadata", sample_repos.INVENTORY, "--metadata-columns",
                        "id,meta", "--metadata-key", "-2", "--log-level", "WARNING", env=env, check=True)
    warnings = [line for line in proc.stderr.splitlines() if "metadata CSV" in line]
    assert len(warnings) == 1, proc.stderr
    assert (f"metadata CSV {sample_repos.INVENTORY}: 0 of {N} files matched a key in its column 'id' (a file's key, "
            f"part -2 of its path: 'image' of '{sample_repos.image_path(0)}'; the CSV's keys: 'vol-000')") \
        in warnings[0]


def test_a_new_file_without_a_metadata_row_is_said_to_lack_its_row_not_blamed_on_the_key_settings(
        label_studio, project, repo, env, tmp_path):
    """The key settings match the repo's files; a commit adds a file of a volume the CSV has no row for: the warning
    says that file lacks its row (a walkthrough was told "0 of 1 files matched ... check --metadata-key")."""
    args = ("sync", "--repo", str(repo), "--project", str(project.id), "--once", "--state", str(tmp_path / "s.sqlite3"),
            "--metadata", sample_repos.INVENTORY, "--metadata-columns", "id,meta", "--metadata-key", "-3",
            "--log-level", "WARNING")
    first = run_labelhub(*args, env=env, check=True)
    assert "metadata CSV" not in first.stderr, first.stderr
    sample_repos.commit_local(repo, sample_repos.image_files(10, 11), message="a file of a new volume")
    proc = run_labelhub(*args, env=env, check=True)
    warnings = [line for line in proc.stderr.splitlines() if "metadata CSV" in line]
    assert len(warnings) == 1 and "--metadata-key" not in warnings[0], proc.stderr
    assert (f"metadata CSV {sample_repos.INVENTORY}: 1 of the 1 files imported or updated have no row in it (a file's "
            f"key, part -3 of its path: 'vol-001' of '{sample_repos.image_path(10)}', is not in its column 'id')") \
        in warnings[0]


def test_a_daemon_with_no_export_says_it_starts_no_webhook_receiver(label_studio, project, repo, env, tmp_path):
    """``--no-export`` with a ``--webhook-url`` (a compose file setting it for every service): one warning that no
    receiver runs, so neither webhooks nor /health are served (the compose healthcheck would wait for them)."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.guarded", "sync", "--repo", str(repo), "--project",
                             str(project.id), "--no-export", "--state", str(tmp_path / "s.sqlite3"), "--webhook-url",
                             "http://127.0.0.1:9/webhook", "--webhook-port", "9", "--log-level", "WARNING"], cwd=ROOT,
                            env={**os.environ, "LABELHUB_SECRET": FILE_SECRET, **env}, stderr=subprocess.PIPE,
                            text=True)
    try:
        line = next(iter(proc.stderr.readline, ""))
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert "--no-export: no webhook receiver is started" in line and "port 9 serves neither" in line, line


def test_log_level_has_a_help_sentence_and_debug_quiets_faker_and_the_webhook_access_lines():
    for command in ("sync", "import-labels", "restore"):
        assert "How much the log" in invoke_labelhub(command, "--help", check=True).stdout
    levels = subprocess.run([sys.executable, "-c", "import logging; from labelhub.redaction import setup_logging; "
                             "setup_logging('DEBUG'); print(*(logging.getLogger(n).getEffectiveLevel() "
                             "for n in ('faker', 'werkzeug')))"],
                            capture_output=True, text=True, check=True, cwd=ROOT).stdout.split()
    assert levels == [str(20 + 10)] * 2  # logging.WARNING


# ---- Label Studio's URL and key ----------------------------------------------------------------------------------

def test_a_refused_key_says_which_tokens_work_and_a_url_password_is_never_printed(label_studio, project, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("url,pos_concepts\nhttps://example.test/a.png,Bag\n")
    proc = run_labelhub("import-labels", str(labels), "--project", str(project.id), "--state",
                        str(tmp_path / "s.sqlite3"),
                        env={"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": "wrong-key-0123456789"})
    assert_one_line(proc, 1, f"Label Studio at {label_studio.url} refused LABEL_STUDIO_API_KEY (401 Invalid token): "
                             "use a personal access token (Account & Settings → Personal Access Token) or a legacy "
                             "token with LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true")
    closed = f"127.0.0.1:{free_port()}"
    proc = run_labelhub("import-labels", str(labels), "--project", "1", "--state", str(tmp_path / "s.sqlite3"),
                        env={"LABEL_STUDIO_URL": f"http://someone:pass-word-1234@{closed}",
                             "LABEL_STUDIO_API_KEY": "k" * 20})
    assert_one_line(proc, 1, f"cannot reach Label Studio at http://{closed} (--label-studio-url, LABEL_STUDIO_URL)")
    assert "pass-word-1234" not in proc.stderr + proc.stdout


# ---- Ctrl-C ------------------------------------------------------------------------------------------------------

#: Starts ``python -m tests.guarded ARGS...`` with SIGINT at its default action, as a terminal starts a foreground
#: job: a shell that runs a command in the background without job control (``(pytest &)``, a CI runner's script)
#: starts it with SIGINT and SIGQUIT ignored, every process below inherits that through ``exec``, and Python, as
#: POSIX asks, keeps an ignored SIGINT ignored, so the Ctrl-C below never reached the import: each run of this test
#: under a pytest started that way saw the import go on to its end and exit 0, the child's ``SigIgn`` ``0x1001006``
#: (SIGINT, SIGQUIT, SIGPIPE, SIGXFSZ). Only this test sends a Ctrl-C that Python's default handler must take;
#: ``labelhub demo`` sets its own handlers.
AS_A_FOREGROUND_JOB = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                       "os.execv(sys.executable, [sys.executable, '-m', 'tests.guarded', *sys.argv[1:]])")


def test_ctrl_c_in_import_labels_says_running_it_again_continues(label_studio, project, env, tmp_path):
    rows = 400
    labels = tmp_path / "labels.csv"
    labels.write_text("url,pos_concepts\n" + "".join(f"https://example.test/{i}.png,Bag\n" for i in range(rows)))
    args = ["import-labels", str(labels), "--project", str(project.id), "--state", str(tmp_path / "s.sqlite3")]
    proc = subprocess.Popen([sys.executable, "-c", AS_A_FOREGROUND_JOB, *args, "--batch-size", "1"], cwd=ROOT,
                            env={**os.environ, **env}, stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        for line in proc.stderr:  # the file is parsed: the import calls begin
            if f"{rows} rows" in line:
                break
        time.sleep(1)
        running = proc.poll() is None
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert running, f"the import ended before the Ctrl-C (exit {proc.returncode}): {stderr[-2000:]}"
    assert_one_line(subprocess.CompletedProcess(args, proc.returncode, stdout, stderr), 1,
                    "interrupted: run the same command again to continue where it stopped")
    assert "Aborted!" not in stderr
    made = len(list(label_studio.client().tasks.list(project=project.id, page_size=1000, fields="task_only")))
    assert 0 < made < rows
    run_labelhub(*args, "--batch-size", "100", env=env, check=True)
    tasks = list(label_studio.client().tasks.list(project=project.id, page_size=1000, fields="task_only"))
    assert sorted(t.data["image"] for t in tasks) == sorted(f"https://example.test/{i}.png" for i in range(rows))
