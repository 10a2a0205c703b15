"""Webhooks the event queue could not store, caught up without anyone pressing "Start training".

Label Studio sends each webhook once, inside the annotator's save, and never again
(``label_studio/webhooks/utils.py``: one ``requests.post``, its failure logged by Label Studio only). When the
queue cannot store an event (Redis unreachable or restarting, the disk of ``MODEL_DIR`` full), ``/webhook`` answers
500 and the annotation would stay out of the project's training data until someone presses Start training.

So the refusal is noted on this host, one small file per project: ``MODEL_DIR/events/missed/<project key>.json``
(``{"project": the payload's project, "since": unix seconds, "refused": count}``, written atomically). Once the
queue takes an event again (within a poll of any of this host's workers' trainer loops,
:meth:`labelhub.backend.events.Trainer._catch_up_missed`: ``LABELHUB_TRAINER_POLL``, 0.25 s, for the trainer, four
times that for the others; not in ``/webhook``, which Label Studio waits for inside the annotator's save), each
note becomes
one ``START_TRAINING`` event of its project (:func:`requeue_missed`), which the trainer applies as Start training:
it reads the project's annotations from Label Studio (``LABEL_STUDIO_URL`` and ``LABEL_STUDIO_API_KEY``; without
them it says so and learns from what the webhooks brought,
:meth:`labelhub.backend.events.Trainer._read_annotations`). A note that cannot be written either (the disk full on a
host without Redis) is said in the log, and Start training is the way back.

Decided: a note per project, not a copy of each refused event: the queue that refused the event is also where it
would go, and reading the project from Label Studio brings every refused event's effect at once (created, updated
and deleted annotations alike), in whatever order they came.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from labelhub.backend.state import atomic_write_json
from labelhub.redaction import one_line

log = logging.getLogger(__name__)

__all__ = ["MISSED_DIR", "TAKEN_SECONDS", "note_missed", "requeue_missed"]

#: The folder of the notes, under ``MODEL_DIR``.
MISSED_DIR = Path("events") / "missed"
#: A note a worker took to queue and still holds after this many seconds (the worker died) is taken again.
TAKEN_SECONDS = 60


def _folder(model_dir: str | os.PathLike) -> Path:
    return Path(model_dir) / MISSED_DIR


def note_missed(model_dir: str | os.PathLike, key: str, project: Any, exc: BaseException) -> None:
    """Note that an event of project ``key`` (its webhook payload's ``project``: a dict, or an id) was refused
    because the queue could not store it (``exc``), and say so in one WARNING line. Never raises: a note that cannot
    be written is said in the log instead."""
    path = _folder(model_dir) / f"{key}.json"
    try:
        try:
            note = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):  # none yet, or unreadable: a new note
            note = None
        if not isinstance(note, dict):  # a note that is not an object (a JSON list, an edited file): a new note
            note = {"since": time.time(), "refused": 0}
        note.update(project=project, refused=int(note.get("refused") or 0) + 1)
        atomic_write_json(path, note)
        log.warning("project %s: a webhook was refused (500): the event queue cannot store it (%s). Label Studio "
                    "does not send it again; once the queue takes events, the project's annotations are read from "
                    "Label Studio, as Start training does", key, one_line(exc, 200))
    except (OSError, TypeError, ValueError) as exc2:
        log.error("project %s: a webhook was refused (500): the event queue cannot store it (%s), nor could it be "
                  "noted in %s (%s): press Start training (Settings → Model → the model's menu) once the queue "
                  "works", key, one_line(exc, 200), path.parent, one_line(exc2, 200))


def requeue_missed(model_dir: str | os.PathLike, queue: Any) -> int:
    """Turn each note of this host into one ``START_TRAINING`` event of its project on ``queue`` (anything with
    :meth:`labelhub.backend.events.EventQueue.put`), deleting the note once the event is stored; one INFO line per
    project. Costs one directory listing when there is none (every trainer poll calls it).

    Returns:
        How many projects were queued. A queue that still refuses leaves the rest of the notes for the next call;
        nothing raises.
    """
    folder = _folder(model_dir)
    try:
        notes = sorted(folder.glob("*.json"))
        stale = [p for p in folder.glob("*.taking") if time.time() - p.stat().st_mtime > TAKEN_SECONDS]
    except OSError:
        return 0
    for taken in stale:  # its worker died between taking it and queueing it
        try:
            taken.rename(back := folder / (taken.name.rsplit(".", 2)[0] + ".json"))
            notes.append(back)
        except OSError:
            continue
    queued = 0
    for path in notes:
        try:
            note = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:  # another worker of this host took it
            continue
        except (OSError, ValueError, RecursionError) as exc:
            note = exc
        if not isinstance(note, dict):  # unreadable, or not an object (a JSON list, an edited file)
            why = one_line(note, 200) if isinstance(note, BaseException) else "not a JSON object"
            log.warning("%s cannot be read (%s): removed; press Start training for project %s", path, why, path.stem)
            path.unlink(missing_ok=True)
            continue
        try:
            path.rename(taken := path.with_suffix(f".{os.getpid()}.taking"))
        except FileNotFoundError:
            continue
        try:
            queue.put("START_TRAINING", {"action": "START_TRAINING", "project": note.get("project")}, path.stem)
        except (OSError, RedisError) as exc:  # still refused: the note goes back for the next call
            taken.rename(path)
            log.debug("project %s: its missed events are not queued yet (%s)", path.stem, one_line(exc, 200))
            return queued
        taken.unlink(missing_ok=True)
        queued += 1
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(note.get("since") or 0)))
        log.info("project %s: %s webhook(s) refused since %s while the event queue could not store them: its "
                 "annotations are read from Label Studio, as Start training does", path.stem, note.get("refused"),
                 since)
    return queued
