"""A text classifier written the way label-studio-ml 2.x models are written, served by LabelHub.

Only the first import differs from a label-studio-ml 2.x model (it was
``from label_studio_ml.model import LabelStudioMLBase`` and ``from label_studio_ml.response import
ModelResponse``); everything else is label-studio-ml's interface: ``setup()`` with ``self.set``,
``predict()`` reading the label config through ``self.label_interface`` and returning a
``ModelResponse`` of label-studio-sdk ``PredictionValue`` objects, ``fit(event, data)`` learning from
webhook events. Served with::

    LABELHUB_MODEL=tests.ls_ml_style_model:KeywordChoices labelhub backend

The model itself is deliberately simple: it remembers the words of each annotated text under the
annotated choice, and predicts the choice whose words occur most often in a new text (``score``:
that choice's share of the hits). Label config: a ``<Choices>`` over a ``<Text>``
(https://labelstud.io/tags/choices).
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional

from label_studio_sdk.label_interface.objects import PredictionValue

from labelhub.backend.model import LabelStudioMLBase, ModelResponse

_WORD = re.compile(r"[a-z]{4,}")


class KeywordChoices(LabelStudioMLBase):
    """Choices over Text by keywords learned from annotations (see the module docstring)."""

    def setup(self):
        """Set the initial model version (label-studio-ml's template sets a constant here; keeping a
        version a fit already stored matters here because every gunicorn worker runs ``setup``)."""
        self.set("model_version", self.get("model_version") or "keywords-0.0.1")

    def predict(self, tasks: List[Dict], context: Optional[Dict] = None, **kwargs) -> ModelResponse:
        """One ``PredictionValue`` per task: the choice whose keywords occur most, or no result.

        Args:
            tasks: Label Studio tasks (https://labelstud.io/guide/task_format).
            context: Interactive pre-annotation context (unused).

        Returns:
            A ``ModelResponse`` whose predictions carry ``result``, ``score`` and ``model_version``
            (https://labelstud.io/guide/predictions).
        """
        from_name, to_name, value = self.label_interface.get_first_tag_occurence("Choices", "Text")
        keywords: Dict[str, Dict[str, int]] = self.get("keywords") or {}
        predictions = []
        for task in tasks:
            words = _WORD.findall(str(task["data"].get(value, "")).lower())
            hits = {label: sum(counts.get(w, 0) for w in words) for label, counts in keywords.items()}
            total = sum(hits.values())
            if not total:
                predictions.append(PredictionValue(result=[], score=0.0, model_version=self.get("model_version")))
                continue
            label = max(sorted(hits), key=hits.get)
            predictions.append(PredictionValue(
                result=[{"from_name": from_name, "to_name": to_name, "type": "choices",
                         "value": {"choices": [label]}}],
                score=hits[label] / total,
                model_version=self.get("model_version")))
        return ModelResponse(predictions=predictions)

    def fit(self, event, data, **kwargs):
        """Learn the words of an annotated text (``ANNOTATION_CREATED``/``ANNOTATION_UPDATED`` webhooks).

        Args:
            event: The webhook action (https://labelstud.io/guide/webhook_reference).
            data: The webhook payload: ``annotation`` (with ``result``) and ``task`` (with ``data``).
        """
        if event not in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
            return
        from_name, _, value = self.label_interface.get_first_tag_occurence("Choices", "Text")
        text = str(data["task"]["data"].get(value, "")).lower()
        keywords: Dict[str, Dict[str, int]] = self.get("keywords") or {}
        for region in data["annotation"]["result"]:
            if region.get("from_name") != from_name:
                continue
            for label in region["value"]["choices"]:
                counts = keywords.setdefault(label, {})
                for word in _WORD.findall(text):
                    counts[word] = counts.get(word, 0) + 1
        self.set("keywords", keywords)
        self.set("fitted", int(self.get("fitted") or 0) + 1)
        self.set("model_version", f"keywords-{self.get('fitted')}")
