"""Every error Skalds raises on purpose.

SkaldsError
├── ConfigError                 configuration values that cannot work
├── WorkerDefinitionError       a worker class that cannot be registered
├── UnknownWorkerClass          a task names a class no skald here has registered
├── InvalidAttachments          attachments that fail the worker's model
├── TaskSourceError             a YAML task file (or entry) that cannot be used
├── IllegalTransition           a lifecycle status change the state machine forbids
├── StoreError                  the task store refused or failed
│   ├── TaskNotFound            no task with that id
│   ├── TaskExists              a task with that id is already stored
│   └── Conflict                a compare-and-set lost against a concurrent write
├── BackendUnavailable          a backend cannot serve right now (unreachable, timeout, disk full)
├── MissingDriver               an optional driver package is not installed
└── ForkServerError             the worker fork server died or refused a request
"""

from __future__ import annotations


class SkaldsError(Exception):
    """Base class of every error Skalds raises on purpose."""


class ConfigError(SkaldsError):
    """A configuration value that cannot work; the message names the setting."""


class WorkerDefinitionError(SkaldsError):
    """A worker class that cannot be registered (no main handler, no model, ...)."""


class UnknownWorkerClass(SkaldsError):
    """A task names a worker class that is not registered with this skald."""


class InvalidAttachments(SkaldsError):
    """Attachments that do not validate against the worker's model."""


class TaskSourceError(SkaldsError):
    """A YAML task file, or one entry of it, that cannot be used.

    ``task_id`` is None when the whole file is unusable (it does not parse, has no TaskWorkers).
    """

    def __init__(
        self, message: str, *, task_id: str | None = None, field: str | None = None, line: int | None = None
    ) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.field = field
        self.line = line


class IllegalTransition(SkaldsError):
    """A lifecycle status change that the task state machine forbids."""


class StoreError(SkaldsError):
    """The task store refused or failed an operation."""


class TaskNotFound(StoreError):
    """No task with the given id is stored."""


class TaskExists(StoreError):
    """A task with the given id is already stored."""


class Conflict(StoreError):
    """A compare-and-set write lost against a concurrent writer."""


class BackendUnavailable(SkaldsError):
    """A backend cannot serve right now (server unreachable, timed out, disk full); callers retry
    later. Every driver raises it for its own connection / timeout / disk errors
    (:mod:`skalds.backends.guard`), with the driver's error as ``__cause__``; ``backend`` names
    which one ("task store", "state cache", "event bus") when known. The API answers it with 503
    ``backend_unavailable``."""

    def __init__(self, message: str, *, backend: str | None = None) -> None:
        super().__init__(message)
        self.backend = backend


class MissingDriver(SkaldsError):
    """An optional driver package is not installed; the message gives the pip command."""


class ForkServerError(SkaldsError):
    """The worker fork server died or refused a request."""
