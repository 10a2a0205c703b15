"""End to end, with real images and three annotators: Label Studio → ``labelhub sync --once`` → versions that
``datasets.load_dataset`` loads (default and ``consensus`` configs), the manifest's agreement, ``labelhub diff``,
and ``labelhub restore`` of a version into a new project. Local git repo and Hub test server.

Hand-computed expectations (rules of :mod:`labelhub.sync.versions.agreement`'s docstring): a task's agreement is the
mean over its controls that have one. Choices (``kind`` single, ``tags`` multiple): the share of the answers equal
to the majority (an empty Choices cell is no answer). Boxes: the mean over annotator pairs of the F1 of boxes matched
at IoU >= 0.5 (an empty box cell is the answer "none"; two "none" agree, F1 1). v1 (admin = A, users B and C):

====  =======================================  ==========================================================
task  annotations                              consensus / agreement
====  =======================================  ==========================================================
T0    A: Bag, dark, box(10,10,50,50)           kind Bag (2/3), tags dark (2/3), box F1s A-B 1 (IoU 2400/2600),
      B: Bag, dark|light, box(12,10,50,50)     A-C 0, B-C 0 → 1/3; the A+B group (2 of 3) kept, averaged to
      C: Sneaker, dark, no box                 x .11; agreement (2/3 + 2/3 + 1/3) / 3 = 5/9
T1    A: Trouser (ground truth), light, box    kind tie 1-1 → the ground truth's: Trouser (1/2), tags 1, box 1
      B: Bag, light, the same box              → agreement (1/2 + 1 + 1) / 3 = 5/6
T2    A: Sneaker, patterned, box               one annotator: the answers themselves, agreement empty
T3    A: skipped                               no consensus row (no answer); a CSV row, no training row
T4    A: Bag; C: Bag (no tags, no box)         kind 1, tags none (no answer), box "none"="none" 1 → 1
T5    (v2 only) A: Trouser, patterned, box
====  =======================================  ==========================================================

Krippendorff's alpha (nominal) of ``kind`` over the tasks with two answers, from the coincidences
``1 - (n - 1)(n - sum o_cc) / (n^2 - sum n_c^2)``: v1 T0 {Bag 2, Sneaker 1}, T1 {Trouser 1, Bag 1}, T4 {Bag 2}:
o_Bag,Bag = 2*1/2 + 2*1/1 = 3, n_c = {Bag 5, Sneaker 1, Trouser 1}, n = 7 → 1 - 6*4/(49-27) = -1/11.
v2 (C's T0 Sneaker → Bag, C's T4 deleted, T5 added): T0 {Bag 3}, T1 {Trouser 1, Bag 1}: o = 3, n_c = {Bag 4,
Trouser 1}, n = 5 → 1 - 4*2/(25-17) = 0.
"""
from __future__ import annotations

import io
import json
import uuid

import numpy as np
import pandas as pd
import pytest
from labelhub.sync.versions.rows import annotation_row

from tests import sample_repos
from tests.conftest import HUB_TOKEN
from tests.in_process import invoke_labelhub
from tests.test_sync_export import LocalRepo, sample_repo

KINDS, TAGS, BOXES = ["Trouser", "Bag", "Sneaker"], ["dark", "light", "patterned"], ["item", "logo"]
CONFIG = ('<View><Image name="image" value="$image"/>'
          '<Choices name="kind" toName="image">' + "".join(f'<Choice value="{k}"/>' for k in KINDS) + '</Choices>'
          '<Choices name="tags" toName="image" choice="multiple">' + "".join(f'<Choice value="{t}"/>' for t in TAGS)
          + '</Choices><RectangleLabels name="box" toName="image">'
          + "".join(f'<Label value="{b}"/>' for b in BOXES) + '</RectangleLabels></View>')
CONTROLS = {"kind": "Choices", "tags": "Choices", "box": "RectangleLabels"}
N = 6


@pytest.fixture(scope="module")
def annotators(label_studio):
    """Two more Label Studio users (B and C), besides the admin (A)."""
    client = label_studio.client()
    made = []
    for who in ("b", "c"):
        email = f"{who}-{uuid.uuid4().hex[:8]}@labelhub.test"
        made.append(client.users.create(username=email, email=email, password=f"{who}-annotator-password-1"))
    return made


@pytest.fixture(params=["local", "hub"])
def repo(request, tmp_path):
    return sample_repo(request, tmp_path, "e2e", N)


def result(kind=None, tags=(), boxes=()):
    out = []
    if kind:
        out.append({"from_name": "kind", "to_name": "image", "type": "choices", "value": {"choices": [kind]}})
    if tags:
        out.append({"from_name": "tags", "to_name": "image", "type": "choices", "value": {"choices": list(tags)}})
    for x, y, w, h, label, *turned in boxes:  # (x, y, width, height, label[, rotation]) in percent and degrees
        out.append({"from_name": "box", "to_name": "image", "type": "rectanglelabels", "original_width": 28,
                    "original_height": 28, "value": {"x": x, "y": y, "width": w, "height": h,
                                                     "rotation": turned[0] if turned else 0,
                                                     "rectanglelabels": [label]}})
    return out


def fractions(boxes):
    return [{"x": x / 100, "y": y / 100, "width": w / 100, "height": h / 100, "rotation": turned[0] if turned else 0,
             "label": label} for x, y, w, h, label, *turned in boxes]


def same_boxes(got, want, ordered=True):
    if not ordered:  # consensus boxes: their order is not specified
        got, want = (sorted(bs, key=lambda b: (b["label"], b["x"], b["y"])) for bs in (got, want))
    assert [b["label"] for b in got] == [b["label"] for b in want], (got, want)
    for g, w in zip(got, want):
        assert [g[k] for k in ("x", "y", "width", "height", "rotation")] == pytest.approx(
            [w[k] for k in ("x", "y", "width", "height", "rotation")], abs=1e-6), (got, want)


class Names:
    """Typed cells of a loaded config back to label names (Hub: ClassLabel ints; local folder: strings)."""

    def __init__(self, ds):
        self.features = ds.features

    def kind(self, value):
        feature = self.features["kind"]
        return feature.int2str(value) if hasattr(feature, "int2str") and value is not None else value

    def tags(self, values):
        feature = getattr(self.features["tags"], "feature", None)
        return [feature.int2str(v) if hasattr(feature, "int2str") else v for v in values]

    def boxes(self, boxes):
        feature = self.features["box"]
        inner = feature.feature if hasattr(feature, "feature") else feature[0]
        label = inner["label"]
        return [{**b, "label": label.int2str(b["label"]) if hasattr(label, "int2str") else b["label"]}
                for b in boxes]


def sync_once(label_studio, repo, project, state):
    """``labelhub sync --once`` of ``repo`` into ``project`` with the state file ``state``, in-process
    (:func:`tests.in_process.invoke_labelhub`); raises on a non-zero exit."""
    return invoke_labelhub("sync", "--repo", repo.arg, "--project", str(project.id), "--state", str(state), "--once",
                           env={"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.api_key,
                                "HF_TOKEN": HUB_TOKEN, "TQDM_DISABLE": "1"}, check=True)


def test_three_annotators_versions_consensus_agreement_diff_and_restore(label_studio, make_project, annotators, repo,
                                                                          tmp_path, monkeypatch):
    import krippendorff

    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)
    client = label_studio.client()
    b_user, c_user = annotators
    A, B, C = label_studio.username, b_user.email, c_user.email
    ids = {A: None, B: b_user.id, C: c_user.id}
    project = make_project("e2e versions", CONFIG)
    state = tmp_path / "state.sqlite3"
    sync_once(label_studio, repo, project, state)
    paths = [sample_repos.image_path(i) for i in range(N)]
    tasks = {t.data["hf_path"]: t.id for t in client.tasks.list(project=project.id, page_size=100)}
    assert sorted(tasks) == paths

    plan = {  # (task index, annotator): (kind, tags, boxes)
        (0, A): ("Bag", ["dark"], [(10, 10, 50, 50, "item")]),
        (0, B): ("Bag", ["dark", "light"], [(12, 10, 50, 50, "item")]),
        (0, C): ("Sneaker", ["dark"], []),
        (1, A): ("Trouser", ["light"], [(5, 5, 90, 90, "item")]),
        (1, B): ("Bag", ["light"], [(5, 5, 90, 90, "item")]),
        (2, A): ("Sneaker", ["patterned"], [(20, 30, 40, 10, "logo", 30), (0, 0, 25.5, 12.25, "item")]),
        (4, A): ("Bag", [], []),
        (4, C): ("Bag", [], []),
    }
    made = {}
    for (i, who), (kind, tags, boxes) in plan.items():
        extra = {"completed_by": ids[who]} if ids[who] else {}
        made[(i, who)] = client.annotations.create(tasks[paths[i]], result=result(kind, tags, boxes),
                                                   ground_truth=(i, who) == (1, A), lead_time=2.0, **extra)
    made[(3, A)] = client.annotations.create(tasks[paths[3]], result=[], was_cancelled=True)
    sync_once(label_studio, repo, project, state)
    assert "annotations-v1" in repo.tags()
    local = isinstance(repo, LocalRepo)

    # -- default config: only the annotated files, one row per non-skipped annotation, the labels as annotated
    train = repo.load("annotations-v1", tmp_path, name=None, pandas=False)
    names = Names(train)
    if not local:
        assert train.features["kind"].names == KINDS and train.features["tags"].feature.names == TAGS
    assert train.num_rows == len(plan) == 8
    got = {}
    for row in train:
        got[(row["hf_path"], row["annotator"])] = (names.kind(row["kind"]), names.tags(row["tags"]),
                                                   names.boxes(row["box"]))
        assert row["image"].size == (28, 28)
    assert sorted(got) == sorted((paths[i], who) for i, who in plan)
    assert paths[3] not in {p for p, _ in got} and paths[5] not in {p for p, _ in got}
    for (i, who), (kind, tags, boxes) in plan.items():
        g_kind, g_tags, g_boxes = got[(paths[i], who)]
        assert (g_kind, g_tags) == (kind, tags), (i, who, got[(paths[i], who)])
        same_boxes(g_boxes, fractions(boxes))
    rows_v1 = repo.load("annotations-v1", tmp_path)
    assert len(rows_v1) == 9 and int(rows_v1["was_cancelled"].astype(str).str.lower().eq("true").sum()) == 1

    # -- consensus config: majority labels and agreement computed by hand (module docstring)
    consensus_ds = repo.load("annotations-v1", tmp_path, name="consensus", pandas=False)
    cnames = Names(consensus_ds)
    consensus = {row["hf_path"]: row for row in consensus_ds}
    assert sorted(consensus) == [paths[0], paths[1], paths[2], paths[4]]
    expected = {  # path: (kind, tags, boxes, annotators, agreement)
        paths[0]: ("Bag", ["dark"], fractions([(11, 10, 50, 50, "item")]), 3, 5 / 9),
        paths[1]: ("Trouser", ["light"], fractions([(5, 5, 90, 90, "item")]), 2, 5 / 6),
        paths[2]: ("Sneaker", ["patterned"], fractions(plan[(2, A)][2]), 1, None),
        paths[4]: ("Bag", [], [], 2, 1.0),
    }
    for path, (kind, tags, boxes, n, agreement) in expected.items():
        row = consensus[path]
        assert (cnames.kind(row["kind"]), cnames.tags(row["tags"])) == (kind, tags), (path, row)
        same_boxes(cnames.boxes(row["box"]), boxes, ordered=False)
        assert (row["annotators"], row["skipped"]) == (n, 0), (path, row)
        if agreement is None:
            assert row["agreement"] is None or np.isnan(row["agreement"]), (path, row["agreement"])
        else:
            assert row["agreement"] == pytest.approx(agreement, abs=1e-5), (path, row["agreement"], agreement)

    # -- manifest agreement: alpha by hand, and by the krippendorff package on the hand-built matrix
    manifest = json.loads(repo.read("annotations-v1", "annotations/manifest.json"))
    kind_entry = manifest["agreement"]["controls"]["kind"]
    value = {"Bag": 0, "Sneaker": 1, "Trouser": 2}
    nan = np.nan
    matrix = np.array([[value["Bag"], value["Trouser"], value["Bag"]],  # A on T0, T1, T4
                       [value["Bag"], value["Bag"], nan],  # B
                       [value["Sneaker"], nan, value["Bag"]]])  # C
    by_package = krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal")
    assert by_package == pytest.approx(-1 / 11, abs=1e-9)
    assert kind_entry["krippendorff_alpha"] == pytest.approx(-1 / 11, abs=1e-6), kind_entry
    assert kind_entry["mean_task_agreement"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3, abs=1e-6), kind_entry
    # box pairs: T0 A-B 1, A-C 0, B-C 0; T1 A-B 1; T4 A-C 1 ("none" = "none") → 3/5
    box_entry = manifest["agreement"]["controls"]["box"]
    assert box_entry["mean_pairwise_iou_agreement"] == pytest.approx(3 / 5, abs=1e-6), box_entry
    assert "### Agreement" in repo.read("annotations-v1", "README.md").decode()

    # -- v2: one relabel (C's T0 Sneaker → Bag), one deletion (C's T4), one addition (A's T5)
    client.annotations.update(made[(0, C)].id, result=result("Bag", ["dark"]))
    client.annotations.delete(made[(4, C)].id)
    made[(5, A)] = client.annotations.create(tasks[paths[5]], result=result("Trouser", ["patterned"],
                                                                            [(1, 2, 3, 4, "logo")]))
    sync_once(label_studio, repo, project, state)
    assert "annotations-v2" in repo.tags()
    manifest2 = json.loads(repo.read("annotations-v2", "annotations/manifest.json"))
    assert manifest2["agreement"]["controls"]["kind"]["krippendorff_alpha"] == pytest.approx(0, abs=1e-6)

    env = {"HF_TOKEN": HUB_TOKEN, "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.api_key}
    diff = json.loads(invoke_labelhub("diff", "--repo", repo.arg, "annotations-v1", "annotations-v2", "--json",
                                      env=env, check=True).stdout)
    assert (diff["added"], diff["removed"], diff["relabelled"]) == (1, 1, 1), diff
    assert diff["relabels"] == [{"control": "kind", "from": "Sneaker", "to": "Bag", "count": 1}], diff
    assert diff["by_annotator"] == {C: {"relabelled": 1, "removed": 1}, A: {"added": 1}}, diff
    shown = invoke_labelhub("diff", "--repo", repo.arg, "annotations-v1", "annotations-v2", env=env, check=True).stdout
    assert "+1 added, -1 removed, ~1 relabelled" in shown, shown

    # -- restore v2 into a new project: its annotations, as rows, are v2's rows (ids aside)
    target = make_project("e2e restored", CONFIG)
    restored = invoke_labelhub("restore", "--repo", repo.arg, "--tag", "annotations-v2", "--project",
                               str(target.id), "--state", str(tmp_path / "restore.sqlite3"),
                               env={**env, "TQDM_DISABLE": "1"})
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.splitlines()[-1] == ("tasks created: 6, annotations: 9, annotators without a Label "
                                                "Studio user: 0, rows rejected: 0"), restored.stdout
    v2 = pd.read_csv(io.BytesIO(repo.read("annotations-v2", "annotations/annotations.csv")), dtype=str,
                     keep_default_na=False)
    assert len(v2) == 9
    users = {u.id: u.email for u in client.users.list()}
    back = {}
    for task in client.tasks.list(project=target.id, page_size=100, fields="all"):
        for annotation in task.annotations:
            row = annotation_row(task.dict(), annotation, CONTROLS, "image", users)
            key = (row["hf_path"], row["annotator"])
            assert key not in back, key
            back[key] = {c: str(row[c]) for c in ("kind", "tags", "box", "was_cancelled", "ground_truth")}
    want = {(r["hf_path"], r["annotator"]): {c: r[c] for c in ("kind", "tags", "box", "was_cancelled",
                                                                "ground_truth")}
            for r in v2.to_dict("records")}
    assert back == want


NER_CONFIG = ('<View><Text name="text" value="$text"/><Labels name="ner" toName="text">'
              '<Label value="PER"/><Label value="LOC"/></Labels></View>')
TEXTS = {"notes/a.txt": "Alice flew to Paris.", "notes/b.txt": "Bob stayed in Rome.", "notes/c.txt": "Nobody."}


def span(text, word, label):
    start = text.index(word)
    return {"start": start, "end": start + len(word), "text": word, "label": label}


def test_spans_over_text_versions_and_consensus(label_studio, make_project, annotators, tmp_path):
    """Labels over Text on a local repo of .txt files: spans in the default config, the consensus keeps the spans
    given by a majority; a.txt: A {Alice PER, Paris LOC}, B {Alice PER}: F1 2*1/(2+1) = 2/3, consensus {Alice PER}
    (given by 2 of 2; Paris by 1 of 2, not more than half)."""
    client = label_studio.client()
    b_user, _ = annotators
    A, B = label_studio.username, b_user.email
    path = tmp_path / "texts"
    sample_repos.init_local_repo(path)
    sample_repos.commit_local(path, {p: t.encode() for p, t in TEXTS.items()}, message="texts")
    repo = LocalRepo(path)
    project = make_project("e2e spans", NER_CONFIG)
    state = tmp_path / "state.sqlite3"
    sync_once(label_studio, repo, project, state)
    tasks = {t.data["hf_path"]: t for t in client.tasks.list(project=project.id, page_size=100)}
    assert sorted(tasks) == sorted(TEXTS) and tasks["notes/a.txt"].data["text"] == TEXTS["notes/a.txt"]

    def spans_result(spans):
        return [{"from_name": "ner", "to_name": "text", "type": "labels",
                 "value": {"start": s["start"], "end": s["end"], "text": s["text"], "labels": [s["label"]]}}
                for s in spans]

    a, b = TEXTS["notes/a.txt"], TEXTS["notes/b.txt"]
    plan = {("notes/a.txt", A): [span(a, "Alice", "PER"), span(a, "Paris", "LOC")],
            ("notes/a.txt", B): [span(a, "Alice", "PER")],
            ("notes/b.txt", A): [span(b, "Bob", "PER"), span(b, "Rome", "LOC")]}
    for (p, who), spans in plan.items():
        extra = {"completed_by": b_user.id} if who == B else {}
        client.annotations.create(tasks[p].id, result=spans_result(spans), **extra)
    sync_once(label_studio, repo, project, state)
    assert "annotations-v1" in repo.tags()

    train = repo.load("annotations-v1", tmp_path, name=None, pandas=False)
    assert train.num_rows == 3
    got = {(row["hf_path"], row["annotator"]): row for row in train}
    assert sorted(got) == sorted(plan)
    for key, spans in plan.items():
        assert got[key]["text"] == TEXTS[key[0]]
        assert [{k: s[k] for k in ("start", "end", "text", "label")} for s in got[key]["ner"]] == spans, key

    consensus = {row["hf_path"]: row for row in repo.load("annotations-v1", tmp_path, name="consensus", pandas=False)}
    assert sorted(consensus) == ["notes/a.txt", "notes/b.txt"]
    one = consensus["notes/a.txt"]
    assert [{k: s[k] for k in ("start", "end", "text", "label")} for s in one["ner"]] == [span(a, "Alice", "PER")]
    assert one["annotators"] == 2 and one["agreement"] == pytest.approx(2 / 3, abs=1e-5)
    assert consensus["notes/b.txt"]["annotators"] == 1
    # a Text project's rows are plain JSON Lines: no folder builder's parameter (datasets warned "were ignored")
    assert "metadata_filenames" not in repo.read("annotations-v1", "README.md").decode()
    manifest = json.loads(repo.read("annotations-v1", "annotations/manifest.json"))
    ner = manifest["agreement"]["controls"]["ner"]
    assert ner["tag"] == "Labels" and ner["exact_span_agreement"] == pytest.approx(2 / 3, abs=1e-6), ner
    # per label, the F1 of the pair on that label: PER 2*1/(1+1) = 1, LOC 2*0/(1+0) = 0
    assert {k: v["agreement"] for k, v in ner["per_label"].items()} == {"PER": 1.0, "LOC": 0.0}, ner
    assert "### Agreement" in repo.read("annotations-v1", "README.md").decode()
