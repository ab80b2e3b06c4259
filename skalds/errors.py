"""Every error Skalds raises on purpose.

SkaldsError
├── ConfigError                 configuration values that cannot work
├── WorkerDefinitionError       a worker class that cannot be registered
├── InvalidRequest              a request that cannot be carried out as asked (``details`` per field)
│   ├── UnknownWorkerClass      a task names a class no skald here (or none online) has registered
│   ├── InvalidAttachments      attachments that fail the worker's model or its class's schema
│   ├── UnknownDependency       a task depends on tasks that do not exist
│   └── IdempotencyKeyReused    an Idempotency-Key sent again with another body
├── SkaldNotFound               no skald with that id is known
├── TaskSourceError             a YAML task file (or entry) that cannot be used
├── StoreError                  the task store refused or failed
│   ├── TaskExists              a task with that id is already stored
│   └── LostWrite               a fenced write lost: the task changed, went away or may not move so
│       ├── TaskNotFound        no task with that id
│       ├── Conflict            a compare-and-set lost against a concurrent write
│       └── IllegalTransition   a lifecycle status change the state machine forbids
│           ├── TaskEnded       a change a task that ended for good cannot take (new attachments)
│           └── DeadlinePassed  a resume / retry of a task whose deadline has passed
├── BackendUnavailable          a backend cannot serve right now (unreachable, timeout, disk full)
├── MissingDriver               an optional driver package is not installed
└── ForkServerError             the worker fork server died or refused a request

A writer that reads a task, decides, and writes only if the task is still as it read it (the
dispatcher, the monitor, a skald recording a status) catches :class:`LostWrite` alone: whichever of
the three it is, someone else decided first and there is nothing to do.
"""

from __future__ import annotations

from typing import Any


class SkaldsError(Exception):
    """Base class of every error Skalds raises on purpose."""


class ConfigError(SkaldsError):
    """A configuration value that cannot work; the message names the setting."""


class WorkerDefinitionError(SkaldsError):
    """A worker class that cannot be registered (no main handler, no model, ...)."""


class InvalidRequest(SkaldsError):
    """A request that cannot be carried out as asked; ``details`` lists what is wrong, one
    ``{"field": ..., "message": ...}`` per field, when there is such a list."""

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.details = details


class UnknownWorkerClass(InvalidRequest):
    """A task names a worker class that is not registered with this skald (for the controller:
    that no online skald advertises)."""


class InvalidAttachments(InvalidRequest):
    """Attachments that do not validate against the worker's model (or the JSON schema its class
    advertises)."""


class UnknownDependency(InvalidRequest):
    """A task's dependencies name tasks that do not exist."""


class IdempotencyKeyReused(InvalidRequest):
    """An Idempotency-Key sent again with a different request body."""


class SkaldNotFound(SkaldsError):
    """No skald with the given id is known."""


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


class StoreError(SkaldsError):
    """The task store refused or failed an operation."""


class TaskExists(StoreError):
    """A task with the given id is already stored."""


class LostWrite(StoreError):
    """A fenced write that lost: the task changed since it was read, went away, or may no longer
    make that status change. Catch this rather than its subclasses one by one."""


class TaskNotFound(LostWrite):
    """No task with the given id is stored."""


class Conflict(LostWrite):
    """A compare-and-set write lost against a concurrent writer."""


class IllegalTransition(LostWrite):
    """A lifecycle status change that the task state machine forbids."""


class TaskEnded(IllegalTransition):
    """A change a task that ended for good cannot take: new attachments for a Finished or
    Cancelled task, or a Failed one the dispatcher will not retry (nothing would ever run them)."""


class DeadlinePassed(IllegalTransition):
    """A resume or retry of a task whose deadline has passed: it would be cancelled again at once.
    The message says how to set another deadline."""


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
