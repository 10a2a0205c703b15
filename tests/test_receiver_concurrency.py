"""The sync's webhook receiver under annotators saving at once (the scale audit of stop 55): the real server
(:class:`~labelhub.sync.annotations.receiver.WebhookServer`, a thread per request) on one state, as
``labelhub sync`` runs it; every event answered 200 is stored with its task's data and moves the generation.
"""
from __future__ import annotations

import threading
from collections import Counter

import requests

from labelhub.sync.annotations.intake import GENERATION, AnnotationIntake
from labelhub.sync.annotations.receiver import WebhookServer, webhook_app
from labelhub.sync.state import SyncState
from tests.test_intake_audit3 import Project

ANNOTATORS, SAVES = 8, 40


def _save(url: str, annotator: int, start: threading.Barrier, answers: Counter) -> None:
    with requests.Session() as session:
        start.wait()
        for n in range(SAVES):
            aid = annotator * 1000 + n + 1
            body = {"action": "ANNOTATION_CREATED", "project": {"id": 1},
                    "task": {"id": aid, "data": {"image": f"img/{aid}.png"}},
                    "annotation": {"id": aid, "completed_by": annotator + 1, "result": [],
                                   "updated_at": "2026-01-01T00:00:01.000000Z"}}
            answers[session.post(url, json=body, timeout=30).status_code] += 1


def test_annotators_saving_at_once_have_every_event_stored_with_its_task_data(tmp_path):
    state = SyncState(tmp_path / "s.sqlite3", 1, "o/r")
    server = WebhookServer(webhook_app(AnnotationIntake(Project(), state), None, lambda: None)).start()
    url, answers = f"http://127.0.0.1:{server.port}/webhook", Counter()
    start = threading.Barrier(ANNOTATORS)
    threads = [threading.Thread(target=_save, args=(url, a, start, answers)) for a in range(ANNOTATORS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        server.stop()
    assert answers == Counter({200: ANNOTATORS * SAVES})
    rows = state.db.execute("SELECT a.annotation_id, json_extract(t.data, '$.image') FROM annotations a "
                            "LEFT JOIN tasks_seen t USING (project_id, task_id) WHERE a.deleted = 0").fetchall()
    assert len(rows) == ANNOTATORS * SAVES
    assert all(image == f"img/{aid}.png" for aid, image in rows)
    assert int(state.cursor(GENERATION)) == ANNOTATORS * SAVES
    state.close()
