"""Event payloads, wire-compatible with Skalds 0.3.x (camelCase JSON)."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from skalds.model.task import now_ms


class TaskEvent(BaseModel):
    """A command about one or more tasks: carried by ``task.assign``, ``task.cancel``, ``task.update.attachment``."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    title: str | None = None
    initiator: str | None = None
    recipient: str | None = None
    create_date_time: int = Field(default_factory=now_ms, alias="createDateTime")
    update_date_time: int = Field(default_factory=now_ms, alias="updateDateTime")
    task_ids: list[str] = Field(default_factory=list, alias="taskIds")

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)


class UpdateTaskWorkerEvent(BaseModel):
    """New attachments for a running worker: carried by ``taskworker.update`` (key = task id)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    attachments: Any = None

    def to_json(self) -> str:
        att = self.attachments
        if isinstance(att, BaseModel):
            att = att.model_dump(mode="json", by_alias=True)
        return UpdateTaskWorkerEvent(attachments=att).model_dump_json(by_alias=True)
