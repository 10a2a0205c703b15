"""Two faults of Text projects' exports an audit found, fixed:

1. every annotated text file changed since it was annotated (so no annotation votes in the consensus): the export
   failed at every attempt (``merge_analyses`` of an empty frame is ``None``); now the version is made, with no
   consensus row for those tasks (README "Spans after their file changed"), by the first export of a process, a later
   one in the same process and a build from scratch alike;
2. a text file starting with a UTF-8 byte order mark, in the task data: the import keeps the mark (U+FEFF, which Label
   Studio shows and counts in a span's offsets), while the export read the file's older revision with the browser's
   decoding (mark dropped), so after the file changed its spans were one character off. Both sides now decode with
   :func:`labelhub.repos.texts.decode_task_text`; a file that is not UTF-8 is named in a warning at import.

Real Label Studio, a local git repository and the Hub test server through huggingface_hub, plus pure builds over a
real sync state and git repository (as tests/test_versions_incremental.py)."""
from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelhub.label_config import control_tags, data_field
from labelhub.repos.git import LocalGitRepo
from labelhub.repos.texts import FileTexts, decode_task_text, decode_text
from labelhub.sync.state import SyncState
from labelhub.sync.versions import incremental
from labelhub.sync.versions.incremental import build_files, build_rows
from tests import sample_repos
from tests.conftest import HUB_TOKEN
from tests.test_versions_end_to_end import span, sync_once
from tests.test_versions_incremental import REPO, TEXTS as CONFIG, assert_same_as_from_scratch
from tests.test_versions_text_url import annotators, commit, text_repo  # noqa: F401 (annotators: a fixture)

LS_CONFIG = ('<View><Text name="text" value="$text"/>'
             '<Labels name="label" toName="text"><Label value="X"/></Labels></View>')
BOM = b"\xef\xbb\xbf"


def label_result(text: str, word: str) -> list[dict]:
    s = span(text, word, "X")
    return [{"from_name": "label", "to_name": "text", "type": "labels",
             "value": {"start": s["start"], "end": s["end"], "text": word, "labels": ["X"]}}]


def jsonl(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


def latest_tag(repo) -> str:
    return max(repo.tags(), key=lambda t: int(t.rsplit("v", 1)[1]))


def test_an_export_of_a_text_project_whose_every_annotated_file_changed_makes_a_version(
        label_studio, make_project, tmp_path, request, monkeypatch):
    """The audit's repro: one file annotated, then changed; the next ``labelhub sync --once`` exited 1 with
    ``AttributeError: 'NoneType' object has no attribute 'results'`` (the daemon at every tick)."""
    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)
    client = label_studio.client()
    repo = text_repo("local", tmp_path, request, {"a.txt": b"Hello World\n"})
    project = make_project(f"all changed {uuid.uuid4().hex[:6]}", LS_CONFIG)
    state = tmp_path / "state.sqlite3"
    sync_once(label_studio, repo, project, state)
    [task] = client.tasks.list(project=project.id, page_size=10)
    client.annotations.create(task.id, result=label_result("Hello World\n", "World"))
    sync_once(label_studio, repo, project, state)
    assert latest_tag(repo) == "annotations-v1"
    assert len(jsonl(repo.read("annotations-v1", "consensus.jsonl"))) == 1

    commit(repo, {"a.txt": b"Hello World\nmore\n"})
    done = sync_once(label_studio, repo, project, state)  # raises on a non-zero exit
    assert "Traceback" not in done.stderr
    tag = latest_tag(repo)
    assert tag == "annotations-v2"
    assert jsonl(repo.read(tag, "consensus.jsonl")) == []  # the one annotation was made on older content
    [row] = jsonl(repo.read(tag, "metadata.jsonl"))
    assert row["text"] == "Hello World\n" and row["label"][0]["text"] == "World"  # the text it was made on
    assert "1 annotation(s) of 1 task(s) were made on an older revision" in done.stderr


def _annotation(aid: int, who: int, text: str, word: str, second: int) -> dict:
    start = text.index(word)
    return {"id": aid, "completed_by": who, "lead_time": 1.0, "updated_at": f"2026-01-01T00:{second // 60:02d}:"
            f"{second % 60:02d}Z", "result": [{"from_name": "ner", "to_name": "text", "type": "labels",
                                                "value": {"start": start, "end": start + len(word), "text": word,
                                                          "labels": ["PER"]}}]}


#: Steps over 3 inline text tasks (files t/0.txt ... t/2.txt): "annotate" a task on its current content, "change"
#: its file (a commit; the task follows it, so its annotations stop voting), "delete" an annotation.
STEP = st.tuples(st.sampled_from(["annotate", "change", "delete"]), st.integers(0, 2), st.integers(1, 2))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEP, min_size=1, max_size=6), restart=st.lists(st.booleans(), min_size=7, max_size=7))
def test_any_sequence_of_file_changes_builds_the_same_text_version_as_from_scratch(tmp_path, steps, restart):
    """Like tests/test_versions_incremental.py's property, over inline texts whose files change: a sequence often
    leaves no annotation on its task's current content (no vote at all), which the incremental build failed on. A
    build after a "restart" (``restart``: the process's store forgotten) is a first export of a process."""
    path = tmp_path / uuid.uuid4().hex
    sample_repos.init_local_repo(path)
    contents = {task: f"Alice met Bob {task}.\n" for task in range(3)}
    sha = sample_repos.commit_local(path, {f"t/{t}.txt": c.encode() for t, c in contents.items()}, message="texts")
    revisions = dict.fromkeys(contents, sha)
    repo, state = LocalGitRepo(path), SyncState(tmp_path / f"{uuid.uuid4().hex}.sqlite3", 7, REPO)
    texts = FileTexts(repo)

    def upsert(task):
        state.upsert_task(task, {"text": contents[task], "hf_path": f"t/{task}.txt", "hf_repo": REPO,
                                 "hf_revision": revisions[task]})

    for task in contents:
        upsert(task)
    state.apply_annotations(0, [_annotation(1, 1, contents[0], "Alice", 0)], complete=False, revision=sha)
    assert_same_as_from_scratch(state, tmp_path, CONFIG, local=True, revision=sha, texts=texts)
    for step, ((op, task, who), forget) in enumerate(zip(steps, restart), 1):
        if op == "annotate":
            state.apply_annotations(task, [_annotation(10 * task + who, who, contents[task], "Bob", step)],
                                    complete=False, revision=revisions[task])
        elif op == "change":
            contents[task] = f"v{step}: " + contents[task]
            revisions[task] = sample_repos.commit_local(path, {f"t/{task}.txt": contents[task].encode()},
                                                        message=f"change {task}")
            upsert(task)
        else:
            state.delete_annotations([10 * task + who])
        if forget:
            incremental.forget(state)
        assert_same_as_from_scratch(state, tmp_path, CONFIG, local=True, revision=max(revisions.values()),
                                    texts=texts)


def test_no_annotation_on_current_content_gives_no_consensus_in_every_build(tmp_path):
    """The first export of a process, a later one of the same process, and a build from scratch (another frame)
    give the same files: no consensus row, no agreement figure, the training row with the text it was made on."""
    path = tmp_path / "texts"
    sample_repos.init_local_repo(path)
    first = sample_repos.commit_local(path, {"a.txt": b"Hello World\n"}, message="a")
    repo = LocalGitRepo(path)
    state = SyncState(tmp_path / "state.sqlite3", 7, REPO)
    state.upsert_task(1, {"text": "Hello World\n", "hf_path": "a.txt", "hf_repo": REPO, "hf_revision": first})
    state.apply_annotations(1, [_annotation(11, 1, "Hello World\n", "World", 1)], complete=False, revision=first)
    controls, field = control_tags(CONFIG), data_field(CONFIG)
    build_files(state, build_rows(state, controls, "text").frame, CONFIG, controls, field, REPO, True, first,
                texts=FileTexts(repo))
    second = sample_repos.commit_local(path, {"a.txt": b"Hello World\nmore\n"}, message="b")
    state.upsert_task(1, {"text": "Hello World\nmore\n", "hf_path": "a.txt", "hf_repo": REPO, "hf_revision": second})
    made = []
    for how in ("a later export", "a first export", "again", "from scratch"):
        if how == "a first export":
            incremental.forget(state)
        frame = build_rows(state, controls, "text").frame
        files = build_files(state, frame.copy() if how == "from scratch" else frame, CONFIG, controls, field, REPO,
                            True, second, texts=FileTexts(repo))
        assert files.consensus == b"" and files.consensus_names == []
        assert [(r["text"], r["ner"][0]["text"]) for r in jsonl(files.training)] == [("Hello World\n", "World")]
        made.append((files.training, files.consensus, json.dumps(files.agreement, sort_keys=True, default=str)))
    assert len(set(made)) == 1
    # the next annotation, on the current content, votes again (the kept store had no tables)
    state.apply_annotations(1, [_annotation(12, 2, "Hello World\nmore\n", "more", 2)], complete=False,
                            revision=second)
    files = build_files(state, build_rows(state, controls, "text").frame, CONFIG, controls, field, REPO, True,
                        second, texts=FileTexts(repo))
    [consensus] = jsonl(files.consensus)
    assert consensus["text"] == "Hello World\nmore\n" and consensus["annotators"] == 1
    assert_same_as_from_scratch(state, tmp_path, CONFIG, local=True, revision=second, texts=FileTexts(repo))


def test_each_mode_decodes_a_byte_order_mark_as_label_studio_shows_it():
    """The task data keeps the mark (the import's decoding), a ``valueType="url"`` file drops it (the browser's)."""
    data = BOM + "caf\u00e9 World\n".encode()
    assert decode_task_text(data) == ("\ufeffcaf\u00e9 World\n", True)
    assert decode_text(data) == ("caf\u00e9 World\n", True)
    assert decode_task_text(b"caf\xe9") == ("caf\ufffd", False)


@pytest.mark.parametrize("kind", ["local", "hub"])
def test_spans_of_a_file_with_a_byte_order_mark_index_its_text_after_it_changes(
        label_studio, make_project, annotators, kind, tmp_path, request, monkeypatch):  # noqa: F811
    """bom.txt starts with a UTF-8 byte order mark: its task's text starts with U+FEFF and a span on "World" is
    7..12. After bom.txt changes, the version's ``default`` row of that annotation held 'Hello World\\n' (the mark
    dropped), so 7..12 was 'orld\\n'. other.txt keeps a vote (the consensus is made). A Latin-1 file is named in a
    warning at import."""
    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)
    client = label_studio.client()
    bom_text = "\ufeffHello World\n"
    files = {"bom.txt": BOM + b"Hello World\n", "other.txt": b"Good morning World\n", "latin.txt": b"caf\xe9\n"}
    repo = text_repo(kind, tmp_path, request, files)
    project = make_project(f"bom {kind} {uuid.uuid4().hex[:6]}", LS_CONFIG)
    state = tmp_path / "state.sqlite3"
    imported = sync_once(label_studio, repo, project, state)
    assert "latin.txt" in imported.stderr and "is not valid UTF-8" in imported.stderr
    tasks = {t.data["hf_path"]: t for t in client.tasks.list(project=project.id, page_size=10)}
    assert tasks["bom.txt"].data["text"] == bom_text and tasks["latin.txt"].data["text"] == "caf\ufffd\n"
    assert span(bom_text, "World", "X")["start"] == 7
    client.annotations.create(tasks["bom.txt"].id, result=label_result(bom_text, "World"))
    client.annotations.create(tasks["other.txt"].id, result=label_result("Good morning World\n", "World"))
    sync_once(label_studio, repo, project, state)

    commit(repo, {"bom.txt": BOM + b"Hello World\nand more\n"})
    sync_once(label_studio, repo, project, state)
    tag = latest_tag(repo)
    assert tag == "annotations-v2"
    training = jsonl(repo.read(tag, "metadata.jsonl" if kind == "local" else "annotations/train.jsonl"))
    by_path = {row["hf_path"]: row for row in training}
    row = by_path["bom.txt"]
    assert row["text"] == bom_text  # the text Label Studio showed when the span was drawn
    [s] = row["label"]
    assert (s["start"], s["end"], s["text"]) == (7, 12, "World") and row["text"][s["start"]:s["end"]] == "World"
    other = by_path["other.txt"]
    assert all(other["text"][s["start"]:s["end"]] == s["text"] for s in other["label"])
    consensus = jsonl(repo.read(tag, "consensus.jsonl" if kind == "local" else "annotations/consensus.jsonl"))
    assert [r["hf_path"] for r in consensus] == ["other.txt"]
