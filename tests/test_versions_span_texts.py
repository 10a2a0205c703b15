"""Spans index the text they were made on, after their file changed: a text file gets a new first line, its task
follows it (README "Tasks follow their files"), and the next version's ``default`` rows hold, for each annotation,
the text it was made on (read from the repo at its ``annotated_revision``: inline ``<Text>`` and
``valueType="url"`` alike), while the ``consensus`` config counts only annotations made on the task's current
content, so its text and offsets agree too. Real Label Studio, a local git repository, ``datasets.load_dataset``."""
from __future__ import annotations

import json

import pytest

from tests import sample_repos
from tests.test_versions_end_to_end import span, sync_once
from tests.conftest import HUB_TOKEN
from tests.test_versions_text_url import annotators, commit, results, text_repo  # noqa: F401 (annotators: a fixture)

INLINE = ('<View><Text name="text" value="$text"/>'
          '<Labels name="ner" toName="text"><Label value="PER"/><Label value="LOC"/></Labels></View>')
URL = INLINE.replace('value="$text"/>', 'value="$text" valueType="url"/>')
TEXTS = {"news/a.txt": "Angela Merkel visited Paris.", "news/b.txt": "Olaf Scholz stayed in Berlin."}
CHANGED_A = "BREAKING: " + TEXTS["news/a.txt"]


def check_spans(rows, where: str) -> int:
    """Assert that every span's offsets give its text in its row's text; the number of spans."""
    count = 0
    for row in rows:
        for s in row["ner"]:
            assert row["text"] is not None and row["text"][s["start"]:s["end"]] == s["text"], (where, row)
            count += 1
    return count


@pytest.mark.parametrize("kind, config", [("local", INLINE), ("local", URL), ("hub", INLINE)],
                         ids=["local-inline", "local-url", "hub-inline"])
def test_spans_keep_their_text_after_the_file_changes(label_studio, make_project, annotators, kind,  # noqa: F811
                                                       config, tmp_path, request, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)
    client = label_studio.client()
    b_user, _ = annotators
    repo = text_repo(kind, tmp_path, request, {p: t.encode() for p, t in TEXTS.items()})
    project = make_project(f"span texts {kind} {len(config)}", config)
    state = tmp_path / "state.sqlite3"
    sync_once(label_studio, repo, project, state)
    tasks = {t.data["hf_path"]: t.id for t in client.tasks.list(project=project.id, page_size=100)}
    a, b = TEXTS["news/a.txt"], TEXTS["news/b.txt"]
    save_text = config == INLINE  # Label Studio saves no span text over a valueType="url" text
    strip = (lambda spans: spans) if save_text else (lambda spans: [{**s, "text": ""} for s in spans])
    client.annotations.create(tasks["news/a.txt"], result=results(strip([span(a, "Angela Merkel", "PER"),
                                                                          span(a, "Paris", "LOC")])))
    client.annotations.create(tasks["news/a.txt"], result=results(strip([span(a, "Angela Merkel", "PER")])),
                              completed_by=b_user.id)
    client.annotations.create(tasks["news/b.txt"], result=results(strip([span(b, "Olaf Scholz", "PER")])))
    sync_once(label_studio, repo, project, state)

    commit(repo, {"news/a.txt": CHANGED_A.encode()})
    sync_once(label_studio, repo, project, state)  # a.txt's task follows the file: a new version
    # one annotation on the new content: it alone votes in a.txt's consensus
    client.annotations.create(tasks["news/a.txt"],
                              result=results(strip([span(CHANGED_A, "Paris", "LOC")])), completed_by=b_user.id)
    sync_once(label_studio, repo, project, state)
    tag = max(repo.tags(), key=lambda t: int(t.rsplit("v", 1)[1]))
    assert tag == "annotations-v3", repo.tags()

    train = list(repo.load(tag, tmp_path, name=None, pandas=False))
    assert len(train) == 4
    assert check_spans(train, "default") == 5
    old = [row for row in train if row["hf_path"] == "news/a.txt" and row["text"] == a]
    assert len(old) == 2 and all(s["text"] for row in old for s in row["ner"])  # the text they were made on
    assert [row["text"] for row in train if row["hf_path"] == "news/a.txt" and row["text"] != a] == [CHANGED_A]

    consensus = {row["hf_path"]: row for row in repo.load(tag, tmp_path, name="consensus", pandas=False)}
    assert check_spans(consensus.values(), "consensus") == 2
    assert consensus["news/a.txt"]["text"] == CHANGED_A and consensus["news/a.txt"]["annotators"] == 1
    assert [(s["start"], s["text"]) for s in consensus["news/a.txt"]["ner"]] == [(CHANGED_A.index("Paris"), "Paris")]
    assert consensus["news/b.txt"]["text"] == b


def test_an_incremental_build_reads_the_older_texts_of_inline_rows_once(tmp_path, caplog):
    """In one process, as the daemon: inline ``<Text>`` tasks whose file changed after two of their annotations;
    the build kept from the previous export gives the same files as a build from scratch (rows annotated on the
    older content hold it, read from the repo once each; only annotations on the current content vote), and a
    warning counts the annotations left out of the consensus."""
    from labelhub.label_config import control_tags, data_field
    from labelhub.repos.git import LocalGitRepo
    from labelhub.repos.texts import FileTexts
    from labelhub.sync.state import SyncState
    from labelhub.sync.versions.incremental import build_files, build_rows
    from tests.test_versions_incremental import REPO, TEXTS as CONFIG, add, assert_same_as_from_scratch

    path = tmp_path / "texts"
    sample_repos.init_local_repo(path)
    first = sample_repos.commit_local(path, {p: t.encode() for p, t in TEXTS.items()}, message="texts")
    repo = LocalGitRepo(path)
    texts = FileTexts(repo)
    state = SyncState(tmp_path / "state.sqlite3", 7, REPO)
    a, b = TEXTS["news/a.txt"], TEXTS["news/b.txt"]

    def annotation(aid, who, text, word, label="PER"):
        start = text.index(word)
        return {"id": aid, "completed_by": who, "lead_time": 1.0, "updated_at": f"2026-01-01T00:00:{aid:02d}Z",
                "result": [{"from_name": "ner", "to_name": "text", "type": "labels",
                            "value": {"start": start, "end": start + len(word), "text": word, "labels": [label]}}]}

    def task(path, text, sha):
        return {"text": text, "hf_path": path, "hf_repo": REPO, "hf_revision": sha}

    for aid, who in ((11, 1), (12, 2)):
        state.upsert_task(1, task("news/a.txt", a, first))
        state.apply_annotations(1, [annotation(aid, who, a, "Angela Merkel")], complete=False, revision=first)
    add(state, 2, task("news/b.txt", b, first), annotation(21, 1, b, "Olaf Scholz"))
    assert_same_as_from_scratch(state, tmp_path, CONFIG, local=True, revision=first, texts=texts)
    assert texts.reads == 0  # every row annotated on its task's content: the task data's texts

    second = sample_repos.commit_local(path, {"news/a.txt": CHANGED_A.encode()}, message="a new first line")
    state.upsert_task(1, task("news/a.txt", CHANGED_A, second))
    state.apply_annotations(1, [annotation(13, 3, CHANGED_A, "Paris", "LOC")], complete=False, revision=second)
    caplog.set_level("WARNING", logger="labelhub.sync.versions.incremental")
    assert_same_as_from_scratch(state, tmp_path, CONFIG, local=True, revision=second, texts=texts)
    assert texts.reads == 1  # a.txt at the older commit, once for both of its rows
    assert "2 annotation(s) of 1 task(s) were made on an older revision" in caplog.text
    files = build_files(state, build_rows(state, control_tags(CONFIG), "text").frame, CONFIG, control_tags(CONFIG),
                        data_field(CONFIG), REPO, True, second, texts=texts)
    assert texts.reads == 1
    training = [json.loads(line) for line in files.training.splitlines()]
    consensus = [json.loads(line) for line in files.consensus.splitlines()]
    assert check_spans(training, "default") == 4 and check_spans(consensus, "consensus") == 2
    assert [(r["task_id"], r["text"]) for r in training] == [(1, a), (1, a), (1, CHANGED_A), (2, b)]
    assert [(r["task_id"], r["text"], r["annotators"]) for r in consensus] == [(1, CHANGED_A, 1), (2, b, 1)]
