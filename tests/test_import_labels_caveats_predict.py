"""``labelhub predict`` after an import (the walkthrough of /tmp/audit-post imported annotations, then connected the
backend): the empty answers' hint names Settings → Model → Start training, and ``--status`` of a job whose every
task failed carries an error that says so. The status is a real one written by :class:`JobStatus` in a
``MODEL_DIR``; the hint reads a real project store without a fitted head."""
from __future__ import annotations

import json
from types import SimpleNamespace

from click.testing import CliRunner

from labelhub.backend.cli import _why_empty
from labelhub.backend.job_status import JobStatus
from labelhub.cli import main


def test_the_empty_hint_names_start_training_for_annotations_made_before_the_backend():
    store = SimpleNamespace(project=lambda key: SimpleNamespace(kv=lambda: {"heads": {}}))
    hint = _why_empty(SimpleNamespace(store=store), SimpleNamespace(project="7.1"))
    assert "annotate some tasks first" in hint
    assert "Settings → Model → Start training (annotations made before the backend was connected never " \
           "reached it)" in hint


def test_status_of_a_job_whose_every_task_failed_has_an_error(tmp_path):
    (tmp_path / "projects").mkdir()
    status = JobStatus(project="7.1700000000", project_id=7, state="done", total=22, failed=22,
                       failures={"5": "Label Studio answered 500", "6": "Label Studio answered 500"})
    status.save(tmp_path)
    env = {"MODEL_DIR": str(tmp_path), "LABEL_STUDIO_API_KEY": "unused", "LABELHUB_REDIS_URL": ""}
    answer = CliRunner().invoke(main, ["predict", "--project", "7", "--status"], env=env)
    assert answer.exit_code == 0, answer.output
    shown = json.loads(answer.output)
    assert shown["state"] == "done" and shown["failed"] == 22
    assert shown["error"] == ("22 of 22 tasks failed (task 5: Label Studio answered 500, and 21 more); run labelhub "
                              "predict again to retry them")
    JobStatus(project="7.1700000000", project_id=7, state="done", total=22, done=22).save(tmp_path)
    answer = CliRunner().invoke(main, ["predict", "--project", "7", "--status"], env=env)
    assert json.loads(answer.output)["error"] is None  # a job without failures says none
