"""Skalds: long-lived, typed tasks in isolated processes across a fleet of machines."""

from skalds.config.skald_config import SkaldConfig, SkaldModeEnum
from skalds.errors import (
    BackendUnavailable,
    ConfigError,
    Conflict,
    ForkServerError,
    IllegalTransition,
    InvalidAttachments,
    LostWrite,
    MissingDriver,
    SkaldsError,
    StoreError,
    TaskExists,
    TaskNotFound,
    TaskSourceError,
    UnknownWorkerClass,
    WorkerDefinitionError,
)
from skalds.model.event import TaskEvent, UpdateTaskWorkerEvent
from skalds.model.task import ModeEnum, Task, TaskLifecycleStatus
from skalds.skald import Skald, Skalds
from skalds.worker.baseclass import (
    AbstractTaskWorker,
    BaseTaskWorker,
    release_handler,
    run_after_handler,
    run_before_handler,
    run_main_handler,
    update_event_handler,
)

__version__ = "0.4.0.dev0"

__all__ = [  # noqa: RUF022 - grouped by topic
    # the app
    "Skald",
    "SkaldConfig",
    "SkaldModeEnum",
    "Skalds",
    # workers
    "AbstractTaskWorker",
    "BaseTaskWorker",
    "release_handler",
    "run_after_handler",
    "run_before_handler",
    "run_main_handler",
    "update_event_handler",
    # models
    "ModeEnum",
    "Task",
    "TaskEvent",
    "TaskLifecycleStatus",
    "UpdateTaskWorkerEvent",
    # errors
    "BackendUnavailable",
    "ConfigError",
    "Conflict",
    "ForkServerError",
    "IllegalTransition",
    "InvalidAttachments",
    "LostWrite",
    "MissingDriver",
    "SkaldsError",
    "StoreError",
    "TaskExists",
    "TaskNotFound",
    "TaskSourceError",
    "UnknownWorkerClass",
    "WorkerDefinitionError",
    "__version__",
]
