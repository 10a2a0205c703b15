"""What the label import works with: the intermediate form of a labels file, the project's labels,
and how a file's ``url`` becomes a task's URL.

A labels file (a CSV, :mod:`labelhub.sync.labels.csv_file`, or COCO JSON, :mod:`labelhub.sync.labels.coco_file`) is parsed into
:class:`ParsedLabels`: one :class:`ImportTask` per url, with whole-image concepts, regions as
fractions 0 to 1 (:class:`labelhub.sync.regions.FractionEdges`) and metadata, plus one :class:`RowError` per
rejected row. :mod:`labelhub.sync.labels.importer` turns tasks into Label Studio's task format
(https://labelstud.io/guide/task_format) and imports them.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from labelhub.errors import LabelConfigError, LabelHubError
from labelhub.label_config import DataField, data_field
from labelhub.sync.files.selection import shown_by
from labelhub.sync.regions import FractionEdges

# The reasons a row is rejected (the report's words; tests match them exactly).
MISSING_URL = "missing url"
BAD_URL = "url is not http(s), hf:// or a path of the dataset repo"
BOX_INCOMPLETE = "box with some of its four columns empty"
BOX_NOT_A_NUMBER = "box value is not a number"
BOX_OUTSIDE = "box values outside 0 to 1"
LEFT_NOT_BEFORE_RIGHT = "left_col >= right_col"
TOP_NOT_BEFORE_BOTTOM = "top_row >= bottom_row"
BOX_WITHOUT_LABEL = "box without a positive concept"
BAD_METADATA = "metadata is not a JSON object"
TOO_MANY_FIELDS = "more fields than the header has"
NOT_CSV = "quoting that is not CSV"
NOT_UTF8 = "bytes that are not UTF-8 (read as U+FFFD)"
UNKNOWN_LABEL = "unknown label"
TWO_CHOICES = "a second choice of a single-choice Choices for one url"
# COCO only
UNKNOWN_IMAGE = "unknown image_id"
UNKNOWN_CATEGORY = "unknown category_id"
BAD_BBOX = "bbox is not 4 numbers with width and height > 0"
BAD_IMAGE_SIZE = "image without a width and height of at least 1 px"
BBOX_OUTSIDE_IMAGE = "bbox outside the image"


class LabelsFileError(LabelHubError):
    """The labels file cannot be read at all (not a CSV, no ``url`` column, not COCO JSON, ...)."""


@dataclass(frozen=True)
class Region:
    """One box of an image and its labels.

    Attributes:
        edges: the box as fractions 0 to 1 of the image (:class:`labelhub.sync.regions.FractionEdges`).
        labels: the RectangleLabels label names (at least one).
    """

    edges: FractionEdges
    labels: tuple[str, ...]


@dataclass
class ImportTask:
    """One image (one url) of a labels file: it becomes one Label Studio task.

    Attributes:
        url: the url exactly as in the file (the task's identity, kept in ``data.source_url``).
        value: the URL Label Studio shows (an ``hf://`` url or a repo path resolved to a file URL).
        lines: where the url's rows are in the file (line numbers of a CSV, positions in COCO JSON).
        concepts: positive whole-image concepts (the project's Choices), in file order.
        neg_concepts: negative concepts (checked and absent), kept in ``data.neg_concepts``.
        regions: the boxes (the project's RectangleLabels).
        metadata: the merged metadata objects of the url's rows (``data.metadata``).
        original_width, original_height: the image size in pixels when the file says it (COCO).
        hf: ``(repo_id, path_in_repo, sha)`` when the url is a path of the dataset repo.
    """

    url: str
    value: str
    lines: list[int] = field(default_factory=list)
    concepts: list[str] = field(default_factory=list)
    neg_concepts: list[str] = field(default_factory=list)
    regions: list[Region] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    original_width: int | None = None
    original_height: int | None = None
    hf: tuple[str, str, str] | None = None


@dataclass(frozen=True)
class RowError:
    """A rejected row.

    Attributes:
        where: ``"line 7"`` for a CSV (the header is line 1), ``"annotations[3] (id 12)"`` for COCO.
        reason: one of the reason constants of this module (``MISSING_URL``, ``UNKNOWN_LABEL``, ...).
        detail: what exactly is wrong (``"'Cat' is not a Choice of 'kind'"``); may be empty.
        order: the position used to sort the report.
    """

    where: str
    reason: str
    detail: str = ""
    order: int = 0

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class ParsedLabels:
    """A labels file after parsing and validation.

    Attributes:
        rows: how many rows (CSV rows, or COCO images + annotations) were read.
        tasks: one :class:`ImportTask` per url with at least one good row, in file order.
        errors: every rejected row, in file order (a row with several problems has several).
        rejected_rows: how many rows were rejected.
    """

    rows: int = 0
    tasks: list[ImportTask] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    rejected_rows: int = 0

    @property
    def regions(self) -> int:
        """How many regions the tasks hold."""
        return sum(len(t.regions) for t in self.tasks)


@dataclass(frozen=True)
class ProjectLabels:
    """The labels a project's label config accepts, and the tags results must name.

    Label Studio accepts results with unknown labels and unknown control names without a word, so
    LabelHub checks every label against these before importing.

    Attributes:
        field: the object tag the url fills (:class:`labelhub.label_config.DataField`, e.g. ``$image``).
        choices: ``{label: Choices tag name}`` of Choices tags pointing at that object tag.
        rectangles: ``{label: RectangleLabels tag name}`` of RectangleLabels tags pointing at it.
        single: the names of those Choices tags that take one choice (``choice`` ``single``, the default, or
            ``single-radio``: https://labelstud.io/tags/choices).
    """

    field: DataField
    choices: dict[str, str]
    rectangles: dict[str, str]
    single: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, label_config: str) -> "ProjectLabels":
        """Read a project's label config (https://labelstud.io/tags/choices,
        https://labelstud.io/tags/rectanglelabels).

        Args:
            label_config: the label config XML.

        Returns:
            The labels of its Choices and RectangleLabels tags that point at the first object tag a
            URL can fill (label aliases are the names, as in Label Studio's results).

        Raises:
            labelhub.errors.LabelConfigError: the XML does not parse, it has no such object tag, the
                tag reads text rather than a URL, or it has neither Choices nor RectangleLabels.
        """
        from label_studio_sdk.label_interface import LabelInterface

        data = data_field(label_config)
        if not data.as_url:
            raise LabelConfigError(f"the project's <{data.tag} name=\"{data.name}\"> holds text, not a URL: "
                                   "a labels file names images by url")
        choices: dict[str, str] = {}
        rectangles: dict[str, str] = {}
        single: set[str] = set()
        for control in LabelInterface(label_config).controls:
            if data.name not in (control.to_name or []):
                continue
            target = {"Choices": choices, "RectangleLabels": rectangles}.get(control.tag)
            if control.tag == "Choices" and str(control.attr.get("perRegion", "")).lower() == "true":
                continue  # each region's choice, not the whole image's: a labels file's concepts cannot fill it
            if control.tag == "Choices" and str(control.attr.get("choice") or "single").lower() != "multiple":
                single.add(control.name)
            if target is not None:
                for label in control.labels:
                    target.setdefault(label, control.name)
        if not choices and not rectangles:
            raise LabelConfigError(f"the project's label config has no Choices or RectangleLabels tag with "
                                   f"toName=\"{data.name}\"")
        return cls(data, choices, rectangles, frozenset(single))

    def unknown_choice(self, label: str) -> str | None:
        """Why ``label`` cannot be a whole-image concept (``None`` when it can)."""
        if label in self.choices:
            return None
        if not self.choices:
            return f"{label!r}: the label config has no Choices tag for whole-image concepts"
        return f"{label!r} is not a Choice of {_names(self.choices)}"

    def unknown_rectangle(self, label: str) -> str | None:
        """Why ``label`` cannot label a box (``None`` when it can)."""
        if label in self.rectangles:
            return None
        if not self.rectangles:
            return f"{label!r}: the label config has no RectangleLabels tag for boxes"
        return f"{label!r} is not a label of RectangleLabels {_names(self.rectangles)}"

    def unknown_any(self, label: str) -> str | None:
        """Why ``label`` is in no Choices or RectangleLabels tag (``None`` when it is in one)."""
        if label in self.choices or label in self.rectangles:
            return None
        return f"{label!r} is in no Choices or RectangleLabels tag of the label config"


def _names(mapping: dict[str, str]) -> str:
    return ", ".join(repr(n) for n in dict.fromkeys(mapping.values()))


# hf://[datasets/|spaces/|models/]owner/name[@revision]/path, as huggingface_hub's HfFileSystem
# reads them (https://huggingface.co/docs/huggingface_hub/guides/hf_file_system); a revision with a
# "/" is written URL-encoded (refs%2Fpr%2F1).
#: What no URL or repo path holds: C0/C1 control characters (NUL, newlines, ...) and unpaired surrogates (a JSON
#: ``\ud800`` escape in a COCO file: not Unicode text, so never sent to Label Studio).
_NOT_URL_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_HF_URL = re.compile(r"^hf://(?:(datasets|spaces|models)/)?([^/@\s]+/[^/@\s]+)(?:@([^/\s]+))?/(\S+)$")


class UrlResolver:
    """Turns a labels file's ``url`` into the URL a task shows.

    Accepted urls:

    - ``http://`` and ``https://`` URLs with a host: kept as they are;
    - ``hf://datasets/owner/name[@revision]/path`` (also ``spaces/``, ``models/`` or no prefix for a
      model, https://huggingface.co/docs/huggingface_hub/guides/hf_file_system): the Hub's
      ``resolve`` URL (``hf_hub_url``, no call), revision ``main`` when none is given;
    - a ``path_in_repo`` of the dataset repo given with ``--repo``: the repo's file URL pinned to
      the resolved commit, as the sync writes it (and the task gets ``hf_repo``, ``hf_path``,
      ``hf_revision`` like the sync's tasks).

    Args:
        repo: the dataset repo (:class:`labelhub.repos.DatasetRepo`), or ``None``.
        sha: the commit sha of ``repo`` the paths are checked against.
        paths: the files of ``repo`` at ``sha``.
        endpoint: the Hub endpoint for ``hf://`` urls (``HF_ENDPOINT``; default huggingface.co).
        field: the object tag the urls fill (:class:`labelhub.label_config.DataField`), or ``None``. When given, a path
            of ``repo`` must also be a file type the tag shows, as ``labelhub sync`` selects files by default
            (:attr:`labelhub.label_config.DataField.default_include`: ``*.png``, ``*.jpg``, ... for an ``<Image>``):
            a ``.txt`` or ``.csv`` of the repo would make a task whose image never loads.
    """

    def __init__(self, repo=None, sha: str | None = None, paths: Iterable[str] = (),
                 endpoint: str | None = None, field=None):
        self.repo, self.sha, self.paths, self.endpoint = repo, sha, frozenset(paths), endpoint
        self.field = field

    def resolve(self, url: str) -> tuple[str, tuple[str, str, str] | None] | str:
        """Resolve one url.

        Args:
            url: the url as in the file (stripped).

        Returns:
            ``(value, hf)`` where ``value`` is the task URL and ``hf`` is ``(repo_id, path, sha)``
            for a repo path (else ``None``); or a ``str``, the detail of why the url is refused.
        """
        odd = _NOT_URL_TEXT.search(url)
        if odd:
            what = "an unpaired surrogate" if odd.group() >= "\ud800" else "a control character"
            return f"character {odd.start()} is {what}"
        scheme = url.split(":", 1)[0].lower() if ":" in url else ""
        if scheme in ("http", "https"):
            parts = urlsplit(url)
            if parts.netloc and not any(c.isspace() for c in url):
                return url, None
            return "an http(s) URL needs a host and no spaces"
        if scheme == "hf":
            match = _HF_URL.match(url)
            if not match:
                return "an hf:// url is hf://datasets/OWNER/NAME[@REVISION]/PATH"
            from huggingface_hub import hf_hub_url

            kind, repo_id, revision, path = match.groups()
            repo_type = {"datasets": "dataset", "spaces": "space"}.get(kind or "", "model")
            return hf_hub_url(repo_id, path, repo_type=repo_type, revision=unquote(revision or "main"),
                              endpoint=self.endpoint), None
        if scheme and "/" not in scheme and url.split(":", 1)[1].startswith("//"):
            return f"scheme {scheme}:// is not supported"
        if self.repo is None:
            return "a path needs --repo, the dataset repo it is in"
        path = url[2:] if url.startswith("./") else url
        if path in self.paths:
            if self.field is not None and not shown_by(path, self.field.default_include):
                types = ", ".join(p for p in self.field.default_include if p == p.lower())
                return f"{path} is not a file type an <{self.field.tag}> shows ({types})"
            return self.repo.file_url(self.sha, path), (self.repo.repo_id, path, self.sha)
        return f"not a file of {self.repo.repo_id} at {self.sha[:12]}"
