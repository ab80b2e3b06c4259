"""SkaldConfig from kwargs, environment and .env; secrets masked in logs."""

import pytest

from skalds.config.skald_config import SkaldConfig, SkaldModeEnum
from skalds.utils.logging import logger, mask_secrets, register_secret


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    import os

    for key in list(os.environ):
        if key.startswith(("SKALD", "REDIS_", "KAFKA_", "MONGO_", "LOG_", "YAML_", "DB_")):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def test_defaults_fall_back_to_the_embedded_backend(tmp_path) -> None:
    cfg = SkaldConfig()
    url = f"sqlite:///{(tmp_path / '.skalds' / 'skalds.db').resolve()}"
    assert cfg.resolved_store_url() == cfg.resolved_bus_url() == cfg.resolved_cache_url() == url
    assert cfg.skald_mode is SkaldModeEnum.NODE


def test_env_and_dotenv_and_kwargs_precedence(monkeypatch, tmp_path) -> None:
    (tmp_path / ".env").write_text("SKALD_MODE=edge\nREDIS_HOST=from-dotenv\nKAFKA_HOST=k1\nLOG_LEVEL=debug\n")
    monkeypatch.setenv("REDIS_HOST", "from-env")
    cfg = SkaldConfig(kafka_host="from-kwargs")
    assert cfg.skald_mode is SkaldModeEnum.EDGE
    assert cfg.redis_host == "from-env"
    assert cfg.kafka_host == "from-kwargs"
    assert cfg.log_level == "DEBUG"
    assert cfg.resolved_cache_url() == "redis://from-env:6379/0"
    assert cfg.resolved_bus_url() == "kafka://from-kwargs:9092"


def test_urls_win_over_host_names(monkeypatch) -> None:
    monkeypatch.setenv("SKALDS_STORE_URL", "postgresql://u:p@db/skalds")
    cfg = SkaldConfig(mongo_host="mongodb://root:root@m:27017/")
    assert cfg.resolved_store_url() == "postgresql://u:p@db/skalds"
    monkeypatch.delenv("SKALDS_STORE_URL")
    assert SkaldConfig(mongo_host="m:27017").resolved_store_url() == "mongodb://m:27017"


def test_bad_values_name_the_setting() -> None:
    with pytest.raises(ValueError, match="SKALD_MODE must be one of edge, node, single_process"):
        SkaldConfig(skald_mode="cluster")
    with pytest.raises(ValueError, match="LOG_LEVEL"):
        SkaldConfig(log_level="loud")


def test_describe_masks_every_secret() -> None:
    cfg = SkaldConfig(
        redis_password="r3dis-secret", kafka_password="k4fka-secret", mongo_host="mongodb://root:m0ngo@h:1/"
    )
    text = "\n".join(cfg.describe())
    assert "r3dis-secret" not in text and "k4fka-secret" not in text and "m0ngo" not in text
    assert "mongodb://root:***@h:1/" in text


def test_logger_masks_urls_pairs_and_registered_secrets() -> None:
    register_secret("hunter2-xyz")
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), format="{message}")
    try:
        logger.info("connect redis://:pw123@h:6379/0 password=abc then hunter2-xyz token: tkn")
    finally:
        logger.remove(sink)
    assert lines and "pw123" not in lines[0] and "abc" not in lines[0] and "hunter2-xyz" not in lines[0]
    assert "tkn" not in lines[0]
    assert mask_secrets("kafka://user:pass@b:9092") == "kafka://user:***@b:9092"


def test_exceptions_are_logged_with_their_traceback() -> None:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), format="{message}")
    try:
        try:
            raise ValueError("kaboom")
        except ValueError as exc:
            logger.opt(exception=exc).error("failed")
    finally:
        logger.remove(sink)
    assert "Traceback" in lines[0] and "ValueError: kaboom" in lines[0]
