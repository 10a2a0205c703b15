"""Benchmark (not a test): active learning in Label Studio Community, simulated on Fashion-MNIST.

Annotators label a project of ``--pool`` Fashion-MNIST images in batches of ``--batch`` (20), the way a
team does in the Data Manager. After each batch the backend retrains and the unlabeled tasks are
predicted again (as ``labelhub predict`` does after a retrain), so the order is current. Orders compared,
with the same seeds (the same pool, the same held-out images, the same first batch):

- ``random``: the tasks in a random order (what labeling without predictions amounts to);
- ``score ascending``: the Data Manager sorted by "Prediction score" ascending: the task score the
  default model writes (:meth:`labelhub.backend.models.project.ProjectModel.predict`: the lowest of its
  controls' scores; for one Choices control the Choices head's score, the margin between the two most
  probable choices weighted by the task's distance from the labeled tasks of its predicted choice: see
  :mod:`labelhub.backend.models.choices`);
- ``margin``, ``entropy``: the same order with two plain uncertainty measures computed from the same fit
  (top-1 minus top-2 probability, ascending; entropy of the probabilities, descending), for comparison.

Before the first fit (fewer than two classes seen) every order labels the first tasks by id, as the
Data Manager shows them without scores. Accuracy is measured on ``--test`` held-out test images after 100
and 300 labels, with the default image embedder (``LABELHUB_IMAGE_EMBEDDER``, embeddings computed once and
cached under ``$LABELHUB_CACHE/bench``) and the Choices head's own ``fit``/``predict``
(:class:`labelhub.backend.models.choices.ChoicesHead`) through a stub host that serves the precomputed
embeddings.

With ``--validation`` the held-out images are training images instead (the pool is drawn from the first
8,000, the held-out set is the next 2,000), and the test images are not read: the Choices head's score
rule and class weighting were chosen that way (seeds 100..115), and only then measured on the test images.

Run: ``python bench/active_learning_bench.py [--seeds 6] [--pool 5000] [--quick] [--validation --first-seed 100]``.
It prints one line per seed and order, then the table (mean ± standard deviation over the seeds).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labelhub.sync.demo.sample_data import FASHION_MNIST_CLASSES, fashion_mnist, png_bytes  # noqa: E402
from tests.backend_fixtures import IMAGE_CONFIG  # noqa: E402

ORDERS = ("random", "score ascending", "margin", "entropy")
CHECKPOINTS = (100, 300)
#: With ``--validation``: pools come from the first VALIDATION_SPLIT training images, held-out images are
#: the next ``--test`` ones.
VALIDATION_SPLIT = 8000


class _Precomputed:
    """A head host whose embeddings were computed beforehand (``TaskInput.value`` is the row's index)."""

    def __init__(self, X: np.ndarray):
        self.X = X

    def embedder_spec(self, kind: str) -> str:
        return "precomputed"

    def embed(self, inputs, kind: str) -> np.ndarray:
        return self.X[[int(i.value) for i in inputs]]


def embeddings(n_train: int, n_test: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """``(X_train, y_train, X_test, y_test, embedder name)`` of the first images of each split, cached."""
    from labelhub.backend.embedders import decode_image, get_embedder
    from labelhub.backend.settings import Settings

    settings = Settings()
    embedder = get_embedder("image", settings.image_embedder, image_size=settings.image_size, threads=2)
    cache = Path(os.environ.get("LABELHUB_CACHE", Path.home() / ".cache" / "labelhub")) / "bench"
    path = cache / f"fashion-mnist-{embedder.name}-{n_train}-{n_test}.npz".replace("/", "_")
    if path.exists():
        with np.load(path) as npz:
            return npz["xtr"], npz["ytr"], npz["xte"], npz["yte"], embedder.name
    started = time.monotonic()
    out = []
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = fashion_mnist(split, n)
        vectors = np.concatenate([embedder.embed([decode_image(png_bytes(i)) for i in images[s:s + 500]])
                                  for s in range(0, len(images), 500)])
        out += [vectors.astype(np.float32), labels.astype(np.int64)]
    print(f"embedded {n_train + n_test} images with {embedder.name} in {time.monotonic() - started:.0f} s "
          f"(cached in {path})", flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, xtr=out[0], ytr=out[1], xte=out[2], yte=out[3])
    return out[0], out[1], out[2], out[3], embedder.name


def simulate(order: str, seed: int, X: np.ndarray, y: np.ndarray, Xte: np.ndarray, yte: np.ndarray,
             pool: int, batch: int, checkpoints=CHECKPOINTS) -> dict[int, float]:
    """Label ``pool`` tasks in ``order`` until the last checkpoint; accuracy on the held-out set at each.

    Args:
        order: One of :data:`ORDERS`.
        seed: Picks the pool from ``X`` and its task ids (their order), and the random order.
        X, y: Embeddings and labels to draw the pool from.
        Xte, yte: The held-out set.
        pool: Tasks in the project.
        batch: Labels between two retrains.
        checkpoints: Numbers of labels at which to measure.

    Returns:
        ``{labels: accuracy}``.
    """
    from labelhub.backend.models.choices import ChoicesHead
    from labelhub.backend.models.heads import Example, TaskInput
    from labelhub.label_config import control_specs

    rng = np.random.default_rng(seed)
    rows = rng.choice(len(X), size=pool, replace=False)  # task id i is row rows[i]
    Xall = np.concatenate([X[rows], Xte])
    classes = [FASHION_MNIST_CLASSES[int(c)] for c in y[rows]]
    truth = [FASHION_MNIST_CLASSES[int(c)] for c in yte]
    control = control_specs(IMAGE_CONFIG)[0]
    head = ChoicesHead(control, _Precomputed(Xall))
    inputs = [TaskInput(task={"id": i}, value=str(i), media=None) for i in range(len(Xall))]
    held_out = inputs[pool:]
    random_order = list(np.random.default_rng(seed + 1000).permutation(pool)) if order == "random" else None
    labeled: list[int] = []
    fitted = None
    out = {}
    while len(labeled) < max(checkpoints):
        done = set(labeled)
        unlabeled = [i for i in range(pool) if i not in done]
        if order == "random":
            nxt = [i for i in random_order if i not in done][:batch] if fitted is not None or labeled else \
                unlabeled[:batch]  # the first batch: the first tasks by id, as in every order
        elif fitted is None:
            nxt = unlabeled[:batch]
        else:
            nxt = [unlabeled[j] for j in np.argsort(_uncertainty(order, head, fitted, [inputs[i] for i in unlabeled]),
                                                     kind="stable")[:batch]]
        labeled += nxt
        examples = [Example(input=inputs[i], results=({"from_name": control.from_name, "to_name": control.to_name,
                                                       "type": "choices", "value": {"choices": [classes[i]]}},))
                    for i in labeled]
        fitted = head.fit(examples)
        if len(labeled) in checkpoints:
            preds = head.predict(held_out, fitted) if fitted is not None else [[] for _ in held_out]
            out[len(labeled)] = float(np.mean([bool(p) and p[0]["value"]["choices"][0] == t
                                               for p, t in zip(preds, truth)]))
    return out


def _uncertainty(order: str, head, fitted: dict, items) -> np.ndarray:
    """The sort key of each unlabeled task for ``order`` (ascending = labeled first)."""
    if order == "score ascending":  # what the backend writes as the task's prediction score
        return np.array([regions[0]["score"] if regions else 0.0 for regions in head.predict(items, fitted)])
    proba = fitted["model"].predict_proba(head.host.embed(items, "image"))
    if order == "margin":
        top2 = np.sort(proba, axis=1)[:, -2:]
        return top2[:, 1] - top2[:, 0]
    if order == "entropy":
        return (proba * np.log(np.clip(proba, 1e-12, 1))).sum(axis=1)  # minus the entropy: most uncertain first
    raise ValueError(order)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6, help="runs per order (seeds first..first+N-1)")
    parser.add_argument("--first-seed", type=int, default=0, help="the first seed")
    parser.add_argument("--validation", action="store_true",
                        help=f"held-out images from the training split (pool from the first {VALIDATION_SPLIT:,}): "
                             "for choosing a rule without looking at the test images")
    parser.add_argument("--pool", type=int, default=5000, help="tasks in the simulated project")
    parser.add_argument("--test", type=int, default=2000, help="held-out test images")
    parser.add_argument("--batch", type=int, default=20, help="labels between two retrains")
    parser.add_argument("--quick", action="store_true", help="2 seeds, a pool of 2,000")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.pool = 2, 2000
    from threadpoolctl import threadpool_limits

    # one BLAS thread: on a busy machine OpenBLAS's spinning threads make each small fit 100x slower
    threadpool_limits(1)
    if args.validation:
        X, y, _, _, name = embeddings(max(10_000, VALIDATION_SPLIT + args.test), 2000)
        X, y, Xte, yte = X[:VALIDATION_SPLIT], y[:VALIDATION_SPLIT], X[VALIDATION_SPLIT:][:args.test], \
            y[VALIDATION_SPLIT:][:args.test]
    else:
        X, y, Xte, yte, name = embeddings(max(10_000, args.pool), args.test)
    from labelhub.backend.models.choices import ChoicesHead

    seeds = range(args.first_seed, args.first_seed + args.seeds)
    print(f"Fashion-MNIST, {name}, Choices head (C={ChoicesHead.C}, class_weight={ChoicesHead.CLASS_WEIGHT}), "
          f"pool {args.pool} from the first {len(X)} training images, {len(Xte)} held-out "
          f"{'validation (training)' if args.validation else 'test'} images, "
          f"retrain every {args.batch} labels, seeds {seeds[0]}..{seeds[-1]}", flush=True)
    results: dict[str, list[dict[int, float]]] = {o: [] for o in ORDERS}
    for seed in seeds:
        for order in ORDERS:
            started = time.monotonic()
            acc = simulate(order, seed, X, y, Xte, yte, args.pool, args.batch)
            results[order].append(acc)
            print(f"seed {seed} {order:>16}: " + ", ".join(f"{n} labels {a:.3f}" for n, a in acc.items())
                  + f" ({time.monotonic() - started:.0f} s)", flush=True)
    base = {n: np.array([r[n] for r in results["random"]]) for n in CHECKPOINTS}
    print()
    print("| order (Data Manager) | " + " | ".join(f"accuracy @ {n} labels" for n in CHECKPOINTS)
          + " | vs random @ 300 (points, mean over seeds) |")
    print("|---|" + "---|" * len(CHECKPOINTS) + "---|")
    for order in ORDERS:
        cells = []
        for n in CHECKPOINTS:
            a = np.array([r[n] for r in results[order]])
            cells.append(f"{a.mean():.3f} ± {a.std():.3f}")
        gain = np.array([r[300] for r in results[order]]) - base[300]
        print(f"| {order} | " + " | ".join(cells) + f" | {100 * gain.mean():+.1f} (min {100 * gain.min():+.1f}) |")


if __name__ == "__main__":
    main()
