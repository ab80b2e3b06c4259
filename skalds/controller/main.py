"""``python -m skalds.controller.main``: run the controller with uvicorn, configured from the
environment (``SYSTEM_CONTROLLER_MODE``, ``SYSTEM_CONTROLLER_HOST``, ``SYSTEM_CONTROLLER_PORT``,
backends). Like the CLI, this entry point is a place that configures logging."""

from __future__ import annotations

import uvicorn

from skalds.controller.app import create_app
from skalds.controller.config import ControllerConfig
from skalds.controller.server import MAX_HEADER_BYTES, install_log_filters, protocol_with_header_timeout
from skalds.utils.logging import configure, logger, register_secret

_UVICORN_LEVELS = {"TRACE": "trace", "DEBUG": "debug", "WARNING": "warning", "ERROR": "error", "CRITICAL": "critical"}


def main(config: ControllerConfig | None = None) -> None:
    config = config if config is not None else ControllerConfig()
    configure(
        level=config.log_level,
        log_path=config.log_path,
        rotation_mb=config.log_rotation_mb,
        retention=config.log_retention,
        proc_name="controller",
    )
    for secret in (config.api_token, config.redis_password, config.kafka_password):
        register_secret(secret)
    logger.info("configuration:\n  " + "\n  ".join(config.describe()))
    install_log_filters()
    uvicorn.run(
        create_app(config),
        host=config.system_controller_host,
        port=config.system_controller_port,
        log_level=_UVICORN_LEVELS.get(config.log_level, "info"),
        access_log=config.log_level in ("TRACE", "DEBUG"),
        # The client address is the TCP peer's: X-Forwarded-For is written by the client, and the
        # token throttle must not be reset by a header (see auth.py).
        proxy_headers=False,
        http=protocol_with_header_timeout(config.request_timeout),  # uvicorn has no header deadline
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
    )


if __name__ == "__main__":
    main()
