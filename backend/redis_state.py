"""The backend's shared state in Redis, for several hosts (``LABELHUB_REDIS_URL``).

Without Redis the backend keeps its state in ``MODEL_DIR`` (:mod:`labelhub.backend.state`), its event queue
in ``MODEL_DIR/events`` and elects its trainer with ``flock`` (:mod:`labelhub.backend.events`): every worker
must share one disk, so one host. With ``LABELHUB_REDIS_URL`` set, the same three live in Redis, so backend
replicas on several hosts behind a load balancer share one model per project:

========================================  ===============================================================
Redis key (prefix ``labelhub:``)          What it holds
========================================  ===============================================================
``project:<key>`` (hash)                  ``project`` (label config, extra params, ``gone``), ``kv`` (the model's
                                          state: ``model_version``, its fits), ``kv_version`` (a counter
                                          bumped at every ``kv`` write: workers reload on a change)
``project:<key>:annotations`` (string)    the training data (JSON, as ``annotations.json``)
``project:<key>:files`` (hash)            the fitted heads, by file name (joblib bytes)
``project:<key>:lock``                    the project's writer lock (a ``redis-py`` lock with a lease)
``projects`` (set)                        the keys of every project with state
``events`` (list)                         the event queue, oldest first (JSON, as the event files)
``events:failed`` (list)                  events that did not parse, kept for inspection
``trainer`` (lock)                        the trainer's lease: one trainer across every host
``jobs`` (hash)                           the last prediction job's status of each project
``jobs:<key>:lock``                       held while a prediction job of the project runs
``auto-predict:<project id>:queued``      the RQ job id of the automatic whole-project job of the project
                                          that waits, in the RQ queue or on a worker for a running job
                                          (:func:`labelhub.backend.worker.mark_queued`)
``auto-predict:pending`` (string)         the trainer's automatic requests not enqueued yet (JSON, as
                                          ``MODEL_DIR/auto-predict.json`` on one host)
========================================  ===============================================================

``<key>`` is Label Studio's project key (:func:`labelhub.backend.state.project_key`). Each host still uses its
``MODEL_DIR`` as a cache: fitted heads read from Redis are kept there (their file names carry a hash of their
content, so a cached one is never stale) and so are the per-project embedding caches.

**Leases.** A lock is a Redis key with an expiry (``redis-py``'s :class:`redis.lock.Lock`,
https://redis.readthedocs.io/en/stable/lock.html); its holder renews it from a thread every third of the
lease. A holder that dies (``SIGKILL``, a lost host) stops renewing, and the lock passes on when the lease
runs out: :data:`TRAINER_LEASE_SECONDS` by default (``LABELHUB_TRAINER_LEASE``). A Redis that cannot be reached
for a moment (a restart, a failover) does not end the lease of a holder that lives: its renewer tries again every
:data:`OUTAGE_RETRY_SECONDS` and gives up only when Redis says the key is no longer the holder's or the lease has
run out meanwhile (:func:`lease`; before, its first error stopped it for good, and the lock lapsed under a job that
still ran). Events are removed from the
queue only after their batch is applied and fitted, so a trainer killed mid-fit loses none: the next one
applies them again (applying is idempotent, see :mod:`labelhub.backend.events`).

**Durability.** An event is acknowledged to Label Studio once Redis has it in memory. Run Redis with
``appendonly yes`` (https://redis.io/docs/latest/operate/oss_and_stack/management/persistence/) so that a
Redis restart keeps the queue and the models; ``appendfsync always`` makes it as durable as the file queue.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from labelhub.backend.state import ProjectState, Store, atomic_write_bytes
from labelhub.errors import ConfigurationError

log = logging.getLogger(__name__)

__all__ = ["PREFIX", "TRAINER_LEASE_SECONDS", "OUTAGE_RETRY_SECONDS", "connect", "Lease", "lease", "job_statuses",
           "RedisProjectState", "RedisStore", "RedisEventQueue"]

#: Prefix of every key LabelHub writes (use another Redis database, ``redis://host/1``, to keep deployments apart).
PREFIX = "labelhub:"
#: Default lease of the trainer and of the project and job locks, in seconds.
TRAINER_LEASE_SECONDS = 10.0
#: Longest wait, in seconds, between two tries to renew a lease while Redis cannot be reached (a third of the lease
#: when that is shorter).
OUTAGE_RETRY_SECONDS = 0.5


def connect(url: str, timeout: float | None = 30.0):
    """A Redis client for ``url`` (``redis://[:password@]host:port/db``, ``rediss://`` for TLS).

    See https://redis.readthedocs.io/en/stable/connections.html#redis.Redis.from_url.

    Args:
        url: The Redis URL.
        timeout: Seconds to wait for an answer (``None`` for an RQ worker, whose waits for work block longer).

    Raises:
        ConfigurationError: When redis-py cannot read the URL: another scheme, a port that is no number, or a
            query parameter it does not know (redis-py finds that one only when it connects, so a connection
            object is made here, without connecting). The message names ``LABELHUB_REDIS_URL``, never the URL.
    """
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=5, health_check_interval=30)
        pool = client.connection_pool
        pool.connection_class(**pool.connection_kwargs)  # opens no socket
    except (ValueError, TypeError):
        raise ConfigurationError(
            # no "@" after the "redis://": the message goes through redact(), which drops a URL's user:password@
            "LABELHUB_REDIS_URL is not a Redis URL redis-py reads: redis://host:port/db, with :password@ or "
            "user:password@ before the host when Redis asks for one (rediss:// for TLS), and no query parameter but "
            "those of https://redis.readthedocs.io/en/stable/connections.html#redis.Redis.from_url") from None
    return client


class Lease:
    """What :func:`lease` yields: true while the lock was taken, and :meth:`still_held` asks Redis whether it still is
    (the lease of a holder that paused longer than it, a stopped VM or a partition from Redis, passes to another
    holder although the block goes on)."""

    def __init__(self, lock=None):
        self._lock = lock

    def __bool__(self) -> bool:
        return self._lock is not None

    def still_held(self) -> bool:
        """Whether the lock is still this holder's: one ``GET`` of its key (``redis.lock.Lock.owned``). ``False``
        when it was never taken, or when Redis cannot be asked (then no write of the holder would land either)."""
        if self._lock is None:
            return False
        try:
            return bool(self._lock.owned())
        except Exception:  # noqa: BLE001 - an unreachable Redis cannot confirm the lease
            return False

    def set_if_held(self, key: str, value: str | bytes) -> bool:
        """``SET key value`` only while the lock is still this holder's, in one step on the Redis server (a Lua
        script comparing the lock's key with this holder's token, as ``redis.lock.Lock`` does to release it), so no
        holder that paused past its lease writes over its successor's.

        Args:
            key: The Redis key to write.
            value: Its new value.

        Returns:
            Whether it was written (``False`` when the lock is not, or no longer, held).

        Raises:
            redis.exceptions.RedisError: When Redis cannot be reached.
        """
        token = getattr(self._lock, "local", None) and self._lock.local.token
        if not token:
            return False
        return bool(self._lock.redis.eval(_SET_IF_HELD, 2, self._lock.name, key, token, value))


#: ``KEYS[1]``: a lock's key; ``KEYS[2]``: the key to set; ``ARGV``: the holder's token, the value.
_SET_IF_HELD = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    redis.call('set', KEYS[2], ARGV[2])
    return 1
end
return 0
"""


@contextmanager
def lease(client, name: str, seconds: float = TRAINER_LEASE_SECONDS, blocking: bool = True,
          wait: float | None = None) -> Iterator[Lease]:
    """Hold the Redis lock ``name`` while the block runs, renewing its lease from a thread (:func:`_renew`).

    Args:
        client: The Redis client.
        name: The lock's key.
        seconds: The lease: how long the lock outlives a holder that stopped renewing it (died).
        blocking: Wait for the lock; with ``False``, yield ``False`` at once when another holder has it.
        wait: With ``blocking``, the longest wait in seconds (``None``: no limit); then ``False`` is yielded.

    Yields:
        A :class:`Lease`, true when the lock is held. A Redis that cannot be reached for less than the lease (a
        restart) does not end it: the renewal is tried again until it lands. A holder that loses it (Redis says the
        key is no longer its own, or could not be reached for the whole lease) logs a warning and stops renewing;
        the block is not interrupted: writes that must not land after the lease passed on ask
        :meth:`Lease.still_held` first.

    Raises:
        redis.exceptions.ConnectionError: When Redis cannot be reached to take the lock.
    """
    lock = client.lock(name, timeout=seconds, thread_local=False)
    taken = time.monotonic()
    if not lock.acquire(blocking=blocking, blocking_timeout=wait):
        yield Lease()
        return
    if blocking:  # it may have waited: its last try, which set the lease, was just now
        taken = time.monotonic()
    stop = threading.Event()
    renewer = threading.Thread(target=_renew, args=(lock, name, seconds, taken, stop), name=f"lease-{name}",
                               daemon=True)
    renewer.start()
    try:
        yield Lease(lock)
    finally:
        stop.set()
        renewer.join(5)
        try:
            lock.release()
        except Exception:  # expired meanwhile, or Redis unreachable: nothing to release (the lease runs out)
            pass


def _renew(lock, name: str, seconds: float, renewed: float, stop: threading.Event) -> None:
    """The renewer of :func:`lease`: extend the lock's lease to ``seconds`` every third of it until ``stop`` is set.

    A renewal that cannot reach Redis (``ConnectionError``, ``TimeoutError``, ``BusyLoadingError`` while a restarted
    Redis loads its data) is tried again every :data:`OUTAGE_RETRY_SECONDS` (or third of the lease, when shorter),
    with one warning for the outage (the error's type, never its text, which could carry the URL) and one line when
    a renewal lands again. The renewer stops, with a warning, only when the lease is lost: Redis answers that the key
    is no longer this holder's (``LockNotOwnedError``: it expired, or Redis restarted without it), or ``seconds``
    passed since the last renewal that landed while Redis could not be reached (the key has expired there).

    Args:
        lock: The held :class:`redis.lock.Lock`.
        name: Its key (for the log).
        seconds: The lease, in seconds.
        renewed: When the lease was last set (``time.monotonic()``, taken before the command was sent).
        stop: Set when the holder's block ends.
    """
    from redis.exceptions import LockError, RedisError

    outage = False
    while not stop.wait(min(seconds / 3, OUTAGE_RETRY_SECONDS) if outage else seconds / 3):
        sent = time.monotonic()
        try:
            lock.reacquire()
        except LockError:  # Redis answered: the key is gone, or another holder's
            log.warning("lost the lock %s: Redis says it is no longer this holder's (its lease of %g s ran out, or "
                        "Redis restarted without it)", name, seconds)
            return
        except RedisError as exc:  # Redis cannot be reached (for now)
            if time.monotonic() - renewed >= seconds:
                log.warning("lost the lock %s: Redis could not be reached for its whole lease of %g s (%s); another "
                            "holder may take it", name, seconds, type(exc).__name__)
                return
            if not outage:
                outage = True
                log.warning("cannot renew the lock %s: Redis cannot be reached (%s); trying again until its lease "
                            "ends in %.1f s", name, type(exc).__name__, renewed + seconds - time.monotonic())
            continue
        if outage:
            outage = False
            log.info("renewed the lock %s again: Redis answers", name)
        renewed = sent


class RedisProjectState(ProjectState):
    """A project's state in Redis (same interface as :class:`~labelhub.backend.state.ProjectState`).

    Args:
        client: The Redis client.
        cache_root: ``MODEL_DIR/projects/<key>`` of this host (fitted heads and embedding caches are cached there).
        key: The project key.
        lease_seconds: The writer lock's lease.
    """

    def __init__(self, client, cache_root: Path, key: str, lease_seconds: float = TRAINER_LEASE_SECONDS):
        super().__init__(cache_root, key)
        self.client = client
        self.lease_seconds = lease_seconds
        self._hash = f"{PREFIX}project:{key}"
        self._kv_cache: tuple[Any, dict] = (None, {})

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the project's writer lock (a Redis lease; waits for it)."""
        with lease(self.client, f"{self._hash}:lock", self.lease_seconds):
            yield

    def _read(self, field: str) -> dict:
        raw = self.client.hget(self._hash, field)
        return json.loads(raw) if raw else {}

    def project(self) -> dict:
        """The stored project info: ``{"key", "label_config", ...}`` or ``{}``."""
        return self._read("project")

    def _write_project(self, info: dict) -> None:
        self.client.pipeline().hset(self._hash, "project", json.dumps(info, sort_keys=True)) \
            .sadd(f"{PREFIX}projects", self.key).execute()

    def kv(self) -> dict:
        """The model's key-value state (parsed again only when its version counter moved)."""
        version, raw = self.client.hmget(self._hash, ["kv_version", "kv"])
        if version is not None and version == self._kv_cache[0]:
            return self._kv_cache[1]
        value = json.loads(raw) if raw else {}
        self._kv_cache = (version, value)
        return value

    def kv_stamp(self) -> Any:
        """The ``kv`` version counter (``None`` before the first write)."""
        return self.client.hget(self._hash, "kv_version")

    def _write_kv(self, kv: dict) -> None:
        self.client.pipeline().hset(self._hash, "kv", json.dumps(kv, sort_keys=True)) \
            .hincrby(self._hash, "kv_version", 1).sadd(f"{PREFIX}projects", self.key).execute()

    def load_annotations(self) -> dict:
        """The training data (see :meth:`ProjectState.load_annotations`)."""
        raw = self.client.get(f"{self._hash}:annotations")
        data = json.loads(raw) if raw else {}
        for name in ("annotations", "tombstones", "tasks"):
            data.setdefault(name, {})
        return data

    def save_annotations(self, data: dict, fence: "Lease | None" = None) -> bool:
        """Replace the training data (callers hold :meth:`lock`).

        Args:
            data: The training data.
            fence: The trainer's :class:`Lease`: the write lands only while it is still held, in one step on the
                Redis server (:meth:`Lease.set_if_held`), so a trainer that paused past its lease after asking it
                (:meth:`labelhub.backend.events.Trainer.still_trainer`) cannot write over its successor's data and
                drop the events that one took (found by an audit). ``None`` (tests, a caller with no lease): a plain
                ``SET``.

        Returns:
            Whether it was written (``False``: the lease is no longer held).

        Raises:
            redis.exceptions.RedisError: When Redis cannot be reached.
        """
        value = json.dumps(data, separators=(",", ":"), sort_keys=True)
        if isinstance(fence, Lease):
            return fence.set_if_held(f"{self._hash}:annotations", value)
        self.client.set(f"{self._hash}:annotations", value)
        return True

    def write_file(self, name: str, data: bytes) -> None:
        """Store a model file in Redis (and in this host's cache)."""
        self.client.hset(f"{self._hash}:files", name, data)
        atomic_write_bytes(self.files / name, data)

    def read_file(self, name: str) -> bytes:
        """A model file, from this host's cache or Redis.

        Raises:
            FileNotFoundError: When Redis does not hold it.
        """
        cached = self.files / name
        if cached.is_file():
            return cached.read_bytes()
        data = self.client.hget(f"{self._hash}:files", name)
        if data is None:
            raise FileNotFoundError(f"{name} of project {self.key} is not in Redis")
        atomic_write_bytes(cached, data)
        return data

    def file_names(self, prefix: str = "") -> list[str]:
        """The names of the stored model files starting with ``prefix``."""
        return sorted(n.decode() for n in self.client.hkeys(f"{self._hash}:files") if n.decode().startswith(prefix))

    def delete_files(self, names: list[str]) -> None:
        """Forget model files (in Redis and in this host's cache)."""
        if names:
            self.client.hdel(f"{self._hash}:files", *names)
        for name in names:
            (self.files / name).unlink(missing_ok=True)


class RedisStore(Store):
    """Every project's state in Redis, each host caching files under its ``MODEL_DIR``.

    Args:
        client: The Redis client.
        model_dir: This host's ``MODEL_DIR`` (a cache).
        lease_seconds: The lease of the project and job locks.
    """

    def __init__(self, client, model_dir: Path, lease_seconds: float = TRAINER_LEASE_SECONDS):
        super().__init__(model_dir)
        self.client = client
        self.lease_seconds = lease_seconds

    def _new_state(self, key: str) -> RedisProjectState:
        return RedisProjectState(self.client, self.root / "projects" / key, key, self.lease_seconds)

    def known_projects(self) -> list[str]:
        """The keys of every project with state in Redis."""
        return sorted(k.decode() for k in self.client.smembers(f"{PREFIX}projects"))

    def has_project(self, key: str) -> bool:
        """Whether Redis holds state of project ``key``."""
        return bool(self.client.sismember(f"{PREFIX}projects", key))

    def where(self, key: str) -> str:
        """Where project ``key``'s state lives: its Redis keys (and each host's cache under ``MODEL_DIR``)."""
        return (f"Redis keys {PREFIX}project:{key} and {PREFIX}project:{key}:* and its member of {PREFIX}projects, "
                f"and {self.root / 'projects' / key} on each host")

    @contextmanager
    def job_lock(self, key: str) -> Iterator[Lease]:
        """Held while a prediction job of project ``key`` runs, on any host (yields a :class:`Lease`, false when
        another job holds it)."""
        with lease(self.client, f"{PREFIX}jobs:{key}:lock", self.lease_seconds, blocking=False) as held:
            yield held

    def save_job_status(self, key: str, status: dict) -> None:
        """Publish a job's status (``/health`` of every replica shows it)."""
        self.client.hset(f"{PREFIX}jobs", key, json.dumps(status, sort_keys=True))

    def job_statuses(self) -> dict[str, dict]:
        """``{project key: status dict}`` of every project's last job (:func:`job_statuses`)."""
        return job_statuses(self.client)


def job_statuses(client) -> dict[str, dict]:
    """``{project key: status dict}`` of every project's last job, as the jobs published them (``labelhub:jobs``; one
    that does not parse is left out).

    Raises:
        redis.exceptions.RedisError: When Redis cannot be read.
    """
    out = {}
    for key, raw in client.hgetall(f"{PREFIX}jobs").items():
        try:
            out[key.decode()] = json.loads(raw)
        except ValueError:
            continue
    return out


class RedisEventQueue:
    """The durable event queue as a Redis list (same interface as :class:`labelhub.backend.events.EventQueue`).

    Args:
        client: The Redis client.
        lease_seconds: The trainer's lease (see the module docstring).
    """

    def __init__(self, client, lease_seconds: float = TRAINER_LEASE_SECONDS):
        self.client = client
        self.lease_seconds = lease_seconds
        self.key = f"{PREFIX}events"

    def put(self, action: str, payload: dict, project_key: str | None) -> str:
        """Append an event (returns once Redis has it; see the module docstring on durability).

        Returns:
            The event id.

        Raises:
            redis.exceptions.ConnectionError: When Redis cannot be reached (the webhook answers 500, so
                Label Studio shows the failure; nothing is acknowledged that is not stored).
        """
        event_id = f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}"
        self.client.rpush(self.key, json.dumps({"id": event_id, "action": action, "project_key": project_key,
                                                "received_at": time.time(), "payload": payload},
                                               separators=(",", ":"), sort_keys=True))
        return event_id

    def take(self, limit: int = 5000) -> list[tuple[bytes, dict | None]]:
        """The oldest ``limit`` events, left in the queue until :meth:`done`: ``[(handle, event or None)]``."""
        out = []
        for raw in self.client.lrange(self.key, 0, limit - 1):
            try:
                event = json.loads(raw)
            except ValueError:
                event = None
            out.append((raw, event if isinstance(event, dict) else None))
        return out

    def count(self) -> int:
        """How many events wait."""
        return int(self.client.llen(self.key))

    def done(self, handle: bytes) -> None:
        """Forget an applied event."""
        self.client.lrem(self.key, 1, handle)

    def fail(self, handle: bytes) -> None:
        """Move an unreadable event aside (``events:failed``)."""
        self.client.pipeline().lrem(self.key, 1, handle).rpush(f"{self.key}:failed", handle).execute()

    def mark_trainer(self, held: bool = True) -> None:
        """Say (``held``) or unsay which process is the trainer across every host: ``labelhub:trainer:holder`` =
        ``{"host", "pid"}``, written by the trainer when it takes the lease (and again after each batch), for
        :meth:`trainer_holder`."""
        key = f"{PREFIX}trainer:holder"
        me = json.dumps({"host": socket.gethostname(), "pid": os.getpid()}, sort_keys=True)
        if held:
            self.client.set(key, me)
        elif (self.client.get(key) or b"").decode() == me:
            self.client.delete(key)

    def trainer_holder(self) -> dict | None:
        """The process that is the trainer across every host, the same from every worker of every host: ``{"host",
        "pid"}`` while the trainer's lock (``labelhub:trainer``) is held, else ``None`` (none yet, or its holder died
        and the lease ran out). A new trainer names itself as it takes the lock over."""
        raw, held = self.client.pipeline().get(f"{PREFIX}trainer:holder").exists(f"{PREFIX}trainer").execute()
        try:
            holder = json.loads(raw) if raw and held else None
            return {"host": str(holder["host"]), "pid": int(holder["pid"])} if isinstance(holder, dict) else None
        except (ValueError, KeyError, TypeError):
            return None

    @contextmanager
    def trainer_lease(self) -> Iterator[Lease]:
        """Try to become the trainer across every host (yields a :class:`Lease`, true when this process is; the
        trainer asks :meth:`Lease.still_held` before it saves the training data)."""
        with lease(self.client, f"{PREFIX}trainer", self.lease_seconds, blocking=False) as held:
            yield held
