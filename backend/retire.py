"""Retiring superseded prediction versions: a backend's older model versions deleted from a Label Studio project.

Every retrain that moves a project's ``model_version`` makes the next whole-project prediction job write one
more prediction per task (with ``LABELHUB_AUTO_PREDICT``, after each retrain), and Label Studio keeps every
version until someone deletes it (Settings → Predictions). ``bench/prediction_versions_bench.py`` measured
what that costs Label Studio 1.23.2 (SQLite, 5,000 tasks), from one version to 30: a Data Manager page ordered by
prediction score went from 116 to 276 ms, a page of 500 tasks as the prediction jobs list them from 0.53 to
2.08 s (so every job gets slower), and the database grew by about 1.2 MB per version.

Retiring is on when ``keep`` is set (``LABELHUB_KEEP_VERSIONS``, ``labelhub predict --keep-versions``): after a
job that covered the whole project (no ``--task-ids``) finished, :func:`retire_versions` deletes every
prediction of the versions :func:`superseded` names, one ``DELETE /api/projects/<id>/model-versions/`` each.

What is deleted, and what never is:

- only versions this backend's model wrote (the model state's ``versions``: its last 50), so predictions
  imported by others, written by another backend, or a custom model's own versions stay;
- never the newest ``keep`` of them (by their latest prediction), the job's version, or the project's
  selected prediction set (Settings → Annotation → Prelabeling);
- a retired version goes from labeled tasks too; the annotations made from its predictions keep their
  results (Label Studio sets their ``parent_prediction`` to null).

The cost, and why it is off by default: Label Studio recounts the task of each deleted prediction one at a
time (a ``pre_delete`` signal), about 3.5 ms a prediction, in one transaction: 17 to 19 s for a version of
5,000 predictions, during which SQLite made annotation submissions wait up to 16 s
(``bench/prediction_versions_bench.py``; PostgreSQL locks rows, not the whole database: not measured here). On
SQLite, run ``labelhub predict --keep-versions N`` at a quiet hour instead. A delete that fails or times out is
logged and left for the next job.
"""
from __future__ import annotations

import logging
from typing import Any, Iterable

from labelhub.errors import LabelStudioError

log = logging.getLogger(__name__)

__all__ = ["superseded", "retire_versions"]


def superseded(versions: Iterable[Any], ours: Iterable[str], keep: int, protected: Iterable[str] = ()) -> list[str]:
    """The versions to retire: those of ``ours`` older than the newest ``keep`` of them, none of ``protected``.

    Args:
        versions: The project's prediction sets, each with ``model_version`` and ``latest`` (a datetime), as
            :meth:`labelhub.backend.labelstudio_api.LabelStudioClient.model_versions` lists them; any order.
        ours: The versions this backend's model wrote.
        keep: How many of the newest of ``ours`` present in ``versions`` stay (at least 1).
        protected: Versions never retired (the job's, the project's selected one).

    Returns:
        The versions to delete, newest first.

    Raises:
        ValueError: When ``keep`` is less than 1.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, not {keep}")
    mine, never = set(ours), set(protected)
    newest_first = sorted((v for v in versions if v.model_version in mine), key=lambda v: v.latest, reverse=True)
    return [v.model_version for v in newest_first[keep:] if v.model_version not in never]


def retire_versions(api: Any, project_id: int, ours: Iterable[str], keep: int, protected: Iterable[str] = ()
                    ) -> dict[str, int]:
    """Delete the predictions of the versions :func:`superseded` names (see the module docstring).

    Args:
        api: A :class:`labelhub.backend.labelstudio_api.LabelStudioClient`.
        project_id: The Label Studio project id.
        ours, keep, protected: As for :func:`superseded`.

    Returns:
        ``{version: predictions deleted}`` of each version retired. A version whose delete failed is logged and
        missing here (the next job tries again).

    Raises:
        ValueError: When ``keep`` is less than 1.
        LabelStudioError, ProjectNotFound: Label Studio could not list the project's versions.
    """
    retired: dict[str, int] = {}
    for version in superseded(api.model_versions(project_id), ours, keep, protected):
        try:
            retired[version] = api.delete_predictions(project_id, version)
        except LabelStudioError as exc:
            log.warning("project %s: could not delete the predictions of %s: %s", project_id, version, exc)
            continue
        log.info("project %s: retired %s (%d predictions deleted)", project_id, version, retired[version])
    return retired
