"""``SkaldConfig``: every setting of a skald, from keyword arguments, the environment or ``.env``.

Precedence: keyword arguments > environment > ``.env`` > defaults. Backends named by URL
(``SKALDS_STORE_URL``, ``SKALDS_BUS_URL``, ``SKALDS_CACHE_URL``) win over the host/port names; with
neither, each backend is the embedded SQLite file ``$SKALDS_HOME/skalds.db`` — never a hard-coded
``localhost`` server.
"""

from __future__ import annotations

import os
import socket
import uuid
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from skalds.model.resources import check_labels, check_resources, format_pairs
from skalds.utils.logging import mask_secrets


class SkaldModeEnum(str, Enum):
    EDGE = "edge"
    NODE = "node"
    SINGLE_PROCESS = "single_process"


def _default_skald_id() -> str:
    return f"skald-{socket.gethostname()[:24]}-{uuid.uuid4().hex[:6]}"


class SkaldConfig(BaseSettings):
    """Settings of one skald. Field ``x_y`` is read from environment variable ``X_Y``."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        case_sensitive=False,
        use_enum_values=False,
    )

    skald_id: str = Field(default_factory=_default_skald_id, min_length=1, max_length=120)
    skald_mode: SkaldModeEnum = SkaldModeEnum.NODE
    skald_env: str = "dev"
    yaml_file: str | None = None

    log_level: str = "INFO"
    log_path: str | None = None
    log_retention: str = "7"
    log_rotation_mb: int = Field(10, ge=1)
    log_split_with_worker_id: bool = False

    redis_host: str | None = None
    redis_port: int = 6379
    redis_password: str | None = None
    redis_sync_period: float = Field(1.0, gt=0)
    redis_key_ttl: float = Field(5.0, gt=0)

    kafka_host: str | None = None
    kafka_port: int = 9092
    kafka_username: str | None = None
    kafka_password: str | None = None
    kafka_topic_partitions: int = Field(1, ge=1)
    kafka_replication_factor: int = Field(1, ge=1)

    mongo_host: str | None = None
    db_name: str = "skalds"

    task_worker_retry: int = Field(3, ge=0)

    skalds_home: str = Field("./.skalds", validation_alias=AliasChoices("skalds_home", "SKALDS_HOME"))
    store_url: str | None = Field(None, validation_alias=AliasChoices("store_url", "SKALDS_STORE_URL"))
    bus_url: str | None = Field(None, validation_alias=AliasChoices("bus_url", "SKALDS_BUS_URL"))
    cache_url: str | None = Field(None, validation_alias=AliasChoices("cache_url", "SKALDS_CACHE_URL"))

    #: Seconds between a worker's heartbeats (and the TTL of task heartbeat leases is 3x this).
    heartbeat_interval: float = Field(
        1.0, gt=0, validation_alias=AliasChoices("heartbeat_interval", "SKALDS_HEARTBEAT_INTERVAL")
    )
    #: Seconds between reconciliations of this skald's workers against the store.
    reconcile_interval: float = Field(
        2.0, gt=0, validation_alias=AliasChoices("reconcile_interval", "SKALDS_RECONCILE_INTERVAL")
    )
    #: Seconds a worker gets between SIGTERM and SIGKILL.
    stop_grace_period: float = Field(
        10.0, ge=0, validation_alias=AliasChoices("stop_grace_period", "SKALDS_STOP_GRACE_PERIOD")
    )
    #: Seconds between checks of the YAML file for changes (edge mode).
    yaml_poll_interval: float = Field(
        0.25, gt=0, validation_alias=AliasChoices("yaml_poll_interval", "SKALDS_YAML_POLL_INTERVAL")
    )
    #: Seconds before its start from which a skald's new consumer group reads the command topics
    #: (a restart with a generated id, or a broker that lost the group's offsets, loses nothing
    #: sent that recently; see skalds.node.listener).
    bus_lookback: float = Field(60.0, ge=0, validation_alias=AliasChoices("bus_lookback", "SKALDS_BUS_LOOKBACK"))

    #: Labels this node advertises for placement: ``zone=eu-1,gpu-model=a100``.
    skald_labels: str = ""
    #: Resources this node offers for placement (numbers ≥ 0): ``gpu=2,slots=8``. A resource it
    #: does not name is 0 here: a task requiring it never lands on this node.
    skald_resources: str = ""

    @field_validator("skald_labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> Any:
        return format_pairs(check_labels("" if value is None else value, "SKALD_LABELS"))

    @field_validator("skald_resources", mode="before")
    @classmethod
    def _resources(cls, value: Any) -> Any:
        return format_pairs(check_resources("" if value is None else value, "SKALD_RESOURCES"))

    @property
    def labels(self) -> dict[str, str]:
        """``SKALD_LABELS`` parsed."""
        return check_labels(self.skald_labels, "SKALD_LABELS")

    @property
    def resources(self) -> dict[str, float]:
        """``SKALD_RESOURCES`` parsed."""
        return check_resources(self.skald_resources, "SKALD_RESOURCES")

    @field_validator("skald_mode", mode="before")
    @classmethod
    def _mode(cls, value: Any) -> Any:
        if isinstance(value, str):
            v = value.strip().lower().replace("-", "_")
            if v == "singleprocess":
                v = "single_process"
            if v not in {m.value for m in SkaldModeEnum}:
                raise ValueError(f"SKALD_MODE must be one of edge, node, single_process (got {value!r})")
            return v
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        if isinstance(value, str):
            v = value.strip().upper()
            allowed = {"TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"}
            if v not in allowed:
                raise ValueError(f"LOG_LEVEL must be one of {', '.join(sorted(allowed))} (got {value!r})")
            return v
        return value

    # ---- backend resolution --------------------------------------------------------------
    @property
    def embedded_url(self) -> str:
        home = Path(os.path.expanduser(self.skalds_home)).resolve()
        return f"sqlite:///{home / 'skalds.db'}"

    def resolved_store_url(self) -> str:
        if self.store_url:
            return self.store_url
        if self.mongo_host:
            host = self.mongo_host
            return host if "://" in host else f"mongodb://{host}"
        return self.embedded_url

    def resolved_bus_url(self) -> str:
        if self.bus_url:
            return self.bus_url
        if self.kafka_host:
            hosts = ",".join(
                h if ":" in h else f"{h}:{self.kafka_port}" for h in self.kafka_host.split(",") if h.strip()
            )
            auth = ""
            if self.kafka_username:
                auth = quote(self.kafka_username, safe="")
                if self.kafka_password:
                    auth += ":" + quote(self.kafka_password, safe="")
                auth += "@"
            return f"kafka://{auth}{hosts}"
        return self.embedded_url

    def resolved_cache_url(self) -> str:
        if self.cache_url:
            return self.cache_url
        if self.redis_host:
            auth = f":{quote(self.redis_password, safe='')}@" if self.redis_password else ""
            return f"redis://{auth}{self.redis_host}:{self.redis_port}/0"
        return self.embedded_url

    def describe(self) -> list[str]:
        """``key: value`` lines for the start-up log, secrets masked."""
        lines = []
        for key, value in self.model_dump().items():
            if value is not None and ("password" in key or "token" in key):
                value = "***"
            lines.append(f"{key}: {mask_secrets(str(value.value if isinstance(value, Enum) else value))}")
        return lines
