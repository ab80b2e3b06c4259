"""Worker classes in-process: registration errors, typed updates, hook discovery."""

import pytest
from pydantic import BaseModel, ConfigDict, Field

from skalds import SkaldConfig, Skalds
from skalds.errors import InvalidAttachments, WorkerDefinitionError
from skalds.model.event import UpdateTaskWorkerEvent
from skalds.worker.baseclass import BaseTaskWorker, run_main_handler, update_event_handler


class Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    rtsp_url: str = Field(alias="rtspUrl")
    fix_frame: int = Field(alias="fixFrame")


class Good(BaseTaskWorker[Model]):
    def initialize(self, data: Model) -> None:
        self.seen: list[Model] = []
        self.fix_frame = data.fix_frame

    @run_main_handler
    def main(self) -> None:
        pass

    @update_event_handler
    def update(self, data: Model) -> None:
        self.seen.append(data)
        self.fix_frame = data.fix_frame


def test_a_class_without_main_handler_is_refused_at_registration() -> None:
    class NoMain(BaseTaskWorker[Model]):
        pass

    app = Skalds(SkaldConfig())
    with pytest.raises(WorkerDefinitionError, match="NoMain has no main handler: decorate one method"):
        app.register_task_worker(NoMain)


def test_a_class_without_model_is_refused() -> None:
    class NoModel(BaseTaskWorker):  # type: ignore[type-arg]
        @run_main_handler
        def main(self) -> None:
            pass

    with pytest.raises(WorkerDefinitionError, match="names no attachments model"):
        Skalds(SkaldConfig()).register_task_worker(NoModel)


def test_two_main_handlers_are_refused() -> None:
    class Two(BaseTaskWorker[Model]):
        @run_main_handler
        def a(self) -> None: ...

        @run_main_handler
        def b(self) -> None: ...

    with pytest.raises(WorkerDefinitionError, match="2 main handlers"):
        Skalds(SkaldConfig()).register_task_worker(Two)


def test_hooks_are_inherited_and_overridable() -> None:
    class Child(Good):
        def update(self, data: Model) -> None:  # overridden without decorator: no longer a hook
            pass

    assert Child._skalds_hooks["main"] == ("main",)
    assert Child._skalds_hooks["update"] == ()
    assert Child.attachments_model() is Model


def test_updates_are_typed_partial_and_validated() -> None:
    w = Good(task_id="t")
    w.initialize(Model(rtspUrl="rtsp://a", fixFrame=1))
    # by alias, by field name, as event object, as JSON bytes
    assert w.handle_update_message({"attachments": {"fixFrame": 2}})
    assert w.handle_update_message({"attachments": {"fix_frame": 3}})
    assert w.handle_update_message(UpdateTaskWorkerEvent(attachments={"rtspUrl": "rtsp://b"}))
    assert w.handle_update_message(b'{"attachments": {"fixFrame": 4}}')
    assert [type(d) for d in w.seen] == [Model] * 4
    assert [d.fix_frame for d in w.seen] == [2, 3, 3, 4]
    assert w.seen[-1].rtsp_url == "rtsp://b"
    # invalid: rejected, old values kept
    assert not w.handle_update_message({"attachments": {"fixFrame": "x"}})
    assert not w.handle_update_message(b"not json")
    assert not w.handle_update_message({"attachments": [1, 2]})
    assert w.fix_frame == 4 and len(w.seen) == 4


def test_parse_attachments_error_names_the_field() -> None:
    with pytest.raises(InvalidAttachments, match="fixFrame: Field required"):
        Good.parse_attachments({"rtspUrl": "x"})


def test_a_registered_class_is_checked_once_and_its_start_writes_nothing_to_it() -> None:
    class Checked(Good):
        pass

    Skalds(SkaldConfig()).register_task_worker(Checked)
    before = dict(Checked.__dict__)
    worker = Checked()
    worker.task_id = "t-1"
    worker._skalds_setup({"rtspUrl": "rtsp://camera", "fixFrame": 1})
    assert worker.start() == 0
    # A forked worker shares the class with its fork server: its start must not write to it.
    assert dict(Checked.__dict__) == before
    assert all(Checked.__dict__[k] is v for k, v in before.items())


def test_an_unregistered_class_is_still_checked_when_it_starts() -> None:
    class Unregistered(Good):
        max_run_time = -1.0

    worker = Unregistered()
    worker.task_id = "t-2"
    worker._skalds_setup({"rtspUrl": "rtsp://camera", "fixFrame": 1})
    with pytest.raises(WorkerDefinitionError, match="max_run_time must be None"):
        worker.start()
