"""Edge mode: the YAML file is the list of tasks this skald runs.

The file is checked by ``stat`` every ``yaml_poll_interval`` (one syscall; no watcher thread) and
reloaded when its signature changes. A reload that fails to parse changes nothing; an entry that
became invalid keeps its previous, running version. Updates that arrive as events are written back
into the entry's ``attachments`` (comments and key order kept); the write's own signature is
remembered so it is not mistaken for an outside edit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skalds.errors import ConfigError, TaskSourceError
from skalds.model.task import ModeEnum, Task, TaskLifecycleStatus
from skalds.taskfile import YamlTaskEntry, file_signature, load_task_file, write_back_attachments
from skalds.utils.logging import logger
from skalds.worker.registry import WorkerRegistry

S = TaskLifecycleStatus


@dataclass
class EdgeDiff:
    added: list[Task] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    updated: list[Task] = field(default_factory=list)  # only attachments changed: hot update
    restarted: list[Task] = field(default_factory=list)  # class or settings changed: restart


class EdgeTasks:
    def __init__(self, path: str | None, registry: WorkerRegistry) -> None:
        if not path:
            raise ConfigError("edge mode needs a YAML task file: set yaml_file (YAML_FILE)")
        self.path = Path(path)
        self.registry = registry
        self.entries: dict[str, YamlTaskEntry] = {}
        self._signature: Any = None
        self._ended: dict[str, float] = {}
        self._executor = ""
        self._load_initial()

    def _load_initial(self) -> None:
        self._signature = file_signature(self.path)
        entries, errors = load_task_file(self.path, self.registry.models())
        _log_errors(errors)
        self.entries = entries
        logger.info(f"{self.path}: {len(entries)} task(s) loaded" + (f", {len(errors)} rejected" if errors else ""))

    def peek_ids(self) -> list[str]:
        return list(self.entries)

    def _task(self, entry: YamlTaskEntry, executor: str) -> Task:
        return entry.to_task(executor, ModeEnum.ACTIVE)

    def tasks(self, executor: str) -> list[Task]:
        self._executor = executor
        return [self._task(e, executor) for e in self.entries.values()]

    def task(self, executor: str, task_id: str) -> Task | None:
        """The file's task ``task_id`` as it is now, or None when the file no longer lists it."""
        entry = self.entries.get(task_id)
        return None if entry is None else self._task(entry, executor)

    def initial_tasks(self, executor: str, stored: dict[str, Task] | None) -> list[Task]:
        """Tasks to start now; those an operator paused or cancelled (YAML unchanged since) stay down."""
        out = []
        for task in self.tasks(executor):
            prior = (stored or {}).get(task.id)
            if (
                prior is not None
                and prior.lifecycle_status in (S.PAUSED, S.CANCELLED)
                and prior.class_name == task.class_name
                and prior.attachments == task.attachments
            ):
                logger.info(f"task {task.id} is {prior.lifecycle_status.value} in the store; not starting it")
                continue
            out.append(task)
        return out

    def reload_if_changed(self) -> EdgeDiff | None:
        signature = file_signature(self.path)
        if signature == self._signature:
            return None
        self._signature = signature
        entries, errors = load_task_file(self.path, self.registry.models())
        _log_errors(errors)
        if any(getattr(e, "task_id", None) is None for e in errors):
            logger.error(f"{self.path}: not applied; running tasks are left as they are until the file is fixed")
            return None
        bad = {e.task_id for e in errors if e.task_id is not None}
        diff = EdgeDiff()
        new_entries: dict[str, YamlTaskEntry] = {}
        for task_id, entry in entries.items():
            new_entries[task_id] = entry
        for task_id in bad:
            if task_id in self.entries:
                new_entries[task_id] = self.entries[task_id]  # keep the last good version
        for task_id, entry in new_entries.items():
            old = self.entries.get(task_id)
            task = self._task(entry, self._executor)
            if old is None:
                diff.added.append(task)
            elif _settings(old) != _settings(entry):
                diff.restarted.append(task)
            elif old.attachments != entry.attachments:
                diff.updated.append(task)
        diff.removed = [t for t in self.entries if t not in new_entries]
        self.entries = new_entries
        if not (diff.added or diff.removed or diff.updated or diff.restarted):
            return None
        return diff

    def write_back(self, task_id: str, attachments: dict[str, Any]) -> None:
        entry = self.entries.get(task_id)
        if entry is None or entry.attachments == attachments:
            return
        # Only the values that changed: defaults the file never spelled out stay unwritten.
        delta = {k: v for k, v in attachments.items() if k not in entry.attachments or entry.attachments[k] != v}
        try:
            changed = write_back_attachments(self.path, task_id, delta)
        except Exception as exc:
            logger.error(f"{self.path}: could not write back the update of {task_id}: {exc}")
            return
        self.entries[task_id] = _replace_attachments(entry, attachments)
        if changed:
            self._signature = file_signature(self.path)
            logger.info(f"{self.path}: wrote back the new attachments of {task_id}")

    def on_exit(self, task_id: str, outcome: TaskLifecycleStatus) -> None:
        self._ended[task_id] = time.monotonic()

    def recently_ended(self, task_id: str, within: float = 5.0) -> bool:
        ended = self._ended.get(task_id)
        return ended is not None and time.monotonic() - ended < within


def _settings(entry: YamlTaskEntry) -> tuple[Any, ...]:
    return (entry.class_name, entry.is_persistent, entry.dependencies)


def _replace_attachments(entry: YamlTaskEntry, attachments: dict[str, Any]) -> YamlTaskEntry:
    import dataclasses

    return dataclasses.replace(entry, attachments=dict(attachments))


def _log_errors(errors: list[TaskSourceError]) -> None:
    for err in errors:
        logger.error(str(err))
