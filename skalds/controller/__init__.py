"""The System Controller: REST API, dispatcher, monitor and dashboard.

``create_app(config)`` builds the FastAPI app; ``python -m skalds.controller.main`` runs it. The
API's work lives in :class:`ControllerService` (synchronous, testable without HTTP); the
:class:`Dispatcher` assigns tasks to node skalds. FastAPI and friends come with
``pip install 'skalds[controller]'``.
"""

from __future__ import annotations

from skalds.controller.config import ControllerConfig, DispatcherStrategyEnum, SystemControllerModeEnum

__all__ = ["ControllerConfig", "DispatcherStrategyEnum", "SystemControllerModeEnum"]
