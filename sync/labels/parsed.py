"""What the label import works with: the intermediate form of a labels file, the project's labels,
and how a file's ``url`` becomes a task's URL.

A labels file (a CSV, :mod:`labelhub.sync.labels.csv_file`, or COCO JSON, :mod:`labelhub.sync.labels.coco_file`) is parsed into
:class:`ParsedLabels`: one :class:`ImportTask` per url, with whole-image concepts, regions as
fractions 0 to 1 (:class:`labelhub.sync.regions.FractionEdges`) and metadata, plus one :class:`RowError` per
rejected row. :mod:`labelhub.sync.labels.importer` turns tasks into Label Studio's task format
(https://labelstud.io/guide/task_format) and imports them.
"""
from __future__ import annotations

import posixpath
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from labelhub.errors import LabelConfigError, LabelHubError, RevisionNotFound
from labelhub.file_urls import MAX_URL_LENGTH
from labelhub.label_config import DataField, data_field
from labelhub.suggest import closest
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
POS_AND_NEG = "a concept both positive and negative"
#: A good row (or COCO image or annotation) of a url that has a rejected row: the url is imported whole or not at all,
#: since the import is keyed on the url (a url imported with some of its rows would never get the others).
HELD_BACK = "held back: another row of its url was rejected"
# COCO only
UNKNOWN_IMAGE = "unknown image_id"
UNKNOWN_CATEGORY = "unknown category_id"
BAD_BBOX = "bbox is not 4 numbers with width and height > 0"
BAD_IMAGE_SIZE = "image without a width and height of at least 1 px"
BBOX_OUTSIDE_IMAGE = "bbox outside the image"
IMAGE_SIZE_MISMATCH = "width and height are not the image's"
IMAGE_REJECTED = "its image was rejected"


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
        url: the url as in the file, or for a file of the dataset repo its path (one spelling, :func:`task_url`):
            the task's identity, kept in ``data.source_url``.
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
        tasks: one :class:`ImportTask` per url whose rows are all good, in file order. A url with a rejected row is
            held back whole (its good rows get :data:`HELD_BACK`): the import is keyed on the url, so a url imported
            with some of its rows would never get the others once the file is fixed.
        errors: every rejected row, in file order (a row with several problems has several), and each held back
            row.
        rejected_rows: how many rows were rejected or held back.
        skipped: how many rows were left out on purpose, neither imported nor rejected (COCO ``iscrowd``
            annotations, logged with a count). ``rows`` = rows of the tasks + ``rejected_rows`` + ``skipped``.
    """

    rows: int = 0
    tasks: list[ImportTask] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    rejected_rows: int = 0
    skipped: int = 0

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
                                   "a labels file names files by url; add valueType=\"url\" to the tag if its "
                                   "tasks hold URLs (https://labelstud.io/tags/text)")
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
        """Why ``label`` cannot be a whole-image concept (``None`` when it can); names the nearest Choice
        (``; did you mean 'Cat'?``, :func:`did_you_mean`)."""
        if label in self.choices:
            return None
        if not self.choices:
            return f"{label!r}: the label config has no Choices tag for whole-image concepts"
        return f"{label!r} is not a Choice of {_names(self.choices)}{did_you_mean(label, self.choices)}"

    def unknown_rectangle(self, label: str) -> str | None:
        """Why ``label`` cannot label a box (``None`` when it can); names the nearest label (:func:`did_you_mean`)."""
        if label in self.rectangles:
            return None
        if not self.rectangles:
            return f"{label!r}: the label config has no RectangleLabels tag for boxes"
        return f"{label!r} is not a label of RectangleLabels {_names(self.rectangles)}" \
               f"{did_you_mean(label, self.rectangles)}"

    def unknown_any(self, label: str) -> str | None:
        """Why ``label`` is in no Choices or RectangleLabels tag (``None`` when it is in one); names the nearest."""
        if label in self.choices or label in self.rectangles:
            return None
        return f"{label!r} is in no Choices or RectangleLabels tag of the label config" \
               f"{did_you_mean(label, [*self.choices, *self.rectangles])}"


def _names(mapping: dict[str, str]) -> str:
    return ", ".join(repr(n) for n in dict.fromkeys(mapping.values()))


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 'Cat'?"`` naming the known name ``name`` is closest to, or ``""`` when none is close.

    The rule is :func:`labelhub.suggest.closest`'s with a ratio of 0.75 or more (``Sneakr`` for ``Sneaker``).
    """
    close = closest(name, known, cutoff=0.75)
    return f"; did you mean {close!r}?" if close else ""


# hf://[datasets/|spaces/|models/]owner/name[@revision]/path, as huggingface_hub's HfFileSystem
# reads them (https://huggingface.co/docs/huggingface_hub/guides/hf_file_system, its parse_hf_uri): a revision with a
# "/" is written URL-encoded (refs%2Fpr%2F1) and decoded; the path is taken literally, spaces and "%" included
# (HfFileSystem does not decode it: hf://datasets/o/n/a%20b.png names the file "a%20b.png").
#: What no URL or repo path holds: C0/C1 control characters (NUL, newlines, ...) and unpaired surrogates (a JSON
#: ``\ud800`` escape in a COCO file: not Unicode text, so never sent to Label Studio).
_NOT_URL_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_HF_URL = re.compile(r"^hf://(?:(datasets|spaces|models)/)?([^/@\s]+/[^/@\s]+)(?:@([^/\s]+))?/(.+)$")


#: How many images of a Hub ``--repo`` a COCO import reads to check the file's width and height (one download each;
#: every image of a local repository is checked, a read of its git objects).
HUB_SIZE_CHECKS = 20


class UrlResolver:
    """Turns a labels file's ``url`` into the URL a task shows.

    Accepted urls:

    - ``http://`` and ``https://`` URLs with a host: kept as they are;
    - ``hf://datasets/owner/name[@revision]/path`` (also ``spaces/``, ``models/`` or no prefix for a
      model, https://huggingface.co/docs/huggingface_hub/guides/hf_file_system): the Hub's
      ``resolve`` URL (``hf_hub_url``, no call), revision ``main`` when none is given; not checked (that would take
      a Hub call per file);
    - a ``path_in_repo`` of the dataset repo given with ``--repo``: the repo's file URL pinned to
      the resolved commit, as the sync writes it (and the task gets ``hf_repo``, ``hf_path``,
      ``hf_revision`` like the sync's tasks). One file has one spelling: ``./img/0.png``, ``img//0.png`` and
      ``img/./0.png`` are ``img/0.png`` (:func:`posixpath.normpath`), and an ``hf://datasets/`` url of the Hub
      ``--repo`` is its path too (checked like one; with an ``@revision``, that revision must be ``--revision``'s
      commit). A path with ``\\`` separators or a leading ``/`` is refused with the spelling that names a file,
      and so is a name in another Unicode normalization than the repo's (NFC ``é`` for the repo's NFD ``é``). A
      file of the repo whose name a file URL cannot carry (a backslash or a control character in a signed backend
      URL, :func:`labelhub.signing.is_safe_path`; a Hub resolve URL carries it) is refused, as ``labelhub sync``
      leaves it out. A repo file URL longer than :data:`labelhub.file_urls.MAX_URL_LENGTH` is kept and noted in
      :attr:`long_urls` (the caller warns, as the sync does).

    The path of an ``hf://`` url is taken literally, as huggingface_hub's ``HfFileSystem`` reads it: a space is a
    space and ``%20`` is the three characters ``%20`` (only the ``@revision`` is URL-decoded); an url of the
    ``--repo`` whose path names a file only once percent-decoded is refused with the name to write.

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
        #: The repo paths whose task URL is longer than :data:`labelhub.file_urls.MAX_URL_LENGTH` (in file order).
        self.long_urls: list[str] = []
        self._other_forms: dict[str, str] | None = None  # a name's other form -> the repo's path (_other_form)
        self._revisions: dict[str, str] = {}  # an hf:// url's @revision of the repo -> its commit sha, or why not
        self._hub_size_checks = 0

    def resolve(self, url: str) -> tuple[str, tuple[str, str, str] | None] | str:
        """Resolve one url.

        Args:
            url: the url as in the file (stripped).

        Returns:
            ``(value, hf)`` where ``value`` is the task URL and ``hf`` is ``(repo_id, path, sha)``
            for a file of the repo (else ``None``; :func:`task_url` gives the url's one spelling); or a ``str``, the
            detail of why the url is refused.
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
            return self._hf(url)
        if scheme and "/" not in scheme and url.split(":", 1)[1].startswith("//"):
            return f"scheme {scheme}:// is not supported"
        if self.repo is None:
            return "a path needs --repo, the dataset repo it is in"
        return self._repo_file(url)

    def _hf(self, url: str) -> tuple[str, None] | tuple[str, tuple[str, str, str]] | str:
        match = _HF_URL.match(url)
        if not match:
            return ("an hf:// url is hf://datasets/OWNER/NAME[@REVISION]/PATH (or spaces/OWNER/NAME/..., and "
                    "models/OWNER/NAME/... or OWNER/NAME/... for a model repo)")
        kind, repo_id, revision, path = match.groups()
        ours = self.repo is not None and not self.repo.local and repo_id == self.repo.repo_id
        if ours and kind is None:  # the dataset's name in a model repo's url: a file that is not there
            return (f"hf://{repo_id}/... is a model repo's url; the dataset --repo's files are "
                    f"hf://datasets/{repo_id}/{path} or {path}")
        if ours and kind == "datasets":
            if revision is not None:
                sha = self._revision_sha(unquote(revision))
                if not re.fullmatch(r"[0-9a-f]{40}", sha):  # why not: the repo has no such revision
                    return (f"names {repo_id} at {unquote(revision)}, which it does not have ({sha}): correct "
                            f"the @{revision}, or leave it out for --revision's commit {self.sha[:12]}")
                if sha != self.sha:
                    return (f"names {repo_id} at {unquote(revision)} (commit {sha[:12]}), not at --revision's "
                            f"commit {self.sha[:12]}: give --revision {unquote(revision)}, or leave @{revision} out")
            answer = self._repo_file(path)
            if isinstance(answer, str) and "%" in path and posixpath.normpath(unquote(path)) in self.paths:
                answer += (f"; an hf:// path is not percent-decoded (as huggingface_hub's HfFileSystem reads it): "
                           f"write {posixpath.normpath(unquote(path))!r}")
            return answer
        from huggingface_hub import hf_hub_url

        repo_type = {"datasets": "dataset", "spaces": "space"}.get(kind or "", "model")
        return hf_hub_url(repo_id, path, repo_type=repo_type, revision=unquote(revision or "main"),
                          endpoint=self.endpoint), None

    def _revision_sha(self, revision: str) -> str:
        """The commit sha of ``revision`` of the repo (one call per revision), or why there is none."""
        if self.sha.startswith(revision) and len(revision) >= 7:
            return self.sha
        if revision not in self._revisions:
            try:
                self._revisions[revision] = self.repo.resolve(revision)
            except RevisionNotFound as exc:  # the Hub unreachable is no fault of the row: it stops the command
                self._revisions[revision] = str(exc)[:200]
        return self._revisions[revision]

    def _repo_file(self, url: str) -> tuple[str, tuple[str, str, str]] | str:
        path = posixpath.normpath(url)  # "./a.png", "img//a.png", "img/./a.png": one file, one spelling
        if path in self.paths:
            if self.field is not None and not shown_by(path, self.field.default_include):
                types = ", ".join(p for p in self.field.default_include if p == p.lower())
                return f"{path} is not a file type an <{self.field.tag}> shows ({types})"
            try:
                value = self.repo.file_url(self.sha, path)
            except ValueError:  # the backend's signed URLs refuse it (is_safe_path); the sync leaves it out too
                return (f"{path!r} is a file of {self.repo.repo_id}, but a file URL cannot carry its name (a "
                        "backslash or a control character): rename it in the repo; labelhub sync leaves it out too")
            if len(value) > MAX_URL_LENGTH and path not in self.long_urls:
                self.long_urls.append(path)
            return value, (self.repo.repo_id, path, self.sha)
        where = f"not a file of {self.repo.repo_id} at {self.sha[:12]}"
        other = self._other_form(path)
        if other is not None:
            return (f"{where}; the repo has this name in another Unicode normalization (NFC/NFD: the same "
                    f"letters, other code points): write it as the repo does, {other!r}")
        slashed = posixpath.normpath(path.replace("\\", "/"))
        if "\\" in path and slashed.lstrip("/") in self.paths:
            return f"{where}; paths of the repo are separated by '/': {slashed.lstrip('/')!r}"
        if path.startswith("/") and path.lstrip("/") in self.paths:
            return f"{where}; paths are from the repo's root, without a leading '/': {path.lstrip('/')!r}"
        return where

    def _other_form(self, path: str) -> str | None:
        """The repo's path that is ``path`` in another Unicode normalization (NFC ``é`` for NFD ``e`` + U+0301:
        macOS writes names in NFD, most editors type NFC), or ``None``. A map of the repo's paths whose forms
        differ is made at the first miss."""
        if self._other_forms is None:
            self._other_forms = {unicodedata.normalize("NFC", p): p for p in self.paths
                                 if not unicodedata.is_normalized("NFC", p)}
            self._other_forms.update({unicodedata.normalize("NFD", p): p for p in self.paths
                                      if not unicodedata.is_normalized("NFD", p)})
        other = self._other_forms.get(unicodedata.normalize("NFC", path)) or \
            self._other_forms.get(unicodedata.normalize("NFD", path))
        return other if other is not None and other != path else None

    def image_size(self, path: str) -> tuple[int, int] | None:
        """The ``(width, height)`` in pixels of the image ``path`` of the repo, read from its header (PIL's lazy
        :func:`PIL.Image.open`), for a COCO file's ``width``/``height`` check.

        Every image of a local repository is read (its git objects, no network); of a Hub repo, the first
        :data:`HUB_SIZE_CHECKS` asked for (one download each, through huggingface_hub's cache): a file whose sizes
        are wrong is usually wrong for every image, and a download per image of a large dataset is what the sync
        avoids.

        Returns:
            The size, or ``None`` when it is not checked: no repo, past the Hub budget, or not an image PIL
            reads (then Label Studio's editor measures it).

        Raises:
            labelhub.errors.HubError: the Hub cannot be read (unreachable, refused): the command stops, as the
                sync's reads do, rather than import sizes it set out to check.
        """
        if self.repo is None:
            return None
        if not self.repo.local:
            if self._hub_size_checks >= HUB_SIZE_CHECKS:
                return None
            self._hub_size_checks += 1
        import io

        from PIL import Image

        data = self.repo.read_file(self.sha, path)
        try:
            with Image.open(io.BytesIO(data)) as image:
                return image.size
        except Exception:  # noqa: BLE001 - PIL's UnidentifiedImageError, DecompressionBombError, SyntaxError, ...
            return None


def task_url(url: str, hf: tuple[str, str, str] | None) -> str:
    """A url's one spelling, the task's identity (``data.source_url``, the import's key): the path in the repo for a
    file of ``--repo`` (``./img/0.png``, ``hf://datasets/OWNER/NAME/img/0.png`` → ``img/0.png``), else the url as
    in the file.

    Args:
        url: the url as in the file.
        hf: what :meth:`UrlResolver.resolve` gave with it.
    """
    return hf[1] if hf else url
