"""Versions of Label Studio's audio templates load with ``datasets.load_dataset`` as the card prints it, without
torchcodec (``datasets`` decodes audio with it, and it needs FFmpeg): the audio column is not decoded, and the card
shows the line that decodes it. Real Label Studio, the Hub test server through huggingface_hub, a local git
repository of ``.wav`` files made with the stdlib ``wave`` module."""
from __future__ import annotations

import io
import subprocess
import uuid
import wave

import pytest

from tests import sample_repos
from tests.conftest import HUB_TOKEN
from tests.test_sync_export import HubRepo, LocalRepo
from tests.test_versions_end_to_end import sync_once

AUDIO_CONFIG = ('<View><Audio name="audio" value="$audio"/>'
                '<Choices name="intent" toName="audio"><Choice value="greeting"/><Choice value="question"/></Choices>'
                '</View>')


def wav(seconds: float = 0.2, rate: int = 8000) -> bytes:
    """A mono 16-bit silent WAV file."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\0\0" * int(seconds * rate))
    return buffer.getvalue()


def media_repo(kind: str, tmp_path, request, files: dict[str, bytes]) -> "LocalRepo | HubRepo":
    if kind == "local":
        return LocalRepo(sample_repos.local_repo_with(tmp_path / "clips", files))
    hub = request.getfixturevalue("hub")
    return HubRepo(hub, sample_repos.hub_repo_with(hub, f"labelhub/audio-{uuid.uuid4().hex[:10]}", files))


def clone(repo: LocalRepo, tag: str, where) -> None:
    """The card's recipe for a local repository: ``git clone --branch TAG <repo> TAG``."""
    subprocess.run(["git", "-c", "advice.detachedHead=false", "clone", "-q", "--branch", tag, str(repo.path),
                    str(where / tag)], check=True)


@pytest.mark.parametrize("kind", ["local", "hub"])
def test_an_audio_version_loads_without_torchcodec(label_studio, make_project, kind, tmp_path, request, monkeypatch):
    """Three clips, two annotated: ``load_dataset`` as the card prints it gives two rows whose audio is not decoded
    (a path; on the Hub ``{path, bytes}`` typed ``Audio(decode=False)``, the label a ``ClassLabel``), and the card
    shows the ``cast_column`` that decodes it. Before: ``DatasetGenerationError``/``ImportError`` (torchcodec)."""
    import datasets

    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)
    client = label_studio.client()
    files = {f"clips/{name}.wav": wav() for name in ("hello", "where", "bye")}
    repo = media_repo(kind, tmp_path, request, files)
    project = make_project(f"audio {kind}", AUDIO_CONFIG)
    state = tmp_path / "state.sqlite3"
    sync_once(label_studio, repo, project, state)
    tasks = {t.data["hf_path"]: t for t in client.tasks.list(project=project.id, page_size=100)}
    assert sorted(tasks) == sorted(files)
    for path, choice in (("clips/hello.wav", "greeting"), ("clips/where.wav", "question")):
        client.annotations.create(tasks[path].id, result=[{"from_name": "intent", "to_name": "audio",
                                                           "type": "choices", "value": {"choices": [choice]}}])
    sync_once(label_studio, repo, project, state)
    assert "annotations-v1" in repo.tags()
    card = repo.read("annotations-v1", "README.md").decode()
    assert 'datasets.Audio())  # decoded: needs torchcodec' in card, card

    if kind == "local":
        clone(repo, "annotations-v1", tmp_path)
        train = datasets.load_dataset(str(tmp_path / "annotations-v1"), split="train",
                                      cache_dir=str(tmp_path / "hf-datasets"))
        assert sorted(train["file_name"]) == ["clips/hello.wav", "clips/where.wav"]
        assert all((tmp_path / "annotations-v1" / name).is_file() for name in train["file_name"])
        assert dict(zip(train["hf_path"], train["intent"])) == {"clips/hello.wav": "greeting",
                                                                "clips/where.wav": "question"}
        assert '"./annotations-v1/" + r["file_name"]' in card
        consensus = datasets.load_dataset(str(tmp_path / "annotations-v1"), "consensus", split="train",
                                          cache_dir=str(tmp_path / "hf-datasets"))
        assert sorted(consensus["hf_path"]) == ["clips/hello.wav", "clips/where.wav"]
    else:
        train = repo.load("annotations-v1", tmp_path, name=None, pandas=False)
        assert train.features["audio"] == datasets.Audio(decode=False)
        names = train.features["intent"].names
        rows = {row["hf_path"]: row for row in train}
        assert sorted(rows) == ["clips/hello.wav", "clips/where.wav"]
        for path, row in rows.items():
            assert row["audio"]["path"].startswith(f"hf://datasets/{repo.repo_id}@") and row["audio"]["path"].endswith(
                path), row
        assert names[rows["clips/hello.wav"]["intent"]] == "greeting"
        consensus = repo.load("annotations-v1", tmp_path, name="consensus", pandas=False)
        assert consensus.num_rows == 2


QA_CONFIG = ('<View><Text name="text" value="$text"/><Header value="Question:"/>'
             '<Text name="question" value="$question"/>'
             '<Labels name="answer" toName="text"><Label value="Answer"/></Labels></View>')
QA_TEXTS = {"data/item0.txt": "Alice visited Paris in May.", "data/item1.txt": "The phone has a great camera."}
META = b"id,question\nitem0.txt,Who visited Paris?\nitem1.txt,What has a great camera?\n"


def answer(text: str, part: str) -> list[dict]:
    start = text.index(part)
    return [{"from_name": "answer", "to_name": "text", "type": "labels",
             "value": {"start": start, "end": start + len(part), "text": part, "labels": ["Answer"]}}]


def test_question_answering_rows_carry_the_question_and_keep_hand_imported_tasks(label_studio, make_project,
                                                                                tmp_path):
    """The question-answering template: ``<Text name="question" value="$question"/>`` filled from ``--metadata``.
    The default config's rows carry ``question`` (a key the label config reads; before, the CSV only), and a task
    imported into Label Studio by hand with its text inline is a row too (its text is the one annotated; README)."""
    import datasets

    from tests.in_process import invoke_labelhub

    client = label_studio.client()
    repo = LocalRepo(sample_repos.local_repo_with(tmp_path / "qa", {**{p: t.encode() for p, t in QA_TEXTS.items()},
                                                                     "meta.csv": META}))
    project = make_project("question answering", QA_CONFIG)
    state = tmp_path / "state.sqlite3"

    def sync():
        invoke_labelhub("sync", "--repo", repo.arg, "--project", str(project.id), "--state", str(state), "--once",
                        "--metadata", "meta.csv", "--metadata-key", "-1",
                        env={"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.api_key,
                             "TQDM_DISABLE": "1"}, check=True)

    sync()
    tasks = {t.data["hf_path"]: t for t in client.tasks.list(project=project.id, page_size=100)}
    assert sorted(tasks) == sorted(QA_TEXTS) and tasks["data/item0.txt"].data["question"] == "Who visited Paris?"
    inline = "Bob flew to Oslo on Monday."
    by_hand = client.tasks.create(project=project.id, data={"text": inline, "question": "Where did Bob fly?"})
    client.annotations.create(tasks["data/item0.txt"].id, result=answer(QA_TEXTS["data/item0.txt"], "Alice"))
    client.annotations.create(tasks["data/item1.txt"].id, result=answer(QA_TEXTS["data/item1.txt"], "The phone"))
    client.annotations.create(by_hand.id, result=answer(inline, "Oslo"))
    sync()
    assert "annotations-v1" in repo.tags()

    clone(repo, "annotations-v1", tmp_path)
    train = datasets.load_dataset(str(tmp_path / "annotations-v1"), split="train",
                                  cache_dir=str(tmp_path / "hf-datasets"))
    rows = {row["task_id"]: row for row in train}
    assert sorted(rows) == sorted([tasks["data/item0.txt"].id, tasks["data/item1.txt"].id, by_hand.id])
    assert rows[tasks["data/item0.txt"].id]["question"] == "Who visited Paris?"
    assert rows[tasks["data/item1.txt"].id]["question"] == "What has a great camera?"
    hand = rows[by_hand.id]
    assert (hand["hf_path"], hand["text"], hand["question"]) == ("", inline, "Where did Bob fly?"), hand
    assert [hand["text"][s["start"]:s["end"]] for s in hand["answer"]] == ["Oslo"]


def test_the_hub_features_type_the_question_a_string_in_the_default_config_only():
    """:func:`labelhub.sync.versions.training.training_features`: the keys the label config reads are string
    columns of the default config (before the annotation columns), not of ``consensus``."""
    import datasets

    from labelhub.label_config import DataField
    from labelhub.sync.versions.training import CONSENSUS_COLUMNS, training_features

    field = DataField(tag="Text", name="text", value_key="text", as_url=False)
    features = training_features(QA_CONFIG, {"answer": "Labels"}, field)
    assert features["question"] == datasets.Value("string")
    assert list(features)[:4] == ["text", "answer", "question", "task_id"]
    assert "question" not in training_features(QA_CONFIG, {"answer": "Labels"}, field, CONSENSUS_COLUMNS)
