"""A browser drives the demo's Label Studio: log in, open a task, see the backend's prediction on the
real image, submit it, and find the annotation in the next annotation version of the repo.

Headless Chromium from Debian (``apt-get install chromium``, done by ``python -m tests.testbed
install``) driven by Playwright's bundled driver; the screenshot is kept in
``test-artifacts/browser-demo.png``.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from labelhub.sync.demo.command import image_path
from tests.backend_fixtures import wait_for
from tests.test_ship_demo import DemoProcess, annotate_true_labels, wait_for_trained_model

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", "--no-first-run"]
SCREENSHOT = ROOT / "test-artifacts" / "browser-demo.png"


def page_wait(page, predicate, timeout: float, message: str):
    """Poll ``predicate()`` while Playwright runs (its events are only dispatched inside its calls)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        page.wait_for_timeout(250)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium: run python -m tests.testbed install")
def test_annotator_sees_prediction_on_real_image_submits_it_and_finds_it_in_next_version(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    demo = DemoProcess(tmp_path / "browser-demo", "--images", "60", "--export-interval", "2")
    try:
        settings = demo.wait_ready()
        tasks = demo.tasks(settings)
        annotate_true_labels(demo, settings, tasks, 12)  # so the model has something to predict with
        wait_for_trained_model(demo)
        wait_for(lambda: demo.tags(), timeout=60, message="the first annotation version")
        task = tasks[image_path(40)]

        with sync_playwright() as pw:
            browser = pw.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
                args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900})
            try:
                page = browser.new_page()
                page.goto(f"{demo.ls_url}/user/login/")
                page.locator("input[name=email]").fill(settings["username"])
                page.locator("input[name=password]").fill(settings["password"])
                page.get_by_role("button", name="Log in").click()
                page.wait_for_url(lambda url: "/user/login" not in url)

                served = []
                page.on("response", lambda r: served.append((r.url, r.status, r.headers.get("content-type")))
                        if "/files/fashion-mnist/" in r.url else None)
                page.goto(f"{demo.ls_url}/projects/{settings['project_id']}/data?task={task['id']}")
                # the real image: fetched by the browser from the backend's signed file route...
                page_wait(page, lambda: any(image_path(40) in u and s == 200 and t == "image/png" for u, s, t in served),
                          timeout=60, message="the browser to fetch the image from the backend")
                # ...and drawn in the labeling area (28x28 pixels)
                page_wait(page, lambda: page.locator("img").evaluate_all(
                    "els => els.some(e => e.src.startsWith('blob:') && e.complete && e.naturalWidth === 28)"),
                    timeout=30, message="the image in the labeling area")
                # the backend's prediction (its model_version in the annotation tabs), pre-selected in the Choices
                expect(page.get_by_text(re.compile(r"^labelhub")).first).to_be_visible(timeout=60_000)  # "labelhub…<hash>"
                predicted = page_wait(page, lambda: [c.strip() for c in page.locator(
                    "label:has(input[type=radio]:checked)").all_inner_texts() if c.strip()],
                    timeout=30, message="a pre-selected choice")
                SCREENSHOT.parent.mkdir(exist_ok=True)
                page.screenshot(path=str(SCREENSHOT))
                label = predicted[-1].split("[")[0].strip()
                assert label, predicted

                before = demo.tags()  # taken before the submit: the export may tag it within a second
                page.get_by_role("button", name="Submit").click()
                annotations = wait_for(
                    lambda: demo.api(settings, "GET", f"/api/tasks/{task['id']}/annotations/"), timeout=30,
                    message="the submitted annotation")
            finally:
                browser.close()
        assert len(annotations) == 1
        annotation = annotations[0]
        assert annotation["result"][0]["value"]["choices"] == [label]

        def version_with_it():
            for tag in demo.tags():
                if tag in before:
                    continue
                csv = subprocess.run(["git", "show", f"{tag}:annotations/annotations.csv"],
                                     cwd=demo.directory / "fashion-mnist", capture_output=True, text=True).stdout
                rows = [line.split(",") for line in csv.splitlines()[1:]]
                if any(r[1] == str(annotation["id"]) for r in rows):
                    return tag, [r for r in rows if r[1] == str(annotation["id"])][0]
            return None

        tag, row = wait_for(version_with_it, timeout=60, message="a new version with the browser's annotation")
        assert row[2] == image_path(40) and label in ",".join(row)
        assert settings["username"] in row
    finally:
        demo.stop()
    assert demo.proc.returncode == 0, demo.output()
    assert SCREENSHOT.exists()
