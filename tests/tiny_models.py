"""Tiny random-weight Hugging Face models saved to a directory, for tests that must not reach the Hub.

Each ``build_*`` function writes a model with a few thousand parameters and what its pipeline needs
(image processor, tokenizer built from a vocabulary written here) with ``save_pretrained``, and returns
the directory: ``transformers.pipeline(task, model=str(path))`` loads it offline. The weights are random
(seeded), so outputs are arbitrary; a builder can bias the classifier so that one label wins everywhere,
which makes label-mapping tests deterministic.

Builders:

- :func:`build_image_classifier`: ``ViTForImageClassification`` (``image-classification``);
- :func:`build_object_detector`: ``YolosForObjectDetection`` (``object-detection``);
- :func:`build_owlvit`: ``OwlViTForObjectDetection`` with a byte-level BPE CLIP tokenizer
  (``zero-shot-object-detection``);
- :func:`build_clip`: ``CLIPModel`` (``zero-shot-image-classification``);
- :func:`build_token_classifier`: ``BertForTokenClassification`` with a WordPiece vocabulary
  (``token-classification``);
- :func:`build_sequence_classifier`: ``BertForSequenceClassification`` (``zero-shot-classification`` with
  NLI labels, or ``text-classification``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

__all__ = ["build_image_classifier", "build_object_detector", "build_owlvit", "build_clip",
           "build_token_classifier", "build_sequence_classifier", "WORDS"]

#: Words of the WordPiece vocabulary (anything else becomes ``[UNK]`` or word pieces of letters).
WORDS = ("alice", "bob", "went", "to", "paris", "and", "berlin", "with", "acme", "corp", "this", "example", "is",
         "about", "sports", "politics", "cooking", "the", "a", ".", ",")
_IMAGE = 32  # pixels: the side of every tiny vision model's input


def _seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def _id2label(labels: Sequence[str]) -> dict[int, str]:
    return dict(enumerate(labels))


def _bias(head, index: int, value: float = 8.0) -> None:
    """Make output ``index`` of a linear layer win for every input: zero weights, one large bias."""
    import torch

    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-value)
        head.bias[index] = value


def build_image_classifier(path: str | Path, labels: Sequence[str] = ("cat", "DOG", "bird"),
                           winner: str | None = None, multi_label: bool = False) -> Path:
    """A ViT image classifier on 32×32 images.

    Args:
        path: Directory to write (created).
        labels: ``id2label`` of the model, in id order.
        winner: A label that gets (almost) all the probability for every image; ``None`` for random logits.
        multi_label: ``problem_type="multi_label_classification"`` (the pipeline applies a sigmoid).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    _seed(0)
    config = ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                       image_size=_IMAGE, patch_size=16, id2label=_id2label(labels),
                       label2id={v: k for k, v in enumerate(labels)},
                       problem_type="multi_label_classification" if multi_label else None)
    model = ViTForImageClassification(config).eval()
    if winner is not None:
        _bias(model.classifier, list(labels).index(winner))
    path = Path(path)
    model.save_pretrained(path)
    ViTImageProcessor(size={"height": _IMAGE, "width": _IMAGE}).save_pretrained(path)
    return path


def build_object_detector(path: str | Path, labels: Sequence[str] = ("cat", "DOG", "bird"),
                          winner: str | None = None, detection_tokens: int = 4) -> Path:
    """A YOLOS detector on 32×32 images, ``detection_tokens`` boxes per image.

    Args:
        path: Directory to write (created).
        labels: ``id2label`` of the model (YOLOS adds a "no object" class after them).
        winner: A label every box gets with a score near 1; ``None`` for random logits.
        detection_tokens: Boxes the model proposes per image.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    from transformers import YolosConfig, YolosForObjectDetection, YolosImageProcessor

    _seed(0)
    config = YolosConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                         image_size=[_IMAGE, _IMAGE], patch_size=16, num_detection_tokens=detection_tokens,
                         id2label=_id2label(labels), label2id={v: k for k, v in enumerate(labels)})
    model = YolosForObjectDetection(config).eval()
    if winner is not None:
        _bias(model.class_labels_classifier.layers[-1], list(labels).index(winner))
    path = Path(path)
    model.save_pretrained(path)
    YolosImageProcessor(size={"shortest_edge": _IMAGE, "longest_edge": _IMAGE}).save_pretrained(path)
    return path


def _clip_tokenizer(max_length: int):
    """A CLIP byte-level BPE tokenizer whose vocabulary is the 256 byte symbols (no merges): one token per
    character, the end-of-text token last (OWL-ViT and CLIP pool the text at the highest id)."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    vocab.update({ch + "</w>": len(alphabet) + i for i, ch in enumerate(alphabet)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def _clip_text_config(tokenizer, positions: int) -> dict:
    """A one-layer CLIP text tower of width 16 for ``tokenizer``, ``positions`` tokens long (OWL-ViT's too)."""
    return {"vocab_size": len(tokenizer), "hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 1,
            "num_attention_heads": 2, "max_position_embeddings": positions, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}


def _clip_vision_config(patch: int) -> dict:
    """A one-layer CLIP vision tower of width 16 on ``_IMAGE``-pixel images in ``patch``-pixel patches."""
    return {"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
            "image_size": _IMAGE, "patch_size": patch}


def _build_clip_family(path: str | Path, model_cls, config_cls, processor_cls, image_processor, *,
                       max_text: int, patch: int) -> Path:
    """Write a seeded one-layer CLIP-style model (text and vision towers of width 16) and its processor.

    Args:
        path: Directory to write (created).
        model_cls, config_cls, processor_cls: The transformers classes (``CLIPModel``, ``OwlViTForObjectDetection``...).
        image_processor: The image processor instance the processor pairs with the tokenizer.
        max_text: Text positions (and the tokenizer's ``model_max_length``).
        patch: Vision patch side in pixels.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    _seed(0)
    tokenizer = _clip_tokenizer(max_text)
    config = config_cls(text_config=_clip_text_config(tokenizer, max_text), vision_config=_clip_vision_config(patch),
                        projection_dim=16)
    path = Path(path)
    model_cls(config).eval().save_pretrained(path)
    processor_cls(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    return path


def build_owlvit(path: str | Path) -> Path:
    """An OWL-ViT open-vocabulary detector on 32×32 images (16 patches, so 16 boxes per image).

    Args:
        path: Directory to write (created).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    from transformers import OwlViTConfig, OwlViTForObjectDetection, OwlViTImageProcessor, OwlViTProcessor

    square = {"height": _IMAGE, "width": _IMAGE}
    return _build_clip_family(path, OwlViTForObjectDetection, OwlViTConfig, OwlViTProcessor,
                              OwlViTImageProcessor(size=square, crop_size=square), max_text=16, patch=8)


def build_clip(path: str | Path) -> Path:
    """A CLIP model on 32×32 images (zero-shot image classification).

    Args:
        path: Directory to write (created).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    return _build_clip_family(path, CLIPModel, CLIPConfig, CLIPProcessor,
                              CLIPImageProcessor(size={"shortest_edge": _IMAGE},
                                                 crop_size={"height": _IMAGE, "width": _IMAGE}),
                              max_text=64, patch=16)


def _bert_tokenizer(path: Path):
    from transformers import BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = specials + list(WORDS) + letters + ["##" + ch for ch in letters]
    path.mkdir(parents=True, exist_ok=True)
    vocab_file = path / "vocab.txt"
    vocab_file.write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    return BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True, model_max_length=64)


def _bert_config(vocab_size: int, labels: Sequence[str]):
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=16, max_position_embeddings=64, id2label=_id2label(labels),
                      label2id={v: k for k, v in enumerate(labels)})


def _build_bert(path: str | Path, model_cls, labels: Sequence[str], winner: str | None) -> Path:
    """Write a seeded one-layer BERT ``model_cls`` (a ``...ForTokenClassification`` or
    ``...ForSequenceClassification``, whose head is ``classifier``) with :func:`_bert_tokenizer`'s vocabulary,
    ``labels`` as ``id2label``, and ``winner`` (when given) winning everywhere; returns ``path`` as a Path."""
    _seed(0)
    path = Path(path)
    tokenizer = _bert_tokenizer(path)
    model = model_cls(_bert_config(len(tokenizer), labels)).eval()
    if winner is not None:
        _bias(model.classifier, list(labels).index(winner))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_token_classifier(path: str | Path,
                           labels: Sequence[str] = ("O", "B-PER", "I-PER", "B-org", "I-org", "B-MISC", "I-MISC"),
                           winner: str | None = None) -> Path:
    """A BERT token classifier (NER) with a WordPiece vocabulary of :data:`WORDS` and single letters.

    Args:
        path: Directory to write (created).
        labels: ``id2label`` (IOB tags), in id order.
        winner: A tag every token gets (``"B-PER"``: every word is its own PER entity); ``None`` for random.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    from transformers import BertForTokenClassification

    return _build_bert(path, BertForTokenClassification, labels, winner)


def build_sequence_classifier(path: str | Path, labels: Sequence[str] = ("entailment", "neutral", "contradiction"),
                              winner: str | None = None, extra_config: Mapping | None = None) -> Path:
    """A BERT sequence classifier: with NLI labels (an ``entailment`` label) a zero-shot classifier.

    Args:
        path: Directory to write (created).
        labels: ``id2label``, in id order.
        winner: A label that wins for every input; ``None`` for random logits.
        extra_config: More config attributes (written into ``config.json``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    from transformers import BertForSequenceClassification

    path = _build_bert(path, BertForSequenceClassification, labels, winner)
    if extra_config:
        config = json.loads((path / "config.json").read_text())
        config.update(extra_config)
        (path / "config.json").write_text(json.dumps(config, indent=2))
    return path
