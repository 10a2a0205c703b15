"""Train a small entity tagger from one annotation version of a text project (Labels over Text), in a few lines.

    python examples/train_spans.py owner/dataset annotations-v3
    python examples/train_spans.py ./texts annotations-v1 --column ner

The version's default config gives one row per annotation with the task's text and the Labels control as a list of
``{start, end, text, label}`` character offsets (a ``ClassLabel`` label on a Hub repo; a local clone's labels are
strings); a row without spans is a text with no entity. Each text is split on whitespace (tokens with their offsets),
a token overlapping a span is tagged ``B-<label>`` (the span's first token) or ``I-<label>``, any other ``O``. The
model is scikit-learn's logistic regression on per-token features (the lowercased token, its shape, its
neighbours), scored by 5-fold (``--folds``) cross-validation over the texts (a text's tokens stay in one fold) when
there are as many texts, else on the training rows; ``all O`` is the accuracy of tagging every token ``O``, the
F1 that of the ``B-``/``I-`` tags (micro-averaged).
"""
from __future__ import annotations

import argparse
import re
from collections import Counter
from types import SimpleNamespace

from _repo import label_names, load_version, region_column


def bio_tokens(text: str, spans: list[tuple[int, int, str]]) -> list[tuple[str, str]]:
    """``[(token, tag)]``: the whitespace tokens of ``text`` with their BIO tags (the first span over a token wins)."""
    tokens = [(m.group(), m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    tags = ["O"] * len(tokens)
    for start, end, label in sorted(spans):
        inside = [i for i, (_, s, e) in enumerate(tokens) if s < end and e > start and tags[i] == "O"]
        for n, i in enumerate(inside):
            tags[i] = f"{'I' if n else 'B'}-{label}"
    return [(token, tag) for (token, _, _), tag in zip(tokens, tags)]


def shape(token: str) -> str:
    """``Xxxx.`` → ``Xx.``: letters and digits as X, x and d, runs collapsed."""
    return re.sub(r"(.)\1+", r"\1", re.sub(r"[A-Z]", "X", re.sub(r"[a-z]", "x", re.sub(r"\d", "d", token))))


def features(tokens: list[str], i: int) -> dict:
    """One token's features: the lowercased token, its shape and suffix, its neighbours."""
    word = tokens[i]
    return {"lower": word.lower(), "shape": shape(word), "suffix": word[-3:].lower(), "first": i == 0,
            "prev": tokens[i - 1].lower() if i else "<s>",
            "next": tokens[i + 1].lower() if i + 1 < len(tokens) else "</s>"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo", help="Hub dataset owner/name, or a local git repository's path")
    parser.add_argument("tag", help="annotations-vN")
    parser.add_argument("--column", default="ner", help="the Labels control tag (from_name) to learn")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (texts); fewer texts: train rows")
    args = parser.parse_args()

    import numpy as np
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline

    rows = load_version(args.repo, args.tag)
    feature = region_column(rows, args.column, args.tag, "Labels")
    inner = feature.feature if hasattr(feature, "feature") else (feature or [None])[0]  # {start, end, text, label}
    # no struct (a local version without spans yet: List(Value("null"))): no ClassLabel, labels as they are
    name = label_names(SimpleNamespace(features=inner if isinstance(inner, dict) else None), "label")
    x, y, groups, entities = [], [], [], Counter()
    for n, (text, spans) in enumerate(zip(rows[rows.column_names[0]], rows[args.column])):  # the text comes first
        spans = [(s["start"], s["end"], name(s["label"])) for s in spans or []]
        entities.update(label for _, _, label in spans)
        tagged = bio_tokens(text or "", spans)
        words = [token for token, _ in tagged]
        x += [features(words, i) for i in range(len(words))]
        y += [tag for _, tag in tagged]
        groups += [n] * len(words)
    empty = sum(not spans for spans in rows[args.column])
    print(f"{args.tag}: {rows.num_rows} texts ({empty} without spans), {len(y)} tokens, {sum(entities.values())} "
          f"entities ({', '.join(f'{k} {v}' for k, v in sorted(entities.items()))})")
    if len(set(y)) < 2:
        raise SystemExit("one tag only: nothing to learn")
    model = make_pipeline(DictVectorizer(), LogisticRegression(max_iter=1000))
    if args.folds > 1 and rows.num_rows >= args.folds:
        predicted = cross_val_predict(model, x, y, groups=groups, cv=GroupKFold(args.folds))
        how = f"{args.folds}-fold cross-validated"
    else:
        predicted, how = model.fit(x, y).predict(x), "training"
    tags = sorted(set(y) - {"O"})
    baseline = np.mean(np.asarray(y) == "O")
    print(f"{how} token accuracy {accuracy_score(y, predicted):.2f} (all O: {baseline:.2f}), "
          f"entity-tag F1 {f1_score(y, predicted, labels=tags, average='micro', zero_division=0):.2f}")


if __name__ == "__main__":
    main()
