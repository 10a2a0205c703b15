"""The region examples of ``examples/`` run against real exported versions: spans and boxes.

For a local git repo and a Hub repo (the Hub test server): CoNLL-2003 sentences as ``.txt`` files in one repo and
Fashion-MNIST images in another, made into tasks of two real Label Studio projects (Labels over Text,
RectangleLabels over Image) by ``labelhub sync``, annotated through Label Studio's API (a few annotations without
any region) and exported once (``annotations-v1``). ``examples/train_spans.py`` tags the tokens and learns them;
``examples/boxes_to_yolo.py`` writes the boxes as YOLO label files.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labelhub.sync.demo.sample_data import FASHION_MNIST_CLASSES, fashion_mnist
from tests import sample_repos
from tests.entity_corpus import CONLL_LABELS, conll2003, spans_results
from tests.conftest import HUB_TOKEN
from tests.in_process import invoke_labelhub
from tests.test_ship_examples import ROOT, _datasets_cache, run_example  # noqa: F401 (_datasets_cache: autouse)
from tests.test_sync_export import HubRepo, LocalRepo

SPAN_CONFIG = ('<View><Text name="text" value="$text"/><Labels name="ner" toName="text">'
               + "".join(f'<Label value="{label}"/>' for label in CONLL_LABELS) + "</Labels></View>")
N_IMAGES = 14
_, _Y = fashion_mnist("test", N_IMAGES)
#: The box labels in the label config's order (first seen), which is not their sorted order.
BOX_LABELS = list(dict.fromkeys(FASHION_MNIST_CLASSES[int(c)] for c in _Y))
BOX_CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
              + "".join(f'<Label value="{label}"/>' for label in BOX_LABELS) + "</RectangleLabels></View>")


def sentences() -> list[tuple[str, list[tuple[int, int, str]]]]:
    """16 CoNLL-2003 sentences with entities, then 2 without any (annotations without regions)."""
    corpus = [s for s in conll2003("train", 60) if len(s[0]) > 20]
    return [s for s in corpus if s[1]][:16] + [s for s in corpus if not s[1]][:2]


def item_boxes(index: int, pixels: np.ndarray) -> list[tuple[float, float, float, float, str]]:
    """The boxes of image ``index`` in Label Studio's percent: the item's bounding box (its non-zero pixels), and on
    every fifth image the left half of it too; images 12 and 13 get none."""
    if index >= 12:
        return []
    ys, xs = np.nonzero(pixels > 0)
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    label = FASHION_MNIST_CLASSES[int(_Y[index])]
    boxes = [(x0 / 0.28, y0 / 0.28, (x1 - x0) / 0.28, (y1 - y0) / 0.28, label)]
    if index % 5 == 0:
        boxes.append((x0 / 0.28, y0 / 0.28, (x1 - x0) / 0.56, (y1 - y0) / 0.28, label))
    return [tuple(float(v) for v in box[:4]) + (box[4],) for box in boxes]


def box_results(boxes):
    return [{"from_name": "box", "to_name": "image", "type": "rectanglelabels", "original_width": 28,
             "original_height": 28, "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0,
                                              "rectanglelabels": [label]}} for x, y, w, h, label in boxes]


def exported_version(label_studio, hub, tmp, kind: str, files: dict[str, bytes], config: str, annotate,
                     projects: list[int]):
    """A repo of ``files`` (local when ``hub`` is None, else a private repo of the Hub test server), a project of
    ``config`` (its id appended to ``projects``) synced from it, ``annotate(client, {hf_path: task id})`` called, and
    one export: ``(repo argument, what annotate returned)``."""
    if hub is None:
        repo = LocalRepo(sample_repos.local_repo_with(tmp / kind, files))
    else:
        repo = HubRepo(hub, sample_repos.hub_repo_with(hub, f"labelhub/{kind}-{uuid.uuid4().hex[:10]}", files))
    client = label_studio.client()
    project = client.projects.create(title=f"examples {kind} {'hub' if hub else 'local'}", label_config=config)
    projects.append(project.id)
    state = tmp / f"{kind}.sqlite3"
    sync_once = partial(invoke_labelhub, "sync", "--repo", repo.arg, "--project", str(project.id), "--state",
                        str(state), "--once", check=True,
                        env={"LABEL_STUDIO_URL": label_studio.url, "HF_TOKEN": HUB_TOKEN,
                             "LABEL_STUDIO_API_KEY": label_studio.api_key, "TQDM_DISABLE": "1"})
    sync_once()  # in this process (tests.in_process): the two projects one after the other
    tasks = {t.data["hf_path"]: t.id for t in client.tasks.list(project=project.id, page_size=100)}
    assert sorted(tasks) == sorted(files)
    made = annotate(client, tasks)
    sync_once()
    assert repo.tags() == ["annotations-v1"]
    return repo.arg, made


@pytest.fixture(scope="module", params=["local", "hub"])
def regions(request, label_studio, tmp_path_factory):
    """``(text repo, [(text, spans)] annotated, image repo, {annotation_id: (hf_path, boxes in percent)})``."""
    tmp = tmp_path_factory.mktemp(f"examples-regions-{request.param}")
    hub = request.getfixturevalue("hub_server") if request.param == "hub" else None
    texts = {f"news/s{i:03d}.txt": s for i, s in enumerate(sentences())}

    def annotate_texts(client, tasks):
        for path, (text, spans) in texts.items():
            client.annotations.create(tasks[path], result=spans_results(text, spans, from_name="ner"))
        return list(texts.values())

    images, _ = fashion_mnist("test", N_IMAGES)
    files = sample_repos.image_files(0, N_IMAGES)

    def annotate_images(client, tasks):
        made = {}
        for i in range(N_IMAGES):
            path, boxes = sample_repos.image_path(i), item_boxes(i, images[i])
            made[client.annotations.create(tasks[path], result=box_results(boxes)).id] = (path, boxes)
        return made

    projects: list[int] = []
    try:
        text = exported_version(label_studio, hub, tmp, "spans", {p: t.encode() for p, (t, _) in texts.items()},
                                SPAN_CONFIG, annotate_texts, projects)
        image = exported_version(label_studio, hub, tmp, "boxes", files, BOX_CONFIG, annotate_images, projects)
        yield *text, *image
    finally:
        for project_id in projects:
            label_studio.client().projects.delete(project_id)


def test_train_spans_example_tags_tokens_and_learns_them(regions):
    repo, spans, _, _ = regions
    out = run_example("train_spans.py", repo, "annotations-v1", "--column", "ner").splitlines()
    entities = Counter(label for _, s in spans for _, _, label in s)
    tokens = sum(len(text.split()) for text, _ in spans)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(entities.items()))
    assert out[0] == (f"annotations-v1: {len(spans)} texts (2 without spans), {tokens} tokens, "
                      f"{sum(entities.values())} entities ({counts})")
    scores = re.fullmatch(r"5-fold cross-validated token accuracy (\S+) \(all O: (\S+)\), entity-tag F1 (\S+)", out[1])
    assert scores, out
    accuracy, baseline, f1 = map(float, scores.groups())
    assert accuracy > baseline and f1 > 0, out  # better than tagging every token O, on texts it did not learn from


def test_train_spans_tags_whitespace_tokens_by_overlap():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from train_spans import bio_tokens
    finally:
        sys.path.pop(0)
    text = "Alice Smith flew to Paris. Nobody else."
    spans = [(0, 11, "PER"), (20, 25, "LOC")]  # "Paris" inside the token "Paris."
    assert bio_tokens(text, spans) == [("Alice", "B-PER"), ("Smith", "I-PER"), ("flew", "O"), ("to", "O"),
                                       ("Paris.", "B-LOC"), ("Nobody", "O"), ("else.", "O")]
    assert [tag for _, tag in bio_tokens(text, [])] == ["O"] * 7


def test_boxes_to_yolo_puts_a_rotated_box_in_the_upright_box_around_it():
    """Label Studio turns a box clockwise around its top-left corner, in pixels (so on a non-square image the
    fractions turn unevenly); YOLO's boxes are upright."""
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from boxes_to_yolo import upright
    finally:
        sys.path.pop(0)
    box = {"x": 0.5, "y": 0.5, "width": 0.2, "height": 0.1, "label": 0}
    assert upright({**box, "rotation": 0.0}, (100, 100)) == (0.5, 0.5, 0.2, 0.1)
    assert upright({**box, "rotation": 90.0}, (100, 100)) == pytest.approx((0.4, 0.5, 0.1, 0.2))
    assert upright({**box, "rotation": 180.0}, (100, 200)) == pytest.approx((0.3, 0.4, 0.2, 0.1))
    square = {**box, "width": 0.1, "height": 0.1, "rotation": 45.0}  # a diamond hanging from its top corner
    half = 0.1 * 2 ** 0.5 / 2
    assert upright(square, (100, 100)) == pytest.approx((0.5 - half, 0.5, 2 * half, 2 * half))


def yolo_line(box, names):
    x, y, w, h, label = box
    return [names.index(label), (x + w / 2) / 100, (y + h / 2) / 100, w / 100, h / 100]


def test_boxes_to_yolo_example_writes_the_exported_boxes_as_yolo_files(regions, tmp_path):
    _, _, repo, boxes = regions
    out_dir = tmp_path / "yolo"
    out = run_example("boxes_to_yolo.py", repo, "annotations-v1", str(out_dir), "--column", "box").splitlines()
    names = [json.loads(line.split(": ", 1)[1]) for line in (out_dir / "data.yaml").read_text().splitlines()
             if line.startswith("  ")]
    counts = Counter(box[4] for _, bs in boxes.values() for box in bs)
    # the label config's labels in order ("Dress", of image 13 only, has no box): a Hub version's ClassLabel, a local
    # clone's manifest's class_names (its labels are strings), so class ids do not shift between versions
    assert names == BOX_LABELS
    assert out[0] == (f"annotations-v1: {N_IMAGES} images (2 without boxes), {sum(counts.values())} boxes of "
                      f"{len(names)} classes -> {out_dir}")
    assert out[1:] == [f"  {i}\t{label}\t{counts[label]}" for i, label in enumerate(names)]
    labels = sorted((out_dir / "labels" / "train").iterdir())
    assert len(labels) == len(list((out_dir / "images" / "train").iterdir())) == N_IMAGES
    for annotation_id, (path, want) in boxes.items():
        stem = f"{annotation_id}-{Path(path).stem}"
        got = [[float(v) for v in line.split()] for line in (out_dir / "labels/train" / f"{stem}.txt").read_text()
               .splitlines()]
        assert got == [pytest.approx(yolo_line(box, names), abs=1e-5) for box in want], stem
        with Image.open(out_dir / "images/train" / f"{stem}.png") as image:
            assert image.size == (28, 28)


def test_load_version_counts_region_labels_and_diff_versions_and_the_dataloader_read_region_projects(regions):
    """Found by a walkthrough: load_version crashed on a region column (a list is not hashable), diff_versions looked
    for an ``image`` column in a Text project, and torch_dataloader batched boxes as if they were labels."""
    text_repo, annotated, image_repo, made = regions
    out = run_example("load_version.py", image_repo, "annotations-v1", "--column", "box")
    boxes = Counter(label for _, found in made.values() for *_, label in found)
    for label, count in boxes.items():
        assert f"  {label}\t{count}" in out.splitlines(), out
    out = run_example("load_version.py", text_repo, "annotations-v1", "--column", "ner")
    spans = Counter(label for _, found in annotated for *_, label in found)
    for label, count in spans.items():
        assert f"  {label}\t{count}" in out.splitlines(), out
    assert run_example("diff_versions.py", text_repo, "annotations-v1", "annotations-v1").startswith(
        "annotations-v1 -> annotations-v1: +0 ~0 -0")
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "torch_dataloader.py"), image_repo, "annotations-v1",
                           "--column", "box"], capture_output=True, text=True, timeout=180, cwd=ROOT,
                          env={**os.environ, "HF_TOKEN": HUB_TOKEN, "TQDM_DISABLE": "1"})
    assert proc.returncode != 0 and "holds regions (boxes or spans)" in proc.stderr, proc.stderr[-2000:]
