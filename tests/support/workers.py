"""Worker classes for the tests. Each hook appends one JSON line to $EVENTS_FILE."""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from skalds.utils.logging import logger
from skalds.worker.baseclass import (
    BaseTaskWorker,
    release_handler,
    run_after_handler,
    run_before_handler,
    run_main_handler,
    update_event_handler,
)


def record(task_id: str, event: str, **data: Any) -> None:
    path = os.environ.get("EVENTS_FILE")
    if not path:
        return
    line = json.dumps({"task": task_id, "event": event, "pid": os.getpid(), "t": time.time(), **data})
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


class RecorderModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    duration: float = Field(30.0, ge=0)
    fail: bool = False
    value: int = Field(0, alias="someValue")
    label: str = "x"
    #: What main returns (the task's result), when given.
    returns: Any = None


class Recorder(BaseTaskWorker[RecorderModel]):
    def initialize(self, data: RecorderModel) -> None:
        self.duration = data.duration
        self.fail = data.fail
        self.value = data.value
        self.label = data.label
        self.returns = data.returns

    @run_before_handler
    def before(self) -> None:
        record(self.task_id, "before", value=self.value)

    @run_main_handler
    def main(self) -> Any:
        record(self.task_id, "main", value=self.value, label=self.label)
        logger.info(f"recorder main: someValue={self.value}")
        deadline = time.monotonic() + self.duration
        while time.monotonic() < deadline:
            time.sleep(0.02)
        if self.fail:  # the label in the message: tests check what becomes of exception text
            raise RuntimeError("boom from main" + ("" if self.label == "x" else f": {self.label}"))
        return self.returns

    @run_after_handler
    def after(self) -> None:
        record(self.task_id, "after")

    @update_event_handler
    def update(self, data: RecorderModel) -> None:
        if data.label == "refused":  # an update the model accepts and the handler rejects
            raise ValueError("the update handler refuses label 'refused'")
        record(self.task_id, "update", value=data.value, label=data.label, typed=type(data).__name__)
        logger.info(f"recorder update: someValue={data.value}")
        self.value = data.value
        self.label = data.label

    @release_handler
    def release(self) -> None:
        record(self.task_id, "release", value=self.value)

    def _error_handler(self, exc: BaseException) -> None:
        record(self.task_id, "error", error=str(exc))
        super()._error_handler(exc)


class ReusedRecorder(Recorder):
    """A Recorder whose processes run up to three tasks each, idling at most 2 s between them."""

    max_tasks_per_process = 3
    idle_process_timeout = 2.0


class PooledRecorder(Recorder):
    """A Recorder run by a pool: at most 2 at once per skald, in processes reused task after task."""

    max_tasks_per_process = 100
    max_concurrent_tasks = 2


class Stubborn(BaseTaskWorker[RecorderModel]):
    """Ignores SIGTERM's intent: its release hangs, so only SIGKILL ends it."""

    @run_main_handler
    def main(self) -> None:
        record(self.task_id, "main")
        while True:
            time.sleep(0.05)

    @release_handler
    def release(self) -> None:
        record(self.task_id, "release")
        while True:
            time.sleep(0.05)


class DigestModel(BaseModel):
    duration: float = Field(30.0, ge=0)
    blob: str = ""


class Digest(BaseTaskWorker[DigestModel]):
    """Records the SHA-256 and length of its ``blob`` attachment (large attachments arrive whole)."""

    def initialize(self, data: DigestModel) -> None:
        self.duration = data.duration
        self.blob = data.blob

    @run_main_handler
    def main(self) -> None:
        record(self.task_id, "main", sha256=_sha256(self.blob), size=len(self.blob))
        deadline = time.monotonic() + self.duration
        while time.monotonic() < deadline:
            time.sleep(0.02)

    @update_event_handler
    def update(self, data: DigestModel) -> None:
        self.blob = data.blob
        record(self.task_id, "update", sha256=_sha256(data.blob), size=len(data.blob))


class ReusedDigest(Digest):
    """A Digest whose processes run up to three tasks each."""

    max_tasks_per_process = 3
    idle_process_timeout = 5.0


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def read_events(path: str) -> list[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    except FileNotFoundError:
        return []


class CameraModel(BaseModel):
    """The README's model: fields by alias, or by name (``populate_by_name``)."""

    rtsp_url: str = Field(..., alias="rtspUrl")
    fix_frame: int = Field(..., alias="fixFrame")
    model_config = ConfigDict(populate_by_name=True)


class Camera(BaseTaskWorker[CameraModel]):
    """Records the values it runs with, and each update; runs until cancelled."""

    def initialize(self, data: CameraModel) -> None:
        self.rtsp_url, self.fix_frame = data.rtsp_url, data.fix_frame

    @run_main_handler
    def main(self) -> None:
        record(self.task_id, "main", rtsp_url=self.rtsp_url, fix_frame=self.fix_frame)
        while True:
            time.sleep(0.05)

    @update_event_handler
    def update(self, data: CameraModel) -> None:
        self.fix_frame = data.fix_frame
        record(self.task_id, "update", fix_frame=data.fix_frame)


class LooseModel(BaseModel):
    """Keeps keys it does not declare (``extra="allow"``)."""

    model_config = ConfigDict(extra="allow")
    fix_frame: int = Field(1, alias="fixFrame")


class Loose(BaseTaskWorker[LooseModel]):
    @run_main_handler
    def main(self) -> None:
        record(self.task_id, "main", extra=self._skalds_data.model_extra if self._skalds_data else None)
