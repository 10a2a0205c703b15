"""The Choices head: a pretrained embedder and a scikit-learn logistic regression refit on the annotations.

It answers a ``<Choices>`` tag over an ``<Image>``, ``<Text>`` or ``<HyperText>`` tag
(https://labelstud.io/tags/choices): single choice with one ``LogisticRegression`` over the classes
seen, ``choice="multiple"`` with one binary ``LogisticRegression`` per choice, on whole-object embeddings
(:mod:`labelhub.backend.embedders`): for a single choice over images L2-normalized (each divided by its
Euclidean norm, scikit-learn's ``Normalizer``) with ``C = 10``, else standardized (by the annotated tasks'
means and deviations) with ``C = 0.05`` (:attr:`ChoicesHead.features`). Until the annotations show two
different choices it does not fit (no regions); a Choices with fewer than two ``<Choice>`` s and no dynamic choices,
which could never show two, is refused at ``/setup`` (:meth:`ChoicesHead.refusal`).

Why they differ (until 2026-12-04 every regression was standardized with ``C = 0.05``):

- **Single choice over images**: the L2-normalized regression is the better classifier on the same labels at
  every size measured, for the same fitting time. Fashion-MNIST images labeled in random order
  (``bench/active_learning_bench.py --validation``, seeds 100..111): 0.750 against 0.717 after 100 labels,
  0.802 against 0.795 after 300. The first 3,000 and 20,000 training images, on the 2,000 test images: 0.871
  against 0.864, and 0.898 against 0.887 (the fit on 20,000: 18 against 20 s of CPU). Labeled in this head's
  score order (below) the two end level at 300 labels (validation 0.818 against 0.820) and the L2 one is
  ahead at 100 (0.753 against 0.746): the score order's gain over random order is smaller with it, because
  random order improves. With it the novelty factor's exponent matters less: on those validation seeds, 1 in
  place of 2 gave +0.4 at 300 labels (standard error 0.2) and +1.3 at 100, 0.5 gave +0.1, and no novelty
  factor at all +0.5 (standard error 0.3); on the 24 test seeds exponent 1 gave +0.1 (standard error 0.2) and
  +0.0 at 100, so it stays 2.
- **Texts** (all-MiniLM-L6-v2, whose vectors are unit length already): neither wins. 50 random draws of Rotten
  Tomatoes plot synopses against review snippets, 150 held out: 0.909 and 0.944 standardized against 0.894
  and 0.930 L2-normalized after 30 and 100 labels; fresh against rotten reviews (10 draws, 2,000 held out):
  0.645, 0.681 and 0.712 against 0.652, 0.691 and 0.723 after 100, 300 and 1,000. Texts keep the
  standardized regression.
- **Multiple choice**: the binary regressions (unweighted, and each choice is rare) are worse on L2
  features. Fashion-MNIST with each image's class and its group (tops, shoes, others) as two choices of 13,
  6 random draws: the whole set right on 0.413, 0.608 and 0.727 of the test images against 0.498, 0.645 and
  0.740 standardized, after 100, 300 and 1,000 labels.

Each result's ``score`` is an uncertainty measure, so that sorting Label Studio's Data Manager by
prediction score ascending puts first the tasks the model most needs labeled. For single choice it is
the *novelty-weighted margin*, class-balanced, in [0, 1]::

    score = (p1 - p2) * (s / (s + d)) ** 2 * (n / n_max) ** 0.5

``p1 - p2`` is the margin between the two most probable choices (margin sampling, section 3.1 of Settles,
"Active Learning Literature Survey", 2009, https://burrsettles.com/pub/settles.activelearning.pdf); ``d`` is
the distance from the task's standardized embedding (by the annotated tasks' means and deviations, for images
too: a ``StandardScaler`` kept in the fitted state) to the centroid of the annotated tasks of its predicted
choice, and ``s`` the annotated tasks' median distance to their own choice's centroid (kept in the fitted
state: one centroid per choice and one number). So a task is put first when the model hesitates between two
choices *and* it is unlike what was labeled as its choice: uncertainty weighted by diversity from the labeled
set, the combination Brinker (2003, "Incorporating diversity in active learning with support vector machines",
ICML) uses for batch selection. Plain margin sampling keeps picking atypical tasks of the few choices that are
hard to tell apart (on Fashion-MNIST: shirts, T-shirts, pullovers, coats), also when retraining every 5
labels, and the choices it neglects get worse. ``n`` is the number of annotated tasks of the predicted choice
and ``n_max`` that of the most annotated choice (kept in the fitted state): of two equally uncertain tasks the
one predicted as a rarely annotated choice comes first (class-balanced selection at low budgets, Bengar et
al., "Class-Balanced Active Learning for Image Classification", WACV 2022); dividing by ``n_max`` instead of
the mean count keeps the score in [0, 1] and the order the same. The score depends only on the task and the
fit, not on the other tasks of a predict call. 0 is a tie between two choices; 1 only a sure prediction at the
centroid of the most annotated choice; a sure task typical of that choice scores about 0.25.

Measured by ``bench/active_learning_bench.py`` (Fashion-MNIST, a project of 20,000 tasks from the training
split, the first 20 labels in random order, then a retrain and a fresh order every 10 labels as the backend's
automatic prediction jobs keep it, 2,000 test images), accuracy after 300 labels (after 100):

| test seeds | random | this score | gain @ 300 (min) |
|---|---|---|---|
| 0..5 | 0.807 (0.746) | 0.824 (0.751) | +1.7 (+1.2) |
| 6..11 | 0.808 (0.748) | 0.823 (0.765) | +1.4 (-0.4) |
| 12..17 | 0.810 (0.751) | 0.817 (0.749) | +0.7 (+0.0) |
| 18..23 | 0.801 (0.755) | 0.826 (0.757) | +2.5 (+0.5) |
| all 24 | 0.807 (0.750) | **0.822** (0.756) | **+1.6** (standard error 0.2) |

Over test seeds 0..99: 0.807 against 0.824 at 300 labels, +1.7 (standard error 0.1; 11 seeds reach 3 points).

With the former regression (standardized embeddings, ``C = 0.05``) the same 24 seeds gave 0.802 in random
order and 0.825 in this order, +2.3 (standard error 0.3); on an earlier computation of the embeddings, seeds 0..5
and 6..11 gave +2.4 and +2.5, and without the class-balance factor +1.8 and +1.7. Everything below was
measured with that former regression.

Short of the 3 points asked for. The gains are chaotic: multiplying every embedding by ``1 + 1e-6 * N(0, 1)``
(float32 rounding noise) leaves random order where it was but moves a 6-seed gain by up to 1.5 points, so
differences under a point between two rules are noise (the figures without the factor were +2.2 and +2.3 on an
earlier computation of the same embeddings). Paired over 30 seed and embedding runs, the factor adds
+0.4 points (standard error 0.2; better in 20 of 30). It and its exponent were chosen on validation images from the training
split (``--validation``, seeds 100..105: +3.2 against +3.3 without it; exponent 1: +2.9), as were the rule,
its exponent and the class weighting before (seeds 100..115, a pool of 5,000, retrains every 20 labels). Other
rules tried there did no better: plain margin (below random: 0.783 against 0.790), entropy, least confidence,
warm starts, Gumbel-perturbed margin, BALD over bootstraps, the distance to the nearest labeled task (of any
choice, or of the predicted one), density terms favouring typical tasks, an exponent of 4, and the 100 lowest
scores of a predict call reordered round-robin over 10 k-means groups (which would make a task's score depend
on the other tasks of its call); nor would another ``C`` (0.01 to 0.5 moved accuracy by under a point). Nor,
on validation seeds 100..111 against this score's +2.5 (standard error 0.5), the same score with: the
class-balance factor of the two most probable choices' counts (their geometric mean +1.9, their minimum +2.2);
the distance taken between L2-normalized raw embeddings (+0.6: the standardization by the annotated tasks'
spread is what makes the distance tell), in the regression's logit space (+2.5), or to the nearer of the two
most probable choices' centroids (+2.0), or scaled by each choice's own spread (+1.9); a further factor for
the distance to the nearest annotated task (+2.5); entropy (-1.1) or least confidence (+0.1) in place of the
margin; nor the expected gradient length of the logistic loss (Settles, section 3.4; -0.5), nor a cold start
on the tasks nearest 20 k-means centroids (seeds 100..105: +2.0 against +3.0); nor, on seeds 100..111 again,
exponents that grow over the first 300 labels (class balance 0.5 to 1: +2.8; novelty 2 to 4: +2.5; paired
against this score +0.3 and 0.0, standard errors 0.3 and 0.4), nor the margin and novelty of a second regression
fitted for the order alone with another ``C`` (0.5: +2.3; 0.01: +2.4). Nor, on seeds 100..111 again (paired
against this score at 300 labels, with its standard error): the Mahalanobis distance under the annotated tasks'
within-choice covariance shrunk by Ledoit-Wolf (``sklearn.covariance.ledoit_wolf_shrinkage``) in place of the
Euclidean one (+2.6; +0.0, se 0.2); the margin of the Laplace approximation's moderated probabilities
(MacKay's probit approximation, logits divided by ``sqrt(1 + pi * var / 8)``), with the novelty factor (9 seeds:
+2.6; -0.2, se 0.3) or in its place (3 seeds: +2.0 where this score gave +3.5); a committee of the regression
and a 5-nearest-annotated-tasks vote, a disagreement putting a task first (+2.1; -0.5, se 0.2). Changing the
regression itself (both orders) did no better either: ``C = 0.5`` (8 seeds: +2.1; -0.6, se 0.4), or the
standardization fitted on the project's 20,000 tasks instead of the annotated ones, which lifts random order
by 2.4 points at 100 labels (0.740 against 0.716) but brings the gain at 300 down to +1.9 (-0.7, se 0.3).
Nor other constant exponents: novelty 1 (7 seeds: +2.3), class balance 0.75 (+2.4; -0.2, se 0.3) or 1
(+2.4; -0.1, se 0.3). The regression on L2-normalized embeddings (``C = 10``, the novelty still measured
on the standardized ones) was tried there first: the better classifier at few labels, whose score order
reaches the same 0.819 at 300, so the gain falls to +1.7 (-0.9, se 0.4); it is this head's regression now
(above). Nor, on
seeds 100..111 of a later computation of the embeddings (where this score gave +2.6, se 0.4): contrastive
acquisition (Margatina et al., "Active Learning by Acquiring Contrastive Examples", EMNLP 2021: the mean KL
divergence between the predictions of a task's 10 nearest annotated tasks and its own, highest first) in place
of this score (8 seeds: -4.8 against random) or dividing it (8 seeds: +2.1; -0.8, se 0.4); nor, again, the 100
lowest scores of each retrain clustered into 10 k-means groups and the lowest of each group labeled first
(8 seeds: -1.0 against this score); nor the margin of the two most probable choices' probabilities
renormalized to sum to 1 (``tanh`` of half their logit gap: the pairwise margin, blind to the other choices;
+2.6 at 300 labels, +0.0, se 0.3, though +0.8 at 100); nor, as in class-balanced selection (Emam et al.,
"Active Learning at the ImageNet Scale", 2021), each retrain's 10 tasks taken one per predicted choice, the
lowest score of each (+2.2 at 300 labels, -0.4, se 0.4, though +0.8 at 100): spreading the labels helps
early and costs later. Weighting the annotated tasks in the regression by
how typical they are of their choice (``(s / (s + d)) ** a``, ``a`` 1 or 2) moved neither order's accuracy by
more than 0.2 points (seeds 100..105, fitted after the fact on the tasks each order labeled).

The single-choice regression weighs the choices inversely to their frequency among the annotations
(``class_weight="balanced"``, https://scikit-learn.org/stable/modules/generated/sklearn.linear_model.LogisticRegression.html):
tasks labeled in uncertainty order over-represent the choices that are hard to tell apart, and without
the weights the regression learns that skew as a prior. For multiple choice the score is the mean
confidence over the choices (``max(p, 1 - p)``), and the binary regressions are unweighted. In the task score
(the lowest of the controls', :mod:`labelhub.backend.models.heads`, **Task score**) a single choice's score counts
as it is and a multiple choice's as ``(2c - 1) / 4`` (:meth:`ChoicesHead.task_score`), on one scale with the other
heads' probabilities.

**Which choices it learns and answers.** With ``<Choice>`` tags in the config, only those count: an annotation
whose choices the config lacks (a choice renamed or removed since) is left out of the fit, and the fit's log
line says how many and which (``4 of 5 annotations hold only choices the label config lacks: 'rotten'``). A fit
that learned a choice the config no longer has answers nothing until it is refit on the current choices (the
trainer refits at the next annotation, or when it starts), rather than spread that choice's tasks over the
others. With dynamic choices (``<Choices value="$options"/>``, the choices read from each task's data,
https://labelstud.io/tags/choices), it learns the choices the annotations hold, and answers each task with
the most probable of its own options (probabilities renormalized over them); a task whose options hold none
of the learned choices gets no result.

**threshold.** The ``threshold`` parameter (the lowest score a choice is given with) is compared with the
choice's *probability*, not with the result's ``score`` (an order, above): for single choice the task's choice is
given when its probability (renormalized over the task's options for dynamic choices) reaches the threshold; for
``choice="multiple"`` every choice whose binary regression's probability reaches it is given (the threshold takes
the place of 0.5). A task left with no choice gets no ``choices`` result, but the prediction's task score still
counts the score that result would have had (:class:`~labelhub.backend.models.heads.Withheld`), so a task whose
choice the threshold withheld keeps its place in the uncertainty order rather than sorting as certain. Unset, single
choice always answers and multiple choice gives the choices reaching 0.5 (a task with none gets no result and no
score, as before).

Results use Label Studio's format for Choices (https://labelstud.io/guide/export#Label-Studio-JSON-format-of-annotated-tasks)::

    {"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": ["Sneaker"]}, "score": 0.93}
"""
from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from labelhub.backend.log_once import log_once
from labelhub.backend.models.heads import TASK_SCALE, TYPICAL, ControlHead, Example, TaskInput, Withheld, task_options

if TYPE_CHECKING:  # pragma: no cover
    from labelhub.label_config import ControlSpec

__all__ = ["ChoicesHead"]

log = logging.getLogger(__name__)
class ChoicesHead(ControlHead):
    """Embeddings + logistic regression for one Choices tag (see the module docstring)."""

    name = "choices"
    #: ``(features, C)`` of the regression of a single choice over images (see the module docstring):
    #: ``"l2"``, each embedding divided by its norm, and the inverse regularization strength.
    SINGLE_IMAGE = ("l2", 10.0)
    #: ``(features, C)`` of every other regression: ``"standardized"`` by the annotated tasks' means and deviations.
    OTHERS = ("standardized", 0.05)
    #: ``class_weight`` of the single-choice regression (see the module docstring).
    CLASS_WEIGHT = "balanced"
    #: Exponent of the class-balance factor of the single-choice score (see the module docstring).
    BALANCE = 0.5

    @classmethod
    def supports(cls, control: "ControlSpec", params: Mapping[str, Any]) -> bool:
        """Not a ``perRegion="true"`` Choices: that one classifies each region (its result carries the region's
        ``id``; https://labelstud.io/tags/choices), and a whole-object choice in its place would be read as
        another annotation of the object. Such a control is left unanswered (logged once). Nor a Choices with fewer
        than two ``<Choice>`` s that has no dynamic choices (``value="$options"``): a fit needs two different choices,
        and a lone ``<Choice>`` (a flag to tick, single or ``choice="multiple"``) gives one, since Label Studio stores
        no result for a flag left unticked, so it would never learn (:meth:`refusal`)."""
        return not control.per_region and (cls._dynamic(control) or len(control.labels) >= 2)

    @classmethod
    def refusal(cls, control: "ControlSpec", params: Mapping[str, Any]) -> str | None:
        """Why :meth:`supports` refuses ``control``: the base class's for a ``perRegion="true"`` Choices
        (:meth:`ControlHead.refusal`), else, for a Choices with fewer than two ``<Choice>`` s and no dynamic choices,
        the words of :func:`labelhub.label_config.choices_spec` (``needs at least two <Choice> values, it has 1``)
        and why (an audit found such a flag accepted at ``/setup`` and never learned).

        Returns:
            The reason, or ``None``.
        """
        if control.per_region:
            return super().refusal(control, params)
        if not cls._dynamic(control) and len(control.labels) < 2:
            return (f"needs at least two <Choice> values, it has {len(control.labels)}: a fit learns between two "
                    "different choices, and a flag left unticked is stored as no result")
        return None

    @staticmethod
    def _dynamic(control: "ControlSpec") -> bool:
        return str(control.attrs.get("value") or "").startswith("$")

    @property
    def dynamic(self) -> bool:
        """``True`` for dynamic choices (``value="$options"``: each task's data lists its choices)."""
        return self._dynamic(self.control)

    @property
    def kind(self) -> str:
        """``"image"`` for an Image object tag, else ``"text"``."""
        return "image" if self.control.object_tag == "Image" else "text"

    def embedding_kind(self) -> str:
        """:attr:`kind`: fit and predict read only the embeddings (see :meth:`ControlHead.embedding_kind`)."""
        return self.kind

    @property
    def features(self) -> tuple[str, float]:
        """``(features, C)`` of this control's regressions: :attr:`SINGLE_IMAGE` for a single choice over an
        ``<Image>``, else :attr:`OTHERS`."""
        return self.SINGLE_IMAGE if self.kind == "image" and not self.control.multiple else self.OTHERS

    def identity(self) -> Any:
        """The head, its control, its choices, single/multiple, the embedder, the regression's features and
        ``C``, the class weights and the class-balance exponent (and for multiple choice the task score's rule,
        :data:`~labelhub.backend.models.heads.TASK_SCALE`): a fit stored under another identity (an older
        rule) is redone when the trainer takes over (:meth:`labelhub.backend.events.Trainer.refit_changed`), and
        serves until then."""
        return [self.name, self.control.from_name, list(self.control.labels), self.control.multiple,
                self.host.embedder_spec(self.kind), *self.features, self.CLASS_WEIGHT, self.BALANCE,
                *([f"dynamic {self.control.attrs['value']}"] if self.dynamic else []),
                *([TASK_SCALE] if self.control.multiple else [])]

    def warmup(self) -> None:
        """Load the embedder."""
        self.host.embedder(self.kind)

    def fit(self, examples: Sequence[Example]) -> dict | None:
        """Fit on the choices of each example (the config's choices, or any for dynamic choices: see the module
        docstring); :attr:`fit_note` says what was left out and why.

        Args:
            examples: The annotated tasks; those without a choice of this control are skipped.

        Returns:
            ``{"kind": "single", "classes", "model", "centroids", "spread", "counts"}`` (``centroids``: one
            row per class, the mean standardized embedding of its examples; ``spread``: their median distance
            to their class's centroid; ``counts``: the examples of each class; all for the score, see the
            module docstring) or
            ``{"kind": "multiple", "classes", "models"}``; ``None`` while fewer than two different choices
            were annotated.
        """
        known = set(self.control.labels)
        rows, with_choice, lacking, left_out = [], 0, Counter(), 0
        for example in examples:
            given = {str(c) for r in example.regions(self.control.from_name)
                     for c in ((r.get("value") or {}) if isinstance(r.get("value"), dict) else {}).get("choices") or []
                     if isinstance(c, (str, int, float))}
            if not given:
                continue
            with_choice += 1
            labels = given if self.dynamic else given & known
            lacking.update(given - labels)
            if labels:
                rows.append((example.input, tuple(sorted(labels))))
            else:
                left_out += 1
        notes = []
        if lacking:
            names = ", ".join(repr(n) for n, _ in lacking.most_common(5)) + (", ..." if len(lacking) > 5 else "")
            notes.append(f"{left_out} of {with_choice} annotations hold only choices the label config lacks: {names}"
                         if left_out else f"choices the label config lacks left out of some annotations: {names}")
        seen = sorted({label for _, labels in rows for label in labels})
        if len(seen) < 2:
            notes.append(f"{len(rows)} annotations with a choice of the config, "
                         + (f"all {seen[0]!r}" if seen else "none") + ": a fit needs two different choices")
            self.fit_note = "; ".join(notes)
            return None
        self.fit_note = "; ".join(notes)
        X = self.host.embed([item for item, _ in rows], self.kind)
        return self._fit_matrix(X, [labels for _, labels in rows])

    def regression(self, class_weight: str | None = None):
        """An unfitted scikit-learn pipeline of this control's features and logistic regression (:attr:`features`).

        Args:
            class_weight: ``LogisticRegression``'s ``class_weight`` (``"balanced"`` for a single choice).

        Returns:
            ``Pipeline([Normalizer or StandardScaler, LogisticRegression(C, max_iter=2000)])``; fit it on
            ``(n, dim)`` embeddings and ``n`` labels.
        """
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import Normalizer, StandardScaler

        features, C = self.features
        return make_pipeline(Normalizer() if features == "l2" else StandardScaler(),
                             LogisticRegression(C=C, max_iter=2000, class_weight=class_weight))

    def _fit_matrix(self, X: np.ndarray, labels: list[tuple[str, ...]]) -> dict | None:
        from sklearn.preprocessing import StandardScaler

        if not self.control.multiple:
            y = np.array([lab[0] for lab in labels])
            if len(set(y)) < 2:
                return None
            model = self.regression(self.CLASS_WEIGHT).fit(X, y)
            # the novelty's space (see the module docstring): the regression's own when it is standardized
            scaler = model[0] if isinstance(model[0], StandardScaler) else StandardScaler().fit(X)
            Z = scaler.transform(X)
            centroids = np.stack([Z[y == c].mean(axis=0) for c in model.classes_])
            own = centroids[np.searchsorted(model.classes_, y)]  # each example's class centroid
            return {"kind": "single", "classes": [str(c) for c in model.classes_], "model": model, "scaler": scaler,
                    "centroids": centroids.astype(np.float32),
                    "spread": float(np.median(np.linalg.norm(Z - own, axis=1))),
                    "counts": np.array([int((y == c).sum()) for c in model.classes_])}
        models: dict[str, Any] = {}
        classes = sorted({c for lab in labels for c in lab}) if self.dynamic else list(self.control.labels)
        for label in classes:
            y = np.array([label in lab for lab in labels])
            models[label] = self.regression().fit(X, y) if 0 < y.sum() < len(y) else float(y.mean()) if len(y) else 0.0
        return {"kind": "multiple", "classes": classes, "models": models}

    def kept(self, regions: list[dict]) -> list[dict]:
        """``regions`` unchanged: :meth:`predict` applies the ``threshold`` to the choices' probabilities (the
        result's ``score`` is an order, not a probability; see the module docstring)."""
        return regions

    def task_score(self, score: float) -> float:
        """The control's score on the task score's scale (:mod:`labelhub.backend.models.heads`, **Task score**),
        which is this head's single-choice score: a single choice's ``score`` unchanged (so a project of one
        single Choices orders its tasks as before, to the bit); for ``choice="multiple"`` the mean confidence ``c``
        (in [0.5, 1]) as the mean margin of the binary regressions times
        :data:`~labelhub.backend.models.heads.TYPICAL`, ``(2c - 1) / 4``.

        Args:
            score: The control's score on one task (its result's, or a Withheld's).

        Returns:
            A single choice's ``score``; for multiple choice ``(2c - 1) / 4``, in [0, 0.25], rising with ``c``.
        """
        if not self.control.multiple:
            return float(score)
        return max(0.0, 2.0 * float(score) - 1.0) * TYPICAL

    def predict(self, inputs: Sequence[TaskInput], fitted: dict | None) -> list[list[dict]]:
        """One choices result per task (see :meth:`ControlHead.predict`); ``[]`` for a multiple-choice task
        where no choice reaches 0.5 (or the ``threshold``), for a task of dynamic choices whose options hold none
        of the fit's, and for every task while a single-choice fit holds a choice the config no longer has (see the
        module docstring); a :class:`~labelhub.backend.models.heads.Withheld` with the result's score when the
        ``threshold`` is set and no choice's probability reaches it."""
        if fitted is None or not inputs:
            return [[] for _ in inputs]
        classes = list(fitted["classes"])
        if not self.dynamic:
            gone = [c for c in classes if c not in set(self.control.labels)]
            if gone and fitted["kind"] == "single":
                log_once(log, ("choices: gone", self.control.from_name, tuple(gone)),
                         "choices head of %r: its fit learned choices the label config no longer has (%s): no "
                         "predictions until it is refit on the current choices",
                         self.control.from_name, ", ".join(map(repr, gone)))
                return [[] for _ in inputs]
        X = self.host.embed(list(inputs), self.kind)
        # which of the fit's choices each task offers: the config's, or the task's own options
        offered = np.array([[c in (task_options(item.task, self.control) or set()) if self.dynamic
                             else c in self.control.labels for c in classes] for item in inputs], dtype=bool)
        out: list[list[dict]] = []
        if fitted["kind"] == "single":
            proba = fitted["model"].predict_proba(X)
            if self.dynamic:  # renormalized over the task's own options (see the module docstring)
                proba = np.where(offered, proba, 0.0)
                total = proba.sum(axis=1, keepdims=True)
                proba = np.divide(proba, total, out=np.zeros_like(proba), where=total > 0)
            top = np.argmax(proba, axis=1)
            top2 = np.sort(proba, axis=1)[:, -2:]
            scores = top2[:, 1] - top2[:, 0]  # the margin
            if fitted.get("centroids") is not None and fitted["spread"] > 0:  # fits stored before this rule lack them
                # until the trainer refits, a fit stored before 2026-12-04 has no scaler: its regression's own
                scaler = fitted["scaler"] if "scaler" in fitted else fitted["model"][0]
                d = np.linalg.norm(scaler.transform(X) - fitted["centroids"][top], axis=1)
                scores = scores * (fitted["spread"] / (fitted["spread"] + d)) ** 2
            if fitted.get("counts") is not None:  # nor fits stored before this factor
                counts = fitted["counts"]
                scores = scores * (counts[top] / counts.max()) ** self.BALANCE
            threshold = self.threshold
            return [[] if not offered[i].any() else
                    Withheld(float(score)) if threshold is not None and proba[i, j] < threshold else
                    [self.result({"choices": [classes[j]]}, float(score))]
                    for i, (j, score) in enumerate(zip(top, scores))]
        cutoff = 0.5 if self.threshold is None else self.threshold
        cols = [m.predict_proba(X)[:, 1] if not isinstance(m, float) else np.full(len(X), m)
                for m in (fitted["models"][label] for label in classes)]
        for row, allowed in zip(np.stack(cols, axis=1), offered):
            chosen = [label for label, p, ok in zip(classes, row, allowed) if p >= cutoff and ok]
            score = float(np.mean(np.maximum(row, 1 - row)))
            out.append([self.result({"choices": chosen}, score)] if chosen else
                       Withheld(score) if self.threshold is not None and allowed.any() else [])
        return out
