"""Example workers that ``skalds dev`` runs when no module is given.

``Counter`` counts up, one step per tick, and finishes after ``ticks`` ticks — its result is
``{"total": …, "ticks": …}``; an update changes its step, interval or ticks on the fly. It logs
its attachment values when it starts and when an update changes them (``step=3 interval=1
ticks=60``), so the log tail shows them. ``Camera`` is
the MyWorker shape of the README: it "reads" a stream until stopped.
"""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict, Field

from skalds.utils.logging import logger
from skalds.worker.baseclass import BaseTaskWorker, release_handler, run_main_handler, update_event_handler


class CounterModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    step: int = Field(1, ge=1, le=1000, description="Added to the total every tick")
    ticks: int = Field(60, ge=1, le=100_000, description="Ticks before the task finishes")
    interval: float = Field(1.0, gt=0, le=60, description="Seconds between ticks")


class Counter(BaseTaskWorker[CounterModel]):
    def initialize(self, data: CounterModel) -> None:
        self.step, self.ticks, self.interval = data.step, data.ticks, data.interval
        self.total = 0

    def values(self) -> str:
        return f"step={self.step} interval={self.interval:g} ticks={self.ticks}"

    @run_main_handler
    def main(self) -> dict[str, int]:
        logger.info(f"counting: {self.values()}")
        tick = 0
        while tick < self.ticks:
            tick += 1
            self.total += self.step
            logger.info(f"tick {tick}/{self.ticks}: total={self.total} (step {self.step})")
            time.sleep(self.interval)
        return {"total": self.total, "ticks": tick}  # the task's result

    @update_event_handler
    def update(self, data: CounterModel) -> None:
        before = (self.step, self.interval, self.ticks)
        if before == (data.step, data.interval, data.ticks):
            logger.info(f"update: no change ({self.values()})")
            return
        change = f"step {self.step} -> {data.step}, interval {self.interval:g} -> {data.interval:g}"
        self.step, self.interval, self.ticks = data.step, data.interval, data.ticks
        logger.info(f"update: {self.values()} ({change})")

    @release_handler
    def release(self) -> None:
        logger.info(f"released at total={self.total}")


class CameraModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    rtsp_url: str = Field(..., alias="rtspUrl", min_length=1, description="RTSP stream URL")
    fix_frame: int = Field(30, alias="fixFrame", ge=1, description="Analyse one frame in this many")


class Camera(BaseTaskWorker[CameraModel]):
    def initialize(self, data: CameraModel) -> None:
        self.rtsp_url, self.fix_frame = data.rtsp_url, data.fix_frame

    @run_main_handler
    def main(self) -> None:
        frame = 0
        while True:
            frame += self.fix_frame
            logger.info(f"{self.rtsp_url}: analysed frame {frame} (every {self.fix_frame})")
            time.sleep(1)

    @update_event_handler
    def update(self, data: CameraModel) -> None:
        logger.info(f"now {data.rtsp_url}, every {data.fix_frame} frames")
        self.rtsp_url, self.fix_frame = data.rtsp_url, data.fix_frame
