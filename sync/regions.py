"""Bounding boxes in the three forms LabelHub meets, and pure conversions between them.

- **Label Studio** RectangleLabels values (https://labelstud.io/tags/rectanglelabels, result format:
  https://labelstud.io/guide/export#Label-Studio-JSON-format-of-annotated-tasks): ``x, y, width,
  height`` in **percent** (0 to 100) of the image's width and height; ``x, y`` is the top-left corner.
- **Fractions** (0 to 1) of the image's width and height, as LabelHub's CSV files hold them: either
  the edges ``left, top, right, bottom`` (the import CSV's ``left_col, top_row, right_col,
  bottom_row``) or ``x, y, width, height`` (the export CSV's JSON list of ``{x, y, width, height,
  label}``).
- **COCO** ``bbox``: ``[x, y, width, height]`` in **pixels** from the image's top-left corner
  (https://cocodataset.org/#format-data).

Every function is pure (no I/O) and exact up to floating point: a round trip percent → fractions →
percent changes a value by less than 1e-12.

Example:
    >>> percent_from_edges(FractionEdges(0.25, 0.0, 0.75, 1.0))
    {'x': 25.0, 'y': 0.0, 'width': 50.0, 'height': 100.0}
    >>> edges_from_coco([7, 0, 14, 28], 28, 28)
    FractionEdges(left=0.25, top=0.0, right=0.75, bottom=1.0)
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple


class FractionEdges(NamedTuple):
    """A box by its edges, as fractions 0 to 1 of the image (``left < right``, ``top < bottom``).

    Attributes:
        left: the left edge / image width (the import CSV's ``left_col``).
        top: the top edge / image height (``top_row``).
        right: the right edge / image width (``right_col``).
        bottom: the bottom edge / image height (``bottom_row``).
    """

    left: float
    top: float
    right: float
    bottom: float


def percent_from_edges(edges: FractionEdges | Sequence[float]) -> dict[str, float]:
    """Label Studio's percent box from edges given as fractions.

    Args:
        edges: ``(left, top, right, bottom)``, fractions 0 to 1 of the image.

    Returns:
        ``{"x", "y", "width", "height"}`` in percent 0 to 100, the keys of a RectangleLabels
        result's ``value`` (https://labelstud.io/tags/rectanglelabels).
    """
    left, top, right, bottom = edges
    return {"x": left * 100.0, "y": top * 100.0, "width": (right - left) * 100.0,
            "height": (bottom - top) * 100.0}


def edges_from_percent(value: Mapping[str, float]) -> FractionEdges:
    """Edges as fractions from a Label Studio percent box (the inverse of :func:`percent_from_edges`).

    Args:
        value: a RectangleLabels result's ``value`` with ``x, y, width, height`` in percent 0 to 100
            (other keys such as ``rotation`` and ``rectanglelabels`` are ignored; a rotated box is
            converted as if ``rotation`` were 0).

    Returns:
        :class:`FractionEdges`, fractions 0 to 1.

    Raises:
        KeyError: one of ``x, y, width, height`` is missing.
    """
    x, y = value["x"] / 100.0, value["y"] / 100.0
    return FractionEdges(x, y, x + value["width"] / 100.0, y + value["height"] / 100.0)


def fractions_from_percent(value: Mapping[str, float]) -> dict[str, float]:
    """``x, y, width, height`` as fractions 0 to 1 from a Label Studio percent box.

    This is the box form of the export CSV (a JSON list of ``{x, y, width, height, label}``).

    Args:
        value: a RectangleLabels result's ``value`` (percent 0 to 100).

    Returns:
        ``{"x", "y", "width", "height"}``, fractions 0 to 1.

    Raises:
        KeyError: one of ``x, y, width, height`` is missing.
    """
    return {key: value[key] / 100.0 for key in ("x", "y", "width", "height")}


def percent_from_fractions(box: Mapping[str, float]) -> dict[str, float]:
    """Label Studio's percent box from ``x, y, width, height`` fractions (inverse of
    :func:`fractions_from_percent`).

    Args:
        box: ``{"x", "y", "width", "height"}``, fractions 0 to 1 (other keys are ignored).

    Returns:
        ``{"x", "y", "width", "height"}`` in percent 0 to 100.

    Raises:
        KeyError: one of the four keys is missing.
    """
    return {key: box[key] * 100.0 for key in ("x", "y", "width", "height")}


def edges_from_coco(bbox: Sequence[float], image_width: float, image_height: float) -> FractionEdges:
    """Edges as fractions from a COCO ``bbox`` in pixels.

    Args:
        bbox: ``[x, y, width, height]`` in pixels, ``x, y`` the top-left corner
            (https://cocodataset.org/#format-data).
        image_width: the image's ``width`` in pixels (> 0).
        image_height: the image's ``height`` in pixels (> 0).

    Returns:
        :class:`FractionEdges`, fractions of the image (outside 0 to 1 when the bbox leaves the image).

    Raises:
        ValueError: ``bbox`` does not have 4 numbers.
        ZeroDivisionError: an image size is 0.
    """
    if len(bbox) != 4:
        raise ValueError(f"a COCO bbox has 4 numbers [x, y, width, height], not {len(bbox)}")
    x, y, w, h = (float(v) for v in bbox)
    return FractionEdges(x / image_width, y / image_height, (x + w) / image_width, (y + h) / image_height)


def coco_from_edges(edges: FractionEdges | Sequence[float], image_width: float,
                    image_height: float) -> list[float]:
    """A COCO ``bbox`` in pixels from edges given as fractions (inverse of :func:`edges_from_coco`).

    Args:
        edges: ``(left, top, right, bottom)``, fractions 0 to 1.
        image_width: the image's width in pixels.
        image_height: the image's height in pixels.

    Returns:
        ``[x, y, width, height]`` in pixels (https://cocodataset.org/#format-data).
    """
    left, top, right, bottom = edges
    return [left * image_width, top * image_height, (right - left) * image_width, (bottom - top) * image_height]
