"""``Skalds``: config → backends → registry → the agent of the configured mode."""

from __future__ import annotations

import sys
from typing import Any, TypeVar

from skalds.config.skald_config import SkaldConfig, SkaldModeEnum
from skalds.utils.logging import configure, logger, register_secret
from skalds.worker.baseclass import BaseTaskWorker
from skalds.worker.registry import WorkerRegistry

W = TypeVar("W", bound=type[BaseTaskWorker[Any]])


class Skalds:
    """A skald: registers worker classes, then :meth:`run` blocks until SIGINT / SIGTERM."""

    def __init__(self, config: SkaldConfig | None = None, **settings: Any) -> None:
        self.config = config if config is not None else SkaldConfig(**settings)
        self.registry = WorkerRegistry()
        for secret in (self.config.redis_password, self.config.kafka_password):
            register_secret(secret)

    def register_task_worker(self, worker_class: W) -> W:
        """Make ``worker_class`` runnable here. Raises WorkerDefinitionError if it cannot run.

        Returns the class, so it also works as a class decorator.
        """
        self.registry.register(worker_class)
        return worker_class

    def run(self, *, exit_process: bool = True) -> int:
        """Run until stopped; returns (single_process: exits with) the exit code."""
        cfg = self.config
        configure(
            level=cfg.log_level,
            log_path=cfg.log_path,
            rotation_mb=cfg.log_rotation_mb,
            retention=cfg.log_retention,
            split_by_worker=cfg.log_split_with_worker_id,
            proc_name=cfg.skald_id if cfg.log_split_with_worker_id else "skald",
        )
        logger.info("configuration:\n  " + "\n  ".join(cfg.describe()))
        if cfg.skald_mode == SkaldModeEnum.SINGLE_PROCESS:
            from skalds.node.single_process import run_single_process

            code = run_single_process(cfg, self.registry)
            if exit_process:
                sys.exit(code)
            return code
        # The fork server must exist before any thread or client (docs/design.md, principle 4).
        from skalds.worker.forkserver import ForkServer
        from skalds.worker.runtime import make_child_main

        forkserver = ForkServer(make_child_main(self.registry), grace_period=cfg.stop_grace_period)
        forkserver.start()
        # Imported only now, so the fork server (and every worker forked from it) holds none of the
        # skald's own modules (agent, backends, task files, YAML): a smaller inherited heap, and
        # fewer of its pages copied into each worker when it touches objects that lie among them.
        from skalds.node.agent import SkaldAgent

        agent = SkaldAgent(cfg, self.registry, forkserver)
        self._agent = agent
        try:
            agent.run()
        except BaseException:
            forkserver.stop()
            raise
        return 0


#: The Skalds 0.3.x name for the same class.
Skald = Skalds
