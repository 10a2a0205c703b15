"""Prometheus metrics of the backend (prometheus-client), served at ``/metrics``.

Under gunicorn every worker is a process, so the CLI sets ``PROMETHEUS_MULTIPROC_DIR`` and
``/metrics`` aggregates all workers with ``MultiProcessCollector``
(https://prometheus.github.io/client_python/multiprocess/). Without it (tests, ``flask run``) the
process's own registry is served. Format: https://prometheus.io/docs/instrumenting/exposition_formats/.
"""
from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics", "METRICS", "render"]


class Metrics:
    """The backend's metrics (created once per process; see :data:`METRICS`).

    Attributes:
        requests: ``labelhub_requests_total{endpoint, status}``.
        request_seconds: ``labelhub_request_seconds{endpoint}`` (histogram).
        predictions: ``labelhub_predictions_total{outcome}``: ``ok``, ``empty`` (untrained or no
            choice), ``media_error``.
        events: ``labelhub_webhook_events_total{action}`` received.
        events_pending: ``labelhub_events_pending``, the queue length seen by the trainer.
        trainings: ``labelhub_trainings_total{outcome}``.
        training_seconds: ``labelhub_training_seconds`` (histogram).
        predictions_written: ``labelhub_predictions_written_total``: predictions prediction jobs wrote to
            Label Studio (:mod:`labelhub.backend.jobs`).
        job_tasks: ``labelhub_job_tasks_total{outcome}``: tasks of prediction jobs' batches, ``written``,
            ``skipped`` (deleted, or given a prediction of the version meanwhile), ``failed`` or ``empty`` (the
            model answered no region: not written).
        job_batch_seconds: ``labelhub_job_batch_seconds`` (histogram): time of one batch (read, predict, write).
    """

    def __init__(self):
        self.requests = Counter("labelhub_requests", "HTTP requests answered", ["endpoint", "status"])
        self.request_seconds = Histogram("labelhub_request_seconds", "Time to answer a request", ["endpoint"],
                                         buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 100))
        self.predictions = Counter("labelhub_predictions", "Predictions answered, one per task", ["outcome"])
        self.events = Counter("labelhub_webhook_events", "Webhook events received", ["action"])
        self.events_pending = Gauge("labelhub_events_pending", "Events waiting for the trainer",
                                    multiprocess_mode="livemax")
        self.trainings = Counter("labelhub_trainings", "Model fits run by the trainer", ["outcome"])
        self.training_seconds = Histogram("labelhub_training_seconds", "Time of one fit",
                                          buckets=(.1, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600))
        self.predictions_written = Counter("labelhub_predictions_written",
                                           "Predictions written to Label Studio by prediction jobs")
        self.job_tasks = Counter("labelhub_job_tasks", "Tasks handled by prediction jobs' batches", ["outcome"])
        self.job_batch_seconds = Histogram("labelhub_job_batch_seconds", "Time of one prediction job batch",
                                           buckets=(.1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120))


#: The process's metrics.
METRICS = Metrics()


def render() -> tuple[bytes, str]:
    """The metrics in Prometheus text format, aggregated over workers when in multiprocess mode.

    Returns:
        ``(body, content_type)``.
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
