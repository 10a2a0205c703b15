"""End to end, real Label Studio: ``labelhub import-labels`` and ``labelhub sync`` with a lost state file or with
state files of their own find each other's tasks instead of making second ones (the ledger's adoption cursor);
imported annotations are not ground truth unless asked; the summary counts the file's urls only; a public Hub
repo's file URLs are said as they are; a listing that keeps moving says why."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from labelhub.errors import LabelStudioError
from labelhub.sync.labelstudio.project import LabelStudioProject
from tests import sample_repos
from tests.conftest import HUB_TOKEN, ROOT, run_labelhub
from tests.in_process import invoke_labelhub
from tests.test_import_labels_to_tasks import CONFIG, HEADER, env, invoke_import_labels  # noqa: F401 (env: a fixture)

N = 6


@pytest.fixture(scope="module")
def repo_path(tmp_path_factory):
    """A local git repo with N real Fashion-MNIST PNGs."""
    return sample_repos.local_repo_with(tmp_path_factory.mktemp("adopt") / "repo", sample_repos.image_files(0, N))


@pytest.fixture
def project(make_project):
    return make_project("adopted labels", CONFIG)


@pytest.fixture
def invoke(env, tmp_path):
    """``invoke(state_name, *args)``: ``labelhub import-labels ARGS --state tmp/STATE`` in-process."""
    return lambda state, *args, **extra_env: invoke_import_labels(env, tmp_path / state, *args, **extra_env)


def sync(env, repo_path, project, state, *extra):
    """``labelhub sync --once --no-export`` of the repo into the project with the state file ``state``, in-process
    (:func:`tests.in_process.invoke_labelhub`); raises on a non-zero exit."""
    return invoke_labelhub("sync", "--repo", str(repo_path), "--project", str(project.id), "--once", "--no-export",
                           "--state", str(state), *extra, env=env, check=True)


def all_tasks(label_studio, project_id) -> list:
    return list(label_studio.client().tasks.list(project=project_id, page_size=1000, fields="all"))


def ground_truths(label_studio, project_id) -> dict[str, list[bool]]:
    """``{source_url or hf_path: [ground_truth of each annotation]}`` of the project's annotated tasks."""
    return {t.data.get("source_url") or t.data["hf_path"]: [a["ground_truth"] for a in t.annotations]
            for t in all_tasks(label_studio, project_id) if t.annotations}


def write_csv(path, rows: list[str]):
    path.write_text(HEADER + "".join(f"{row}\n" for row in rows))
    return path


def test_an_import_with_a_lost_state_labels_the_sync_tasks_and_the_sync_then_adds_none(
        label_studio, project, repo_path, env, invoke, tmp_path):
    """The audit's steps: sync (N tasks); the state is lost; import-labels --repo as annotations; the sync again."""
    sync(env, repo_path, project, tmp_path / "daemon.sqlite3")
    assert len(all_tasks(label_studio, project.id)) == N
    p = [sample_repos.image_path(i) for i in range(N)]
    csv = write_csv(tmp_path / "later.csv", [f"{p[1]},Bag,,,,,,", f"{p[2]},Coat,,,,,,"])
    result = invoke("lost.sqlite3", str(csv), "--project", str(project.id), "--repo", str(repo_path),
                    "--as", "annotations")
    assert result.exit_code == 0, result.output
    assert "tasks created: 0 (2 sync tasks labelled), regions: 0, as annotations" in result.output.splitlines()
    tasks = all_tasks(label_studio, project.id)
    assert len(tasks) == N and sum(len(t.annotations) for t in tasks) == 2
    # the same sync with the import's state: every file has its task already
    again = sync(env, repo_path, project, tmp_path / "lost.sqlite3")
    assert f"{N} files, 0 tasks created" in again.stderr, again.stderr
    assert len(all_tasks(label_studio, project.id)) == N


def test_the_sync_adopts_the_tasks_another_state_made_of_its_files(label_studio, project, repo_path, env, invoke,
                                                                  tmp_path):
    """The daemon's ledger is not empty: the task an import with another state made of a file it had not imported
    yet is adopted, not made a second time."""
    p = [sample_repos.image_path(i) for i in range(N)]
    daemon = tmp_path / "daemon.sqlite3"
    sync(env, repo_path, project, daemon, "--include", p[0], "--include", p[1])
    assert len(all_tasks(label_studio, project.id)) == 2
    csv = write_csv(tmp_path / "labels.csv", [f"{p[4]},Bag,,,,,,"])
    made = invoke("import.sqlite3", str(csv), "--project", str(project.id), "--repo", str(repo_path))
    assert "tasks created: 1, regions: 0, as predictions" in made.output.splitlines(), made.output
    whole = sync(env, repo_path, project, daemon)
    assert f"{N} files, {N - 3} tasks created, 1 recovered" in whole.stderr, whole.stderr
    tasks = all_tasks(label_studio, project.id)
    assert sorted(t.data["hf_path"] for t in tasks) == sorted(p)
    (labelled,) = [t for t in tasks if t.predictions]
    assert labelled.data["hf_path"] == p[4]


def test_a_second_state_adopts_an_earlier_import_and_counts_only_the_files_urls(label_studio, project, invoke,
                                                                               tmp_path):
    urls = [f"https://example.test/{i}.png" for i in range(15)]
    first = invoke("a.sqlite3", str(write_csv(tmp_path / "a.csv", [f"{u},Bag,,,,,," for u in urls[:10]])),
                   "--project", str(project.id))
    assert "tasks created: 10, regions: 0, as predictions" in first.output.splitlines(), first.output
    # a new state and a 1-row file: the 10 tasks are adopted, the summary speaks of the file's one url
    one = invoke("b.sqlite3", str(write_csv(tmp_path / "one.csv", [f"{urls[3]},Bag,,,,,,"])),
                 "--project", str(project.id))
    assert "tasks created: 0 (1 found in Label Studio from an earlier run), regions: 0, as predictions" \
        in one.output.splitlines(), one.output
    # state b is no longer empty; state a imports urls 10..14, then b imports 5..14: a's new tasks are adopted
    more = invoke("a.sqlite3", str(write_csv(tmp_path / "more.csv", [f"{u},Bag,,,,,," for u in urls[10:]])),
                  "--project", str(project.id))
    assert "tasks created: 5, regions: 0, as predictions" in more.output.splitlines(), more.output
    overlap = invoke("b.sqlite3", str(write_csv(tmp_path / "overlap.csv", [f"{u},Bag,,,,,," for u in urls[5:]])),
                     "--project", str(project.id))
    assert "tasks created: 0 (5 already imported, 5 found in Label Studio from an earlier run), regions: 0, " \
           "as predictions" in overlap.output.splitlines(), overlap.output
    tasks = all_tasks(label_studio, project.id)
    assert sorted(t.data["source_url"] for t in tasks) == sorted(urls)


def test_imported_annotations_are_ground_truth_only_when_asked(label_studio, project, repo_path, env, invoke,
                                                               tmp_path):
    p = [sample_repos.image_path(i) for i in range(N)]
    sync(env, repo_path, project, tmp_path / "s.sqlite3", "--include", p[0])
    plain = write_csv(tmp_path / "plain.csv", ["https://example.test/new.png,Bag,,,,,,", f"{p[0]},Coat,,,,,,"])
    result = invoke("s.sqlite3", str(plain), "--project", str(project.id), "--repo", str(repo_path),
                    "--as", "annotations")
    assert "tasks created: 1 (1 sync tasks labelled)" in result.output, result.output
    assert ground_truths(label_studio, project.id) == {"https://example.test/new.png": [False], p[0]: [False]}
    asked = write_csv(tmp_path / "asked.csv", ["https://example.test/gt.png,Bag,,,,,,", f"{p[1]},Coat,,,,,,"])
    sync(env, repo_path, project, tmp_path / "s.sqlite3", "--include", p[0], "--include", p[1])
    result = invoke("s.sqlite3", str(asked), "--project", str(project.id), "--repo", str(repo_path),
                    "--as", "annotations", "--ground-truth")
    assert "tasks created: 1 (1 sync tasks labelled)" in result.output, result.output
    assert ground_truths(label_studio, project.id) == {"https://example.test/new.png": [False], p[0]: [False],
                     "https://example.test/gt.png": [True], p[1]: [True]}


def test_a_public_hub_repo_is_said_to_get_resolve_urls_as_it_does(label_studio, hub, project, invoke, tmp_path):
    repo_id = f"labelhub/public-{time.monotonic_ns() % 10**9}"
    sample_repos.hub_repo_with(hub, repo_id, sample_repos.image_files(0, 2), private=False)
    path = sample_repos.image_path(0)
    result = invoke("s.sqlite3", str(write_csv(tmp_path / "hub.csv", [f"{path},Bag,,,,,,"])),
                    "--project", str(project.id), "--repo", repo_id, "--public-url", "http://127.0.0.1:9",
                    LABELHUB_SECRET="s" * 32, HF_TOKEN=HUB_TOKEN)
    assert result.exit_code == 0, result.output
    assert f"file URLs of {repo_id}: Hub resolve URLs pinned to the commit (public Hub repo)" in result.output
    assert "signed proxy URLs" not in result.output
    (task,) = all_tasks(label_studio, project.id)
    assert "/resolve/" in task.data["image"] and "/files/" not in task.data["image"]


def test_a_listing_that_keeps_moving_says_another_process_may_be_creating_tasks(label_studio, project, monkeypatch):
    from labelhub.sync.labelstudio import project as project_module

    ls = LabelStudioProject(label_studio.url, label_studio.personal_token, project.id)
    ls.import_tasks([{"data": {"image": f"https://example.test/{i}.png", "source_url": str(i)}} for i in range(40)])
    monkeypatch.setattr(project_module, "TASK_PAGE_SIZE", 2)  # 20 pages a reading: the other import lands in it
    stop = threading.Event()

    def other_import():  # what a second import-labels with its own state file does meanwhile
        n = 0
        while not stop.is_set():
            ls.import_tasks([{"data": {"image": f"https://example.test/x{n}.png", "source_url": f"x{n}"}}])
            n += 1
            stop.wait(0.2)  # a few imports a reading, so that the list moves under each but stays short

    worker = threading.Thread(target=other_import)
    worker.start()
    try:
        with pytest.raises(LabelStudioError) as caught:
            ls.task_data(source_url=None)
    finally:
        stop.set()
        worker.join()
    message = str(caught.value)
    assert "kept changing while they were listed (3 readings)" in message
    assert "another labelhub import-labels, sync or restore" in message and "run this again" in message


def test_two_imports_at_once_with_their_own_states_name_the_second_tasks_and_fail(label_studio, project, env,
                                                                                 tmp_path):
    """On two hosts (each its own LABELHUB_CACHE, so the host-wide project lock cannot see the other), two imports
    of the same urls at the same time both create them. The one that ends last sees every url's two tasks: it names
    the second ones (to delete) and exits 1; both states then keep each url's first task, so running either again
    creates nothing. (On one host the second is refused: test_a_second_import_on_this_host_is_refused.)"""
    n = 300
    urls = [f"https://example.test/{i}.png" for i in range(n)]
    csv = write_csv(tmp_path / "labels.csv", [f"{u},Bag,,,,,," for u in urls])

    def args(state):
        return [sys.executable, "-m", "tests.guarded", "import-labels", str(csv), "--project", str(project.id),
                "--batch-size", "15", "--state", str(tmp_path / state)]

    runs = [subprocess.Popen(args(state), cwd=ROOT, env={**os.environ, **env, "LABELHUB_CACHE": str(tmp_path / f"cache-{state}")},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for state in ("a.sqlite3", "b.sqlite3")]
    outputs = [(run.communicate(timeout=600), run.returncode) for run in runs]
    tasks = all_tasks(label_studio, project.id)
    by_url: dict[str, list[int]] = {}
    for task in tasks:
        by_url.setdefault(task.data["source_url"], []).append(task.id)
    seconds = {i for ids in by_url.values() for i in ids if i != min(ids)}
    assert seconds, ("the two imports did not overlap", outputs)  # both started at once: they do
    counts = []
    for (out, err), code in outputs:
        line = [x for x in out.splitlines() if x.startswith("second tasks: ")]
        assert code == (1 if line else 0), (out, err)
        if line:
            assert "delete tasks" in line[0] and "another --state" in line[0], line
            counts.append(int(line[0].split()[2]))
    assert max(counts, default=0) == len(seconds)  # the one that ended last names every second task
    # either state, run again: every url has its (first) task
    again = run_labelhub("import-labels", *args("a.sqlite3")[4:], env=env)
    assert f"tasks created: 0 ({n} already imported)" in again.stdout, again.stdout + again.stderr
    assert len(all_tasks(label_studio, project.id)) == len(tasks)


def test_a_second_import_on_this_host_is_refused(label_studio, project, env, tmp_path, monkeypatch):
    """A sync (or import, or restore) of the project holds the host-wide project lock, whatever its --state and
    however it spells Label Studio's URL (the lock is of the project's ``<id>.<created_at>``): an import with another
    --state, through ``localhost`` where the holder said ``127.0.0.1``, is refused in one line naming it, and nothing
    is created."""
    from labelhub.locks import project_lock
    from labelhub.sync.labelstudio.project import LabelStudioProject

    monkeypatch.setenv("LABELHUB_CACHE", str(tmp_path / "cache"))
    csv = write_csv(tmp_path / "labels.csv", ["https://example.test/0.png,Bag,,,,,,"])
    key = LabelStudioProject(label_studio.url, label_studio.api_key, project.id).key
    assert "127.0.0.1" in label_studio.url and "." in key
    other_spelling = {**env, "LABELHUB_CACHE": str(tmp_path / "cache"),
                      "LABEL_STUDIO_URL": label_studio.url.replace("127.0.0.1", "localhost")}
    with project_lock(label_studio.url, key, str(tmp_path / "daemon.sqlite3")):
        refused = run_labelhub("import-labels", str(csv), "--project", str(project.id), "--state",
                               str(tmp_path / "other.sqlite3"), env=other_spelling)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"runs on this host with --state {tmp_path / 'daemon.sqlite3'}" in refused.stderr
    assert all_tasks(label_studio, project.id) == []


def test_the_ledger_looks_up_only_tasks_above_what_it_saw_and_made_and_adopts_each_once(tmp_path):
    """The adoption cursor on a real state file (the lookup is the caller's query; here its answers are given): a
    state that never looked asks for every task; then only above the last look and its own newest task (listing
    its own tasks again would cost more than importing them); a task whose id it records under another key (a move
    whose record a crash lost) is not adopted under the new one."""
    from labelhub.sync.ledger import Entry
    from labelhub.sync.state import SyncState

    state = SyncState(tmp_path / "s.sqlite3", 1, "o/r")
    ledger = state.ledger
    asked: list[int] = []

    def lookup(answer):
        return lambda after: asked.append(after) or [e for e in answer if e.task_id > after]

    assert ledger.adopted_through() is None
    assert ledger.recover(lookup([Entry("a.png", 10), Entry("b.png", 12)])) == 2  # a lost state: every task
    assert asked == [0] and ledger.adopted_through() == 12
    ledger.record([Entry("c.png", 20), Entry("d.png", 21)])  # its own import
    others = [Entry("a.png", 10), Entry("b.png", 12), Entry("c.png", 20), Entry("d.png", 21),
              Entry("e.png", 30), Entry("moved.png", 20), Entry("e.png", 31)]
    assert ledger.recover(lookup(others)) == 1  # e.png (its lowest task); not moved.png: task 20 is c.png's
    assert asked[-1] == 21 and ledger.task_ids(["e.png", "moved.png"]) == {"e.png": 30}
    assert ledger.recover(lookup(others)) == 0 and asked[-1] == 31  # nothing new: nothing listed again
    state.close()
