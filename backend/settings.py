"""One settings object for the ML backend, read from environment variables (and CLI flags).

Every field of :class:`Settings` is documented in the "ML backend" section of ``README.md`` (the table of environment
variables). Names follow Label Studio's own where one exists (``LABEL_STUDIO_URL``,
``LABEL_STUDIO_API_KEY``, ``BASIC_AUTH_USER``, ``BASIC_AUTH_PASS``, ``MODEL_DIR`` as in
label-studio-ml: https://github.com/HumanSignal/label-studio-ml-backend#configuration) and the Hub's
(``HF_TOKEN``: https://huggingface.co/docs/huggingface_hub/package_reference/environment_variables).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from labelhub.redaction import check_http_url, without_userinfo

#: ``check_http_url`` (:func:`labelhub.redaction.check_http_url`, where the sync's ``HF_ENDPOINT`` check finds it too)
#: is re-exported here, where the backend's settings check ``LABEL_STUDIO_URL`` with it.
__all__ = ["Settings", "DEFAULT_MAX_BODY_BYTES", "check_http_url", "check_allowed_host"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

#: Default ``LABELHUB_MAX_BODY_BYTES``: 64 MiB. The largest bodies Label Studio sends are ``/predict`` batches,
#: which carry each task's ``data``: a task naming its file by URL takes a few hundred bytes (64 MiB holds
#: ~100,000 of them), one with an image inlined as a ``data:`` URI tens to hundreds of KB (64 MiB still holds
#: a few hundred). Webhook events and ``/setup`` take kilobytes. The limit bounds what one request can make a
#: worker hold: at most 64 MiB per thread.
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024

#: Allowed ranges of the numeric fields: ``(lowest, highest)``, ``None`` for no bound.
_RANGES: dict[str, tuple[float | None, float | None]] = {
    "image_size": (32, 4096),  # EfficientNet-Lite0 downsamples by 32
    "torch_threads": (0, 256),  # 0: torch's default
    "media_timeout": (0.001, None),
    "media_max_bytes": (1, None),
    "media_cache_bytes": (0, None),
    "embedding_cache_size": (0, None),
    "embedding_store_bytes": (0, None),
    "spans_cache_bytes": (0, None),
    "trainer_poll_interval": (0.001, None),
    "max_body_bytes": (1024, None),  # a /setup body holds a label config: a few KB
    "trainer_lease": (1.0, None),
    "keep_versions": (0, None),
    "auto_predict_interval": (0, None),
}


#: A DNS name as ``LABELHUB_ALLOWED_HOSTS`` holds it (lowercased): letters, digits, ``-``, ``_`` and dots.
_HOST_NAME = re.compile(r"[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?", re.IGNORECASE)


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip().lower() for part in (value or "").split(",") if part.strip())


def _shown(url: str) -> str:
    """``url`` for a message: its first 100 characters without the ``user:password@`` before its host
    (:func:`labelhub.redaction.without_userinfo`, which also sees it in a value with no scheme)."""
    return without_userinfo(url)[:100]


def check_allowed_host(entry: str) -> None:
    """Check one entry of ``LABELHUB_ALLOWED_HOSTS``: a host name, an IP address, or either with ``:port``.

    :meth:`labelhub.backend.media.MediaFetcher.classify` compares a URL's host (and ``host:port``) with the entries,
    so a URL (``http://127.0.0.1:18303/``) or a pattern (``*.example.org``) never matches: such an entry is refused
    here instead of every fetch of that host being refused later with "host ... is not allowed". An IPv6 address is
    written without brackets (``::1``, as a URL's ``hostname`` is).

    Args:
        entry: One comma-separated part, lowercased and stripped.

    Raises:
        ValueError: One line naming ``LABELHUB_ALLOWED_HOSTS``, the entry (without a password) and the form expected,
            with the entry's ``host:port`` when it is a URL: ``LABELHUB_ALLOWED_HOSTS: 'http://127.0.0.1:18303/' is a
            URL, not a host: write 127.0.0.1:18303``.
    """
    host, _, port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
    if (not port or (port.isascii() and port.isdigit() and 0 < int(port) < 65536)) and \
            (_HOST_NAME.fullmatch(host) or _is_ip(host) or (not port and _is_ip(entry))):
        return
    if _is_ip(entry) or (entry.count(":") > 1 and _is_ip(entry.rpartition(":")[0])):
        return  # an IPv6 address, with or without a port
    form = "a host name or IP address, optionally with :port (e.g. images.example.org,cdn.example.org:8080)"
    if "://" in entry or "/" in entry:
        netloc = urlsplit(entry if "://" in entry else "//" + entry).netloc.rpartition("@")[2]
        hint = f"is a URL, not a host: write {netloc}" if netloc else f"is a URL, not a host: write {form}"
    elif "*" in entry:
        hint = f"is a pattern; no wildcards are read: list each host, {form}"
    else:
        hint = f"is not {form}"
    raise ValueError(f"LABELHUB_ALLOWED_HOSTS: {_shown(entry)!r} {hint}")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Settings:
    """Configuration of the ML backend.

    Attributes:
        model_dir: Directory of the per-project model state and the event queue (``MODEL_DIR``,
            default ``./labelhub-models``). Shared by all gunicorn workers; keep it on a local disk. An empty
            ``MODEL_DIR=`` counts as unset (the default), as click reads the ``--model-dir`` option's variable;
            before, it was the current folder, silently.
        basic_auth_user / basic_auth_pass: HTTP basic auth that Label Studio sends when the model is
            connected with "Basic Authentication" (``BASIC_AUTH_USER`` / ``BASIC_AUTH_PASS``; both
            empty: no auth; one without the other is refused).
        webhook_secret: Shared secret accepted in the ``X-LabelHub-Secret`` header of ``/webhook``
            (``LABELHUB_WEBHOOK_SECRET``). Label Studio sends no basic auth on the webhook it creates
            itself, so add this header to that webhook in the project's settings.
        label_studio_url: Base URL of Label Studio, used to fetch ``/data/upload/...`` and
            ``/data/local-files/...`` media (``LABEL_STUDIO_URL``).
        label_studio_api_key: A personal access token or legacy token (``LABEL_STUDIO_API_KEY``), without the
            whitespace around it (dropped here). A key that still holds a space or a control character is not refused
            at start (the backend serves without it): each use says so, as a refused key
            (:func:`labelhub.labelstudio_client.api_key_value`), and the auto-predict's and the worker's key checks
            log it as a warning at start.
        hf_token: Hugging Face token for ``hf://`` and ``.../resolve/...`` media (``HF_TOKEN``), without the
            whitespace around it (dropped here, as the sync's ``--hf-token``: the CR of a CRLF ``.env`` file made
            httpx refuse the header, in an error quoting it).
        allowed_hosts: Other hosts whose http(s) URLs may be fetched (``LABELHUB_ALLOWED_HOSTS``,
            comma-separated host names or ``host:port``; empty: none).
        model_class: ``module:Class`` of the model (``LABELHUB_MODEL``), a
            :class:`labelhub.backend.model.LabelStudioMLBase` subclass.
        model_params: The default model's parameters for every project, a JSON object
            (``LABELHUB_MODEL_PARAMS``; a project's "Extra params" override it key by key). See
            :mod:`labelhub.backend.models.params`.
        image_embedder / text_embedder: Which embedder the default Choices model uses
            (``LABELHUB_IMAGE_EMBEDDER``, ``LABELHUB_TEXT_EMBEDDER``); see :mod:`labelhub.backend.embedders`.
        image_size: Side in pixels images are resized to before the CNN (``LABELHUB_IMAGE_SIZE``).
        torch_threads: Threads of ONNX Runtime (and torch, for a transformers model) per worker
            (``LABELHUB_TORCH_THREADS``, default 2; 0: one per core). Two let a lone request, such as Label
            Studio's "Retrieve predictions", use two cores: the image embedder runs a call's parts as two
            side-by-side runs (see :mod:`labelhub.backend.embedders`). ``bench/retrieve_bench.py``: ``/predict``
            at 0.83 of the bare embedder's images/s with one client, 0.85 with two; 0.48 with one thread.
        media_timeout: Seconds to wait for one media file (``LABELHUB_MEDIA_TIMEOUT``).
        media_max_bytes: Largest media file accepted (``LABELHUB_MEDIA_MAX_BYTES``).
        media_cache_bytes: Size of each worker's in-memory media cache (``LABELHUB_MEDIA_CACHE_BYTES``).
        embedding_cache_size: Embeddings each worker keeps in memory (``LABELHUB_EMBEDDING_CACHE_SIZE``).
        embedding_store_bytes: Size limit of the host's on-disk embedding store, ``MODEL_DIR/embeddings``
            (``LABELHUB_EMBEDDING_STORE_BYTES``, default 2 GiB, about 400,000 image embeddings; 0: none). See
            :mod:`labelhub.backend.embedding_cache`.
        spans_cache_bytes: Words and word vectors the spans head's token encoder keeps in each worker's memory
            (``LABELHUB_SPANS_CACHE_BYTES``, default 64 MiB, about 40,000 words of annotated texts; 0: none), so a
            refit encodes only the texts annotated since the last. See :mod:`labelhub.backend.models.spans`.
        start_trainer: Whether the app runs the background trainer thread (``LABELHUB_TRAINER``).
        trainer_poll_interval: Seconds between scans of the event queue (``LABELHUB_TRAINER_POLL``).
        warmup: Load the embedder in the background after ``/setup`` (``LABELHUB_WARMUP``).
        log_level: Logging level (``LABELHUB_LOG_LEVEL``): DEBUG, INFO, WARNING, ERROR or CRITICAL.
        max_body_bytes: Largest request body accepted (``LABELHUB_MAX_BODY_BYTES``, default
            :data:`DEFAULT_MAX_BODY_BYTES`, at least 1024); a larger one is answered 413 by its ``Content-Length``
            before it is read, or as soon as a chunked body passes the limit.
        secret: The secret that signs file URLs (``LABELHUB_SECRET``, at least 16 characters; the sync
            signs with the same one); empty: the file route refuses every request. See :mod:`labelhub.signing`.
        file_repos: The repos the file route serves (``LABELHUB_FILE_REPOS``): comma-separated Hub dataset
            repo_ids ``owner/name`` and local git repository paths, each optionally ``key=...`` to name it
            in URLs (default key: ``owner--name``, or the directory's name); an existing directory or a path
            beginning with ``/``, ``./``, ``../`` or ``~`` is a path as a whole, ``=`` and all. A comma always
            separates entries (a path holding one is given through a symlink). See
            :func:`labelhub.backend.files.parse_file_repos`.
        redis_url: ``redis://[:password@]host:port/db`` (``LABELHUB_REDIS_URL``; empty: one host). With it, the
            model state, the event queue, the trainer's lease and the prediction jobs' statuses live in Redis,
            and ``labelhub predict`` runs its batches on ``labelhub worker`` processes (RQ), so backend
            replicas on several hosts share one model per project (:mod:`labelhub.backend.redis_state`).
            ``MODEL_DIR`` is then each host's cache. Treated as a secret (it may hold a password).
        trainer_lease: Seconds a dead trainer (or job) keeps its Redis lock before another takes over
            (``LABELHUB_TRAINER_LEASE``, default 10, at least 1; Redis only).
        auto_predict: Pre-annotate by itself (``LABELHUB_AUTO_PREDICT``, default off): the tasks of a
            ``TASKS_CREATED`` event, and after each retrain the project's unlabeled tasks, most uncertain first,
            as prediction jobs (:mod:`labelhub.backend.auto_predict`). Needs ``LABEL_STUDIO_URL`` and
            ``LABEL_STUDIO_API_KEY``.
        auto_predict_interval: Seconds at least between the starts of a project's automatic whole-project jobs
            (``LABELHUB_AUTO_PREDICT_INTERVAL``, default 30, 0: none; with Redis, between their enqueuings on RQ;
            requests meanwhile merge into one).
        keep_versions: After a prediction job of the whole project, delete the predictions of this backend's
            older model versions but the newest ``keep_versions`` (``LABELHUB_KEEP_VERSIONS``, default 0: keep
            every version). Applies to the automatic jobs; ``labelhub predict --keep-versions`` reads the same
            variable. See :mod:`labelhub.backend.retire` for what is deleted and what it costs Label Studio.
    """

    model_dir: Path = Path("labelhub-models")
    basic_auth_user: str = ""
    basic_auth_pass: str = field(default="", repr=False)
    webhook_secret: str = field(default="", repr=False)
    label_studio_url: str = ""
    label_studio_api_key: str = field(default="", repr=False)
    hf_token: str = field(default="", repr=False)
    allowed_hosts: tuple[str, ...] = ()
    model_class: str = "labelhub.backend.models.project:ProjectModel"
    model_params: str = ""
    image_embedder: str = "efficientnet-lite0"
    text_embedder: str = "all-MiniLM-L6-v2"
    image_size: int = 128
    torch_threads: int = 2
    media_timeout: float = 10.0
    media_max_bytes: int = 20 * 1024 * 1024
    media_cache_bytes: int = 64 * 1024 * 1024
    embedding_cache_size: int = 5000
    embedding_store_bytes: int = 2 * 1024 ** 3
    spans_cache_bytes: int = 64 * 1024 * 1024
    start_trainer: bool = True
    trainer_poll_interval: float = 0.25
    warmup: bool = True
    log_level: str = "INFO"
    secret: str = field(default="", repr=False)
    file_repos: tuple[str, ...] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    redis_url: str = field(default="", repr=False)
    trainer_lease: float = 10.0
    auto_predict: bool = False
    keep_versions: int = 0
    auto_predict_interval: float = 30.0

    #: Environment variable of each field.
    ENV = {
        "model_dir": "MODEL_DIR",
        "basic_auth_user": "BASIC_AUTH_USER",
        "basic_auth_pass": "BASIC_AUTH_PASS",
        "webhook_secret": "LABELHUB_WEBHOOK_SECRET",
        "label_studio_url": "LABEL_STUDIO_URL",
        "label_studio_api_key": "LABEL_STUDIO_API_KEY",
        "hf_token": "HF_TOKEN",
        "allowed_hosts": "LABELHUB_ALLOWED_HOSTS",
        "model_class": "LABELHUB_MODEL",
        "model_params": "LABELHUB_MODEL_PARAMS",
        "image_embedder": "LABELHUB_IMAGE_EMBEDDER",
        "text_embedder": "LABELHUB_TEXT_EMBEDDER",
        "image_size": "LABELHUB_IMAGE_SIZE",
        "torch_threads": "LABELHUB_TORCH_THREADS",
        "media_timeout": "LABELHUB_MEDIA_TIMEOUT",
        "media_max_bytes": "LABELHUB_MEDIA_MAX_BYTES",
        "media_cache_bytes": "LABELHUB_MEDIA_CACHE_BYTES",
        "embedding_cache_size": "LABELHUB_EMBEDDING_CACHE_SIZE",
        "embedding_store_bytes": "LABELHUB_EMBEDDING_STORE_BYTES",
        "spans_cache_bytes": "LABELHUB_SPANS_CACHE_BYTES",
        "start_trainer": "LABELHUB_TRAINER",
        "trainer_poll_interval": "LABELHUB_TRAINER_POLL",
        "warmup": "LABELHUB_WARMUP",
        "log_level": "LABELHUB_LOG_LEVEL",
        "secret": "LABELHUB_SECRET",
        "file_repos": "LABELHUB_FILE_REPOS",
        "max_body_bytes": "LABELHUB_MAX_BODY_BYTES",
        "redis_url": "LABELHUB_REDIS_URL",
        "trainer_lease": "LABELHUB_TRAINER_LEASE",
        "auto_predict": "LABELHUB_AUTO_PREDICT",
        "keep_versions": "LABELHUB_KEEP_VERSIONS",
        "auto_predict_interval": "LABELHUB_AUTO_PREDICT_INTERVAL",
    }

    def __post_init__(self):
        """Check the values that parse but cannot work.

        Raises:
            ValueError: A number out of its range (``LABELHUB_IMAGE_SIZE=0``, ``LABELHUB_MEDIA_TIMEOUT=nan``),
                an unknown log level, a NUL character, one of ``BASIC_AUTH_USER``/``BASIC_AUTH_PASS`` without the
                other, a ``LABEL_STUDIO_URL`` that is no http(s) URL (:func:`check_http_url`), or an entry of
                ``LABELHUB_ALLOWED_HOSTS`` that is no host or ``host:port`` (:func:`check_allowed_host`); the message
                names the variable and never holds a password.
        """
        for name, (low, high) in _RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or (low is not None and value < low) or (high is not None and value > high):
                bounds = (f"between {low} and {high}" if high is not None else f"at least {low}")
                raise ValueError(f"{self.ENV[name]}={value!r} must be a number {bounds}")
        if not isinstance(self.log_level, str) or self.log_level.strip().upper() not in _LOG_LEVELS:
            raise ValueError(f"LABELHUB_LOG_LEVEL={self.log_level!r} must be one of {', '.join(_LOG_LEVELS)}")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            parts = value if isinstance(value, tuple) else (value,)
            if any("\0" in str(part) for part in parts):
                raise ValueError(f"{self.ENV[f.name]} contains a NUL character")
        if bool(self.basic_auth_user) != bool(self.basic_auth_pass):  # one alone would leave the backend open
            given, missing = (("BASIC_AUTH_USER", "BASIC_AUTH_PASS") if self.basic_auth_user
                              else ("BASIC_AUTH_PASS", "BASIC_AUTH_USER"))
            raise ValueError(f"{given} is set without {missing}: set both (what Label Studio's Connect Model "
                             "dialog sends under Basic Authentication) or neither")
        for name in ("label_studio_api_key", "hf_token"):  # a key pasted with a trailing space or newline (README)
            if isinstance(getattr(self, name), str):
                object.__setattr__(self, name, getattr(self, name).strip())
        check_http_url("LABEL_STUDIO_URL", self.label_studio_url)
        for entry in self.allowed_hosts:
            check_allowed_host(entry)
        from labelhub.backend.models.params import parse_params

        parse_params(self.model_params, "LABELHUB_MODEL_PARAMS")

    @property
    def default_model_params(self) -> dict:
        """:attr:`model_params` parsed (``{}`` when unset)."""
        from labelhub.backend.models.params import parse_params

        return parse_params(self.model_params, "LABELHUB_MODEL_PARAMS")

    @property
    def log_level_number(self) -> int:
        """:attr:`log_level` as a :mod:`logging` level number (``logging.INFO`` for ``"info"``)."""
        return logging.getLevelName(self.log_level.strip().upper())

    @property
    def auth_enabled(self) -> bool:
        """Whether basic auth is configured (both user and password set)."""
        return bool(self.basic_auth_user and self.basic_auth_pass)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The secret values, to be redacted from anything logged or answered."""
        return tuple(s for s in (self.basic_auth_pass, self.webhook_secret, self.label_studio_api_key,
                                 self.hf_token, self.secret, self.redis_url) if s)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Build settings from environment variables, then apply ``overrides`` (e.g. CLI flags).

        Args:
            environ: The environment to read (default: ``os.environ``).
            **overrides: Field values that win over the environment; ``None`` values are ignored.

        Returns:
            A frozen :class:`Settings`.

        Raises:
            ValueError: When a variable does not parse (e.g. ``LABELHUB_IMAGE_SIZE=big``,
                ``LABELHUB_TRAINER=maybe``) or its value cannot work (see :meth:`__post_init__`); the message
                names the variable and never holds a secret's value.

        Example:
            >>> Settings.from_env({"MODEL_DIR": "/tmp/m"}, torch_threads=2).torch_threads
            2
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = cls.ENV.get(f.name)
            if name is None or name not in environ:
                continue
            raw = environ[name]
            if f.name == "model_dir" and not raw.strip():  # MODEL_DIR= is unset, as for the CLI's click option
                continue
            values[f.name] = cls._parse(f.name, name, raw)
        for key, value in overrides.items():
            if value is None:
                continue
            if key not in {f.name for f in dataclasses.fields(cls)}:
                raise ValueError(f"unknown setting {key!r}")
            values[key] = cls._parse(key, cls.ENV.get(key, key), value) if isinstance(value, str) else value
        if "model_dir" in values:
            values["model_dir"] = Path(values["model_dir"])
        for name in ("allowed_hosts", "file_repos"):
            if name in values and not isinstance(values[name], tuple):
                values[name] = tuple(values[name])
        return cls(**values)

    @classmethod
    def _parse(cls, field_name: str, var: str, raw: str) -> Any:
        default = cls.__dataclass_fields__[field_name].default
        secret = not cls.__dataclass_fields__[field_name].repr
        shown = "(hidden)" if secret else repr(raw[:100])
        try:
            if field_name == "allowed_hosts":
                return _split(raw)
            if field_name == "file_repos":  # paths keep their case; a comma in a path cannot be told apart
                return tuple(part.strip() for part in raw.split(",") if part.strip())
            if isinstance(default, bool):
                word = raw.strip().lower()
                if word not in _TRUE | _FALSE:
                    raise ValueError(raw)
                return word in _TRUE
            if isinstance(default, int):
                return int(raw)
            if isinstance(default, float):
                return float(raw)
            if isinstance(default, Path):
                return Path(raw)
        except ValueError:
            kind = "boolean (true/false, 1/0, yes/no, on/off)" if isinstance(default, bool) else \
                type(default).__name__
            raise ValueError(f"{var}={shown} is not a valid {kind}") from None
        return raw
