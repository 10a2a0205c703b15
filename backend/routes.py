"""The Label Studio ML backend protocol, as Label Studio 1.20 to 1.23 calls it.

The client is ``label_studio/ml/api_connector.py`` (``MLApi``) and ``label_studio/ml/models.py``
(``MLBackend``); see also https://labelstud.io/guide/ml_create:

=============  ======  ===========================================================================
endpoint       method  answer
=============  ======  ===========================================================================
``/health``    GET     ``{"status": "UP", ...}`` (Label Studio waits 1 s, ``ML_TIMEOUT_HEALTH``)
``/setup``     POST    ``{"model_version": ...}`` (3 s, ``ML_TIMEOUT_SETUP``)
``/predict``   POST    ``{"results": [one prediction per task, in order]}`` (100 s, ``ML_TIMEOUT_PREDICT``)
``/webhook``   POST    ``{"status": "queued"|"ignored"}`` at once; training runs in the background
``/versions``  GET     ``{"versions": [...]}``
``/train``     POST    legacy training request, queued like a webhook event
``/metrics``   GET     Prometheus text format
=============  ======  ===========================================================================

Views parse with :mod:`labelhub.backend.payloads`, call the model (:mod:`labelhub.backend.model`) and raise
:mod:`labelhub.backend.errors` exceptions, which the registered handlers answer as JSON.
"""
from __future__ import annotations

import hmac
import logging
import os
import time

from flask import Blueprint, Response, current_app, g, jsonify, request

from redis.exceptions import RedisError

from labelhub.backend.errors import InvalidPayloadError, UnauthorizedError
from labelhub.backend.missed_events import note_missed
from labelhub.redaction import one_line, redact
from labelhub.webhooks import SECRET_HEADER, secret_matches
from labelhub.backend.events import PARAMS_CHANGED, validate_event
from labelhub.backend.model import normalize_predictions
from labelhub.backend.payloads import PredictRequest, SetupRequest, TrainRequest, json_body
from labelhub.backend.project_check import check_project_exists, warm_project_checker
from labelhub.backend.state import project_key

log = logging.getLogger(__name__)

__all__ = ["protocol_bp", "metrics_bp", "WEBHOOK_SECRET_HEADER"]

protocol_bp = Blueprint("protocol", __name__)
metrics_bp = Blueprint("metrics", __name__)

#: The header carrying ``LABELHUB_WEBHOOK_SECRET`` on Label Studio's own webhook.
WEBHOOK_SECRET_HEADER = SECRET_HEADER


def _backend():
    return current_app.extensions["labelhub"]


#: Seconds a prediction job's ``started_at`` may lie before a ``/predict`` request's start and still count as started
#: during it (another host's clock; a job running at the request's start is found before, by ``running_job``).
JOB_CLOCK_SKEW = 2.0


protocol_bp.record_once(warm_project_checker)


def _basic_auth_ok(settings) -> bool:
    """Whether the request carries ``BASIC_AUTH_USER``/``BASIC_AUTH_PASS`` as HTTP basic auth (RFC 7617).

    Werkzeug parses the ``Authorization`` header (``request.authorization``: ``None`` when it is
    missing or malformed); both parts are compared in constant time.
    """
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return False
    return (hmac.compare_digest((auth.username or "").encode(), settings.basic_auth_user.encode())
            & hmac.compare_digest((auth.password or "").encode(), settings.basic_auth_pass.encode()))


def _secret_ok(settings) -> bool:
    return secret_matches(request.headers, settings.webhook_secret)


@protocol_bp.before_request
def _authenticate() -> None:
    """Basic auth on the routes Label Studio calls with it; basic auth or the shared secret on
    ``/webhook`` (Label Studio's own webhook sends no auth); ``/health`` stays open."""
    g.started = time.perf_counter()
    settings = _backend().settings
    endpoint = (request.endpoint or "").rpartition(".")[2]
    if endpoint == "health":
        return
    if endpoint == "webhook":
        if not settings.auth_enabled and not settings.webhook_secret:
            return
        if (settings.auth_enabled and _basic_auth_ok(settings)) or _secret_ok(settings):
            return
        raise UnauthorizedError(_refusal(settings, webhook=True))
    if settings.auth_enabled and not _basic_auth_ok(settings):
        raise UnauthorizedError(_refusal(settings, webhook=False))


def _refusal(settings, webhook: bool) -> str:
    """Why a request was refused (401), telling a wrong credential from a missing one, never echoing either.

    Args:
        settings: The backend's settings (``auth_enabled``, ``webhook_secret``).
        webhook: Whether the request is ``/webhook`` (which also takes ``LABELHUB_WEBHOOK_SECRET``).

    Returns:
        One line: the wrong :data:`WEBHOOK_SECRET_HEADER` (or one sent to a backend without
        ``LABELHUB_WEBHOOK_SECRET``), the wrong basic auth, or what is missing.
    """
    auth = request.authorization
    basic = auth is not None and auth.type == "basic"
    if webhook and WEBHOOK_SECRET_HEADER in request.headers:
        if not settings.webhook_secret:
            return (f"/webhook: the {WEBHOOK_SECRET_HEADER} header was sent but LABELHUB_WEBHOOK_SECRET is not set on "
                    "the backend: send basic auth, or set it")
        return f"/webhook: the {WEBHOOK_SECRET_HEADER} header does not match LABELHUB_WEBHOOK_SECRET"
    if basic and settings.auth_enabled:
        return "basic auth user or password is wrong (BASIC_AUTH_USER / BASIC_AUTH_PASS)"
    if webhook:
        return f"/webhook needs basic auth or the {WEBHOOK_SECRET_HEADER} header (LABELHUB_WEBHOOK_SECRET)"
    return "basic auth required (BASIC_AUTH_USER / BASIC_AUTH_PASS)"


@protocol_bp.after_request
def _count(response: Response) -> Response:
    metrics = _backend().metrics
    endpoint = (request.endpoint or "unknown").rpartition(".")[2]
    metrics.requests.labels(endpoint=endpoint, status=str(response.status_code)).inc()
    if "started" in g:
        metrics.request_seconds.labels(endpoint=endpoint).observe(time.perf_counter() - g.started)
    return response


@protocol_bp.get("/")
@protocol_bp.get("/health")
def health():
    """``GET /health``: ``{"status": "UP", "model_class": ..., "embedders": [...], "trainer": ..., "jobs": {...}}``.

    Answers from memory, plus a ``stat`` of each project's job status file (parsed again only when it
    changed: :func:`labelhub.backend.job_status.read_statuses`), in well under Label Studio's 1 s. ``jobs`` is
    ``{project key: {"state", "total", "queued", "running", "done", "skipped", "failed", "model_version", ...}}``
    of each project's last prediction job (``labelhub predict``; with ``LABELHUB_REDIS_URL``, read from Redis,
    so every replica shows every host's jobs): times in ISO 8601, UTC, and ``selection`` as counts
    (:func:`labelhub.backend.job_status.for_health`). ``pid`` is the answering worker's process id.

    ``trainer`` names the process that applies the events and fits (one per host's ``MODEL_DIR``; with
    ``LABELHUB_REDIS_URL`` one across every host): ``{"host", "pid"}``, or ``null`` while none holds the lease (at
    start, or for the lease's seconds after its holder died). Every worker answers the same
    (:meth:`~labelhub.backend.events.EventQueue.trainer_holder`). ``trainer_leader`` says whether the answering worker
    (``pid``) is that process: behind gunicorn a random worker answers, so it is ``false`` from the others.
    """
    from labelhub.backend.embedders import loaded_embedders
    from labelhub.backend.job_status import for_health, read_statuses

    backend = _backend()
    store = backend.store
    jobs = store.job_statuses() if backend.settings.redis_url else read_statuses(backend.settings.model_dir)
    jobs = {key: for_health(view) for key, view in jobs.items()}
    try:
        trainer = backend.queue.trainer_holder()
    except Exception:  # e.g. Redis gone for a moment: /health still answers
        trainer = None
    return jsonify(status="UP", model_class=backend.models.model_class.__name__,
                   embedders=loaded_embedders(), trainer=trainer, trainer_leader=backend.trainer.is_leader,
                   pid=os.getpid(), jobs=jobs)


@protocol_bp.post("/setup")
def setup():
    """``POST /setup``: remember the project's label config and answer its ``model_version``.

    Never loads a model synchronously (Label Studio waits 3 s); the embedder is loaded in the
    background. An unsupported label config answers 422 with the reason.

    Extra params that differ from the stored ones, for a project the model has fitted or whose model serves
    predictions without a fit (``serves_without_fit``: a Hugging Face model named in the Extra params, even in a
    project never fitted), queue :data:`~labelhub.backend.events.PARAMS_CHANGED`: the parameters may move the
    ``model_version`` served without a fit; the trainer adds it to what ``/versions`` lists and, when
    ``LABELHUB_AUTO_PREDICT`` is on, re-predicts the unlabeled tasks as after a retrain (a change that moves no
    version, such as ``crop_cache``, makes a job that plans nothing). Decision: the first Extra params a project is
    connected with count as a change too (a Hub model's project is then pre-annotated at once with
    ``LABELHUB_AUTO_PREDICT`` on); a project whose heads all learn and that has no fit queues nothing (it predicts
    nothing yet).
    """
    backend = _backend()
    req = SetupRequest.parse(json_body(request))
    kwargs = {"extra_params": req.extra_params} if req.extra_params is not None else {}
    state = backend.store.project(req.project)
    params_before = state.project().get("extra_params") or {}
    model = backend.models.get(req.project, req.label_config, **kwargs)
    if req.extra_params is not None and (req.extra_params or {}) != params_before and (
            state.kv().get("model_version") or getattr(model, "serves_without_fit", False)):
        backend.queue.put(PARAMS_CHANGED, {}, req.project)
    model.refresh()
    backend.warmup(model)
    return jsonify(model_version=model.model_version)


@protocol_bp.post("/predict")
def predict():
    """``POST /predict``: ``{"results": [...]}``, one prediction per task, in task order.

    Whatever the model's ``predict`` returns (dicts, label-studio-sdk ``PredictionValue``, a
    ``ModelResponse``, ...) is turned into Label Studio's prediction format by
    :func:`labelhub.backend.model.normalize_predictions`.

    A task whose media cannot be fetched (or is not allowed) gets no ``result``, only ``error`` (and
    ``model_version``), while the others are predicted. Label Studio stores no prediction for an answer without
    ``result`` (it logs it: ``ml/models.py``, ``_get_predictions_from_ml_backend``), so the next "Retrieve
    predictions" asks for that task again; an empty ``result`` would be stored under the current
    ``model_version``, and Label Studio skips a task holding one, so the task would stay empty after the fault
    was mended until the version moved. The log names every reason, with the tasks it hit.

    While a prediction job of the project runs with the model's version (``labelhub predict``, an automatic job), a
    request of several tasks (the Data Manager's "Retrieve predictions") gets, for each task the job will write
    (:func:`labelhub.backend.jobs.left_to_job`), only ``model_version`` and no ``result``: Label Studio stores
    nothing for it, and the task gets the job's one prediction instead of two of the same version (one line in the
    log says so). So does a task of a job that started while the request was predicting (:func:`_taken_by_a_later_job`:
    Label Studio saves the answer after the job's own clean-up). A request of one task (the editor opening it) is answered as always: the annotator sees a
    prediction now, and the job's batch skips the task when it reads it; the job removes a second prediction of its
    version it finds at its end (:func:`labelhub.backend.jobs.run_job`).
    """
    backend = _backend()
    req = PredictRequest.parse(json_body(request))
    model = backend.models.get(req.project, req.label_config)
    if not req.tasks:
        return jsonify(results=[])
    model.refresh()
    version = model.model_version
    left: set = set()
    if len(req.tasks) > 1:
        from labelhub.backend.jobs import left_to_job, running_job

        job = running_job(backend, project_key(req.project))
        left = set(left_to_job(job, req.tasks, version)) if job is not None else set()
        if left:
            log.info("project %s: %d of %d tasks get no prediction from this request: the running prediction job "
                     "(%s) writes them with %s (one prediction per task and version)", req.project, len(left),
                     len(req.tasks), job.job_id, version)
    def left_to_it(task: object) -> bool:  # only an int id can be one (a task's id may be anything: an unhashable dict)
        return isinstance(task, dict) and isinstance(task.get("id"), int) and task["id"] in left

    asked, asked_at = [t for t in req.tasks if not left_to_it(t)], time.time()
    raw = model.predict(asked, context=req.context, login=req.login, password=req.password) if asked else []
    answered = iter(normalize_predictions(raw, len(asked), model.model_version) if asked else [])
    results = [{"model_version": version} if left_to_it(t) else next(answered) for t in req.tasks]
    if len(req.tasks) > 1 and asked:
        left |= _taken_by_a_later_job(backend, req, asked, asked_at, version)
        results = [{"model_version": version} if left_to_it(t) else pred for t, pred in zip(req.tasks, results)]
    failed: dict[str, list] = {}  # reason -> the ids of the tasks it hit
    for task, pred in zip(req.tasks, results):
        if "result" not in pred and "error" not in pred:  # left to the running job
            continue
        outcome = "media_error" if "error" in pred else ("ok" if pred["result"] else "empty")
        backend.metrics.predictions.labels(outcome=outcome).inc()
        if "error" in pred:
            pred["error"] = redact(pred["error"], backend.settings.secrets)
            pred.pop("result", None), pred.pop("score", None)
            failed.setdefault(pred["error"], []).append(task.get("id") if isinstance(task, dict) else None)
    if failed:  # Label Studio drops the answer's "error": the log is where a person sees why a task got nothing
        log.warning("project %s: %d of %d tasks got no prediction (Label Studio stores none for them, so a later "
                    "Retrieve predictions asks again): %s", req.project, sum(map(len, failed.values())), len(results),
                    _reasons(failed))
    return jsonify(results=results)


def _taken_by_a_later_job(backend, req: PredictRequest, asked: list, asked_at: float, version: str) -> set[int]:
    """The ids of ``asked`` (this ``/predict`` request's tasks) that a prediction job of ``version`` which started
    while the request was predicting (its ``started_at`` at most :data:`JOB_CLOCK_SKEW` seconds before ``asked_at``,
    a Unix time) writes or wrote: the answer leaves them without ``result``, as for a job running when the request
    came (:func:`labelhub.backend.jobs.left_to_job`).

    Decision: Label Studio saves a request's answer when it ends (32 s for 200 tasks), and the job's end removes a
    second prediction of its version only among those already saved; a job started after the request planned these
    tasks (they lacked the version), so the answer is the one to drop. A job whose batch failed on a task leaves it
    without a prediction of the version: the next Retrieve predictions asks for it again. A status that cannot be read
    counts as no job."""
    from labelhub.backend.jobs import last_status, left_to_job

    job = last_status(backend, project_key(req.project))
    if job is None or job.state not in ("running", "done") or (job.started_at or 0) < asked_at - JOB_CLOCK_SKEW:
        return set()
    taken = set(left_to_job(job, asked, version))
    if taken:
        log.info("project %s: %d of %d tasks get no prediction from this request: a prediction job (%s) started "
                 "meanwhile writes them with %s (one prediction per task and version)", req.project, len(taken),
                 len(req.tasks), job.job_id, version)
    return taken


def _reasons(failed: dict[str, list], shown: int = 5) -> str:
    """The first ``shown`` reasons of ``failed`` (reason -> task ids), each with its tasks, for one log line."""
    parts = [f"{_tasks_named(ids)}: {one_line(reason, 300)}" for reason, ids in list(failed.items())[:shown]]
    rest = sum(len(ids) for ids in list(failed.values())[shown:])
    return "; ".join(parts) + (f"; and {rest} more tasks (their reasons are in the answer)" if rest else "")


def _tasks_named(ids: list) -> str:
    """``task 7`` or ``3 tasks (7, 8, 9)`` (at most 5 ids shown) for a log line."""
    if len(ids) == 1:
        return f"task {ids[0]}"
    shown = ", ".join(str(i) for i in ids[:5]) + (", ..." if len(ids) > 5 else "")
    return f"{len(ids)} tasks ({shown})"


@protocol_bp.post("/webhook")
def webhook():
    """``POST /webhook``: persist the event durably, answer at once; the trainer applies it later.

    Answers ``{"status": "queued", "event_id": ...}``, or ``{"status": "ignored"}`` for Label Studio
    actions that do not concern the model (``PROJECT_CREATED``, ..., and ``TASKS_CREATED`` unless
    ``LABELHUB_AUTO_PREDICT`` is on: :mod:`labelhub.backend.auto_predict`). Unknown actions, and events whose
    ``project`` gives no valid project key, answer 422: an accepted event is one the trainer applies. An event of a
    project Label Studio says does not exist answers 404 and is not stored (:func:`labelhub.backend.project_check.check_project_exists`).
    An event the queue cannot store (Redis unreachable, a full disk) answers 500 and is noted, so that the project's
    annotations are read from Label Studio once the queue works again (:mod:`labelhub.backend.missed_events`).
    """
    backend = _backend()
    body = json_body(request)
    action = body.get("action")
    kind = validate_event(action, body, also=("TASKS_CREATED",) if backend.auto.enabled else ())
    backend.metrics.events.labels(action=action).inc()
    if kind == "ignored":
        return jsonify(status="ignored", action=action)
    key = backend.store.resolve_webhook_project(body.get("project"))
    if key is None:  # the trainer could apply it to no project: refuse rather than accept and drop it
        raise InvalidPayloadError("the event's 'project' has no usable 'id'", field="project")
    try:
        project_key(key)
    except InvalidPayloadError:  # e.g. a created_at before 1970, or an id in other digits than 0-9
        raise InvalidPayloadError(f"the event's 'project' gives no valid project key ({key!r:.60}): 'id' must be "
                                  "a number and 'created_at' a time after 1970", field="project") from None
    try:
        check_project_exists(backend, key)
        event_id = backend.queue.put(action, body, key)
    except (OSError, RedisError) as exc:  # answered 500; noted, so that the project is read from Label Studio later
        note_missed(backend.settings.model_dir, key, body.get("project"), exc)
        raise
    return jsonify(status="queued", action=action, event_id=event_id)


@protocol_bp.post("/train")
def train():
    """Legacy ``POST /train`` (Label Studio with its webhook-training feature flag off): queued."""
    backend = _backend()
    body = json_body(request)
    req = TrainRequest.parse(body)
    check_project_exists(backend, project_key(req.project))
    if req.label_config:
        backend.models.get(req.project, req.label_config)
    event_id = backend.queue.put("TRAIN", body, req.project)
    return jsonify(status="queued", action="TRAIN", event_id=event_id)


@protocol_bp.get("/versions")
def versions():
    """``GET /versions``: ``{"versions": [...]}``, newest last.

    Label Studio 1.23 sends this GET without a body, so the project may come from the body, the
    ``project`` query parameter, or be absent (then every project's versions are listed). Each version is listed
    once, where it first appears (a project's stored list may name one twice). A bare project id (``?project=5``)
    lists the versions of every stored key of that id (``5.<created_at>``: a project deleted and made again under
    the same id has two). A project marked gone from Label Studio (:func:`labelhub.backend.project_check.check_project_exists`) lists none.
    """
    backend = _backend()
    body = json_body(request, required=False)
    project = body.get("project") or request.args.get("project")
    keys = [project_key(project)] if project else backend.store.known_projects()
    if project and "." not in keys[0]:
        keys += [k for k in backend.store.known_projects() if k.startswith(keys[0] + ".")]
    found: dict[str, None] = {}  # each version once, in the order first seen
    for key in [k for k in keys if not backend.store.gone(k)]:
        versions = backend.store.project(key).kv().get("versions", [])
        found.update(dict.fromkeys(v for v in versions if isinstance(v, str)))
    return jsonify(versions=list(found))


@metrics_bp.get("/metrics")
def metrics():
    """``GET /metrics``: Prometheus text format (all gunicorn workers, see :mod:`labelhub.backend.metrics`)."""
    from labelhub.backend.metrics import render

    backend = _backend()
    backend.metrics.events_pending.set(backend.queue.count())
    body, content_type = render()
    return Response(body, content_type=content_type)
