"""Tasks are made only with file URLs that can load: without ``LABELHUB_SECRET``, ``labelhub sync`` and
``labelhub import-labels --repo`` refuse a local repository (the backend refuses unsigned URLs) and a private Hub
repo under ``--file-urls auto`` (browsers have no Hub token), in one line before any task, instead of making tasks
whose images never load (Label Studio keeps a task's URL as it was imported).

End to end with the real Label Studio and the Hub test server; the policy's lines are also checked pure.
"""
from __future__ import annotations

import time

import pytest

from labelhub.errors import ConfigurationError
from labelhub.file_urls import REFUSED, FileURLs, log_file_urls
from tests import sample_repos
from tests.conftest import HUB_TOKEN, run_labelhub
from tests.in_process import invoke_labelhub

SECRET = "labelhub-test-secret-0123456789"
CONFIG = ('<View><Image name="image" value="$image"/><Choices name="kind" toName="image">'
          '<Choice value="a"/><Choice value="b"/></Choices></View>')
N = 5


# ---- the policy (pure) ---------------------------------------------------------------------------

def test_refusal_names_what_to_set_and_only_when_no_url_can_load():
    import logging

    bare = FileURLs()
    local = bare.refusal("/srv/shelf", local=True, private=True)
    assert local.startswith(REFUSED + "/srv/shelf")
    assert all(word in local for word in ("LABELHUB_SECRET", "LABELHUB_FILE_REPOS", "LABELHUB_PUBLIC_URL",
                                          "http://127.0.0.1:9090", "the same in the backend"))
    private = bare.refusal("me/pics", local=False, private=True)
    assert private.startswith(REFUSED + "me/pics") and "--file-urls resolve" in private
    assert bare.refusal("me/pics", local=False, private=False) is None  # public: resolve URLs load
    assert bare.refusal("me/pics", local=False, private=None) is None  # not known yet
    assert FileURLs(mode="resolve").refusal("me/pics", local=False, private=True) is None  # asked for explicitly
    assert FileURLs(mode="proxy").refusal("me/pics", local=False, private=False).startswith(REFUSED)
    signed = FileURLs(secret=SECRET)
    assert signed.refusal("/srv/shelf", local=True, private=True) is None
    assert signed.refusal("me/pics", local=False, private=True) is None
    assert bare.describe("/srv/shelf", local=True, private=True) == local
    with pytest.raises(ConfigurationError, match="no task was made"):
        log_file_urls(local, logging.getLogger("test"))
    assert "WARNING" in FileURLs(mode="resolve").describe("me/pics", local=False, private=True)


# ---- end to end ----------------------------------------------------------------------------------

@pytest.fixture
def project(make_project):
    return make_project("url policy", CONFIG)


def _env(label_studio, secret):
    return {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.personal_token,
            "HF_TOKEN": HUB_TOKEN, "LABELHUB_SECRET": secret}


def _sync(label_studio, repo_arg, project, tmp_path, secret, *extra):
    return invoke_labelhub("sync", "--repo", repo_arg, "--project", str(project.id), "--state",
                           str(tmp_path / "state.sqlite3"), "--once", "--no-export", *extra,
                           env=_env(label_studio, secret))


def _urls(label_studio, project_id) -> list[str]:
    tasks = label_studio.client().tasks.list(project=project_id, page_size=1000, fields="task_only")
    return [t.data["image"] for t in tasks]


def _refused_in_one_line(proc, repo_arg):
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(f"Error: {REFUSED}"), proc.stderr
    assert repo_arg in errors[0] and "LABELHUB_SECRET" in errors[0] and "LABELHUB_FILE_REPOS" in errors[0]
    assert "Traceback" not in proc.stderr
    return errors[0]


def test_local_repo_without_secret_is_refused_before_any_task_then_synced_signed(label_studio, project, tmp_path):
    # found by a newcomer: the README's first local example made tasks whose images never load, for good
    repo = sample_repos.local_repo_with(tmp_path / "my-dataset", sample_repos.image_files(0, N))
    refused = _sync(label_studio, str(repo), project, tmp_path, "")
    _refused_in_one_line(refused, str(repo.resolve()))
    assert _urls(label_studio, project.id) == []
    done = _sync(label_studio, str(repo), project, tmp_path, SECRET)
    assert done.returncode == 0, done.stderr
    urls = _urls(label_studio, project.id)
    assert len(urls) == N and all("/files/my-dataset/" in url and "sig=" in url for url in urls)


def test_import_labels_on_a_local_repo_without_secret_is_refused_before_any_task(label_studio, project, tmp_path):
    repo = sample_repos.local_repo_with(tmp_path / "shelf", sample_repos.image_files(0, N))
    labels = tmp_path / "labels.csv"
    labels.write_text("url,pos_concepts\n" + "".join(f"{p},a\n" for p in sample_repos.image_files(0, N)))
    proc = run_labelhub("import-labels", str(labels), "--project", str(project.id), "--repo", str(repo), "--state",
                        str(tmp_path / "state.sqlite3"), env=_env(label_studio, ""))
    _refused_in_one_line(proc, str(repo.resolve()))
    assert _urls(label_studio, project.id) == []


def test_private_hub_repo_without_secret_is_refused_unless_resolve_is_asked_for(label_studio, hub, project,
                                                                                tmp_path):
    repo_id = f"labelhub/policy-{time.monotonic_ns() % 10**9}"
    sample_repos.hub_repo_with(hub, repo_id, sample_repos.image_files(0, N), private=True)
    refused = _sync(label_studio, repo_id, project, tmp_path, "")
    assert "--file-urls resolve" in _refused_in_one_line(refused, repo_id)
    assert _urls(label_studio, project.id) == []
    asked = _sync(label_studio, repo_id, project, tmp_path, "", "--file-urls", "resolve")
    assert asked.returncode == 0, asked.stderr
    assert "WARNING" in asked.stderr and "cannot load a private repo's resolve URLs" in asked.stderr
    urls = _urls(label_studio, project.id)
    assert len(urls) == N and all(f"/datasets/{repo_id}/resolve/" in url for url in urls)


def test_import_labels_on_a_private_hub_repo_without_secret_is_refused_before_any_task(label_studio, hub, project,
                                                                                        tmp_path):
    repo_id = f"labelhub/policy-import-{time.monotonic_ns() % 10**9}"
    sample_repos.hub_repo_with(hub, repo_id, sample_repos.image_files(0, N), private=True)
    labels = tmp_path / "labels.csv"
    labels.write_text("url,pos_concepts\n" + "".join(f"{p},a\n" for p in sample_repos.image_files(0, N)))
    proc = run_labelhub("import-labels", str(labels), "--project", str(project.id), "--repo", repo_id, "--state",
                        str(tmp_path / "state.sqlite3"), env=_env(label_studio, ""))
    _refused_in_one_line(proc, repo_id)
    assert _urls(label_studio, project.id) == []


# ---- --revision on a local repo, and --help ------------------------------------------------------

def test_a_revision_a_local_repo_lacks_names_its_branches(tmp_path):
    # found by a newcomer: docker-compose's LABELHUB_REVISION=main on a repo whose branch is master
    repo = tmp_path / "data"
    repo.mkdir()
    sample_repos.git(repo, "init", "-q", "-b", "master")
    sample_repos.commit_local(repo, sample_repos.image_files(0, 1))
    for branch in ("dev", "labels"):
        sample_repos.git(repo, "branch", branch)
    proc = invoke_labelhub("sync", "--repo", str(repo), "--project", "1", "--once", "--revision", "main",
                           "--label-studio-api-key", "k", env={"LABELHUB_SECRET": SECRET})
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr == (f"Error: revision 'main' not found in {repo}: its branches: master (checked out), dev, "
                           "labels (pass one as --revision or LABELHUB_REVISION)\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    sample_repos.git(empty, "init", "-q", "-b", "main")
    proc = invoke_labelhub("sync", "--repo", str(empty), "--project", "1", "--once", "--label-studio-api-key", "k")
    assert proc.returncode == 1 and "not found in" in proc.stderr and "it has no branch yet" in proc.stderr, proc.stderr


def _help(*command: str) -> str:
    proc = invoke_labelhub(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    return " ".join(proc.stdout.split())


def test_help_says_each_thing_once_and_as_the_readme_does():
    for command in (["versions"], ["diff"], ["restore"], ["import-labels"], ["sync"]):
        text = _help(*command)
        writes = command == ["sync"]
        assert ("--hf-token TEXT A Hugging Face token: read access for a private repo" +
                ("; write access for the versions it writes (exports)." if writes else ". [env var: HF_TOKEN]")) in text
        assert "--hf-endpoint TEXT The Hub URL [default: https://huggingface.co]. [env var: HF_ENDPOINT]" in text
        for variable in ("HF_TOKEN", "HF_ENDPOINT", "LABEL_STUDIO_API_KEY", "LABELHUB_SECRET"):
            assert f"(env {variable}" not in text, (command, text)  # it is in click's own [env var: ...]
    for command in ("sync", "restore", "import-labels"):
        text = _help(command)
        assert "--log-level [DEBUG|INFO|WARNING|ERROR]" in text and "default: INFO]" in text
        assert "token or legacy token (the whitespace around it is dropped). [env var: LABEL_STUDIO_API_KEY; required]" \
            in text


# ---- tasks follow a change of the URL policy -----------------------------------------------------

def _cycle_cursor(state_path, project_id, change):
    """Edit the state's record of the project's last cycle (``change(dict)``), as an older LabelHub left it."""
    import json
    import sqlite3

    from labelhub.sync.files.importer import LAST_CYCLE

    with sqlite3.connect(state_path) as db:
        (value,), = db.execute("SELECT value FROM cursors WHERE project_id=? AND name=?", (project_id, LAST_CYCLE))
        last = json.loads(value)
        change(last)
        db.execute("UPDATE cursors SET value=? WHERE project_id=? AND name=?",
                   (json.dumps(last, sort_keys=True), project_id, LAST_CYCLE))


def test_tasks_urls_follow_a_moved_backend_a_rotated_secret_and_an_older_cycle_left_them_unsigned(
        label_studio, project, tmp_path):
    from labelhub.signing import parse_file_url, verify

    repo = sample_repos.local_repo_with(tmp_path / "shelf", sample_repos.image_files(0, N))
    state = tmp_path / "state.sqlite3"

    def sync(secret, public_url):
        proc = _sync(label_studio, str(repo), project, tmp_path, secret, "--public-url", public_url)
        assert proc.returncode == 0, proc.stderr
        return proc.stderr

    def urls():
        return sorted(_urls(label_studio, project.id))

    sync(SECRET, "http://old-host:9090")
    made = urls()
    assert len(made) == N and all(u.startswith("http://old-host:9090/files/shelf/") for u in made)
    again = sync(SECRET, "http://old-host:9090")
    assert "policy changed" not in again and urls() == made  # nothing changed: the short-circuit, no call

    moved = sync(SECRET, "http://new-host:9090")  # the backend moved host
    assert f"the file URL policy changed since the last cycle (form or host): {N} of {N} tasks' URLs rewritten " \
           "as http://new-host:9090/files/shelf/<sha>/<path>" in moved, moved
    assert urls() == [u.replace("old-host", "new-host") for u in made]  # the same files, commits and signatures

    rotated = SECRET + "-rotated"
    assert f"(secret): {N} of {N} tasks' URLs rewritten" in sync(rotated, "http://new-host:9090")
    for url in urls():
        ref = parse_file_url(url)
        verify(rotated, ref.key, ref.sha, ref.path, ref.expires, ref.sig)

    # a task left unsigned (by a LabelHub that made them without a secret) whose cycle recorded no policy
    client = label_studio.client()
    task = next(iter(client.tasks.list(project=project.id, page_size=1, fields="task_only")))
    client.tasks.update(str(task.id), data={**task.data, "image": task.data["image"].split("?")[0]})
    _cycle_cursor(state, project.id, lambda last: last["selection"].pop("file_urls"))
    upgraded = sync(rotated, "http://new-host:9090")
    assert f"(not recorded by the last cycle): 1 of {N} tasks' URLs rewritten" in upgraded, upgraded
    assert all("sig=" in url for url in urls())
