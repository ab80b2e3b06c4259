"""The Skalds 0.3.x example, as written (plus the ``import time`` it forgot).

Run from this folder: ``python my_worker.py``. Edit ``all_workers.yml`` while it runs to see
workers start, hot-update and stop; Ctrl-C stops everything.
"""

import time

from pydantic import BaseModel, ConfigDict, Field


class MyDataModel(BaseModel):
    rtsp_url: str = Field(..., description="RTSP stream URL", alias="rtspUrl")
    fix_frame: int = Field(..., description="Fix frame number", alias="fixFrame")
    model_config = ConfigDict(populate_by_name=True, use_enum_values=True)


from skalds.utils.logging import logger  # noqa: E402
from skalds.worker.baseclass import (  # noqa: E402
    BaseTaskWorker,
    run_before_handler,
    run_main_handler,
    update_event_handler,
)


class MyWorker(BaseTaskWorker[MyDataModel]):
    def initialize(self, data: MyDataModel) -> None:
        self.rtsp_url = data.rtsp_url
        self.fix_frame = data.fix_frame

    @run_before_handler
    def before_run(self) -> None:
        logger.info(f"Starting MyWorker with RTSP URL: {self.rtsp_url}")

    @run_main_handler
    def main_run(self) -> None:
        for _ in range(10):
            logger.info(f"RTSP URL: {self.rtsp_url}, Fix Frame: {self.fix_frame}")
            time.sleep(1)

    @update_event_handler
    def update_event(self, event_data: MyDataModel) -> None:
        logger.info(f"Updating event for MyWorker with data: {event_data}")
        self.rtsp_url = event_data.rtsp_url
        self.fix_frame = event_data.fix_frame


from skalds import Skalds  # noqa: E402
from skalds.config.skald_config import SkaldConfig  # noqa: E402

config = SkaldConfig(
    skald_mode="edge",
    yaml_file="all_workers.yml",
    redis_host="localhost",
    kafka_host="127.0.0.1",
    mongo_host="mongodb://root:root@localhost:27017/",
)

app = Skalds(config)
app.register_task_worker(MyWorker)
app.run()
