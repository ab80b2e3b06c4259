"""A worker for the log tail tests: it logs in main, in its update handler and in release.

Run as ``skalds run --module tests/integration/log_tail_workers.py``. Events (``$EVENTS_FILE``) say
what it did and how long the burst of log lines took.
"""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict, Field

from skalds.utils.logging import logger, register_secret
from skalds.worker.baseclass import BaseTaskWorker, release_handler, run_main_handler, update_event_handler
from tests.support.workers import record


class ChattyModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    lines: int = Field(3, ge=0)
    burst: int = Field(0, ge=0)
    secret: str = ""
    duration: float = Field(30.0, ge=0)
    value: int = 0


class Chatty(BaseTaskWorker[ChattyModel]):
    def initialize(self, data: ChattyModel) -> None:
        self.data = data

    @run_main_handler
    def main(self) -> None:
        d = self.data
        if d.secret:
            register_secret(d.secret)
            logger.info(f"connecting with {d.secret}")
        for i in range(d.lines):
            logger.info(f"main line {i}")
        if d.burst:
            started = time.monotonic()
            for i in range(d.burst):
                logger.info(f"burst line {i}")
            record(self.task_id, "burst", seconds=time.monotonic() - started)
            logger.info("after the burst")
        record(self.task_id, "main")
        deadline = time.monotonic() + d.duration
        while time.monotonic() < deadline:
            time.sleep(0.02)
        logger.info("main done")

    @update_event_handler
    def update(self, data: ChattyModel) -> None:
        logger.info(f"update value={data.value}")
        record(self.task_id, "update", value=data.value)

    @release_handler
    def release(self) -> None:
        logger.info("released")
        record(self.task_id, "release")
