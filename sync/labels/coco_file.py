"""A COCO object detection JSON file → :class:`labelhub.sync.labels.parsed.ParsedLabels`.

The format (https://cocodataset.org/#format-data): ``images`` (``id``, ``file_name``, ``width``,
``height``, optionally ``coco_url``), ``annotations`` (``id``, ``image_id``, ``category_id``,
``bbox`` = ``[x, y, width, height]`` in pixels) and ``categories`` (``id``, ``name``). An ``iscrowd: 1`` annotation
(a box around a crowd of objects, an RLE mask: COCO's evaluation ignores them) is skipped, neither imported nor
rejected (:attr:`ParsedLabels.skipped`, a warning counts them); ``segmentation`` polygons are not imported (the
``bbox`` is the region; a warning counts them). Other keys (``area``, ``info``, ``licenses``, ...) are ignored.

Each image becomes one task whose url is its ``file_name`` (a URL, an ``hf://`` url or a path of
the dataset repo), or its ``coco_url`` when ``file_name`` is not a valid url. Each annotation
becomes a RectangleLabels region labelled with its category's ``name`` (which must be a label of
the project), in percent of the image with ``original_width``/``original_height`` set. A bbox may
overflow the image by up to one pixel (rounding in other tools): it is clipped; more is rejected.
An image without annotations becomes a task without a prediction or annotation. An image whose ``id`` an
earlier image has is rejected (:data:`DUPLICATE_IMAGE_ID`): annotations name the first.

``width`` and ``height`` must be whole numbers of pixels (``640.6`` is rejected, not rounded: neither 640 nor 641 is
sure to be right) and, for a file of ``--repo``, the file's own size (read from its header,
:meth:`UrlResolver.image_size`: every image of a local repository, the first
:data:`labelhub.sync.labels.parsed.HUB_SIZE_CHECKS` of a Hub repo): boxes are scaled by them. Each annotation of a
rejected image is reported (:data:`labelhub.sync.labels.parsed.IMAGE_REJECTED`), and an image (url) with a rejected
annotation is held back whole, its image and good annotations reported as
:data:`labelhub.sync.labels.parsed.HELD_BACK`, as a CSV's url is.

Rows are reported as ``images[i]`` and ``annotations[i] (id N)``, their positions in the file.
"""
from __future__ import annotations

import json
import logging
import math
import re
from os import PathLike
from typing import IO

from labelhub.redaction import one_line
from labelhub.sync.labels import parsed as m
from labelhub.sync.labels.parsed import ImportTask, LabelsFileError, ParsedLabels, ProjectLabels, Region, RowError, UrlResolver
from labelhub.sync.regions import FractionEdges, edges_from_coco

log = logging.getLogger(__name__)

#: How far (in pixels) a bbox may leave the image before it is rejected rather than clipped.
CLIP_TOLERANCE_PX = 1.0
#: The reason an image is rejected when an earlier image has its ``id`` (annotations name the first one).
DUPLICATE_IMAGE_ID = "image id already used by an earlier image"


def _key(value):
    """``value`` as a dict key: an id that is a list or an object (not COCO, but JSON allows it) as its JSON."""
    try:
        hash(value)
    except TypeError:
        return ("json", json.dumps(value, sort_keys=True))
    return value


def _csv_hint(text: str | bytes) -> str:
    """``"; it looks like a CSV ...: give --format csv"`` when the first line of ``text`` names a ``url`` column
    (``--format`` defaults to coco for a ``.json`` name), else ``""``."""
    if isinstance(text, bytes):
        text = text[:4096].decode("utf-8", errors="replace")
    first = next((line for line in text.lstrip("\ufeff").splitlines() if line.strip()), "")
    names = {name.strip().strip('"').lower() for name in re.split(r"[,;\t]", first)}
    return "; it looks like a labels CSV (its first line names a url column): give --format csv" \
        if "url" in names else ""


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def read_coco(source: str | PathLike | IO, labels: ProjectLabels, urls: UrlResolver) -> ParsedLabels:
    """Read and check a COCO JSON file.

    Args:
        source: the JSON file (a path or an open file).
        labels: the project's labels; every category used by an annotation must be a
            RectangleLabels label.
        urls: resolves each image's url (:class:`labelhub.sync.labels.parsed.UrlResolver`).

    Returns:
        :class:`ParsedLabels` with one task per good image (``rows`` counts images and annotations);
        an annotation of a rejected image is not imported and is reported with :data:`labelhub.sync.labels.parsed.IMAGE_REJECTED`.

    Raises:
        LabelsFileError: the file is not JSON (a labels CSV is said, with ``--format csv``), not an object with an
            ``images`` list, or its ``annotations`` or ``categories`` are not lists. The message is one line.
    """
    if hasattr(source, "read"):
        text = source.read()
    else:
        with open(source, "rb") as fh:
            text = fh.read()
    if isinstance(text, str) and text.startswith("\ufeff"):  # bytes: json.loads detects a BOM itself
        text = text[1:]
    try:
        coco = json.loads(text)
    except RecursionError:
        raise LabelsFileError("the COCO file nests too deeply to be read") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, encodings, integers of > 4300 digits
        raise LabelsFileError(one_line(f"the COCO file is not JSON: {exc}", 400) + _csv_hint(text)) from None
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
        raise LabelsFileError("the COCO file has no 'images' list (https://cocodataset.org/#format-data)")
    for key in ("annotations", "categories"):
        if coco.get(key) is not None and not isinstance(coco[key], list):
            raise LabelsFileError(f"the COCO file's '{key}' is not a list (https://cocodataset.org/#format-data)")
    images, annotations = coco["images"], coco.get("annotations") or []
    categories = {_key(c.get("id")): str(c.get("name", "")) for c in coco.get("categories") or []
                  if isinstance(c, dict)}
    parsed = ParsedLabels(rows=len(images) + len(annotations))
    order = 0

    def reject(where: str, reason: str, detail: str = "") -> None:
        parsed.errors.append(RowError(where, reason, detail, order))

    tasks: dict[object, ImportTask] = {}
    bad_images: dict = {}  # image key -> where the image was reported
    seen_ids: set = set()
    seen_urls: dict[str, ImportTask] = {}
    rows_of: dict[str, list[tuple[str, int]]] = {}  # task value -> (where, order) of its good images and annotations
    rejected_of: dict[str, list[str]] = {}  # task value -> where its rejected annotations are
    for i, image in enumerate(images):
        order += 1
        where = f"images[{i}]" + (f" (id {image.get('id')!r:.40})" if isinstance(image, dict) else "")
        if not isinstance(image, dict):
            reject(where, m.MISSING_URL, "not an object")
            parsed.rejected_rows += 1
            continue
        image_key = _key(image.get("id"))
        if image.get("id") is not None and image_key in seen_ids:
            reject(where, DUPLICATE_IMAGE_ID)  # its annotations stay with the first image of that id
            parsed.rejected_rows += 1
            continue
        seen_ids.add(image_key)
        problems = len(parsed.errors)
        candidates = [str(image.get(k) or "").strip() for k in ("file_name", "coco_url")]
        candidates = [c for c in candidates if c]
        resolved = None
        if not candidates:
            reject(where, m.MISSING_URL, "no file_name or coco_url")
        else:
            answers = [(c, urls.resolve(c)) for c in candidates]
            good = [(c, a) for c, a in answers if not isinstance(a, str)]
            if good:
                resolved = good[0]
            else:
                reject(where, m.BAD_URL, f"{answers[0][0]!r}: {answers[0][1]}")
        width, height = _number(image.get("width")), _number(image.get("height"))
        size = f"width={image.get('width')!r}, height={image.get('height')!r}"
        if not width or not height or width < 1 or height < 1:  # pixels: 0.5 would become an image 0 px wide
            reject(where, m.BAD_IMAGE_SIZE, size)
        elif not (width.is_integer() and height.is_integer()):  # 640.6: neither 640 nor 641 is sure to be right
            reject(where, m.BAD_IMAGE_SIZE, f"{size}: not whole pixels")
        elif resolved is not None and resolved[1][1] is not None:
            real = urls.image_size(resolved[1][1][1])  # a file of --repo: its header says its size
            if real is not None and real != (int(width), int(height)):
                reject(where, m.IMAGE_SIZE_MISMATCH, f"{size}, but {resolved[1][1][1]} is {real[0]}x{real[1]} px: "
                                                     "its boxes would be scaled wrong")
        if len(parsed.errors) > problems:
            parsed.rejected_rows += 1
            bad_images[image_key] = where
            continue
        url, (value, hf) = resolved[0], resolved[1]
        task = seen_urls.get(value)  # by the task's URL: "a.png" and "./a.png" are one file of the repo
        if task is None:
            task = seen_urls[value] = ImportTask(m.task_url(url, hf), value, hf=hf, original_width=int(width),
                                               original_height=int(height))
        task.lines.append(order)
        rows_of.setdefault(value, []).append((where, order))
        tasks[image_key] = task

    crowds: list[str] = []
    polygons = 0
    for i, ann in enumerate(annotations):
        order += 1
        if not isinstance(ann, dict):
            reject(f"annotations[{i}]", m.BAD_BBOX, "not an object")
            parsed.rejected_rows += 1
            continue
        where = f"annotations[{i}] (id {ann.get('id')!r:.40})"
        image_id = ann.get("image_id")
        if _key(image_id) in bad_images:
            reject(where, m.IMAGE_REJECTED, bad_images[_key(image_id)])
            parsed.rejected_rows += 1
            continue
        if ann.get("iscrowd") == 1:  # a box around a crowd of objects (RLE mask), not one object: COCO's own
            crowds.append(where)    # evaluation ignores them, and as a region it would teach a wrong box
            parsed.skipped += 1
            continue
        problems = len(parsed.errors)
        task = tasks.get(_key(image_id))
        if task is None:
            reject(where, m.UNKNOWN_IMAGE, f"image_id={image_id!r}")
        name = categories.get(_key(ann.get("category_id")))
        if name is None:
            reject(where, m.UNKNOWN_CATEGORY, f"category_id={ann.get('category_id')!r}")
        else:
            why = labels.unknown_rectangle(name)
            if why:
                reject(where, m.UNKNOWN_LABEL, why)
        bbox = ann.get("bbox")
        numbers = [_number(v) for v in bbox] if isinstance(bbox, list) else []
        edges = None
        if len(numbers) != 4 or None in numbers or numbers[2] <= 0 or numbers[3] <= 0:
            reject(where, m.BAD_BBOX, f"bbox={bbox!r}")
        elif task is not None:
            edges = _clip(numbers, task.original_width, task.original_height)
            if edges is None:
                reject(where, m.BBOX_OUTSIDE_IMAGE, f"bbox={bbox!r} in an image of {task.original_width}x"
                                             f"{task.original_height} px")
        if len(parsed.errors) > problems:
            parsed.rejected_rows += 1
            if task is not None:
                rejected_of.setdefault(task.value, []).append(where.split(" ", 1)[0])
            continue
        segmentation = ann.get("segmentation")
        polygons += isinstance(segmentation, list) and any(isinstance(p, list) and len(p) >= 6 for p in segmentation)
        task.regions.append(Region(edges, (name,)))
        task.lines.append(order)
        rows_of.setdefault(task.value, []).append((where, order))

    # an image with a rejected annotation is held back whole (images and annotations of its url): imported with its
    # good annotations only, it would never get the others (the import is keyed on the url)
    for value, rejected in rejected_of.items():
        detail = f"rejected: {', '.join(rejected[:5])}{', ...' if len(rejected) > 5 else ''}"
        for where, at in rows_of[value]:
            parsed.errors.append(RowError(where, m.HELD_BACK, detail, at))
            parsed.rejected_rows += 1
        del seen_urls[value]
    parsed.errors.sort(key=lambda e: e.order)  # stable: per entry, the checks' order
    if crowds:
        log.warning("skipped %d iscrowd annotations (a box around a crowd of objects, not one object): %s",
                    len(crowds), ", ".join(crowds[:5]) + (", ..." if len(crowds) > 5 else ""))
    if polygons:
        log.warning("imported the bbox of %d annotations with segmentation polygons; the polygons are not imported "
                    "(a region is a RectangleLabels box)", polygons)
    parsed.tasks = list(seen_urls.values())
    return parsed


def _clip(bbox: list[float], width: int, height: int) -> FractionEdges | None:
    """Edges of ``bbox`` clipped to the image when it leaves it by at most
    :data:`CLIP_TOLERANCE_PX`; ``None`` when it leaves it by more."""
    x, y, w, h = bbox
    tol = CLIP_TOLERANCE_PX
    if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
        return None
    left, top = max(x, 0.0), max(y, 0.0)
    right, bottom = min(x + w, float(width)), min(y + h, float(height))
    if right <= left or bottom <= top:
        return None
    return edges_from_coco([left, top, right - left, bottom - top], width, height)
