"""A node skald: runs whatever tasks are assigned to it (``python workers.py node-1``)."""

import sys
import time

from pydantic import BaseModel, ConfigDict, Field

from skalds import Skalds
from skalds.config.skald_config import SkaldConfig
from skalds.utils.logging import logger
from skalds.worker.baseclass import BaseTaskWorker, release_handler, run_main_handler, update_event_handler


class CounterModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    step: int = Field(1, ge=1, description="How much to add per tick")
    ticks: int = Field(30, ge=1, description="How many ticks before finishing")


class CounterWorker(BaseTaskWorker[CounterModel]):
    def initialize(self, data: CounterModel) -> None:
        self.step = data.step
        self.ticks = data.ticks
        self.total = 0

    @run_main_handler
    def main(self) -> None:
        for _ in range(self.ticks):
            self.total += self.step
            logger.info(f"{self.task_id}: total={self.total} (step {self.step})")
            time.sleep(0.5)

    @update_event_handler
    def on_update(self, data: CounterModel) -> None:
        logger.info(f"{self.task_id}: step {self.step} -> {data.step}")
        self.step = data.step

    @release_handler
    def release(self) -> None:
        logger.info(f"{self.task_id}: released at total={self.total}")


if __name__ == "__main__":
    skald_id = sys.argv[1] if len(sys.argv) > 1 else "node-1"
    app = Skalds(SkaldConfig(skald_id=skald_id, skald_mode="node"))
    app.register_task_worker(CounterWorker)
    app.run()
