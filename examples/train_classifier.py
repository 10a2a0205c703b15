"""Train a small image classifier from one annotation version, in a few lines, with its typed labels.

    python examples/train_classifier.py owner/dataset annotations-v3
    python examples/train_classifier.py .labelhub-demo/fashion-mnist annotations-v2 --column label

The version's default config gives one row per annotation with the image decoded and the Choices label as a
``ClassLabel`` (a Hub repo; a local clone's labels are strings): that is the whole dataset preparation. The
model is scikit-learn's logistic regression on the raw pixels, scored by 3-fold cross-validation when every
class has three examples, else on the training rows.
"""
from __future__ import annotations

import argparse

from _repo import label_names, load_version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo", help="Hub dataset owner/name, or a local git repository's path")
    parser.add_argument("tag", help="annotations-vN")
    parser.add_argument("--column", default="label", help="the Choices control tag (from_name) to learn")
    args = parser.parse_args()

    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    rows = load_version(args.repo, args.tag).filter(lambda row: row[args.column] is not None)
    name = label_names(rows, args.column)
    x = np.stack([np.asarray(image.convert("L"), dtype=np.float32).ravel() / 255.0 for image in rows["image"]])
    y = [name(label) for label in rows[args.column]]
    model = LogisticRegression(max_iter=500)
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) > 1 and counts.min() >= 3:
        score, how = cross_val_score(model, x, y, cv=3).mean(), "3-fold cross-validated accuracy"
    else:
        score, how = model.fit(x, y).score(x, y) if len(classes) > 1 else 1.0, "training accuracy"
    print(f"{args.tag}: {len(y)} images, {len(classes)} classes ({', '.join(map(str, classes))}); {how} {score:.2f}")


if __name__ == "__main__":
    main()
