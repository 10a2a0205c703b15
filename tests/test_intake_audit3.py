"""The annotation intake audit (3): a deletion that came before its annotation's create event, a late event of a
deleted task, the annotations generation moved with what is stored, and a webhook secret outside ASCII.

No Label Studio: stand-in projects answer what the intake asks; the receiver is the real WSGI app (and once the real
server, posted to with ``requests`` as Label Studio posts).
"""
from __future__ import annotations

import logging
import sqlite3
from datetime import datetime, timezone

import pytest
import requests
from werkzeug.test import Client

from labelhub.errors import LabelStudioError
from labelhub.sync.annotations.intake import GENERATION, AnnotationIntake, parse_event
from labelhub.sync.annotations.receiver import WebhookServer, webhook_app
from labelhub.sync.state import SyncState
from labelhub.webhooks import SECRET_HEADER, secret_matches

AT = "2026-01-01T00:00:09.000000Z"


class Project:
    """What the intake asks of a Label Studio project with tasks 1..10 (ids only)."""

    project_id = 1

    def __init__(self):
        self.tasks = set(range(1, 11))

    def task_count_and_max_id(self):
        return len(self.tasks), max(self.tasks)

    def task_count_through(self, top):
        return len([t for t in self.tasks if t <= top])

    def existing_task_ids(self, ids):
        return {i for i in ids if i in self.tasks}

    def task_ids(self):
        return sorted(self.tasks)


@pytest.fixture
def state(tmp_path):
    state = SyncState(tmp_path / "s.sqlite3", 1, "o/r")
    yield state
    state.close()


def annotation(aid: int, updated: str = "2026-01-01T00:00:01.000000Z", who: int = 3) -> dict:
    return {"id": aid, "updated_at": updated, "completed_by": who, "result": []}


def created(task: int, aid: int, updated: str = "2026-01-01T00:00:01.000000Z") -> tuple[str, dict]:
    return parse_event({"action": "ANNOTATION_CREATED", "project": {"id": 1}, "task": {"id": task, "data": {"f": "a"}},
                        "annotation": annotation(aid, updated)}, 1)


def deleted(aids: list[int]) -> tuple[str, dict]:
    return parse_event({"action": "ANNOTATIONS_DELETED", "annotations": [{"id": a} for a in aids],
                        "project": {"id": 1}}, 1)


def tasks_deleted(ids: list[int]) -> tuple[str, dict]:
    return parse_event({"action": "TASKS_DELETED", "tasks": [{"id": t} for t in ids], "project": {"id": 1}}, 1)


def live(state: SyncState) -> set[tuple[int, int]]:
    return {(t["id"], a["id"]) for t, a in state.live_annotations()}


# 1. a deletion before the create event ---------------------------------------------------------------------------
def test_a_deletion_that_came_before_the_create_event_stays_whatever_task_the_late_event_names(state):
    intake = AnnotationIntake(Project(), state)
    state.store_task_lists([(7, {"f": "a"}, [], AT, None)])  # reconciliation read task 7 after 10 came and went
    intake.apply_event(*deleted([10]))
    assert intake.apply_event(*created(7, 10)) == 0
    assert intake.apply_event(*created(7, 10, "2026-01-01T00:00:02.000000Z")) == 0  # ANNOTATION_UPDATED alike
    assert live(state) == set()
    assert state.db.execute("SELECT task_id, deleted FROM annotations WHERE annotation_id=10").fetchall() == [(0, 1)]
    # an event of another annotation of the task is stored; the task's complete list (the truth) still decides
    assert intake.apply_event(*created(7, 12)) == 1
    state.store_task_lists([(7, {"f": "a"}, [annotation(12)], AT, None)])
    assert live(state) == {(7, 12)}


def test_a_complete_list_of_another_task_does_not_touch_a_tombstone_kept_under_task_0(state):
    state.delete_annotations([10])
    state.store_task_lists([(7, {"f": "a"}, [annotation(11)], AT, None)])
    assert state.db.execute("SELECT task_id, deleted FROM annotations WHERE annotation_id=10").fetchall() == [(0, 1)]
    assert live(state) == {(7, 11)}


# 2. a late event of a deleted task -------------------------------------------------------------------------------
def test_a_late_event_of_a_deleted_task_does_not_bring_its_annotation_back(state):
    project = Project()
    intake = AnnotationIntake(project, state)
    state.store_task_lists([(7, {"f": "a"}, [annotation(10)], AT, None)])
    intake.sweep()
    project.tasks.discard(7)
    assert intake.apply_event(*tasks_deleted([7])) == 1
    intake.sweep()
    assert intake.apply_event(*created(7, 11, "2026-01-01T00:00:05.000000Z")) == 0
    assert intake.sweep() == 0
    assert live(state) == set()
    assert state.db.execute("SELECT count(*) FROM annotations WHERE task_id=7 AND deleted=0").fetchone() == (0,)


def test_a_task_the_sweep_found_gone_takes_no_late_event_or_late_page_either(state):
    project = Project()
    intake = AnnotationIntake(project, state)
    state.store_task_lists([(7, {"f": "a"}, [annotation(10)], AT, None), (8, {"f": "b"}, [annotation(20)], AT, None)])
    project.tasks.discard(7)
    assert intake.sweep() == 1
    assert intake.apply_event(*created(7, 11)) == 0
    # a reconciliation page read before the deletion and stored after it
    assert state.store_task_lists([(7, {"f": "a"}, [annotation(10), annotation(11)], AT, None)]) == 0
    assert state.apply_annotations(7, [annotation(12)], complete=False) == 0
    assert live(state) == {(8, 20)}


def test_the_deleted_tasks_are_dropped_with_the_project_rows_when_the_state_is_rebound(state):
    state.bind("http://ls:8080", "1.1700000000")
    state.delete_task_annotations([7])
    state.bind("http://ls:8080", "1.1800000000")  # Label Studio reset: its task 7 is another task
    assert state.apply_annotations(7, [annotation(10)], complete=True) == 1
    assert live(state) == {(7, 10)}


# 3. the generation moves with what is stored -----------------------------------------------------------------------
class ReconciledProject(Project):
    """One page of task 7 with annotation 10, then Label Studio fails (a later page, or ``users()``)."""

    fail_page = fail_users = False

    def tasks_updated_count(self, cursor):
        return 1, "2026-01-01T00:00:05.000000Z"

    def tasks_updated_since(self, cursor, on_page, annotated_only=False):
        on_page([{"id": 7, "data": {"f": "a"}, "updated_at": datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc),
                  "annotations": [annotation(10)]}], True)
        if self.fail_page:
            raise LabelStudioError("cannot reach Label Studio (ReadTimeout)")
        return True

    def users(self):
        if self.fail_users:
            raise LabelStudioError("cannot reach Label Studio (ReadTimeout)")
        return {3: "ann@example.com"}


@pytest.mark.parametrize("failing", ["fail_page", "fail_users"])
def test_stored_pages_move_the_generation_even_when_the_reconciliation_then_fails(state, failing):
    project = ReconciledProject()
    setattr(project, failing, True)
    intake = AnnotationIntake(project, state)
    with pytest.raises(LabelStudioError):
        intake.reconcile()
    assert live(state) == {(7, 10)}
    assert state.cursor(GENERATION, "0") == "1"  # the exporter sees a change to export
    setattr(project, failing, False)
    assert intake.reconcile() == 0  # nothing new: the generation stays
    assert state.cursor(GENERATION, "0") == "1"


def test_an_event_moves_the_generation_in_the_transaction_that_stores_it(state, monkeypatch):
    intake = AnnotationIntake(Project(), state)

    def separate_bump(name):  # the old way: a second transaction that may fail after the store committed
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(state, "bump_cursor", separate_bump)
    assert intake.apply_event(*created(7, 10)) == 1
    assert intake.apply_event(*deleted([11])) == 1
    assert intake.apply_event(*tasks_deleted([7])) == 1
    assert state.cursor(GENERATION, "0") == "3"
    assert intake.apply_event(*created(7, 10)) == 0  # nothing stored: nothing moves
    assert state.cursor(GENERATION, "0") == "3"


def test_a_write_that_fails_stores_nothing_and_moves_nothing(state):
    state.db.execute("CREATE TRIGGER no_live BEFORE INSERT ON annotations WHEN NEW.deleted = 0 "
                     "BEGIN SELECT RAISE(ABORT, 'refused'); END")
    with pytest.raises(sqlite3.IntegrityError):
        state.store_task_lists([(7, {"f": "a"}, [annotation(10)], AT, None)], bump=GENERATION)
    assert state.cursor(GENERATION, "0") == "0"
    assert state.db.execute("SELECT count(*) FROM tasks_seen").fetchone() == (0,)


# 4. a secret outside ASCII -----------------------------------------------------------------------------------------
SECRET = "sécret-ñ-1234"
BODY = {"action": "TASKS_DELETED", "tasks": [{"id": 3}], "project": {"id": 1}}


def test_a_latin1_secret_is_accepted_as_label_studio_sends_it(state, caplog):
    server = WebhookServer(webhook_app(AnnotationIntake(Project(), state), SECRET, lambda: None)).start()
    url = f"http://127.0.0.1:{server.port}/webhook"
    try:
        with caplog.at_level(logging.DEBUG):
            # Label Studio: requests with a str header value, which http.client sends as latin-1
            assert requests.post(url, headers={SECRET_HEADER: SECRET}, json=BODY, timeout=10).status_code == 200
            assert requests.post(url, headers={SECRET_HEADER: SECRET.encode()}, json=BODY,
                                 timeout=10).status_code == 200  # its UTF-8 bytes (curl) as before
            for wrong in ("sécret-ñ-1235", "secret-n-1234", "", SECRET.encode("latin-1")[:-1]):
                answer = requests.post(url, headers={SECRET_HEADER: wrong}, json=BODY, timeout=10)
                assert answer.status_code == 403
    finally:
        server.stop()
    assert all(SECRET not in r.getMessage() and SECRET.encode().decode("latin-1") not in r.getMessage()
               for r in caplog.records)


def test_secret_matches_compares_bytes_as_sent():
    assert secret_matches({SECRET_HEADER: SECRET}, SECRET)  # WSGI text of the latin-1 bytes
    assert secret_matches({SECRET_HEADER: SECRET.encode().decode("latin-1")}, SECRET)  # of the UTF-8 bytes
    assert not secret_matches({SECRET_HEADER: SECRET}, "")
    assert not secret_matches({}, SECRET)
    # a header given as text outside latin-1 (not WSGI's) is not replaced by "?" before the comparison
    assert not secret_matches({SECRET_HEADER: "a€b"}, "a?b")
    assert secret_matches({SECRET_HEADER: "a€b"}, "a€b")
    # an environment variable of bytes that are not UTF-8 (surrogateescape) is compared as those bytes
    odd = b"k\xffey".decode("utf-8", "surrogateescape")
    assert secret_matches({SECRET_HEADER: b"k\xffey".decode("latin-1")}, odd)


def test_a_secret_outside_latin1_is_said_once_without_the_secret(state, caplog):
    secret = "clé-€-9876"
    with caplog.at_level(logging.WARNING):
        client = Client(webhook_app(AnnotationIntake(Project(), state), secret, lambda: None))
    warnings = [r.getMessage() for r in caplog.records if "outside latin-1" in r.getMessage()]
    assert len(warnings) == 1 and secret not in warnings[0]
    # what a client that sends UTF-8 sends still matches (Label Studio cannot send it at all)
    answer = client.post("/webhook", json=BODY, headers={SECRET_HEADER: secret.encode().decode("latin-1")})
    assert answer.status_code == 200
    assert client.post("/webhook", json=BODY, headers={SECRET_HEADER: "clé-?-9876"}).status_code == 403


# 5. annotator emails after a Label Studio reset --------------------------------------------------------------------
def test_the_users_are_read_again_once_after_the_state_was_rebound(state):
    from labelhub.sync.annotations.intake import learn_annotators

    class Users:
        asked = 0

        def __init__(self, users):
            self.answer = users

        def users(self):
            Users.asked += 1
            return self.answer

    state.bind("http://ls:8080", "1.1700000000")
    state.set_users({1: "admin@old", 2: "alice@old"})
    state.apply_annotations(5, [annotation(50, who=2)], complete=True)
    learn_annotators(Users({}), state)
    assert Users.asked == 0 and not state.users_stale()
    assert state.bind("http://ls:8080", "1.1800000000")  # reset: user 2 is now carol
    state.apply_annotations(5, [annotation(1, who=2)], complete=True)
    with pytest.raises(LabelStudioError):  # Label Studio unreachable: asked again next time
        learn_annotators(type("Down", (), {"users": lambda self: (_ for _ in ()).throw(LabelStudioError("down"))})(),
                         state)
    assert state.users_stale()
    learn_annotators(Users({1: "admin@new", 2: "carol@new"}), state)
    assert state.users() == {1: "admin@new", 2: "carol@new"} and not state.users_stale()
    learn_annotators(Users({}), state)
    assert Users.asked == 1
