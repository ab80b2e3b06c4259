"""The public surface: the import paths of Skalds 0.3.x and of this version stay exactly as they are."""

import skalds


def test_seed_import_paths() -> None:
    from skalds import Skald, Skalds
    from skalds.config.skald_config import SkaldConfig
    from skalds.model.event import TaskEvent, UpdateTaskWorkerEvent
    from skalds.model.task import ModeEnum, Task, TaskLifecycleStatus
    from skalds.utils.logging import logger
    from skalds.worker.baseclass import (
        AbstractTaskWorker,
        BaseTaskWorker,
        release_handler,
        run_after_handler,
        run_before_handler,
        run_main_handler,
        update_event_handler,
    )

    assert Skald is Skalds
    assert issubclass(BaseTaskWorker, AbstractTaskWorker)
    assert all(callable(f) for f in (release_handler, run_after_handler, run_before_handler, update_event_handler))
    assert run_main_handler.__name__ == "run_main_handler"
    assert {m.value for m in ModeEnum} == {"Active", "Passive", "PassiveProcess"}
    assert [s.value for s in TaskLifecycleStatus] == [
        "Created",
        "Assigning",
        "Running",
        "Paused",
        "Finished",
        "Failed",
        "Cancelled",
    ]
    assert SkaldConfig and Task and TaskEvent and UpdateTaskWorkerEvent and logger


def test_exported_members() -> None:
    assert sorted(skalds.__all__) == sorted(
        [
            "AbstractTaskWorker",
            "BackendUnavailable",
            "BaseTaskWorker",
            "ConfigError",
            "Conflict",
            "ForkServerError",
            "IllegalTransition",
            "InvalidAttachments",
            "LostWrite",
            "MissingDriver",
            "ModeEnum",
            "Skald",
            "SkaldConfig",
            "SkaldModeEnum",
            "Skalds",
            "SkaldsError",
            "StoreError",
            "Task",
            "TaskEvent",
            "TaskExists",
            "TaskLifecycleStatus",
            "TaskNotFound",
            "TaskSourceError",
            "UnknownWorkerClass",
            "UpdateTaskWorkerEvent",
            "WorkerDefinitionError",
            "__version__",
            "release_handler",
            "run_after_handler",
            "run_before_handler",
            "run_main_handler",
            "update_event_handler",
        ]
    )
    for name in skalds.__all__:
        assert hasattr(skalds, name)


def test_every_error_has_a_docstring() -> None:
    from skalds import errors

    for name in dir(errors):
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, errors.SkaldsError):
            assert obj.__doc__ and obj.__doc__.strip(), name
