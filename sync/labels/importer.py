"""Labels made elsewhere → Label Studio tasks with predictions or annotations, never twice.

:func:`build_labeled_task` turns an :class:`labelhub.sync.labels.parsed.ImportTask` into Label Studio's import task
format (https://labelstud.io/guide/task_format): the url under the value key the label config
names, with predictions or annotations inline, so a batch of tasks with their labels is **one**
import call. :class:`LabelImporter` imports a parsed file:

1. Finish what a crash left and adopt what the state lacks (:meth:`labelhub.sync.ledger.ImportLedger.recover`): the
   project's tasks with a ``data.source_url`` that the state does not record (urls pending after a crash, every
   task of earlier imports for a lost or new state file, those another state file's import made since the last
   run) are recorded (a lost state file creates no duplicates).
2. Skip the urls that already have a task (the import is keyed on the url).
3. Import the others in batches (default 1,000 tasks per call): each batch is recorded as pending,
   imported with one Label Studio call, then recorded with its task ids.

A url that is a path of the dataset repo whose file the sync already made a task of gets its labels
added to that task (one call per task) instead of a second task. The sync's tasks are found in Label Studio
(``data.hf_repo``, ``data.hf_path``) and recorded in the repo's ledger whatever the state holds: a lost state file,
or another one than the sync's, still finds them. Annotations are not ground truth unless ``ground_truth`` is set
(both for new tasks and the sync's). A sync task deleted in Label Studio (the state records it so, or Label Studio
answers 404 for it) gets no labels and no new task, as the sync imports a deleted task's file no more: its url is
reported (:attr:`LabelImportReport.deleted_tasks`), recorded as deleted, and the import goes on.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from label_studio_sdk.core.api_error import ApiError

from labelhub.errors import LabelHubError
from labelhub.retry import NO_SDK_RETRY
from labelhub.sync.labels.parsed import ImportTask, ParsedLabels, ProjectLabels
from labelhub.sync.labelstudio.project import LabelStudioProject, TaskNotFound
from labelhub.sync.ledger import Entry, ImportLedger, Item
from labelhub.sync.regions import percent_from_edges

log = logging.getLogger(__name__)

#: ``--as`` values: where the labels go in Label Studio.
TARGETS = ("predictions", "annotations")


def build_result(task: ImportTask, labels: ProjectLabels) -> list[dict]:
    """The Label Studio result list of a task's labels (https://labelstud.io/guide/export, "result").

    Args:
        task: the task; its concepts and region labels must be in ``labels`` (checked when parsed).
        labels: the project's labels.

    Returns:
        One ``choices`` item per Choices tag used (https://labelstud.io/tags/choices) and one
        ``rectanglelabels`` item per region (https://labelstud.io/tags/rectanglelabels) with ``x, y,
        width, height`` in percent 0 to 100, ``rotation: 0`` and ``original_width``/``original_height``
        when known. Region ids are ``r1``, ``r2``, ... in file order.
    """
    to_name = labels.field.name
    result: list[dict] = []
    by_tag: dict[str, list[str]] = {}
    for concept in task.concepts:
        by_tag.setdefault(labels.choices[concept], []).append(concept)
    for tag, chosen in by_tag.items():
        result.append({"from_name": tag, "to_name": to_name, "type": "choices", "value": {"choices": chosen}})
    for n, region in enumerate(task.regions, 1):
        item = {"id": f"r{n}", "from_name": labels.rectangles[region.labels[0]], "to_name": to_name,
                "type": "rectanglelabels",
                "value": {**percent_from_edges(region.edges), "rotation": 0, "rectanglelabels": list(region.labels)}}
        if task.original_width and task.original_height:
            item.update(original_width=task.original_width, original_height=task.original_height, image_rotation=0)
        result.append(item)
    return result


def build_labeled_task(task: ImportTask, labels: ProjectLabels, target: str = "predictions",
               model_version: str = "import", ground_truth: bool = False) -> dict:
    """One import payload (https://labelstud.io/guide/task_format).

    Args:
        task: the parsed task.
        labels: the project's labels (the value key and the tag names).
        target: ``"predictions"`` or ``"annotations"``.
        model_version: the predictions' ``model_version``.
        ground_truth: the annotation's ``ground_truth`` (``--ground-truth``). Always sent: Label Studio's import
            makes an annotation without it ground truth (``annotation.pop('ground_truth', True)`` in
            ``label_studio/tasks/serializers.py``, 1.23) while its annotation API does not.

    Returns:
        ``{"data": {...}, "predictions" | "annotations": [{"result": [...]}]}`` (an annotation also carries
        ``ground_truth``). ``data`` holds the
        value key (e.g. ``image``) with the URL, ``source_url`` (the url as in the file, the task's
        identity), ``neg_concepts`` (a list) and ``metadata`` (an object) when there are any, and
        ``hf_repo``, ``hf_path``, ``hf_revision`` for a path of the dataset repo. No prediction or
        annotation when the task has no label.

    Raises:
        ValueError: ``target`` is not one of :data:`TARGETS`.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, not {target!r}")
    data: dict = {labels.field.value_key: task.value, "source_url": task.url}
    if task.neg_concepts:
        data["neg_concepts"] = list(task.neg_concepts)
    if task.metadata:
        data["metadata"] = task.metadata
    if task.hf:
        data.update(hf_repo=task.hf[0], hf_path=task.hf[1], hf_revision=task.hf[2])
    payload: dict = {"data": data}
    result = build_result(task, labels)
    if result:
        payload[target] = [{"model_version": model_version, "result": result} if target == "predictions"
                           else {"result": result, "ground_truth": ground_truth}]
    return payload


@dataclass
class LabelImportReport:
    """What an import did.

    Attributes:
        created: tasks created.
        regions: regions in the created (or labelled) tasks.
        already_imported: urls of the file that the state recorded with a task from an earlier import, or whose
            sync task already held the file's labels and data, or a row without any (left as they are).
        recovered: urls of the file whose task (of an interrupted import, or of an earlier one the state does not
            record) was found in Label Studio and recorded; tasks found of urls that are not in the file are not
            counted (a new state adopts every earlier import's tasks).
        labelled_sync_tasks: tasks of the sync (repo files) that got the labels (or the file's ``neg_concepts`` or
            ``metadata``) added; one that already held all of them (an earlier import with another state file) is
            counted in ``already_imported`` instead, and its regions are not counted.
        sync_tasks_data: tasks of the sync whose ``data`` got the file's ``neg_concepts`` or ``metadata``.
        second_tasks: ids of second tasks of this run's urls that another import (another state file) made at the
            same time (:meth:`LabelImporter._second_tasks`), to delete.
        deleted_tasks: ``(url, task id)`` of the file's urls whose repo file's sync task was deleted in Label Studio
            (:meth:`LabelImporter._label_sync_tasks`), in file order: neither labelled nor imported.
    """

    created: int = 0
    regions: int = 0
    already_imported: int = 0
    recovered: int = 0
    labelled_sync_tasks: int = 0
    sync_tasks_data: int = 0
    second_tasks: list[int] = field(default_factory=list)
    deleted_tasks: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class LabelImporter:
    """Imports parsed labels into ``project``, each url once.

    Attributes:
        project: the Label Studio project.
        ledger: the import ledger of the labels files' urls (source :data:`labelhub.sync.ledger.LABELS_SOURCE`).
        labels: the project's labels.
        target: ``"predictions"`` or ``"annotations"`` (``--as``).
        model_version: the predictions' ``model_version``.
        batch_size: tasks per Label Studio import call.
        ground_truth: whether imported annotations are ground truth (:func:`build_labeled_task`); the same for new
            tasks and the sync's (Label Studio then unmarks the task's other ground truth annotation).
    """

    project: LabelStudioProject
    ledger: ImportLedger
    labels: ProjectLabels
    target: str = "predictions"
    model_version: str = "import"
    batch_size: int = 1000
    ground_truth: bool = False
    _paths_of: dict[str, list[str]] = field(default_factory=dict, init=False, repr=False)

    def run(self, tasks: Sequence[ImportTask]) -> LabelImportReport:
        """Import ``tasks`` (see the module docstring) and return the report.

        Args:
            tasks: the parsed tasks (:attr:`ParsedLabels.tasks`).

        Raises:
            labelhub.errors.ProjectNotFound: the project is gone (a sync task Label Studio answers 404 for is not:
                it is reported in :attr:`LabelImportReport.deleted_tasks` and the import goes on).
            labelhub.errors.LabelHubError: Label Studio refused a call or cannot be reached; what was imported
                before is recorded, and running the same import again continues.
        """
        report = LabelImportReport()
        before = self.ledger.known()
        adopted = self.ledger.recover(self._existing_tasks)
        begun = self.ledger.adopted_through() or 0  # every task at or below it was seen (or is recorded)
        known = self.ledger.known() if adopted else before
        new = [t for t in tasks if t.url not in known]
        # the file's urls only: a new state adopts every task of earlier imports, most of them maybe of other files
        report.recovered = sum(1 for t in tasks if t.url in known and t.url not in before)
        report.already_imported = len(tasks) - len(new) - report.recovered
        if adopted:
            log.info("found %d tasks of earlier imports in Label Studio (%d of this file's urls)", adopted,
                     report.recovered)
        new = self._label_sync_tasks(new, report)
        if report.sync_tasks_data:
            log.info("%d tasks of the sync got the file's neg_concepts or metadata in their data",
                     report.sync_tasks_data)
        items = (Item(t.url, build_labeled_task(t, self.labels, self.target, self.model_version, self.ground_truth),
                      aliases=(t.hf,) if t.hf else ()) for t in new)
        report.created = self.ledger.import_items(self.project, items, len(new), self.batch_size)
        report.regions += sum(len(t.regions) for t in new)
        if report.created:
            report.second_tasks = self._second_tasks({t.url for t in new}, begun)
        log.info("project %s: %d tasks created, %d regions, %d already imported, %d recovered, "
                 "%d sync tasks labelled", self.project.project_id, report.created, report.regions,
                 report.already_imported, report.recovered, report.labelled_sync_tasks)
        return report

    def _second_tasks(self, urls: set[str], begun: int) -> list[int]:
        """The ids of second tasks of ``urls`` (those this run created) that another import made meanwhile, each url's
        lowest task id being its first; the state then records each url's first task, and adopts the other import's
        tasks of other urls.

        Another ``labelhub import-labels`` into the project with another state file is not held off by this one's
        lock (:func:`labelhub.sync.options.state_lock` is per state file) and sees this run's tasks only at its
        start: run at the same time with the same urls, both create them. Its tasks have ids above ``begun`` (the
        adoption cursor after this run's first lookup) and outside this run's own: one query per gap between this
        run's contiguous id ranges (about 30 ms each when it answers nothing; this run's own tasks are never
        listed, which would cost more than importing them)."""
        mine = self.ledger.task_ids(urls)
        gaps: list[tuple[int, int | None]] = []
        low = begun
        for task_id in sorted(mine.values()):
            if task_id > low + 1:
                gaps.append((low, task_id))
            low = max(low, task_id)
        gaps.append((low, None))
        try:
            found = [entry for after, before in gaps for entry in self._existing_tasks(after, before)]
            self.ledger.recover(lambda after_task_id: found)  # others' tasks of other urls; moves the cursor
        except LabelHubError as exc:  # what this run made is recorded: say it, do not fail the import for it
            log.warning("could not look for second tasks that another import running at the same time may have "
                        "made: %s", exc)
            return []
        ids: dict[str, set[int]] = {}
        for entry in found:
            if entry.key in mine:
                ids.setdefault(entry.key, {mine[entry.key]}).add(entry.task_id)
        second: list[int] = []
        first: list[Entry] = []
        for url, task_ids in ids.items():
            lowest = min(task_ids)
            second += task_ids - {lowest}
            if mine[url] != lowest:
                first.append(Entry(url, lowest))
        if first:
            self.ledger.record(first)
        if second:
            log.warning("%d urls of this import got a second task from another import into project %s running at "
                        "the same time with another state file", len(ids), self.project.project_id)
        return sorted(second)

    def _existing_tasks(self, after_task_id: int, before_task_id: int | None = None) -> list[Entry]:
        """The project's tasks with a ``data.source_url`` and an id above ``after_task_id`` (and below
        ``before_task_id``, when given) (for :meth:`ImportLedger.recover`); a repo path's task also answers for that
        file."""
        entries = []
        for task_id, data in self.project.task_data(after_task_id, before_task_id, source_url=None):
            hf = (data["hf_repo"], data["hf_path"], data.get("hf_revision", "")) \
                if data.get("hf_repo") and data.get("hf_path") else None
            entries.append(Entry(data["source_url"], task_id, aliases=(hf,) if hf else ()))
        return entries

    def _repo_tasks(self, repo_id: str, after_task_id: int) -> list[Entry]:
        """The project's tasks of ``repo_id``'s files (``data.hf_repo``, ``data.hf_path``: the sync's, and those of
        earlier imports and restores) with an id above ``after_task_id``, for the repo's ledger's
        :meth:`ImportLedger.recover`: the state may lack them (lost, or another state file than the sync's). The same
        lookup as the sync's (:meth:`labelhub.sync.labelstudio.project.LabelStudioProject.repo_file_tasks`).

        A local repository's tasks made from another path of it (the sync's before a move, a mount elsewhere) count
        too: those of each path whose task shows a commit ``repo_id`` holds (:meth:`_other_paths`); the ledger's
        recovery keeps the lowest id of a file's tasks."""
        return [Entry(path, task_id, revision)
                for source in (repo_id, *self._other_paths(repo_id))
                for task_id, path, revision in self.project.repo_file_tasks(source, after_task_id)]

    def _other_paths(self, repo_id: str) -> list[str]:
        """The other paths of the local repository ``repo_id`` that the project's file tasks name
        (:func:`labelhub.sync.versions.restore_identity.other_paths`; ``[]`` for a Hub repo). Asked once per repo and
        import."""
        from labelhub.sync.versions.restore_identity import other_paths

        if repo_id not in self._paths_of:
            self._paths_of[repo_id] = other_paths(self.project, repo_id)
        return self._paths_of[repo_id]

    def _holds(self, task: Any, result: list[dict]) -> bool:
        """Whether the task (as just read) already holds these labels: a prediction of this ``model_version``, or an
        annotation with this result. An import killed between a task's create and its ledger record (one call each)
        would otherwise add them a second time when run again."""
        if self.target == "predictions":
            return any(_field(p, "model_version") == self.model_version for p in _field(task, "predictions") or [])
        return any(_field(a, "result") == result for a in _field(task, "annotations") or [])

    def _label_sync_tasks(self, tasks: list[ImportTask], report: LabelImportReport) -> list[ImportTask]:
        """Add the labels of repo-path urls whose file the sync already made a task of to that task
        (a read and one call each), and their ``neg_concepts`` and ``metadata`` to its ``data`` as a new task would
        have them (:func:`build_labeled_task`; one more call per task that has either and lacks them: the data are
        replaced whole, https://api.labelstud.io/api-reference/api-reference/tasks/update, so they are merged into
        what was read): ``neg_concepts`` gets the file's names it lacks, ``metadata`` the file's keys (the file's
        values win); the sync's own keys (the metadata join's columns, ``hf_*``) stay. Return the other tasks.

        A sync task deleted in Label Studio, which the repo's ledger still lists (deleted by an annotator or a
        manager: a bad image), is treated as gone, not as the project: its url gets no call and no new task (the sync
        imports a deleted task's file no more, README "Sync: dataset files"), is put in
        :attr:`LabelImportReport.deleted_tasks` and said in one warning, and the other urls go on. One the state
        records as deleted gets no call; one Label Studio answers 404 for (on the read or on a call) is recorded as
        deleted (:meth:`labelhub.sync.ledger.ImportLedger.set_deleted`, as the sync records it), once the project
        is seen to be there (one call, at the first such task).

        Raises:
            labelhub.errors.ProjectNotFound: the project itself is gone.
            labelhub.errors.LabelHubError: Label Studio refused a call otherwise, or cannot be reached.
        """
        by_repo: dict[str, list[ImportTask]] = {}
        for t in tasks:
            if t.hf:
                by_repo.setdefault(t.hf[0], []).append(t)
        existing: dict[str, int] = {}
        gone: dict[str, int] = {}  # url -> its sync task, deleted in Label Studio
        for repo_id, repo_tasks in by_repo.items():
            ledger = ImportLedger(self.ledger.db, self.project.project_id, repo_id)
            adopted = ledger.recover(lambda after, repo_id=repo_id: self._repo_tasks(repo_id, after))
            if adopted:
                log.info("found %d tasks of %s's files in Label Studio (made by the sync) that the state lacked",
                         adopted, repo_id)
            entries = ledger.entries()
            for t in repo_tasks:
                known = entries.get(t.hf[1])
                if known is not None:
                    (gone if known.deleted else existing)[t.url] = known.task_id
        if not existing and not gone:
            return tasks
        client = self.project.client
        project_seen = False
        for t in tasks:
            task_id = existing.get(t.url)
            if task_id is None:
                continue
            result = build_result(t, self.labels)
            try:
                task = _task_call(self.project, task_id, client.tasks.get, str(task_id)) \
                    if result or t.neg_concepts or t.metadata else None
                changes = _data_changes(_field(task, "data") or {}, t) if task is not None else {}
                if changes:
                    self.project.update_data(task_id, changes, _field(task, "data") or {})
                    report.sync_tasks_data += 1
                added = bool(result) and not self._holds(task, result)
                if added:
                    if self.target == "predictions":
                        _task_call(self.project, task_id, client.predictions.create, task=task_id, result=result,
                                   model_version=self.model_version, request_options=NO_SDK_RETRY)
                    else:
                        _task_call(self.project, task_id, client.annotations.create, task_id, result=result,
                                   ground_truth=self.ground_truth, request_options=NO_SDK_RETRY)
            except TaskNotFound:
                if not project_seen:  # every task of a deleted project answers 404 too: that is the project's
                    self.project.call(client.projects.get, self.project.project_id)
                    project_seen = True
                self.ledger.set_deleted([task_id])
                gone[t.url] = task_id
                continue
            self.ledger.record([Entry(t.url, task_id)])
            if added or changes:
                report.labelled_sync_tasks += 1
                report.regions += len(t.regions) if added else 0
            else:  # it holds them already (an earlier import with another --state), or the row has none
                report.already_imported += 1
        if gone:
            report.deleted_tasks = [(t.url, gone[t.url]) for t in tasks if t.url in gone]
            log.warning("%d urls of the file are not imported: their file's task was deleted in Label Studio, and "
                        "the sync does not import a deleted task's file again: %s", len(report.deleted_tasks),
                        _deleted_names(report.deleted_tasks))
        return [t for t in tasks if t.url not in existing and t.url not in gone]


def _data_changes(data: dict, task: ImportTask) -> dict:
    """What a sync task's ``data`` lacks of ``task``'s ``neg_concepts`` and ``metadata`` (see
    :meth:`LabelImporter._label_sync_tasks`): ``{}`` when it holds them already (a re-run makes no call)."""
    changes: dict = {}
    negatives = data.get("neg_concepts") if isinstance(data.get("neg_concepts"), list) else []
    missing = [name for name in task.neg_concepts if name not in negatives]
    if missing:
        changes["neg_concepts"] = negatives + missing
    metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    if task.metadata and any(metadata.get(k) != v for k, v in task.metadata.items()):
        changes["metadata"] = {**metadata, **task.metadata}
    return changes


def _task_call(project: LabelStudioProject, task_id: int, fn, *args, **kwargs):
    """``project.call(fn, *args, **kwargs)`` for a call on task ``task_id``: its 404 is the task's (deleted in Label
    Studio), not the project's, which :meth:`LabelStudioProject.call` would say.

    Raises:
        TaskNotFound: Label Studio answered 404 (the task, or its project, is gone: the caller tells which).
        labelhub.errors.LabelHubError: as :meth:`LabelStudioProject.call` turns any other failure.
    """
    def once():
        try:
            return fn(*args, **kwargs)
        except ApiError as exc:
            if exc.status_code == 404:
                return _GONE
            raise

    answer = project.call(once)
    if answer is _GONE:
        raise TaskNotFound(task_id, f"task {task_id} of Label Studio project {project.project_id} not found (deleted)")
    return answer


#: What :func:`_task_call`'s call answers for a 404.
_GONE = object()


def _deleted_names(deleted: Sequence[tuple[str, int]], most: int = 5) -> str:
    """``"img/a.png (task 12), ... (+3)"``: up to ``most`` of ``(url, task id)``, then how many more."""
    shown = ", ".join(f"{url} (task {task_id})" for url, task_id in deleted[:most])
    return shown + (f", ... (+{len(deleted) - most})" if len(deleted) > most else "")


def _field(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


def summary_lines(parsed: ParsedLabels, report: LabelImportReport | None, target: str, strict: bool) -> list[str]:
    """The summary the CLI prints after an import.

    Args:
        parsed: the parsed file.
        report: the import's report (``None`` when nothing was imported because of ``--strict``).
        target: ``"predictions"`` or ``"annotations"``.
        strict: whether ``--strict`` was given.

    Returns:
        Lines: rows read and rejected, tasks created (and already imported, recovered, labelled),
        regions, the urls whose sync task was deleted in Label Studio (the first 20 named, with their task ids), the
        second tasks a concurrent import made (their ids, to delete; the first 20 shown), and the
        rejections by reason (rows per reason, most frequent first).
    """
    lines = [f"rows read: {parsed.rows}, rejected: {parsed.rejected_rows}"]
    if report is None:
        lines.append(f"nothing imported (--strict and {parsed.rejected_rows} rows rejected)" if strict
                     else "nothing imported")
    else:
        extra = [f"{n} {what}" for n, what in ((report.already_imported, "already imported"),
                                               (report.recovered, "found in Label Studio from an earlier run"),
                                               (report.labelled_sync_tasks, "sync tasks labelled")) if n]
        lines.append(f"tasks created: {report.created}" + (f" ({', '.join(extra)})" if extra else "")
                     + f", regions: {report.regions}, as {target}")
        if report.deleted_tasks:
            lines.append(f"not imported: {len(report.deleted_tasks)} urls whose file's task was deleted in Label "
                         f"Studio: {_deleted_names(report.deleted_tasks, 20)} (the sync does not import a deleted "
                         "task's file again; delete its row from the state to import it)")
        if report.second_tasks:
            shown = ", ".join(map(str, report.second_tasks[:20])) + (", ..." if len(report.second_tasks) > 20 else "")
            lines.append(f"second tasks: {len(report.second_tasks)} (another import into the project ran at the same "
                         f"time with another --state and made them too; Label Studio cannot refuse it): delete "
                         f"tasks {shown} in Label Studio, the state keeps each url's first task")
    by_reason: dict[str, int] = {}
    for reason, where in {(e.reason, e.where) for e in parsed.errors}:
        by_reason[reason] = by_reason.get(reason, 0) + 1
    if by_reason:
        lines.append("rejected by reason: " + ", ".join(
            f"{reason}: {n}" for reason, n in sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))))
    return lines
