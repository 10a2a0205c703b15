"""Train a small image classifier from one annotation version, in a few lines, with its typed labels.

    python examples/train_classifier.py owner/dataset annotations-v3
    python examples/train_classifier.py .labelhub-demo/fashion-mnist annotations-v2 --column label
    python examples/train_classifier.py owner/dataset annotations-v3 --config consensus   # one row per image

The version's default config gives one row per annotation with the image decoded and the Choices label as a
``ClassLabel`` (a Hub repo; a local clone's labels are strings): that is the whole dataset preparation. With
several annotators per image, the same image is in several rows, maybe with different labels: the folds are grouped
by image (``hf_path``), so that no image is in both the training and the test rows of a fold; ``--config consensus``
trains on one row per image instead, its majority label. The model is scikit-learn's logistic regression on the raw
pixels, scored by 3-fold cross-validation (grouped) when every class has three examples and there are three images
or more, else on the training rows.
"""
from __future__ import annotations

import argparse

from _repo import label_names, load_version


def folds(y, groups, k: int = 3):
    """The ``k`` cross-validation folds of rows labelled ``y``, grouped by ``groups`` (each row's image): a
    scikit-learn ``GroupKFold``'s splits, so an image's rows are all in the training rows or all in the test rows."""
    from sklearn.model_selection import GroupKFold

    return list(GroupKFold(n_splits=k).split(y, y, groups))


def pixels(rows, media: str):
    """``(x, kept)``: the grayscale pixels (0 to 1) of each row whose ``media`` cell ``datasets`` can decode as an
    image, one flat row of ``x`` each, and the indices of those rows. A file that is no image (empty, or another
    format under a ``.png`` name: the sync makes a task of any file its label config's type takes) is skipped and
    named, not a traceback."""
    import numpy as np
    from PIL import UnidentifiedImageError

    x, kept, skipped, paths = [], [], [], rows["hf_path"]
    for i in range(rows.num_rows):  # one row at a time: datasets decodes the image as the row is read
        try:
            x.append(np.asarray(rows[i][media].convert("L"), dtype=np.float32).ravel() / 255.0)
            kept.append(i)
        except (UnidentifiedImageError, OSError):
            skipped.append(paths[i])
    if skipped:
        print(f"skipped {len(skipped)} rows whose file is no image: {', '.join(sorted(set(skipped))[:3])}"
              + (", ..." if len(set(skipped)) > 3 else ""))
    return np.stack(x) if x else np.zeros((0, 0), dtype=np.float32), kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo", help="Hub dataset owner/name, or a local git repository's path")
    parser.add_argument("tag", help="annotations-vN")
    parser.add_argument("--column", default="label", help="the Choices control tag (from_name) to learn")
    parser.add_argument("--config", choices=["default", "consensus"], default="default",
                        help="default: one row per annotation (folds grouped by image); consensus: one per image")
    args = parser.parse_args()

    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    rows = load_version(args.repo, args.tag, None if args.config == "default" else "consensus")
    # on the label column alone: a filter on whole rows decodes every image, and a file that is no image would stop
    # it here (UnidentifiedImageError) before pixels() skips and names it
    rows = rows.filter(lambda label: label is not None, input_columns=[args.column])
    name = label_names(rows, args.column)
    if not rows.num_rows:
        raise SystemExit(f"{args.tag}: no row with a {args.column!r} label to train on")
    media = "image" if "image" in rows.column_names else rows.column_names[0]  # the task's media comes first
    x, kept = pixels(rows, media)
    rows = rows.select(kept)
    if not rows.num_rows:
        raise SystemExit(f"{args.tag}: no row with an image to train on")
    y = [name(label) for label in rows[args.column]]
    groups = rows["hf_path"]
    model = LogisticRegression(max_iter=500)
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) > 1 and counts.min() >= 3 and len(set(groups)) >= 3:
        score = cross_val_score(model, x, y, cv=folds(y, groups)).mean()
        how = "3-fold cross-validated accuracy" + (", folds grouped by image" if args.config == "default" else "")
    else:
        score, how = model.fit(x, y).score(x, y) if len(classes) > 1 else 1.0, "training accuracy"
    rows_said = "" if len(y) == len(set(groups)) else f" ({len(y)} rows: several annotations of an image)"
    print(f"{args.tag}: {len(set(groups))} images, {len(classes)} classes ({', '.join(map(str, classes))}); "
          f"{how} {score:.2f}{rows_said}")


if __name__ == "__main__":
    main()
