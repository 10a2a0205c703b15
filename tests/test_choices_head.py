"""The Choices head's regressions and its score, on synthetic embeddings (no embedder, no server)."""
from __future__ import annotations

import numpy as np
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from labelhub.backend.models.choices import ChoicesHead
from labelhub.backend.models.heads import Example, TaskInput
from labelhub.label_config import control_specs
from tests.backend_fixtures import IMAGE_CLASSES, PrecomputedHost, choices_config


def _clusters(n_per_class: int = 20, dim: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(IMAGE_CLASSES), dim)) * 3
    y = np.repeat(np.arange(len(IMAGE_CLASSES)), n_per_class)
    return (centers[y] + rng.normal(size=(len(y), dim))).astype(np.float32), y


def _head_and_examples(config: str):
    X, y = _clusters()
    control = control_specs(config)[0]
    head = ChoicesHead(control, PrecomputedHost(X))
    inputs = [TaskInput(task={"id": i}, value=str(i), media=None) for i in range(len(X))]
    examples = [Example(input=inputs[i], results=({"from_name": "label", "to_name": control.to_name, "type": "choices",
                                                   "value": {"choices": [IMAGE_CLASSES[y[i]]]}},))
                for i in range(len(X))]
    return head, inputs, examples


def test_a_single_choice_over_images_fits_l2_normalized_embeddings_and_the_rest_standardized():
    image, _, examples = _head_and_examples(choices_config(IMAGE_CLASSES))
    assert image.features == ChoicesHead.SINGLE_IMAGE == ("l2", 10.0)
    fitted = image.fit(examples)
    assert type(fitted["model"][0]).__name__ == "Normalizer" and isinstance(fitted["scaler"], StandardScaler)
    multiple, _, _ = _head_and_examples(choices_config(IMAGE_CLASSES, multiple=True))
    text, _, _ = _head_and_examples(choices_config(IMAGE_CLASSES, object_tag="Text", value="text"))
    assert multiple.features == text.features == ChoicesHead.OTHERS == ("standardized", 0.05)
    # a fit stored under the other regression has another identity: the trainer refits it
    assert image.identity()[5:7] == ["l2", 10.0] and text.identity()[5:7] == ["standardized", 0.05]


def test_a_fit_stored_before_the_l2_regression_still_predicts_with_its_own_scaler():
    """A fit written by an earlier version (standardized regression, no ``scaler``) is loaded until the trainer
    refits: its predictions keep their choices and get a score in [0, 1] from the regression's own scaler."""
    head, inputs, examples = _head_and_examples(choices_config(IMAGE_CLASSES))
    fitted = head.fit(examples)
    X = head.host.X
    y = np.array([e.results[0]["value"]["choices"][0] for e in examples])
    old = dict(fitted, model=make_pipeline(StandardScaler(), fitted["model"][-1].__class__(C=0.05, max_iter=2000))
               .fit(X, y))
    old.pop("scaler")
    old["centroids"] = np.stack([old["model"][0].transform(X[y == c]).mean(axis=0) for c in old["classes"]])
    predictions = head.predict(inputs, old)
    assert [p[0]["value"]["choices"][0] for p in predictions] == list(y)
    assert all(0 <= p[0]["score"] <= 1 for p in predictions)
