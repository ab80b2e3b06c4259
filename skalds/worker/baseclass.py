"""``AbstractTaskWorker`` and ``BaseTaskWorker``: one task, one process, typed attachments.

Lifecycle of :meth:`BaseTaskWorker.start`::

    _run_before ──> _run_main ──> _run_after ──> (Finished)
         └──────────┴──────────┴── exception ──> _error_handler(exc) ──> (Failed)
    SIGTERM / SIGINT anywhere ───────────────────────────────────────────> (Cancelled)
    and in every case, last and exactly once: _release()

Hot updates arrive through :meth:`handle_update_message`; they are validated against the worker's
model (partial updates are merged onto the current values). An invalid update is rejected, the
error is reported for the task, and the worker keeps running on its old values.
"""

from __future__ import annotations

import functools
import json
import signal
import threading
import traceback
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable
from types import FrameType
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from skalds.errors import InvalidAttachments, WorkerDefinitionError
from skalds.model.event import UpdateTaskWorkerEvent
from skalds.model.resources import check_labels, check_resources
from skalds.utils.logging import logger, mask_secrets
from skalds.worker.hooks import (
    HOOK_ATTR,
    HOOK_KINDS,
    HookKind,
    release_handler,
    run_after_handler,
    run_before_handler,
    run_main_handler,
    update_event_handler,
)
from skalds.worker.link import NullLink
from skalds.worker.protocol import Final, Outcome, Running, UpdateError, UpdateOk, WorkerException

T = TypeVar("T", bound=BaseModel)

#: Signals that arrived in a forked worker before its lifecycle installed its own handlers.
PENDING_SIGNALS: list[int] = []

#: Exit codes of a worker process.
EXIT_FINISHED = 0
#: The largest result (JSON bytes) a task keeps of what its main returned.
MAX_RESULT_BYTES = 256 * 1024
EXIT_FAILED = 1


class WorkerTerminated(BaseException):
    """Raised in the worker's main thread when SIGTERM or SIGINT arrives."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


def _signal_exit_code(signum: int) -> int:
    return 128 + signum


class AbstractTaskWorker(ABC, Generic[T]):
    """The lifecycle contract of every task worker."""

    @abstractmethod
    def initialize(self, data: T) -> None:
        """Receive the validated attachments before the worker starts."""

    @abstractmethod
    def _run_before(self) -> None: ...

    @abstractmethod
    def _run_main(self) -> None: ...

    @abstractmethod
    def _run_after(self) -> None: ...

    @abstractmethod
    def _release(self, *args: Any) -> None: ...

    @abstractmethod
    def _error_handler(self, exc: BaseException) -> None: ...


class BaseTaskWorker(AbstractTaskWorker[T]):
    """Subclass as ``class MyWorker(BaseTaskWorker[MyModel])`` and decorate your hooks."""

    _skalds_hooks: ClassVar[dict[HookKind, tuple[str, ...]]] = {k: () for k in HOOK_KINDS}
    _skalds_model: ClassVar[type[BaseModel] | None] = None
    #: Set in a class's own ``__dict__`` once it passed :meth:`validate_definition`.
    _skalds_valid: ClassVar[bool] = False

    #: How many tasks of this class one worker process may run, one after another. 1 (the
    #: default): a fresh process per task, forked from the skald's fork server. Above 1, a process
    #: whose task finished normally stays, idle, on its skald and runs the skald's next task of
    #: this class instead of a new fork (like Celery's ``worker_max_tasks_per_child``): far less
    #: CPU for many short tasks, at the price of isolation between them — module globals, caches
    #: and leaks carry over. A task that failed, was cancelled, paused or fenced never hands its
    #: process on.
    max_tasks_per_process: ClassVar[int] = 1
    #: Seconds an idle reusable process waits for its next task before its skald retires it.
    idle_process_timeout: ClassVar[float] = 10.0
    #: How many tasks of this class a node skald runs at once (None: no limit). The others it is
    #: given wait, still Assigning, in the order they came, and start as running ones end — with
    #: ``max_tasks_per_process`` > 1 in the processes those leave idle (a pool, as Celery's
    #: ``--concurrency``). Edge and single-process skalds run every task they have.
    max_concurrent_tasks: ClassVar[int | None] = None
    #: Seconds one run of a task of this class may last (None: no limit); past it the worker is
    #: stopped like a cancel (release runs) and the task fails, saying why. A task's own
    #: ``maxRunTime`` wins.
    max_run_time: ClassVar[float | None] = None
    #: Resources one task of this class uses (e.g. ``{"gpu": 1}``): the dispatcher gives it only to
    #: a node skald with that much free of its ``SKALD_RESOURCES``. A task's ``requires`` wins.
    requires: ClassVar[dict[str, float]] = {}
    #: Labels a node skald must have (``SKALD_LABELS``) to run tasks of this class (e.g.
    #: ``{"zone": "eu-1"}``). A task's ``nodeSelector`` wins.
    node_selector: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        by_name: dict[str, HookKind] = {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                kind = getattr(value, HOOK_ATTR, None)
                if kind is not None:
                    by_name[name] = kind
                elif name in by_name:
                    del by_name[name]  # overridden without a decorator
        hooks: dict[HookKind, list[str]] = {k: [] for k in HOOK_KINDS}
        for name, kind in by_name.items():
            hooks[kind].append(name)
        cls._skalds_hooks = {k: tuple(v) for k, v in hooks.items()}
        model = _find_model(cls)
        if model is not None:
            cls._skalds_model = model
        own_init = cls.__dict__.get("initialize")
        if own_init is not None and not getattr(own_init, "__skalds_wrapped__", False):
            cls.initialize = _remember_data(own_init)  # type: ignore[method-assign]

    # ---- class-level introspection -------------------------------------------------------
    @classmethod
    def attachments_model(cls) -> type[BaseModel] | None:
        """The pydantic model given as ``BaseTaskWorker[Model]``."""
        return cls._skalds_model

    @classmethod
    def validate_definition(cls) -> None:
        """Raise :class:`WorkerDefinitionError` unless the class can run as a worker."""
        name = cls.__name__
        mains = cls._skalds_hooks["main"]
        overrides_main = cls._run_main is not BaseTaskWorker._run_main
        if not mains and not overrides_main:
            raise WorkerDefinitionError(
                f"worker class {name} has no main handler: decorate one method with @run_main_handler"
            )
        if len(mains) > 1:
            raise WorkerDefinitionError(
                f"worker class {name} has {len(mains)} main handlers ({', '.join(mains)}); keep exactly one"
            )
        if cls._skalds_model is None:
            raise WorkerDefinitionError(
                f"worker class {name} names no attachments model: declare it as "
                f"class {name}(BaseTaskWorker[YourModel]) with YourModel a pydantic BaseModel"
            )
        if len(cls._skalds_hooks["update"]) > 1:
            raise WorkerDefinitionError(f"worker class {name} has more than one @update_event_handler")
        reuse = cls.max_tasks_per_process
        if isinstance(reuse, bool) or not isinstance(reuse, int) or reuse < 1:
            raise WorkerDefinitionError(
                f"worker class {name}: max_tasks_per_process must be an int ≥ 1 (1: a fresh process per task), "
                f"not {reuse!r}"
            )
        concurrent = cls.max_concurrent_tasks
        if concurrent is not None and (
            isinstance(concurrent, bool) or not isinstance(concurrent, int) or concurrent < 1
        ):
            raise WorkerDefinitionError(
                f"worker class {name}: max_concurrent_tasks must be None (no limit) or an int ≥ 1, not {concurrent!r}"
            )
        run_limit = cls.max_run_time
        if run_limit is not None and (
            isinstance(run_limit, bool) or not isinstance(run_limit, int | float) or not run_limit > 0
        ):
            raise WorkerDefinitionError(
                f"worker class {name}: max_run_time must be None (no limit) or seconds > 0, not {run_limit!r}"
            )
        try:
            cls.requires = check_resources(cls.requires, f"worker class {name}: requires")
            cls.node_selector = check_labels(cls.node_selector, f"worker class {name}: node_selector")
        except ValueError as exc:
            raise WorkerDefinitionError(str(exc)) from None
        idle = cls.idle_process_timeout
        if isinstance(idle, bool) or not isinstance(idle, int | float) or not 0 < idle <= 86400:
            raise WorkerDefinitionError(
                f"worker class {name}: idle_process_timeout must be seconds in (0, 86400], not {idle!r}"
            )
        cls._skalds_valid = True

    @classmethod
    def _check_once(cls) -> None:
        """:meth:`validate_definition` unless this very class passed it already (at registration,
        before the fork server forked this worker): a worker's start then writes nothing to the
        class it shares with its fork server."""
        if not cls.__dict__.get("_skalds_valid"):
            cls.validate_definition()

    @classmethod
    def parse_attachments(cls, data: Any) -> BaseModel:
        """Validate attachments (by field name or alias) into the worker's model."""
        model = cls._skalds_model
        if model is None:
            raise WorkerDefinitionError(f"worker class {cls.__name__} names no attachments model")
        if isinstance(data, model):
            return data
        if isinstance(data, BaseModel):
            data = data.model_dump(mode="json", by_alias=True)
        try:
            return model.model_validate(data if data is not None else {}, by_alias=True, by_name=True)
        except ValidationError as exc:
            raise InvalidAttachments(_describe_validation(cls.__name__, exc)) from exc

    # ---- instance ----------------------------------------------------------------------
    def __init__(self, task_id: str | None = None, dependencies: list[str] | None = None) -> None:
        self.task_id: str = task_id or f"{type(self).__name__}-standalone"
        self.task_type: str = type(self).__name__
        self.dependencies: list[str] | None = dependencies
        self._skalds_link: NullLink = NullLink()
        self._skalds_data: BaseModel | None = None
        self._skalds_released = False
        self._skalds_stopping = False
        self._skalds_update_lock = threading.Lock()

    def initialize(self, data: T) -> None:
        """Default: keep the data as ``self.data``. Override to unpack it into attributes."""
        self.data = data

    def _skalds_setup(self, data: Any) -> None:
        """Validate ``data`` and call :meth:`initialize` with the model instance."""
        model = type(self).parse_attachments(data)
        self._skalds_data = model
        self.initialize(typing.cast(T, model))

    # ---- the lifecycle -----------------------------------------------------------------
    def start(self) -> int:
        """Run the whole lifecycle in this process and return its exit code.

        0 finished, 1 failed, 128+signal when stopped by SIGTERM (143) or SIGINT (130).
        """
        type(self)._check_once()
        if not hasattr(self, "_skalds_link"):
            raise WorkerDefinitionError(
                f"{type(self).__name__}.__init__ must call super().__init__() (BaseTaskWorker state is missing)"
            )
        previous = self._install_signal_handlers()
        status = Outcome.FINISHED
        exit_code = EXIT_FINISHED
        exception_text: str | None = None
        result: Any = None
        try:
            if PENDING_SIGNALS:
                self._skalds_stopping = True
                raise WorkerTerminated(PENDING_SIGNALS[0])
            self._run_before()
            returned = self._run_main()
            self._run_after()
            result = self._storable_result(returned)
        except WorkerTerminated as stop:
            self._skalds_stopping = True
            status = Outcome.CANCELLED
            exit_code = _signal_exit_code(stop.signum)
            logger.info(f"worker {self.task_id}: {stop}, releasing")
        except Exception as exc:
            self._skalds_stopping = True
            status = Outcome.FAILED
            exit_code = EXIT_FAILED
            exception_text = mask_secrets("".join(traceback.format_exception(exc)))  # stored, shown by the API
            try:
                self._error_handler(exc)
            except Exception as inner:
                logger.opt(exception=inner).error(f"worker {self.task_id}: error handler raised")
        finally:
            self._skalds_stopping = True
            self._skalds_link.report(Final(status, exception_text, result))
            self._release_once()
            self._restore_signal_handlers(previous)
        return exit_code

    def _release_once(self) -> None:
        if self._skalds_released:
            return
        self._skalds_released = True
        try:
            self._release()
        except Exception as exc:
            logger.opt(exception=exc).error(f"worker {self.task_id}: release raised")

    def _run_before(self) -> None:
        self._skalds_link.start(self)
        for hook in self._hooks("before"):
            hook()

    def _run_main(self) -> Any:
        self._skalds_link.report(Running())
        mains = self._hooks("main")
        if not mains:
            raise WorkerDefinitionError(f"worker class {self.task_type} has no @run_main_handler")
        return mains[0]()

    def _storable_result(self, returned: Any) -> Any:
        """What main returned, as the task's stored result: JSON (a pydantic model as its JSON),
        at most :data:`MAX_RESULT_BYTES` of it; anything else is left out with a warning (the task
        still finished)."""
        if returned is None:
            return None
        if isinstance(returned, BaseModel):
            returned = returned.model_dump(mode="json", by_alias=True)
        try:
            text = json.dumps(returned)
        except (TypeError, ValueError) as exc:
            logger.warning(f"worker {self.task_id}: main's result is not stored: it is not JSON ({exc})")
            return None
        if len(text) > MAX_RESULT_BYTES:
            logger.warning(
                f"worker {self.task_id}: main's result is not stored: {len(text):,} bytes of JSON, "
                f"more than {MAX_RESULT_BYTES:,}"
            )
            return None
        return json.loads(text)

    def _run_after(self) -> None:
        for hook in self._hooks("after"):
            hook()

    def _error_handler(self, exc: BaseException) -> None:
        logger.opt(exception=exc).error(f"worker {self.task_id} ({self.task_type}) failed: {exc!r}")
        self._skalds_link.report(WorkerException(mask_secrets("".join(traceback.format_exception(exc)))))

    def _release(self, *args: Any) -> None:
        for hook in self._hooks("release"):
            try:
                hook()
            except Exception as exc:
                logger.opt(exception=exc).error(f"worker {self.task_id}: release handler {hook.__name__} raised")
        self._skalds_link.stop()

    # ---- hot updates -------------------------------------------------------------------
    def handle_update_message(self, message: Any) -> bool:
        """Apply one update event; True when the update handler accepted it.

        ``message`` may be an :class:`UpdateTaskWorkerEvent`, its JSON (bytes or str), a dict
        ``{"attachments": {...}}``, or a model instance. Fields missing from the update keep their
        current values.
        """
        with self._skalds_update_lock:
            try:
                incoming = _update_payload(message)
                merged = self._merge_update(incoming)
                data = type(self).parse_attachments(merged)
            except (InvalidAttachments, ValueError, TypeError) as exc:
                return self._reject_update(f"update rejected, worker keeps its current values: {exc}")
            handlers = self._hooks("update")
            if not handlers:
                return self._reject_update(
                    f"worker class {self.task_type} has no @update_event_handler; update ignored"
                )
            try:
                handlers[0](data)
            except Exception as exc:
                logger.opt(exception=exc).error(f"worker {self.task_id}: update handler raised")
                return self._reject_update(f"update handler raised {exc!r}")
            self._skalds_data = data
            self._skalds_link.report(UpdateOk(data.model_dump(mode="json", by_alias=True)))
            return True

    def _merge_update(self, incoming: dict[str, Any]) -> dict[str, Any]:
        model = type(self)._skalds_model
        current = self._skalds_data
        if model is None or current is None:
            return incoming
        merged: dict[str, Any] = current.model_dump(mode="json", by_alias=True)
        for key, value in incoming.items():
            info = model.model_fields.get(key)
            merged[(info.alias or key) if info is not None else key] = value
        return merged

    def _reject_update(self, error: str) -> bool:
        logger.error(f"worker {self.task_id}: {error}")
        self._skalds_link.report(UpdateError(error))
        return False

    # ---- helpers -----------------------------------------------------------------------
    def _hooks(self, kind: HookKind) -> list[Callable[..., Any]]:
        return [getattr(self, name) for name in type(self)._skalds_hooks[kind]]

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def on_signal(signum: int, frame: FrameType | None) -> None:
            if self._skalds_stopping:
                return
            self._skalds_stopping = True
            raise WorkerTerminated(signum)

        previous: dict[int, Any] = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _remember_data(init: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a user's ``initialize`` so the worker knows its current values (for partial updates)."""

    @functools.wraps(init)
    def initialize(self: BaseTaskWorker[Any], data: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(data, BaseModel):
            self._skalds_data = data
        return init(self, data, *args, **kwargs)

    initialize.__skalds_wrapped__ = True  # type: ignore[attr-defined]
    return initialize


def _update_payload(message: Any) -> dict[str, Any]:
    if isinstance(message, bytes | bytearray):
        message = message.decode()
    if isinstance(message, str):
        message = json.loads(message)
    if isinstance(message, UpdateTaskWorkerEvent):
        message = {"attachments": message.attachments}
    if isinstance(message, BaseModel):
        return message.model_dump(mode="json", by_alias=True)
    if not isinstance(message, dict):
        raise TypeError(f"an update must be a JSON object, got {type(message).__name__}")
    attachments = message.get("attachments", message) if "attachments" in message else message
    if isinstance(attachments, BaseModel):
        attachments = attachments.model_dump(mode="json", by_alias=True)
    if not isinstance(attachments, dict):
        raise TypeError(f"update attachments must be a JSON object, got {type(attachments).__name__}")
    return attachments


def _find_model(cls: type) -> type[BaseModel] | None:
    for klass in cls.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            origin = typing.get_origin(base)
            if isinstance(origin, type) and issubclass(origin, AbstractTaskWorker):
                for arg in typing.get_args(base):
                    if isinstance(arg, type) and issubclass(arg, BaseModel):
                        return arg
    return None


def _describe_validation(class_name: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(attachments)"
        parts.append(f"{loc}: {err.get('msg')}")
    return f"attachments for {class_name} are invalid: " + "; ".join(parts)


__all__ = [
    "AbstractTaskWorker",
    "BaseTaskWorker",
    "WorkerTerminated",
    "release_handler",
    "run_after_handler",
    "run_before_handler",
    "run_main_handler",
    "update_event_handler",
]
