"""The sync's webhook receiver takes the events of its own Label Studio project only (its id and ``created_at``), leaves
Label Studio's other actions alone, and never lets an event's ``task.data`` rewrite the data the state holds.

Real Label Studio (its project's ``created_at``, its webhooks), the real receiver on a port, the real file importer.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests
from hypothesis import HealthCheck, given, settings, strategies as st

from labelhub.errors import InvalidEventError
from labelhub.repos import open_repo
from labelhub.sync.annotations.intake import AnnotationIntake, parse_event
from labelhub.sync.annotations.receiver import WebhookServer, register, webhook_app
from labelhub.sync.files.importer import FileImporter
from labelhub.sync.labelstudio.project import LabelStudioProject
from labelhub.sync.state import SyncState
from labelhub.webhooks import SECRET_HEADER, parse_time
from tests import sample_repos
from tests.test_two_projects_one_repo import CONFIG, choice

SECRET = "s3cret-identity-value"
RECEIVER = "labelhub.sync.annotations.receiver"
PIXEL = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9a"
         "wAAAABJRU5ErkJggg==")


def _tasks(state: SyncState) -> dict[int, str]:
    return dict(state.db.execute("SELECT task_id, data FROM tasks_seen WHERE project_id=?", (state.key[0],)))


def _annotations(state: SyncState) -> dict[int, tuple]:
    return {row[0]: row[1:] for row in state.db.execute(
        "SELECT annotation_id, task_id, body, deleted, revision FROM annotations WHERE project_id=?", (state.key[0],))}


@pytest.fixture
def synced(label_studio, make_project, tmp_path):
    """Two repo files made tasks of a new project by the file importer, and the receiver (with :data:`SECRET`)
    registered as the project's webhook: ``(project, state, receiver's URL, repo path, files)``."""
    files = sample_repos.image_files(0, 2)
    path = sample_repos.local_repo_with(tmp_path / "repo", files)
    repo = open_repo(str(path))
    created = make_project("event identity", CONFIG)
    project = LabelStudioProject(label_studio.url, label_studio.api_key, created.id)
    state = SyncState(tmp_path / "s.sqlite3", created.id, repo.repo_id)
    state.bind(project.url, project.key)
    FileImporter(repo, project, state).run()
    receiving = SyncState(tmp_path / "s.sqlite3", created.id, repo.repo_id)  # the receiver's own connection
    deferred: list[float] = []  # when the receiver asked for a reconciliation (the daemon's reconcile_soon)
    server = WebhookServer(webhook_app(AnnotationIntake(project, receiving), SECRET, lambda: None,
                                       on_deferred=lambda: deferred.append(time.monotonic()))).start()
    url = f"http://127.0.0.1:{server.port}/webhook"
    register(project, url, SECRET)
    yield project, state, url, repo, path, files, deferred
    server.stop()
    receiving.close()
    state.close()


def test_events_of_another_instance_or_a_recreated_project_are_refused_and_store_nothing(synced, label_studio, caplog):
    """The audit: with the right secret, an ANNOTATION_CREATED whose ``project`` was ``"abc"``, or had the project's id
    and another ``created_at``, was stored, and the next export replaced the real task's ``hf_path`` and ``image`` on
    its real annotations with the body's ``task.data``."""
    project, state, url, *_ = synced
    client = label_studio.client()
    task = sorted(client.tasks.list(project=project.project_id, page_size=10), key=lambda t: t.id)[0]
    real = client.annotations.create(task.id, result=choice("Bag"))  # Label Studio's webhook: stored
    assert real.id in _annotations(state)
    tasks, annotations = _tasks(state), _annotations(state)
    created = client.projects.get(project.project_id).created_at.astimezone(timezone.utc)

    def fake(project_field, aid=900001):
        return {"action": "ANNOTATION_CREATED", "project": project_field,
                "task": {"id": task.id, "data": {"image": PIXEL, "hf_path": "fake.png"}},
                "annotation": {"id": aid, "task": task.id, "updated_at": "2099-12-06T15:00:00Z", "completed_by": 1,
                               "result": choice("Top")}}

    pid = project.project_id
    refused = {
        "another instance": (fake({"id": pid, "created_at": "2020-05-05T00:00:00Z"}),
                             f"event of project {pid} created 2020-05-05T00:00:00Z, not this project's (created "
                             f"{created:%Y-%m-%dT%H:%M:%S}Z)"),
        "a project that is not an object": (fake("abc"), "a 'project' that is not an object"),
        "an id that is no integer": (fake({"id": str(pid), "created_at": created.isoformat()}),
                                     "project.id is not an integer"),
        "no created_at": (fake({"id": pid}), "without a readable project.created_at"),
        "no project": ({k: v for k, v in fake(None).items() if k != "project"}, "no 'project'"),
        "another id": (fake({"id": pid + 1000, "created_at": created.isoformat()}), f"not {pid}"),
        "a deletion of another instance": ({"action": "ANNOTATIONS_DELETED", "annotations": [{"id": real.id}],
                                            "project": {"id": pid, "created_at": "2020-05-05T00:00:00Z"}},
                                           "created 2020-05-05T00:00:00Z, not this project's"),
    }
    for name, (body, reason) in refused.items():
        caplog.clear()
        with caplog.at_level(logging.INFO, logger=RECEIVER):
            answer = requests.post(url, json=body, headers={SECRET_HEADER: SECRET}, timeout=10)
        assert answer.status_code == 400 and reason in answer.json()["error"], (name, answer.text)
        lines = [r.getMessage() for r in caplog.records if r.name == RECEIVER]
        assert len(lines) == 1 and reason in lines[0] and "\n" not in lines[0], (name, lines)
        assert SECRET not in lines[0]
    assert (_tasks(state), _annotations(state)) == (tasks, annotations)  # nothing stored, nothing rewritten

    # the same instant written as Label Studio may write it: Z or +00:00, with or without microseconds
    for written in (created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), created.isoformat(),
                    created.replace(microsecond=0).isoformat().replace("+00:00", "Z"),
                    created.astimezone(timezone(timedelta(hours=2))).isoformat()):
        body = {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 999_999_999}],
                "project": {"id": pid, "created_at": written}}
        answer = requests.post(url, json=body, headers={SECRET_HEADER: SECRET}, timeout=10)
        assert answer.status_code == 200 and answer.json()["status"] == "ok", (written, answer.text)


def test_label_studio_actions_the_sync_does_not_read_are_ignored_and_others_refused(synced, caplog):
    project, state, url, *_ = synced
    before = _annotations(state)
    caplog.set_level(logging.DEBUG, logger=RECEIVER)
    for action in ("PROJECT_UPDATED", "ANNOTATIONS_CREATED", "TASKS_CREATED", "START_TRAINING", "REVIEW_CREATED"):
        caplog.clear()
        answer = requests.post(url, json={"action": action, "project": {"id": project.project_id}},
                               headers={SECRET_HEADER: SECRET}, timeout=10)
        assert answer.status_code == 200 and answer.json() == {"status": "ignored", "action": action}
        lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == RECEIVER]
        assert len(lines) == 1 and lines[0][0] == logging.DEBUG and action in lines[0][1]
    answer = requests.post(url, json={"action": "SOMETHING"}, headers={SECRET_HEADER: SECRET}, timeout=10)
    assert answer.status_code == 400 and "unknown action 'SOMETHING'" in answer.json()["error"]
    assert _annotations(state) == before


def test_an_event_never_rewrites_a_tasks_data_and_a_save_after_its_file_changed_is_stored_by_reconciliation(
        synced, label_studio, caplog):
    """The sync changes its tasks' data itself (a file that changed: the task follows it); an event whose ``task.data``
    is not what the state holds is left to reconciliation, which reads the task's data and annotations together."""
    project, state, url, repo, path, files, deferred = synced
    client = label_studio.client()
    task = sorted(client.tasks.list(project=project.project_id, page_size=10), key=lambda t: t.id)[0]
    first = task.data["hf_revision"]
    annotation = client.annotations.create(task.id, result=choice("Bag"))  # first sight: the event's data is stored
    assert _tasks(state)[task.id] == _json(task.data)
    assert _annotations(state)[annotation.id][3] == first

    # the task's file changes: the import makes the task follow it (Label Studio's data changes, not the state's yet)
    sample_repos.commit_local(path, {task.data["hf_path"]: files[sorted(files)[1]]}, message="a better image")
    FileImporter(repo, project, state).run()
    followed = client.tasks.get(task.id).data
    second = followed["hf_revision"]
    assert second != first

    caplog.set_level(logging.DEBUG, logger="labelhub.sync.annotations.intake")
    client.annotations.update(annotation.id, result=choice("Top"))  # Label Studio's ANNOTATION_UPDATED, new data
    assert any("left to the next reconciliation" in r.getMessage() for r in caplog.records)
    assert len(deferred) == 1  # the daemon reconciles at its next turn, not --reconcile-interval later
    assert _tasks(state)[task.id] == _json(task.data)  # not rewritten by the event
    AnnotationIntake(project, state).reconcile()
    assert _tasks(state)[task.id] == _json(followed)
    _, body, deleted, revision = _annotations(state)[annotation.id]
    assert (deleted, revision) == (0, second) and '"Top"' in body
    # now the state holds the data Label Studio's webhooks carry: the next save is stored by its event at once
    client.annotations.update(annotation.id, result=choice("Trouser"))
    _, body, deleted, revision = _annotations(state)[annotation.id]
    assert (deleted, revision) == (0, second) and '"Trouser"' in body

    # an event (with the right secret and project) carrying other data for the task: no annotation, no data stored
    created = client.projects.get(project.project_id).created_at.isoformat()
    forged = {"action": "ANNOTATION_CREATED", "project": {"id": project.project_id, "created_at": created},
              "task": {"id": task.id, "data": {**followed, "image": PIXEL}},
              "annotation": {"id": 900_002, "updated_at": "2099-01-01T00:00:00Z", "result": choice("Top")}}
    answer = requests.post(url, json=forged, headers={SECRET_HEADER: SECRET}, timeout=10)
    assert answer.status_code == 200 and answer.json()["status"] == "deferred"
    assert 900_002 not in _annotations(state) and _tasks(state)[task.id] == _json(followed)


def _json(data: dict) -> str:
    import json

    return json.dumps(data, sort_keys=True)


# parse_event's project check, for any spelling of the instant ----------------------------------------------------
CREATED = datetime(2024, 6, 10, 8, 0, 0, tzinfo=timezone.utc)
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


def _written(moment: datetime, offset, style: str) -> str:
    text = moment.astimezone(offset).isoformat(timespec=style)
    return text.replace("+00:00", "Z") if text.endswith("+00:00") and style != "seconds" else text


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(micro=st.integers(0, 999_999), offset=offsets, style=st.sampled_from(["seconds", "milliseconds", "microseconds"]),
       shift=st.integers(-10 ** 9, 10 ** 9).filter(lambda s: s != 0))
def test_an_event_is_of_this_project_exactly_when_its_created_at_is_the_same_second(micro, offset, style, shift):
    def body(created_at):
        return {"action": "TASKS_DELETED", "tasks": [{"id": 1}], "project": {"id": 3, "created_at": created_at}}

    same = CREATED + timedelta(microseconds=micro)
    assert parse_event(body(_written(same, offset, style)), 3, CREATED).action == "TASKS_DELETED"
    other = _written(CREATED + timedelta(seconds=shift, microseconds=micro), offset, style)
    with pytest.raises(InvalidEventError, match="not this project's") as refused:
        parse_event(body(other), 3, CREATED)
    assert refused.value.field == "project"


project_values = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8), st.lists(st.integers()),
                           st.fixed_dictionaries({}, optional={"id": st.one_of(st.booleans(), st.text(), st.floats(),
                                                                                st.integers(2 ** 63, 2 ** 70),
                                                                                st.none()),
                                                               "created_at": st.text(max_size=30)}))


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(project=project_values)
def test_a_project_that_is_not_an_object_with_this_integer_id_is_refused_saying_where(project):
    body = {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 1}], "project": project}
    with pytest.raises(InvalidEventError) as refused:
        parse_event(body, 3, CREATED)
    assert refused.value.field == "project" and "\n" not in str(refused.value)


times = st.one_of(st.text(max_size=40), st.datetimes(timezones=st.none() | offsets).map(datetime.isoformat),
                  st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2024-06-10",
                                   " 2024-06-10T08:00:00Z\n", "2024-06-10T08:00:00.999999+00:00"]))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(created_at=times)
def test_any_created_at_is_this_project_or_refused_in_one_line_saying_where(created_at):
    body = {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 1}], "project": {"id": 3, "created_at": created_at}}
    try:
        parse_event(body, 3, CREATED)
    except InvalidEventError as exc:
        assert exc.field == "project" and "\n" not in str(exc)
    else:  # accepted: the same second, however written
        moment = parse_time(created_at)
        assert moment is not None and int(moment.timestamp()) == int(CREATED.timestamp())
