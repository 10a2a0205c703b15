"""Spans index the text they were made on, after their file changed: a text file gets a new first line, its task
follows it (README "Tasks follow their files"), and the next version's ``default`` rows hold, for each annotation,
the text it was made on (read from the repo at its ``annotated_revision``: inline ``<Text>`` and
``valueType="url"`` alike), while the ``consensus`` config counts only annotations made on the task's current
content, so its text and offsets agree too. Real Label Studio, a local git repository, ``datasets.load_dataset``."""
from __future__ import annotations

import pytest

from tests import sample_repos
from tests.test_sync_export import LocalRepo
from tests.test_versions_end_to_end import span, sync_once
from tests.test_versions_text_url import annotators, results  # noqa: F401 (a fixture)

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


@pytest.mark.parametrize("config", [INLINE, URL], ids=["inline", "url"])
def test_spans_keep_their_text_after_the_file_changes(label_studio, make_project, annotators, config,  # noqa: F811
                                                       tmp_path):
    client = label_studio.client()
    b_user, _ = annotators
    repo = LocalRepo(sample_repos.local_repo_with(tmp_path / "texts", {p: t.encode() for p, t in TEXTS.items()}))
    project = make_project(f"span texts {len(config)}", config)
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

    sample_repos.commit_local(repo.path, {"news/a.txt": CHANGED_A.encode()}, message="a new first line")
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
    assert [(s["start"], s["text"], s["label"]) for s in consensus["news/a.txt"]["ner"]] == \
        [(CHANGED_A.index("Paris"), "Paris", "LOC")]
    assert consensus["news/b.txt"]["text"] == b
