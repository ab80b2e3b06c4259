"""``ControllerConfig``: the System Controller's settings on top of :class:`SkaldConfig`.

The controller talks to the same backends as the skalds, so it inherits every backend and logging
setting (and ``TASK_WORKER_RETRY``, the retry budget the dispatcher enforces) instead of
duplicating them. Only what is specific to the controller is added here; each field is read from
the environment variable of the same name in upper case (all listed in docs/configuration.md).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, field_validator, model_validator

from skalds.config.skald_config import SkaldConfig
from skalds.worker.link import FENCE_FACTOR


class SystemControllerModeEnum(str, Enum):
    """What a controller process runs besides the REST API."""

    CONTROLLER = "CONTROLLER"  # API only
    MONITOR = "MONITOR"  # API + heartbeat sampler (monitor)
    DISPATCHER = "DISPATCHER"  # API + sampler + dispatcher


class DispatcherStrategyEnum(str, Enum):
    """How the dispatcher picks a node among those that can run a task."""

    LEAST_TASKS = "LEAST_TASKS"
    ROUND_ROBIN = "ROUND_ROBIN"
    RANDOM = "RANDOM"


def _upper_enum(value: Any, enum: type[Enum], setting: str) -> Any:
    if isinstance(value, str):
        v = value.strip().upper().replace("-", "_")
        allowed = [m.value for m in enum]
        if v not in allowed:
            raise ValueError(f"{setting} must be one of {', '.join(allowed)} (got {value!r})")
        return v
    return value


class ControllerConfig(SkaldConfig):
    """Settings of one System Controller process."""

    system_controller_mode: SystemControllerModeEnum = SystemControllerModeEnum.DISPATCHER
    system_controller_host: str = "127.0.0.1"
    system_controller_port: int = Field(8000, ge=0, le=65535)

    #: Seconds between the monitor's looks at skald liveness (used by the monitor slice).
    monitor_skald_interval: float = Field(5.0, gt=0)
    #: Seconds between samples of task heartbeats (the heartbeat history of the API).
    monitor_task_interval: float = Field(1.0, gt=0)
    #: Seconds without a heartbeat after which the monitor calls a task or skald dead and fails
    #: its tasks over. Must exceed :data:`FENCE_FACTOR` x ``REDIS_KEY_TTL``: a skald's workers
    #: fence themselves (SIGTERM) ``REDIS_KEY_TTL`` seconds after their skald stopped answering and
    #: are SIGKILLed by their own link thread half that again later, so they are gone before
    #: another skald gets their tasks (see :mod:`skalds.worker.link`, :mod:`skalds.controller.monitor`).
    monitor_heartbeat_timeout: float = Field(10.0, gt=0)
    #: Seconds a leader lease (dispatcher sweep + failover) lives without renewal; renewed every
    #: ``leader_renew_interval`` s. A standby takes over within about their sum.
    leader_lease_ttl: float = Field(
        5.0, gt=0, validation_alias=AliasChoices("leader_lease_ttl", "SKALDS_LEADER_LEASE_TTL")
    )
    leader_renew_interval: float = Field(
        1.5, gt=0, validation_alias=AliasChoices("leader_renew_interval", "SKALDS_LEADER_RENEW_INTERVAL")
    )

    #: Seconds between dispatcher sweeps (dispatch also runs at once after create / resume / retry).
    dispatcher_interval: float = Field(5.0, gt=0)
    dispatcher_strategy: DispatcherStrategyEnum = DispatcherStrategyEnum.LEAST_TASKS

    #: Bearer token of the API (auth.py). Unset: open on loopback, a generated token on any other bind address.
    api_token: str | None = Field(None, validation_alias=AliasChoices("api_token", "SKALDS_API_TOKEN"))

    #: Heartbeat samples kept per task for ``GET /api/tasks/{id}/heartbeat``.
    heartbeat_history_size: int = Field(
        60, ge=1, le=10_000, validation_alias=AliasChoices("heartbeat_history_size", "SKALDS_HEARTBEAT_HISTORY")
    )
    #: Largest request body accepted, in bytes (larger ones get 413).
    max_body_bytes: int = Field(
        1_048_576, ge=1024, validation_alias=AliasChoices("max_body_bytes", "SKALDS_MAX_BODY_BYTES")
    )
    #: Seconds a client has to send a request's headers, and at most between two parts of its body;
    #: a connection that takes longer is closed (headers) or answered 408 (body).
    request_timeout: float = Field(
        10.0, gt=0, le=3600, validation_alias=AliasChoices("request_timeout", "SKALDS_REQUEST_TIMEOUT")
    )
    #: A directory of static files (a built web dashboard, e.g. the one of Skalds 0.3.x) served at
    #: ``/dashboard`` instead of ours; ``/`` keeps ours. Unset: ours at both.
    dashboard_dir: str | None = Field(None, validation_alias=AliasChoices("dashboard_dir", "SKALDS_DASHBOARD_DIR"))

    @field_validator("system_controller_mode", mode="before")
    @classmethod
    def _controller_mode(cls, value: Any) -> Any:
        return _upper_enum(value, SystemControllerModeEnum, "SYSTEM_CONTROLLER_MODE")

    @field_validator("dispatcher_strategy", mode="before")
    @classmethod
    def _strategy(cls, value: Any) -> Any:
        return _upper_enum(value, DispatcherStrategyEnum, "DISPATCHER_STRATEGY")

    @field_validator("dashboard_dir")
    @classmethod
    def _dashboard_dir(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not (Path(value) / "index.html").is_file():
            raise ValueError(f"SKALDS_DASHBOARD_DIR must be a directory holding an index.html (got {value!r})")
        return str(Path(value).resolve())

    @model_validator(mode="after")
    def _timing(self) -> ControllerConfig:
        fence = FENCE_FACTOR * self.redis_key_ttl
        if self.monitor_heartbeat_timeout <= fence:
            raise ValueError(
                f"MONITOR_HEARTBEAT_TIMEOUT ({self.monitor_heartbeat_timeout:g} s) must exceed "
                f"{FENCE_FACTOR:g} x REDIS_KEY_TTL ({fence:g} s): a skald's workers fence themselves only "
                "that long after it stopped answering, so a shorter timeout could run a task twice"
            )
        if self.leader_renew_interval >= self.leader_lease_ttl:
            raise ValueError(
                f"SKALDS_LEADER_RENEW_INTERVAL ({self.leader_renew_interval:g} s) must be below "
                f"SKALDS_LEADER_LEASE_TTL ({self.leader_lease_ttl:g} s)"
            )
        return self

    @property
    def runs_dispatcher(self) -> bool:
        return self.system_controller_mode == SystemControllerModeEnum.DISPATCHER

    @property
    def runs_sampler(self) -> bool:
        return self.system_controller_mode != SystemControllerModeEnum.CONTROLLER
