"""``labelhub predict``'s checks before it reaches Label Studio: an operator Label Studio does not know (it would
keep every task), a MODEL_DIR that is no backend's (nothing is made in it; Label Studio's own errors come first)."""
from __future__ import annotations

import json

from tests.backend_fixtures import TEXT_CONFIG
from tests.test_predict_jobs import _cli

ENV = {"LABEL_STUDIO_URL": "http://127.0.0.1:9", "LABEL_STUDIO_API_KEY": "key", "TQDM_DISABLE": "1"}


def test_a_filter_operator_label_studio_does_not_know_is_refused(tmp_path):
    """Audit: ``"operator": "equals"`` gave no warning, and Label Studio ignored it: the job predicted every task."""
    typo = json.dumps({"filter": "filter:tasks:data.split", "operator": "equals", "type": "String", "value": "test"})
    answer = _cli("predict", "--project", "1", "--filter", typo, env={**ENV, "MODEL_DIR": str(tmp_path)})
    assert answer.exit_code == 2, answer.output
    assert "Invalid value for --filter: item 1: \"equals\" is not an operator Label Studio knows (it would keep " \
           "every task); one of equal, not_equal," in answer.output, answer.output
    child = json.dumps({"filter": "filter:tasks:annotations_results", "operator": "contains", "type": "String",
                        "value": "x", "child_filter": {"filter": "filter:tasks:x", "operator": "like", "value": 1}})
    answer = _cli("predict", "--project", "1", "--filter", child, env={**ENV, "MODEL_DIR": str(tmp_path)})
    assert answer.exit_code == 2 and '"like" is not an operator' in answer.output, answer.output


def test_a_model_dir_that_is_no_backends_is_refused_and_left_as_it_was(label_studio, tmp_path):
    """Audit: a wrong MODEL_DIR got embeddings/, events/ and projects/ made in it before the job said it had no
    model."""
    project = label_studio.client().projects.create(title="wrong model dir", label_config=TEXT_CONFIG)
    wrong = tmp_path / "home"
    wrong.mkdir()
    (wrong / "notes.txt").write_text("mine")
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.api_key, "TQDM_DISABLE": "1",
           "MODEL_DIR": str(wrong)}
    answer = _cli("predict", "--project", str(project.id), env=env)
    assert answer.exit_code == 1 and "is no backend's MODEL_DIR (it has no projects/ folder)" in answer.output, \
        answer.output
    assert sorted(p.name for p in wrong.iterdir()) == ["notes.txt"]
