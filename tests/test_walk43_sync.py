"""Fixes from a newcomer's walkthrough of the sync: a ``LABEL_STUDIO_API_KEY`` pasted with whitespace (or with the
``Token `` prefix of its header), a password in ``HF_ENDPOINT``, a file selection that matches none of a commit's
files, and the cycle line naming the files it made tasks of.

Real parts: a real Label Studio (``tests/labelstudio.py``), the Hub test server through the real ``huggingface_hub``
client (``tests/hubserver``), ``labelhub`` run in-process (:func:`tests.in_process.invoke_labelhub`) on local git
repositories (``tests/sample_repos.py``).
"""
from __future__ import annotations

import logging
import socket

import pytest

from tests import sample_repos
from tests.conftest import HUB_PORT, HUB_TOKEN
from tests.in_process import invoke_labelhub
from tests.test_cli_errors import CONFIG, assert_one_line

#: A ``<Text>`` config: its tasks hold ``.txt`` files' texts.
TEXT_CONFIG = ('<View><Text name="text" value="$text"/><Choices name="kind" toName="text">'
               '<Choice value="A"/><Choice value="B"/></Choices></View>')


def _sync(repo, project_id: int, state, env: dict, *more: str):
    return invoke_labelhub("sync", "--repo", str(repo), "--project", str(project_id), "--state", str(state),
                           "--once", "--no-export", *more, env=env)


def _task_paths(label_studio, project_id: int) -> list[str]:
    return sorted(t.data["hf_path"] for t in label_studio.client().tasks.list(project=project_id, page_size=100))


# ---- LABEL_STUDIO_API_KEY with whitespace around it, or its header's prefix -----------------------------------------

@pytest.mark.parametrize("around", [" ", "\n"], ids=["space", "newline"])
def test_sync_takes_a_personal_access_token_pasted_with_whitespace_around_it(label_studio, make_project, tmp_path,
                                                                           around):
    """``LABEL_STUDIO_API_KEY="$PAT "`` was sent as a legacy ``Token`` (no JWT with its space) in a header httpx
    refuses, said as "cannot reach Label Studio"; stripped, it is the token."""
    project = make_project("key with a space", CONFIG)
    repo = sample_repos.local_repo_with(tmp_path / "repo", sample_repos.image_files(0, 2))
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.personal_token + around}
    proc = _sync(repo, project.id, tmp_path / "s.sqlite3", env)
    assert proc.returncode == 0, proc.stderr
    assert _task_paths(label_studio, project.id) == sorted(sample_repos.image_files(0, 2))


@pytest.mark.parametrize("prefix", ["Token ", "Bearer "])
def test_sync_with_the_header_prefix_pasted_before_the_key_says_to_drop_it_never_the_key(label_studio, make_project,
                                                                                        tmp_path, prefix):
    project = make_project("key with its prefix", CONFIG)
    repo = sample_repos.local_repo_with(tmp_path / "repo", sample_repos.image_files(0, 1))
    key = prefix + label_studio.api_key
    proc = _sync(repo, project.id, tmp_path / "s.sqlite3",
                 {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": key + " "})
    line = assert_one_line(proc, 1, f"LABEL_STUDIO_API_KEY (for Label Studio at {label_studio.url}) begins with "
                                    f"'{prefix.strip()} '", f"drop the '{prefix.strip()} ' prefix")
    assert "cannot reach" not in line and "LocalProtocolError" not in line, line
    assert label_studio.api_key not in proc.stderr + proc.stdout
    assert _task_paths(label_studio, project.id) == []


def test_sync_with_a_key_holding_a_line_break_inside_is_one_line_never_the_key(label_studio, make_project, tmp_path):
    project = make_project("key with a newline", CONFIG)
    repo = sample_repos.local_repo_with(tmp_path / "repo", sample_repos.image_files(0, 1))
    key = label_studio.api_key[:20] + "\n" + label_studio.api_key[20:]
    proc = _sync(repo, project.id, tmp_path / "s.sqlite3",
                 {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": key})
    assert_one_line(proc, 1, "LABEL_STUDIO_API_KEY", "holds a space or a line break inside")
    assert label_studio.api_key[:20] not in proc.stderr + proc.stdout


def test_the_backend_key_check_strips_the_key_and_says_a_prefix_plainly(label_studio):
    """The auto-predict's and the worker's key check (``check_key``): a key with a trailing newline passes; one with
    the ``Token `` prefix is a refused key, said with what to fix, not "no answer from Label Studio"."""
    from labelhub.backend.auto_predict import check_key

    assert check_key(label_studio.url, label_studio.personal_token + "\n") is None
    assert check_key(label_studio.url, " " + label_studio.api_key + " ", "worker") is None
    said = check_key(label_studio.url, "Token " + label_studio.api_key, "worker")
    assert said is not None and "drop the 'Token ' prefix" in said and "no answer" not in said, said
    assert label_studio.api_key not in said


def test_the_backend_settings_strip_the_key():
    from labelhub.backend.settings import Settings

    assert Settings.from_env({"LABEL_STUDIO_API_KEY": " abc123def456\n"}).label_studio_api_key == "abc123def456"
    assert Settings.from_env({}, label_studio_api_key="abc123def456 ").label_studio_api_key == "abc123def456"


def test_predict_takes_a_key_with_a_trailing_space(label_studio, make_project, tmp_path):
    """``labelhub predict --api-key "$PAT "`` reaches the project (an empty project: nothing to predict)."""
    project = make_project("predict with a spaced key", CONFIG)
    proc = invoke_labelhub("predict", "--project", str(project.id), "--api-key", label_studio.personal_token + " ",
                           "--model-dir", str(tmp_path), "--label-studio-url", label_studio.url,
                           env={"TQDM_DISABLE": "1"})
    assert "LABEL_STUDIO_API_KEY" not in proc.stderr and "LocalProtocolError" not in proc.stderr, proc.stderr


# ---- a password in HF_ENDPOINT ------------------------------------------------------------------------------------

def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_versions_with_a_password_in_hf_endpoint_never_prints_it_when_the_hub_is_down():
    port = _closed_port()
    proc = invoke_labelhub("versions", "--repo", "user/fmnist",
                           env={"HF_ENDPOINT": f"http://u:S3cretPw@127.0.0.1:{port}"})
    assert_one_line(proc, 1, f"cannot reach the Hub at http://127.0.0.1:{port}")
    assert "S3cretPw" not in proc.stderr + proc.stdout and "u:" not in proc.stderr


def test_versions_with_a_password_in_hf_endpoint_never_prints_it_when_the_hub_answers(hub):
    proc = invoke_labelhub("versions", "--repo", "labelhub/no-such-repo-walk43",
                           env={"HF_ENDPOINT": f"http://u:S3cretPw@127.0.0.1:{HUB_PORT}"})
    assert_one_line(proc, 1, f"the Hub at http://127.0.0.1:{HUB_PORT} ")
    assert "S3cretPw" not in proc.stderr + proc.stdout


def test_a_401_to_the_password_in_hf_endpoint_names_it_not_hf_token(hub):
    """A ``user:password@`` in ``HF_ENDPOINT`` goes as Basic authentication in place of the token (huggingface_hub's
    HTTP client does so for any URL with one), so even a valid HF_TOKEN never reaches the Hub: the 401 said "refused
    HF_TOKEN" (a fixer's note). It names the user and password of HF_ENDPOINT now, without their values."""
    from labelhub.errors import HubError
    from labelhub.repos.hub import HubRepo

    repo_id = sample_repos.hub_repo_with(hub, "labelhub/userinfo-401", sample_repos.image_files(0, 1), private=False)
    for token in (HUB_TOKEN, None):
        repo = HubRepo(repo_id, token=token, endpoint=f"http://u:S3cretPw@127.0.0.1:{HUB_PORT}")
        with pytest.raises(HubError) as err:
            repo.resolve("main")
        said = str(err.value)
        assert err.value.status == 401 and "to the user and password in HF_ENDPOINT" in said, said
        assert "HF_TOKEN is not set" not in said and "refused HF_TOKEN" not in said, said
        assert "S3cretPw" not in said and "u:" not in said and HUB_TOKEN not in said, said


def test_a_public_hub_files_task_url_leaves_out_the_password_of_hf_endpoint():
    """The task's URL is built from ``HF_ENDPOINT``: its ``user:password@`` went into every task's data in Label Studio
    (a fixer's note)."""
    from labelhub.repos.hub import HubRepo

    url = HubRepo("user/fmnist", endpoint="http://u:S3cretPw@127.0.0.1:1").file_url("a" * 40, "train/0.png")
    assert url == f"http://127.0.0.1:1/datasets/user/fmnist/resolve/{'a' * 40}/train/0.png"


def test_log_lines_lose_a_urls_password_with_no_secret_given():
    """A library's log line quoting ``HF_ENDPOINT`` (or ``LABEL_STUDIO_URL``) with its ``user:password@``: the root
    handler's filter drops it even when the command was given no secret (no ``HF_TOKEN``)."""
    from labelhub.redaction import RedactSecrets

    record = logging.LogRecord("huggingface_hub", logging.WARNING, __file__, 1, "GET %s failed",
                               ("http://u:S3cretPw@127.0.0.1:1/api/datasets/x",), None)
    assert RedactSecrets([]).filter(record)
    assert record.getMessage() == "GET http://127.0.0.1:1/api/datasets/x failed"


# ---- a selection that matches none of the commit's files ----------------------------------------------------------

def _warnings(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if " WARNING " in line]


def _texts(folder: str, n: int) -> dict[str, bytes]:
    return {f"{folder}/doc-{i:03d}.txt": f"text {i}\n".encode() for i in range(n)}


def test_a_repo_of_texts_into_an_image_project_warns_once_per_commit_and_exits_0(label_studio, make_project, tmp_path):
    """The walkthrough's ``labelhub sync --repo ./texts`` into an ``<Image>`` project: 0 tasks, exit 0 and nothing
    said at WARNING. Now one warning says the commit's files and that none is of a type the tag reads; the next run
    of the same commit says nothing again, a new commit that still matches none says it again."""
    project = make_project("texts into an image project", CONFIG)
    repo = sample_repos.local_repo_with(tmp_path / "texts", _texts("docs", 12))
    env, state = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.api_key}, tmp_path / "s"
    first = _sync(repo, project.id, state, env)
    assert first.returncode == 0, first.stderr
    said = _warnings(first)
    assert len(said) == 1, first.stderr
    assert ("the selection matches none of the commit's 12 files (.txt: 12), so no task is made: none is of a file "
            "type the <Image> tag reads (*.jpg, *.jpeg, *.png,") in said[0], said[0]
    again = _sync(repo, project.id, state, env)
    assert again.returncode == 0 and _warnings(again) == [], again.stderr
    sample_repos.commit_local(repo, _texts("more", 3), message="more texts")
    later = _sync(repo, project.id, state, env)
    assert len(_warnings(later)) == 1 and "of the commit's 15 files (.txt: 15)" in _warnings(later)[0], later.stderr
    assert _task_paths(label_studio, project.id) == []


def _sync_texts_warned(label_studio, make_project, tmp_path, title: str, files: int, *flags: str):
    """A project of ``files`` texts in ``docs/`` synced once with ``flags``: ``(project, repo, env, its warnings)``;
    the sync exits 0."""
    project = make_project(title, TEXT_CONFIG)
    repo = sample_repos.local_repo_with(tmp_path / "texts", _texts("docs", files))
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.api_key}
    proc = _sync(repo, project.id, tmp_path / "s", env, *flags)
    assert proc.returncode == 0, proc.stderr
    return project, repo, env, _warnings(proc)


def test_an_include_glob_that_matches_nothing_is_named_in_the_warning(label_studio, make_project, tmp_path):
    project, repo, env, said = _sync_texts_warned(label_studio, make_project, tmp_path, "include typo", 4,
                                                  "--include", "doc/*.txt")
    assert len(said) == 1 and "matches none of the commit's 4 files (.txt: 4), so no task is made: none matches " \
                              "--include 'doc/*.txt'" in said[0], said
    fixed = _sync(repo, project.id, tmp_path / "s", env, "--include", "docs/*.txt")
    assert fixed.returncode == 0 and _warnings(fixed) == [], fixed.stderr
    assert _task_paths(label_studio, project.id) == sorted(_texts("docs", 4))


def test_an_exclude_that_removes_every_selected_file_is_named_in_the_warning(label_studio, make_project, tmp_path):
    *_, said = _sync_texts_warned(label_studio, make_project, tmp_path, "exclude all", 3, "--exclude", "docs/*")
    assert len(said) == 1 and "the 3 that --include selects all match --exclude 'docs/*'" in said[0], said


# ---- the cycle's line names the files it made tasks of ------------------------------------------------------------

def test_the_cycle_line_names_up_to_5_created_files(label_studio, make_project, tmp_path):
    project = make_project("created names", CONFIG)
    files = sample_repos.image_files(0, 7)
    repo = sample_repos.local_repo_with(tmp_path / "repo", files)
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.api_key}
    proc = _sync(repo, project.id, tmp_path / "s", env)
    assert proc.returncode == 0, proc.stderr
    line = next(line for line in proc.stderr.splitlines() if "tasks created" in line)
    paths = sorted(files)
    assert line.endswith(f"7 files, 7 tasks created, 0 recovered, 0 changed, 0 moved, 0 removed, 0 restored; "
                         f"created: {', '.join(paths[:5])}, ... (+2)"), line


def test_diff_of_a_version_number_suggests_its_tag(tmp_path):
    """``labelhub diff ... v1 v2`` said only ``'v1' is not a tag`` (a newcomer's walkthrough)."""
    path = sample_repos.local_repo_with(tmp_path / "repo", sample_repos.image_files(0, 2))
    sample_repos.git(path, "tag", "annotations-v1")
    sample_repos.git(path, "tag", "annotations-v2")
    shown = invoke_labelhub("diff", "--repo", str(path), "v1", "annotations-v2")
    assert shown.returncode == 1
    assert "'v1' is not a tag of" in shown.stderr and "did you mean 'annotations-v1'?" in shown.stderr, shown.stderr
    typo = invoke_labelhub("diff", "--repo", str(path), "annotations-v1", "anotations-v2")
    assert "did you mean 'annotations-v2'?" in typo.stderr, typo.stderr


def test_a_hub_revision_that_is_no_branch_names_the_repos_branches(hub):
    """A deleted or misspelt branch of a Hub repo said only ``revision 'mian' not found in dataset ...`` (a local
    repo's names its branches): the audit of rewritten histories."""
    import time

    from labelhub.errors import RevisionNotFound
    from labelhub.repos.hub import HubRepo
    from tests.conftest import HUB_TOKEN

    repo_id = sample_repos.hub_repo_with(hub, f"labelhub/branches-{time.monotonic_ns() % 10**9}",
                                         sample_repos.image_files(0, 1))
    repo = HubRepo(repo_id, token=HUB_TOKEN)
    repo.api.create_branch(repo_id, branch="dev", repo_type="dataset")
    with pytest.raises(RevisionNotFound) as raised:
        repo.head_and_tags("mian")
    assert str(raised.value).endswith(
        "its branches: main, dev (pass one as --revision or LABELHUB_REVISION)"), raised.value
