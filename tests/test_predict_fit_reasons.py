"""A fit whose examples' media cannot be loaded names why in its log line (before: ``2 of 2 examples without media:
not fitted`` and nothing else), so a prediction job that writes nothing afterwards can be traced to a 403 on an
unsigned URL or a host the backend may not fetch."""
from __future__ import annotations

import logging

from labelhub.backend.app import create_app
from tests.backend_fixtures import annotation_event, image_tasks


def fit_without_media(tmp_path, caplog, urls: list[str]) -> str:
    """Annotate one image task per URL of ``urls`` (media that cannot be loaded), fit, and return the fit's
    "examples without media" line."""
    caplog.set_level(logging.INFO, logger="labelhub")
    tasks, labels = image_tasks(len(urls))
    for task, url in zip(tasks, urls):
        task["data"]["image"] = url
    app = create_app({"model_dir": tmp_path, "start_trainer": False, "warmup": False})
    client = app.test_client()
    for i, (task, label) in enumerate(zip(tasks, labels)):
        assert client.post("/webhook", json=annotation_event(8000 + i, task, label)).status_code == 200
    app.extensions["labelhub"].trainer.run_once()
    return next(r.getMessage() for r in caplog.records if "examples without media" in r.getMessage())


def test_a_fit_without_media_names_the_first_reasons(tmp_path, caplog):
    line = fit_without_media(tmp_path, caplog, ["http://203.0.113.7/private/a.png?token=s3cr3t",  # host not allowed
                                                "http://198.51.100.9/b.png"])
    assert "2 of 2 examples without media (" in line and "not fitted" in line, line
    assert "203.0.113.7" in line and "198.51.100.9" in line, line  # both reasons named
    assert "s3cr3t" not in line, line
