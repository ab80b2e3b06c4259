"""Open backends from URLs, importing each driver only when its scheme is used."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from skalds.backends.bus.base import EventBus
from skalds.backends.cache.base import StateCache
from skalds.backends.store.base import TaskStore
from skalds.errors import ConfigError, MissingDriver
from skalds.utils.logging import mask_secrets

if TYPE_CHECKING:
    from skalds.config.skald_config import SkaldConfig

# scheme -> (module, class, pip extra, package that must import)
_STORES = {
    "sqlite": ("skalds.backends.store.sqlite", "SqliteTaskStore", None, None),
    "postgresql": ("skalds.backends.store.postgres", "PostgresTaskStore", "postgres", "psycopg"),
    "postgres": ("skalds.backends.store.postgres", "PostgresTaskStore", "postgres", "psycopg"),
    "mongodb": ("skalds.backends.store.mongo", "MongoTaskStore", "mongo", "pymongo"),
    "mongodb+srv": ("skalds.backends.store.mongo", "MongoTaskStore", "mongo", "pymongo"),
}
_BUSES = {
    "sqlite": ("skalds.backends.bus.sqlite", "SqliteEventBus", None, None),
    "kafka": ("skalds.backends.bus.kafka", "KafkaEventBus", "kafka", "confluent_kafka"),
}
_CACHES = {
    "sqlite": ("skalds.backends.cache.sqlite", "SqliteStateCache", None, None),
    "redis": ("skalds.backends.cache.redis", "RedisStateCache", "redis", "redis"),
    "rediss": ("skalds.backends.cache.redis", "RedisStateCache", "redis", "redis"),
}


def _open(kind: str, table: dict[str, tuple[str, str, str | None, str | None]], url: str, **kw: Any) -> Any:
    scheme = urlsplit(url).scheme.lower()
    if scheme not in table:
        known = ", ".join(sorted(table))
        raise ConfigError(f"{kind} URL {mask_secrets(url)!r}: unknown scheme {scheme!r} (use one of: {known})")
    module_name, class_name, extra, package = table[scheme]
    if package is not None:
        try:
            importlib.import_module(package)
        except ImportError:
            raise MissingDriver(
                f"the {kind} at {mask_secrets(url)} needs the {package} package: pip install 'skalds[{extra}]'"
            ) from None
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise MissingDriver(f"the {kind} driver for {scheme}:// is not part of this version of skalds") from None
        raise
    cls = getattr(module, class_name)
    if scheme == "sqlite":
        from skalds.backends.sqlite_db import sqlite_path_from_url

        return cls(sqlite_path_from_url(url))
    return cls(url, **kw)


def open_store(url: str, **kw: Any) -> TaskStore:
    store: TaskStore = _open("task store", _STORES, url, **kw)
    store.url = url
    return store


def open_bus(url: str, **kw: Any) -> EventBus:
    bus: EventBus = _open("event bus", _BUSES, url, **kw)
    bus.url = url
    return bus


def open_cache(url: str, **kw: Any) -> StateCache:
    cache: StateCache = _open("state cache", _CACHES, url, **kw)
    cache.url = url
    return cache


def store_options(url: str, config: SkaldConfig) -> dict[str, Any]:
    """Driver options that come from the configuration rather than the URL."""
    if urlsplit(url).scheme.startswith("mongodb"):
        return {"db_name": config.db_name}
    return {}


def bus_options(url: str, config: SkaldConfig) -> dict[str, Any]:
    if urlsplit(url).scheme == "kafka":
        return {
            "partitions": config.kafka_topic_partitions,
            "replication_factor": config.kafka_replication_factor,
        }
    return {}


def store_for(config: SkaldConfig) -> TaskStore:
    url = config.resolved_store_url()
    return open_store(url, **store_options(url, config))


def bus_for(config: SkaldConfig) -> EventBus:
    url = config.resolved_bus_url()
    return open_bus(url, **bus_options(url, config))


def cache_for(config: SkaldConfig) -> StateCache:
    return open_cache(config.resolved_cache_url())
