"""Task ends the store has not heard of yet: kept here, written when the store is back, never re-run.

A worker that ends while the task store cannot take the write (server down or restarting, a full
disk) has still *ended*: its outcome is a fact the store must learn, not a reason to run the task
again. The agent keeps each such end here, keyed by task id, and

* tries to write it again on every reconciliation pass and before it would start that task (so a
  task whose end is unwritten is never started again by this skald: reconciliation, a replayed
  assign event or a waiting queue all go through that check);
* drops it once written, or once the store has decided otherwise (a fenced write that lost: the
  task was failed over, cancelled or deleted meanwhile — then it is no longer this end's to say).

The ends are also kept in a small JSON file next to the embedded database
(``$SKALDS_HOME/unwritten-ends-<skald id>.json``), rewritten atomically on every change, so a
skald restarted with the same id during the outage still writes them and still does not re-run
them. Writing that file is best effort: on a full disk it fails like the store did, and the ends
stay in memory.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from skalds.model.task import TaskLifecycleStatus
from skalds.utils.logging import logger

S = TaskLifecycleStatus


@dataclass(frozen=True)
class UnwrittenEnd:
    """One task end waiting for the store: the fenced write the agent could not make."""

    task_id: str
    status: str  # a TaskLifecycleStatus value: Finished, Failed, Cancelled, Paused
    epoch: int | None
    exception: str | None = None
    only_from: tuple[str, ...] | None = None
    #: Running was not recorded yet either: write it first, in the same store write.
    ran: bool = False
    #: What main returned (JSON), for a finished task.
    result: Any = None

    @property
    def lifecycle_status(self) -> TaskLifecycleStatus:
        return S(self.status)

    @property
    def expect_statuses(self) -> tuple[TaskLifecycleStatus, ...] | None:
        return None if self.only_from is None else tuple(S(s) for s in self.only_from)


class UnwrittenEnds:
    """The unwritten ends of one skald, in memory and (best effort) on disk."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._ends: dict[str, UnwrittenEnd] = {}
        self._load()

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._ends

    def __len__(self) -> int:
        return len(self._ends)

    def all(self) -> list[UnwrittenEnd]:
        return list(self._ends.values())

    def get(self, task_id: str) -> UnwrittenEnd | None:
        return self._ends.get(task_id)

    def add(self, end: UnwrittenEnd) -> None:
        if end.task_id not in self._ends:
            logger.warning(
                f"task {end.task_id}: ended {end.status} while the task store could not take the write; "
                "kept here and written when the store is back (it will not run again)"
            )
        self._ends[end.task_id] = end
        self._save()

    def discard(self, task_id: str) -> None:
        if self._ends.pop(task_id, None) is not None:
            self._save()

    # ---- the file ------------------------------------------------------------------------
    def _load(self) -> None:
        if self.path is None:
            return
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            logger.error(f"{self.path}: unreadable ({exc}); its unwritten task ends are ignored")
            return
        for item in raw if isinstance(raw, list) else []:
            try:
                end = _end_from_json(item)
            except (TypeError, ValueError, KeyError) as exc:
                logger.error(f"{self.path}: skipped an entry that is not a task end ({exc}): {item!r}")
                continue
            self._ends[end.task_id] = end
        if self._ends:
            logger.info(
                f"{len(self._ends)} task end(s) from a previous run still to be written: {', '.join(self._ends)}"
            )

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            if not self._ends:
                self.path.unlink(missing_ok=True)
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            data = json.dumps([asdict(e) for e in self._ends.values()])
            fd, tmp = tempfile.mkstemp(prefix=".unwritten-", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(data)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            logger.debug(f"{self.path}: not written ({exc}); the task ends stay in memory")


def journal_path(home: str, skald_id: str) -> Path:
    """Where a skald keeps its unwritten ends (one file per skald id, safe as a file name)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", skald_id)[:100]
    return Path(os.path.expanduser(home)).resolve() / f"unwritten-ends-{safe}.json"


def _end_from_json(item: Any) -> UnwrittenEnd:
    if not isinstance(item, dict):
        raise TypeError("not an object")
    status = S(item["status"]).value
    only_from = item.get("only_from")
    return UnwrittenEnd(
        task_id=str(item["task_id"]),
        status=status,
        epoch=None if item.get("epoch") is None else int(item["epoch"]),
        exception=None if item.get("exception") is None else str(item["exception"]),
        only_from=None if only_from is None else tuple(S(s).value for s in only_from),
        ran=bool(item.get("ran", False)),
        result=item.get("result"),
    )


__all__ = ["UnwrittenEnd", "UnwrittenEnds", "journal_path"]
