"""The registry of worker classes a skald can run, by class name."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from skalds.errors import UnknownWorkerClass, WorkerDefinitionError
from skalds.model.attachments import attachments_schema
from skalds.worker.baseclass import BaseTaskWorker


class WorkerRegistry:
    """Class name → worker class. Registration validates the class definition."""

    def __init__(self) -> None:
        self._classes: dict[str, type[BaseTaskWorker[Any]]] = {}

    def register(self, worker_class: type[BaseTaskWorker[Any]]) -> None:
        if not isinstance(worker_class, type) or not issubclass(worker_class, BaseTaskWorker):
            raise WorkerDefinitionError(
                f"register_task_worker expects a subclass of BaseTaskWorker, got {worker_class!r}"
            )
        worker_class.validate_definition()
        name = worker_class.__name__
        existing = self._classes.get(name)
        if existing is not None and existing is not worker_class:
            raise WorkerDefinitionError(
                f"two different worker classes are named {name} "
                f"({existing.__module__} and {worker_class.__module__}); class names must be unique"
            )
        self._classes[name] = worker_class

    def get(self, class_name: str) -> type[BaseTaskWorker[Any]]:
        try:
            return self._classes[class_name]
        except KeyError:
            known = ", ".join(sorted(self._classes)) or "none"
            raise UnknownWorkerClass(
                f"worker class {class_name!r} is not registered here (registered: {known})"
            ) from None

    def __contains__(self, class_name: object) -> bool:
        return class_name in self._classes

    def names(self) -> list[str]:
        return sorted(self._classes)

    def models(self) -> dict[str, type[BaseModel]]:
        out: dict[str, type[BaseModel]] = {}
        for name, cls in self._classes.items():
            model = cls.attachments_model()
            if model is not None:
                out[name] = model
        return out

    def class_needs(self) -> dict[str, dict[str, Any]]:
        """``{"requires", "nodeSelector"}`` of each class that declares either, as skalds advertise
        them in ``skalds:{id}:placement``."""
        needs = {}
        for name in self.names():
            cls = self.get(name)
            if cls.requires or cls.node_selector:
                needs[name] = {"requires": dict(cls.requires), "nodeSelector": dict(cls.node_selector)}
        return needs

    def json_schemas(self) -> dict[str, dict[str, Any]]:
        """Each class's attachments JSON schema (by alias, with the keys the model also takes and
        its ``extra``), as skalds advertise them (:func:`skalds.model.attachments.attachments_schema`)."""
        return {name: attachments_schema(model) for name, model in self.models().items()}
