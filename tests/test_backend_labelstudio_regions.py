"""Regions through a real Label Studio 1.23.2: boxes, entity spans, transcriptions, and a Hub model by path.

One backend (gunicorn, two workers) serves every project of the module, as one deployment serves a team.
Label Studio calls it itself: connecting the model (``/health``, ``/setup`` with the project's Extra
params), each annotation saved through its API (``ANNOTATION_CREATED`` to ``/webhook``: the background
fit), and the Data Manager's "Retrieve predictions" action (``/predict``). The predictions are then read
back from Label Studio, as its labeling screen draws them: the right ``from_name``/``to_name``/``type``,
coordinates in percent of ``original_width``/``original_height``, character offsets into the task's text.
"""
from __future__ import annotations

import io

import pytest
import requests

from labelhub.sync.demo.sample_data import FASHION_MNIST_CLASSES, fashion_mnist_canvases
from tests.backend_fixtures import wait_for
from tests.entity_corpus import CONLL_LABELS, conll2003, spans_results
from tests.test_backend_labelstudio import (_api, _predictions, _retrieve, _retrieve_version, _tasks,  # noqa: F401
                                           backend)  # (a fixture)
from tests.test_browser_demo import CHROMIUM, CHROMIUM_ARGS, ROOT, page_wait
from tests.test_transcription_head import LINES, REGION_CONFIG, cer, render

BOX_CLASSES = ("Trouser", "Sneaker", "Bag")
SCREENSHOT = ROOT / "test-artifacts" / "predicted-box.png"


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _upload(label_studio, project_id, images: list[tuple[str, bytes]]) -> dict[str, dict]:
    """Upload PNGs into the project; its tasks by file name."""
    files = [(f"file{i}", (name, data, "image/png")) for i, (name, data) in enumerate(images)]
    _api(label_studio, "POST", f"/api/projects/{project_id}/import", files=files)
    return {t["data"][next(iter(t["data"]))].rsplit("-", 1)[-1]: t for t in _tasks(label_studio, project_id)}


def _connect(label_studio, backend, project_id, extra_params=None):
    kwargs = {"extra_params": extra_params} if extra_params is not None else {}
    ml = label_studio.client().ml.create(project=project_id, url=backend.url, title="labelhub", **kwargs)
    ml = label_studio.client().ml.get(id=ml.id)
    assert ml.state == "CO", ml.error_message
    return ml


def _annotate_and_wait(label_studio, backend, ml, rows):
    """Save each ``(task, results)`` through Label Studio and wait for the fit its webhooks start."""
    client = label_studio.client()
    for task, results in rows:
        client.annotations.create(id=task["id"], result=results)
    pending = backend.model_dir / "events" / "pending"
    wait_for(lambda: not list(pending.iterdir()), timeout=180, message="the trainer to apply the events")
    return wait_for(lambda: (v := client.ml.get(id=ml.id).model_version) and not v.startswith("labelhub-0-") and v,
                    timeout=120, message="a trained model version")


def _latest(label_studio, task_id, version):
    preds = [p for p in _predictions(label_studio, task_id) if p["model_version"] == version]
    assert len(preds) == 1, _predictions(label_studio, task_id)
    return preds[0]


def _iou(a, b):
    ax0, ay0, ax1, ay1 = a["x"], a["y"], a["x"] + a["width"], a["y"] + a["height"]
    bx0, by0, bx1, by1 = b
    w, h = max(0.0, min(ax1, bx1) - max(ax0, bx0)), max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = w * h
    return inter / ((ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter)


@pytest.fixture(scope="module")
def boxes_project(label_studio, backend):
    """A boxes project: 50 canvases uploaded, 40 annotated through Label Studio, the model trained on them."""
    config = ("<View><Image name='image' value='$image'/><RectangleLabels name='box' toName='image'>"
              + "".join(f"<Label value='{c}'/>" for c in BOX_CLASSES) + "</RectangleLabels></View>")
    project = label_studio.client().projects.create(title="labelhub boxes", label_config=config)
    classes = [FASHION_MNIST_CLASSES.index(c) for c in BOX_CLASSES]
    canvases = fashion_mnist_canvases("test", 50, seed=3, classes=classes)
    by_name = _upload(label_studio, project.id, [(f"canvas{i:03d}.png", _png(img)) for i, (img, _) in
                                                  enumerate(canvases)])
    rows = [(by_name[f"canvas{i:03d}.png"], boxes) for i, (_, boxes) in enumerate(canvases)]
    ml = _connect(label_studio, backend, project.id)
    train = [(task, [{"from_name": "box", "to_name": "image", "type": "rectanglelabels", "original_width": 256,
                      "original_height": 256, "image_rotation": 0,
                      "value": {"x": x0 / 2.56, "y": y0 / 2.56, "width": (x1 - x0) / 2.56, "height": (y1 - y0) / 2.56,
                                "rotation": 0, "rectanglelabels": [label]}}
                     for x0, y0, x1, y1, label in boxes]) for task, boxes in rows[:40]]
    version = _annotate_and_wait(label_studio, backend, ml, train)
    held_out = rows[40:]
    _retrieve_version(label_studio, project.id, [t["id"] for t, _ in held_out], version)
    return project, version, held_out


def test_boxes_project_learns_from_annotated_boxes_and_draws_them(label_studio, boxes_project):
    project, version, held_out = boxes_project
    found = total = 0
    for task, boxes in held_out:
        pred = _latest(label_studio, task["id"], version)
        for region in pred["result"]:
            assert (region["from_name"], region["to_name"], region["type"]) == ("box", "image", "rectanglelabels")
            assert (region["original_width"], region["original_height"]) == (256, 256)
            value = region["value"]
            assert all(0 <= value[k] <= 100 for k in ("x", "y", "width", "height"))
            assert value["rectanglelabels"][0] in BOX_CLASSES and 0 <= region["score"] <= 1
        for *box, label in boxes:
            total += 1
            found += any(_iou(r["value"], [c / 2.56 for c in box]) >= 0.5
                         and r["value"]["rectanglelabels"] == [label] for r in pred["result"])
    assert found / total >= 0.5, (found, total)  # the bench measures quality; here: it learned from the boxes


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium: run python -m tests.testbed install")
def test_the_labeling_screen_draws_a_predicted_box_on_the_real_image(label_studio, boxes_project):
    from playwright.sync_api import sync_playwright

    project, version, held_out = boxes_project
    task = next(t for t, _ in held_out if _latest(label_studio, t["id"], version)["result"])
    predicted = _latest(label_studio, task["id"], version)["result"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{label_studio.url}/user/login/")
            page.locator("input[name=email]").fill(label_studio.username)
            page.locator("input[name=password]").fill(label_studio.password)
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url(lambda url: "/user/login" not in url)
            page.goto(f"{label_studio.url}/projects/{project.id}/data?task={task['id']}")
            # the real image, drawn in the labeling area at its size
            page_wait(page, lambda: page.locator("img").evaluate_all(
                "els => els.some(e => e.complete && e.naturalWidth === 256 && e.src.includes('/data/upload/'))"),
                timeout=60, message="the image in the labeling area")
            # the prediction's tab (its version, shortened by the UI to "labelhub…<last characters>"), and its
            # boxes as regions of the predicted labels, drawn over the image
            page.get_by_text(version[-6:], exact=False).first.wait_for(timeout=60_000)
            label = predicted[0]["value"]["rectanglelabels"][0]
            page_wait(page, lambda: page.get_by_text(label, exact=True).count() >= 2, timeout=30,
                      message=f"a region labelled {label} beside the label button")
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT))
        finally:
            browser.close()
    assert SCREENSHOT.exists()


def test_spans_project_learns_from_annotated_entities_with_exact_offsets(label_studio, backend):
    config = ("<View><Labels name='label' toName='text'>" + "".join(f"<Label value='{c}'/>" for c in CONLL_LABELS)
              + "</Labels><Text name='text' value='$text'/></View>")
    client = label_studio.client()
    project = client.projects.create(title="labelhub spans", label_config=config)
    sentences = [s for s in conll2003("train", 400) if s[1] and len(s[0]) > 30][:120]
    client.projects.import_tasks(id=project.id, request=[{"text": text} for text, _ in sentences])
    by_text = {t["data"]["text"]: t for t in _tasks(label_studio, project.id)}
    rows = [(by_text[text], spans) for text, spans in sentences]
    ml = _connect(label_studio, backend, project.id)
    version = _annotate_and_wait(label_studio, backend, ml,
                                 [(task, spans_results(task["data"]["text"], spans)) for task, spans in rows[:100]])
    held_out = rows[100:]
    _retrieve_version(label_studio, project.id, [t["id"] for t, _ in held_out], version)
    hits = predicted = 0
    for task, spans in held_out:
        pred = _latest(label_studio, task["id"], version)
        text = task["data"]["text"]
        for region in pred["result"]:
            assert (region["from_name"], region["to_name"], region["type"]) == ("label", "text", "labels")
            value = region["value"]
            assert value["text"] == text[value["start"]:value["end"]] and value["labels"][0] in CONLL_LABELS
            predicted += 1
            hits += (value["start"], value["end"], value["labels"][0]) in set(spans)
    assert predicted and hits / predicted >= 0.3, (hits, predicted)


def test_transcription_project_gets_one_rectangle_and_text_per_line(label_studio, backend):
    client = label_studio.client()
    project = client.projects.create(title="labelhub ocr", label_config=REGION_CONFIG)
    pages = {f"page{i}.png": _png(render(LINES[i:] + LINES[:i])[0]) for i in range(3)}
    by_name = _upload(label_studio, project.id, list(pages.items()))
    ml = _connect(label_studio, backend, project.id)
    assert ml.model_version.startswith("labelhub-0-")  # OCR answers before any annotation
    tasks = [by_name[name] for name in pages]
    _retrieve(label_studio, project.id, [t["id"] for t in tasks])
    for i, task in enumerate(tasks):
        pred = _latest(label_studio, task["id"], ml.model_version)
        boxes = {r["id"]: r for r in pred["result"] if r["type"] == "rectangle"}
        texts = {r["id"]: r for r in pred["result"] if r["type"] == "textarea"}
        assert set(boxes) == set(texts) and len(boxes) == len(LINES)
        for rid, text in texts.items():
            assert text["value"]["x"] == boxes[rid]["value"]["x"] and text["original_width"] == 900
        read = "\n".join(t["value"]["text"][0] for t in sorted(texts.values(), key=lambda r: r["value"]["y"]))
        assert cer(read, "\n".join(LINES[i:] + LINES[:i])) <= 0.05


def test_a_hub_model_chosen_in_extra_params_answers_its_project_beside_the_learned_default(
        label_studio, backend, tmp_path_factory):
    from tests.tiny_models import build_image_classifier

    model = build_image_classifier(tmp_path_factory.mktemp("tiny-vit"), labels=("cat", "DOG", "bird"), winner="DOG")
    config = ("<View><Image name='image' value='$image'/><Choices name='animal' toName='image'>"
              "<Choice value='Cat'/><Choice value='Dog'/></Choices></View>")
    client = label_studio.client()
    project = client.projects.create(title="labelhub hub model", label_config=config)
    canvases = fashion_mnist_canvases("test", 3, seed=5)
    by_name = _upload(label_studio, project.id, [(f"pet{i}.png", _png(img)) for i, (img, _) in enumerate(canvases)])
    ml = _connect(label_studio, backend, project.id, extra_params={"model": str(model)})
    tasks = list(by_name.values())
    _retrieve(label_studio, project.id, [t["id"] for t in tasks])
    for task in tasks:
        pred = _latest(label_studio, task["id"], ml.model_version)
        # "DOG" mapped case-insensitively onto the config's "Dog"; the model's "bird" has no choice
        assert [(r["from_name"], r["type"], r["value"]["choices"]) for r in pred["result"]] == \
            [("animal", "choices", ["Dog"])]
    stored = requests.get(f"{label_studio.url}/api/ml/{ml.id}", timeout=10,
                          headers={"Authorization": f"Token {label_studio.api_key}"}).json()
    assert stored["extra_params"] == {"model": str(model)}
