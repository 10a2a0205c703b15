"""The spans head (Labels over Text), used directly with a stub host: fit on a handful of annotated
sentences, predict Label Studio results (https://labelstud.io/tags/labels) with exact character offsets."""
from __future__ import annotations

import json

import joblib
import numpy as np
import pytest

from labelhub.backend.models.heads import Example, TaskInput
from labelhub.backend.models.spans import DEFAULT_CACHE_BYTES, SpansHead, get_token_encoder, trim_span
from labelhub.label_config import control_specs

LABELS = ("Person", "Organization", "Location", "Misc")
CONFIG = ('<View><Labels name="ner" toName="text">' + "".join(f'<Label value="{label}"/>' for label in LABELS)
          + '</Labels><Text name="text" value="$text"/></View>')

# (text, [(entity text, label), ...]): the offsets are found below, as Python str indices.
SENTENCES = [
    ("Angela Merkel met Emmanuel Macron in Paris on Monday.",
     [("Angela Merkel", "Person"), ("Emmanuel Macron", "Person"), ("Paris", "Location")]),
    ("Microsoft hired John Smith to lead its office in Berlin.",
     [("Microsoft", "Organization"), ("John Smith", "Person"), ("Berlin", "Location")]),
    ("The United Nations sent Maria Garcia to Madrid.",
     [("United Nations", "Organization"), ("Maria Garcia", "Person"), ("Madrid", "Location")]),
    ("Shares of Siemens fell in Frankfurt, said Peter Meyer.",
     [("Siemens", "Organization"), ("Frankfurt", "Location"), ("Peter Meyer", "Person")]),
    ("Zoë Ångström 🎉 joined Nestlé in Zürich last year.",
     [("Zoë Ångström", "Person"), ("Nestlé", "Organization"), ("Zürich", "Location")]),
    ("🚀🚀 José Müller flew from São Paulo to Tokyo for Toyota.",
     [("José Müller", "Person"), ("São Paulo", "Location"), ("Tokyo", "Location"), ("Toyota", "Organization")]),
    ("It rained all day and nobody went outside.", []),
    ("Google opened a lab in London, where Sarah Jones works.",
     [("Google", "Organization"), ("London", "Location"), ("Sarah Jones", "Person")]),
    ("The committee met again on Thursday to discuss the budget.", []),
    ("Reuters reported that Ahmed Khan arrived in Cairo 🇪🇬 yesterday.",
     [("Reuters", "Organization"), ("Ahmed Khan", "Person"), ("Cairo", "Location")]),
]


class StubHost:
    """What the project model gives a head, without the project model."""

    def __init__(self):
        from labelhub.backend.settings import Settings

        self.settings = Settings()

    def embedder_spec(self, kind):
        return "unused"

    def embedder(self, kind):  # pragma: no cover - the spans head has its own encoder
        raise AssertionError("the spans head does not use the whole-text embedder")

    def embed(self, inputs, kind):  # pragma: no cover
        raise AssertionError("the spans head does not use the whole-text embedder")


def spans_of(text, entities):
    out, cursor = [], 0
    for entity, label in entities:
        start = text.index(entity, cursor)
        out.append((start, start + len(entity), label))
        cursor = start + len(entity)
    return out


def example(i, text, spans, from_name="ner"):
    results = tuple({"id": f"r{i}_{k}", "from_name": from_name, "to_name": "text", "type": "labels",
                     "value": {"start": s, "end": e, "text": text[s:e], "labels": [label]}}
                    for k, (s, e, label) in enumerate(spans))
    return Example(TaskInput({"id": i, "data": {"text": text}}, text, text), results)


@pytest.fixture(scope="module")
def control():
    (spec,) = control_specs(CONFIG)
    return spec


@pytest.fixture(scope="module")
def head(control):
    return SpansHead(control, StubHost(), {}, [control])


@pytest.fixture(scope="module")
def gold():
    return [(text, spans_of(text, entities)) for text, entities in SENTENCES]


@pytest.fixture(scope="module")
def fitted(head, gold):
    state = head.fit([example(i, text, spans) for i, (text, spans) in enumerate(gold)])
    assert state is not None
    return state


def inputs_of(texts):
    return [TaskInput({"id": 100 + i, "data": {"text": t}}, t, t) for i, t in enumerate(texts)]


def test_head_answers_labels_over_text_only(control):
    assert SpansHead.supports(control, {})
    (html,) = control_specs('<View><Labels name="ner" toName="doc"><Label value="A"/></Labels>'
                            '<HyperText name="doc" value="$html"/></View>')
    assert not SpansHead.supports(html, {})


def test_identity_is_json_and_names_the_encoder(head):
    identity = json.loads(json.dumps(head.identity()))
    assert identity[:3] == ["spans", "ner", list(LABELS)]
    assert "MiniLM" in identity[3]


def test_predictions_are_label_studio_spans_with_exact_offsets(head, fitted):
    texts = [t for t, _ in SENTENCES] + ["Barack Obama visited Google in Paris.", "", "   ", "no entities here at all"]
    predictions = head.predict(inputs_of(texts), fitted)
    assert len(predictions) == len(texts)
    assert predictions[-3] == [] and predictions[-2] == []  # empty and blank texts have no spans
    found = 0
    for text, results in zip(texts, predictions):
        for r in results:
            found += 1
            assert set(r) == {"id", "from_name", "to_name", "type", "value", "score"}
            assert isinstance(r["id"], str) and r["id"]
            assert (r["from_name"], r["to_name"], r["type"]) == ("ner", "text", "labels")
            value = r["value"]
            assert set(value) == {"start", "end", "text", "labels"}
            assert isinstance(value["start"], int) and isinstance(value["end"], int)
            assert 0 <= value["start"] < value["end"] <= len(text)
            assert value["text"] == text[value["start"]:value["end"]]
            assert value["text"] == value["text"].strip() and value["text"][-1] not in ",;:"
            assert len(value["labels"]) == 1 and value["labels"][0] in LABELS
            assert 0.0 <= r["score"] <= 1.0
    assert found >= 10
    json.dumps(predictions)  # what Label Studio receives


def test_fit_learns_the_annotated_spans(head, fitted, gold):
    predictions = head.predict(inputs_of([t for t, _ in gold]), fitted)
    predicted = {(i, r["value"]["start"], r["value"]["end"], r["value"]["labels"][0])
                 for i, results in enumerate(predictions) for r in results}
    expected = {(i, s, e, label) for i, (_, spans) in enumerate(gold) for s, e, label in spans}
    assert len(predicted & expected) >= 0.7 * len(expected), (sorted(predicted), sorted(expected))
    assert "Misc" not in fitted["labels"]  # never annotated, never predicted
    assert all(r["value"]["labels"] != ["Misc"] for results in predictions for r in results)


def test_unicode_text_keeps_exact_python_offsets(head, fitted):
    text = "🎉🎉 Zoë Ångström met José Müller in São Paulo 🇧🇷 and Zürich 🚀."
    (results,) = head.predict(inputs_of([text]), fitted)
    assert results, "expected spans in a text much like the training ones"
    for r in results:
        v = r["value"]
        assert text[v["start"]:v["end"]] == v["text"]
        assert v["text"].encode("utf-8").decode("utf-8") == v["text"]
    texts = {r["value"]["text"] for r in results}
    assert texts & {"Zoë Ångström", "José Müller", "São Paulo", "Zürich"}
    # the tokenizer's words come back at Python str indices, whatever precedes them
    (offsets, vectors), = get_token_encoder(head.threads).encode([text])
    words = [text[s:e] for s, e in offsets]
    assert ["Zoë", "Ångström"] == words[words.index("Zoë"):words.index("Zoë") + 2]
    assert "Zürich" in words and "🚀" in words and vectors.shape == (len(words), 384)


def test_fitted_state_round_trips_through_joblib(head, fitted, tmp_path):
    path = tmp_path / "spans.joblib"
    joblib.dump(fitted, path)
    loaded = joblib.load(path)
    texts = [t for t, _ in SENTENCES[:4]] + ["Barack Obama visited Google in Paris."]
    strip = lambda preds: [[(r["value"], round(r["score"], 6)) for r in results] for results in preds]
    assert strip(head.predict(inputs_of(texts), loaded)) == strip(head.predict(inputs_of(texts), fitted))


def test_too_few_annotations_give_no_fit(head, gold):
    assert head.fit([]) is None
    (text, spans) = gold[0]
    assert head.fit([example(0, text, spans)]) is None  # one annotated text
    no_spans = [example(i, t, []) for i, (t, _) in enumerate(gold)]
    assert head.fit(no_spans) is None  # annotations without spans
    other_control = [example(i, t, s, from_name="other") for i, (t, s) in enumerate(gold)]
    assert head.fit(other_control) is None  # spans of another control
    whole = [example(i, t, [(0, len(t), "Location")]) for i, t in enumerate(["Paris", "Berlin", "Madrid"])]
    assert head.fit(whole) is None  # no word outside a span: one tag only
    assert head.predict(inputs_of(["Angela Merkel"]), None) == [[]]


def test_spans_with_labels_outside_the_config_or_drifted_offsets_are_handled(head):
    text = "👍 Angela Merkel spoke."
    # offsets counted in UTF-16 units (as Label Studio before 1.4 did): one past the Python index
    drifted = {"from_name": "ner", "to_name": "text", "type": "labels",
               "value": {"start": 3, "end": 16, "text": "Angela Merkel", "labels": ["Person"]}}
    unknown = {"from_name": "ner", "to_name": "text", "type": "labels",
               "value": {"start": 16, "end": 21, "text": "spoke", "labels": ["Verb"]}}
    padded = {"from_name": "ner", "to_name": "text", "type": "labels",
              "value": {"start": 1, "end": 15, "text": " Angela Merkel", "labels": ["Person", "Misc"]}}
    ex = Example(TaskInput({"id": 1}, text, text), (drifted, unknown, padded))
    assert head.spans_of(ex) == [(2, 15, "Person"), (2, 15, "Person")]


def test_long_texts_run_in_windows_and_keep_offsets(head, fitted):
    sentence = "Angela Merkel met Emmanuel Macron in Paris on Monday. "
    text = sentence * 40  # 480 word pieces: three windows of 254
    (offsets, vectors), = get_token_encoder(head.threads).encode([text])
    assert len(offsets) == 40 * 10 and (offsets[1:, 0] >= offsets[:-1, 1]).all()
    assert (np.abs(vectors).sum(axis=1) > 0).all()  # every word got a vector from some window
    (results,) = head.predict(inputs_of([text]), fitted)
    assert all(text[r["value"]["start"]:r["value"]["end"]] == r["value"]["text"] for r in results)
    assert sum(r["value"]["text"] == "Paris" for r in results) >= 30


def test_the_encoder_encodes_a_text_once_and_hands_back_the_same_read_only_words(head, monkeypatch):
    encoder = get_token_encoder(head.threads)
    encoder.clear_cache()
    runs = []
    run = encoder._run
    monkeypatch.setattr(encoder, "_run", lambda encodings: runs.append(len(encodings)) or run(encodings))
    texts = ["Peter Gabriel sang in Berlin.", "Nothing here.", "Peter Gabriel sang in Berlin."]
    first = encoder.encode(texts)
    assert runs == [2]  # the repeated text once
    second = encoder.encode(["Nothing here.", "A new one in Rome.", "Peter Gabriel sang in Berlin."])
    assert runs == [2, 1]  # only the new text
    assert second[0][1] is first[1][1] and second[2][0] is first[0][0] and first[0][1] is first[2][1]
    with pytest.raises(ValueError):
        second[0][1][0, 0] = 1.0  # shared with the cache: read-only
    monkeypatch.setattr(encoder, "cache_bytes", 0)  # no cache: encoded every time
    encoder.clear_cache()
    encoder.encode(["Nothing here."])
    encoder.encode(["Nothing here."])
    assert runs == [2, 1, 1, 1]


def test_labelhub_spans_cache_bytes_sizes_the_encoders_cache_and_0_keeps_nothing(control):
    from labelhub.backend.settings import Settings

    assert Settings.from_env({}).spans_cache_bytes == DEFAULT_CACHE_BYTES == 64 * 2 ** 20
    for raw in ("-1", "64MiB"):
        with pytest.raises(ValueError, match="LABELHUB_SPANS_CACHE_BYTES"):
            Settings.from_env({"LABELHUB_SPANS_CACHE_BYTES": raw})
    host = StubHost()
    host.settings = Settings.from_env({"LABELHUB_SPANS_CACHE_BYTES": "0"})
    encoder = SpansHead(control, host, {}, [control]).encoder()
    assert encoder.cache_bytes == 0 and encoder is not get_token_encoder(host.settings.torch_threads)
    encoder.encode(["Peter Gabriel sang in Berlin."])
    assert len(encoder._cache) == 0
    default = StubHost()
    assert SpansHead(control, default, {}, [control]).encoder() is get_token_encoder(default.settings.torch_threads)


@pytest.mark.parametrize("text, start, end, expected", [
    ('He met "Peter Gabriel", then left.', 7, 23, "Peter Gabriel"),
    ("in the U.S. today", 7, 11, "U.S."),
    ("Foo (Bar) x", 0, 9, "Foo (Bar)"),
    ("(Foo) and (Bar)", 0, 15, "(Foo) and (Bar)"),
    ("  Paris,  ", 0, 10, "Paris"),
    ("(Reuters", 0, 8, "Reuters"),
    (" , ", 0, 3, ""),
])
def test_trim_span_strips_whitespace_and_stray_punctuation(text, start, end, expected):
    s, e = trim_span(text, start, end)
    assert text[s:e] == expected
