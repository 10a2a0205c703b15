"""The Choices head: a pretrained embedder and a scikit-learn logistic regression refit on the annotations.

It answers a ``<Choices>`` tag over an ``<Image>``, ``<Text>`` or ``<HyperText>`` tag
(https://labelstud.io/tags/choices): single choice with one ``LogisticRegression`` over the classes
seen, ``choice="multiple"`` with one binary ``LogisticRegression`` per choice, on standardized
whole-object embeddings (:mod:`labelhub.backend.embedders`). Until the annotations show two different
choices it does not fit (no regions). Each result's ``score`` is the *margin* of single choice: the
probability of the chosen class minus the next one's (1: sure, 0: a tie between two choices), so that
sorting Label Studio's Data Manager by prediction score ascending puts first the tasks the model most
needs labeled (margin sampling: in ``bench/active_learning_bench.py`` it beats the top-class probability,
which orders worse than random); for multiple choice, the mean confidence over the choices.

Results use Label Studio's format for Choices (https://labelstud.io/guide/export#Label-Studio-JSON-format-of-annotated-tasks)::

    {"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": ["Sneaker"]}, "score": 0.93}
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from labelhub.backend.models.heads import ControlHead, Example, TaskInput

__all__ = ["ChoicesHead"]


class ChoicesHead(ControlHead):
    """Embeddings + logistic regression for one Choices tag (see the module docstring)."""

    name = "choices"
    #: Inverse regularization strength of the logistic regression (on standardized embeddings).
    C = 0.05

    @property
    def kind(self) -> str:
        """``"image"`` for an Image object tag, else ``"text"``."""
        return "image" if self.control.object_tag == "Image" else "text"

    def identity(self) -> Any:
        """The head, its control, its choices, single/multiple, the embedder and ``C``."""
        return [self.name, self.control.from_name, list(self.control.labels), self.control.multiple,
                self.host.embedder_spec(self.kind), self.C]

    def warmup(self) -> None:
        """Load the embedder."""
        self.host.embedder(self.kind)

    def fit(self, examples: Sequence[Example]) -> dict | None:
        """Fit on the choices of each example (only the config's choices count).

        Args:
            examples: The annotated tasks; those without a choice of this control are skipped.

        Returns:
            ``{"kind": "single", "classes", "model"}`` or ``{"kind": "multiple", "classes", "models"}``;
            ``None`` while fewer than two different choices were annotated.
        """
        known = set(self.control.labels)
        rows = []
        for example in examples:
            labels = {c for r in example.regions(self.control.from_name)
                      for c in (r.get("value") or {}).get("choices") or [] if c in known}
            if labels:
                rows.append((example.input, tuple(sorted(labels))))
        if len({label for _, labels in rows for label in labels}) < 2:
            return None
        X = self.host.embed([item for item, _ in rows], self.kind)
        return self._fit_matrix(X, [labels for _, labels in rows])

    def _fit_matrix(self, X: np.ndarray, labels: list[tuple[str, ...]]) -> dict | None:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        def lr():
            return make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=2000))

        if not self.control.multiple:
            y = [lab[0] for lab in labels]
            if len(set(y)) < 2:
                return None
            model = lr().fit(X, y)
            return {"kind": "single", "classes": [str(c) for c in model.classes_], "model": model}
        models: dict[str, Any] = {}
        for label in self.control.labels:
            y = np.array([label in lab for lab in labels])
            models[label] = lr().fit(X, y) if 0 < y.sum() < len(y) else float(y.mean()) if len(y) else 0.0
        return {"kind": "multiple", "classes": list(self.control.labels), "models": models}

    def predict(self, inputs: Sequence[TaskInput], fitted: dict | None) -> list[list[dict]]:
        """One choices result per task (see :meth:`ControlHead.predict`); ``[]`` for a multiple-choice task
        where no choice reaches 0.5."""
        if fitted is None or not inputs:
            return [[] for _ in inputs]
        X = self.host.embed(list(inputs), self.kind)
        out: list[list[dict]] = []
        if fitted["kind"] == "single":
            classes = fitted["classes"]
            for row in fitted["model"].predict_proba(X):
                j = int(np.argmax(row))
                second = float(np.partition(row, -2)[-2]) if len(row) > 1 else 0.0
                out.append([self.result({"choices": [classes[j]]}, float(row[j]) - second)])
            return out
        labels = fitted["classes"]
        cols = [m.predict_proba(X)[:, 1] if not isinstance(m, float) else np.full(len(X), m)
                for m in (fitted["models"][label] for label in labels)]
        for row in np.stack(cols, axis=1):
            chosen = [label for label, p in zip(labels, row) if p >= 0.5]
            score = float(np.mean(np.maximum(row, 1 - row)))
            out.append([self.result({"choices": chosen}, score)] if chosen else [])
        return out
