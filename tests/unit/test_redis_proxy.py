"""The Skalds 0.3.x ``RedisProxy`` facade, against a real Redis 7.0 server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis

from skalds.backends.cache.redis import RedisStateCache
from skalds.backends.cache.state import StateView
from skalds.errors import BackendUnavailable
from skalds.proxy.redis import RedisConfig, RedisKey, RedisProxy
from tests.support.servers import RedisServer, free_port, redis_binary


def _config(server: RedisServer) -> RedisConfig:
    return RedisConfig(host="127.0.0.1", port=server.port)


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[RedisProxy]:
    redis.Redis.from_url(redis_server.url).flushdb()
    p = RedisProxy(_config(redis_server))
    yield p
    p.close()


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    client.close()


def test_config_url_and_repr() -> None:
    # Given configs with and without a password
    plain = RedisConfig()
    secret = RedisConfig(host="cache.internal", port=6380, password="p@ss/word", db=2)
    # Then the URL is built from the fields, the password percent-encoded
    assert plain.url == "redis://127.0.0.1:6379/0"
    assert secret.url == "redis://:p%40ss%2Fword@cache.internal:6380/2"
    assert RedisConfig(host="::1").url == "redis://[::1]:6379/0"
    # And neither the config's nor the proxy's repr shows the password
    assert "p@ss" not in repr(secret)
    lazy = RedisProxy(secret, is_block=False)
    assert "p%40ss" not in repr(lazy) and "p@ss" not in repr(lazy)


def test_keys_are_the_03x_names() -> None:
    assert RedisKey.SKALDS_HASH == "skalds:hash"
    assert RedisKey.SKALDS_MODE_HASH == "skalds:mode:hash"
    assert RedisKey.skald_heartbeat("s1") == "skalds:s1:heartbeat"
    assert RedisKey.skald_allow_task_class_name("s1") == "skalds:s1:allow-task-class-name"
    assert RedisKey.skald_all_task("s1") == "skalds:s1:all-task"
    assert RedisKey.skald_task_schemas("s1") == "skalds:s1:task-schemas"
    assert RedisKey.task_heartbeat("t1") == "task:t1:heartbeat"
    assert RedisKey.task_has_error("t1") == "task:t1:has-error"
    assert RedisKey.task_exception("t1") == "task:t1:exception"


def test_hashes(proxy: RedisProxy, raw: redis.Redis) -> None:
    # Given a hash with a string field and a dict field
    proxy.set_hash("h", "name", "cam-1")
    proxy.set_hash("h", "conf", {"fps": 5, "on": True})
    proxy.set_hash("h", "count", 3)
    # Then strings are stored as they are, other values as JSON, and reads return strings
    assert raw.hgetall("h") == {"name": "cam-1", "conf": '{"fps": 5, "on": true}', "count": "3"}
    assert proxy.get_hash("h", "name") == "cam-1"
    assert proxy.get_hash("h", "missing") is None
    assert proxy.get_hash("nothing", "name") is None
    assert proxy.get_all_hash("h") == {"name": "cam-1", "conf": '{"fps": 5, "on": true}', "count": "3"}
    assert proxy.get_all_hash("nothing") == {}


def test_lists(proxy: RedisProxy, raw: redis.Redis) -> None:
    # Given values pushed one by one / Then the list reads oldest first
    proxy.push_list("l", "a")
    proxy.push_list("l", ["b", 1])
    assert proxy.get_list("l") == ["a", '["b", 1]']
    assert raw.lrange("l", 0, -1) == ["a", '["b", 1]']
    assert proxy.get_list("nothing") == []


def test_messages_expire(proxy: RedisProxy, raw: redis.Redis) -> None:
    # Given a message with an expiry and one without
    proxy.set_message("m:short", "hello", expire_seconds=0.2)
    proxy.set_message("m:long", {"a": 1})
    # Then both read back, the first with a TTL on the server
    assert proxy.get_message("m:short") == "hello"
    assert 0 < raw.pttl("m:short") <= 200
    assert proxy.get_message("m:long") == '{"a": 1}'
    assert raw.pttl("m:long") == -1
    # And the first is gone once the TTL passed
    deadline = time.monotonic() + 5
    while proxy.get_message("m:short") is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proxy.get_message("m:short") is None
    assert proxy.get_message("missing") is None


def test_delete_key_of_any_kind(proxy: RedisProxy, raw: redis.Redis) -> None:
    proxy.set_message("s", "1")
    proxy.set_hash("h", "f", "v")
    proxy.push_list("l", "x")
    for key in ("s", "h", "l", "missing"):
        proxy.delete_key(key)
    assert raw.dbsize() == 0


def test_reads_what_skalds_writes(proxy: RedisProxy, redis_server: RedisServer) -> None:
    # Given a skald's state written by Skalds itself
    view = StateView(RedisStateCache(redis_server.url), key_ttl=30)
    view.register_skald("sk-1", "edge", ["Cam"], {})
    view.skald_heartbeat("sk-1", 1, ["t-1"], ["Cam"])
    view.task_ended("t-1", 200)
    # Then the facade reads it under the 0.3.x names
    assert proxy.get_message(RedisKey.skald_heartbeat("sk-1")) == "1"
    assert proxy.get_hash(RedisKey.SKALDS_MODE_HASH, "sk-1") == "edge"
    assert "sk-1" in proxy.get_all_hash(RedisKey.SKALDS_HASH)
    assert proxy.get_list(RedisKey.skald_allow_task_class_name("sk-1")) == ["Cam"]
    assert proxy.get_list(RedisKey.skald_all_task("sk-1")) == ["t-1"]
    assert proxy.get_message(RedisKey.task_heartbeat("t-1")) == "200"
    view.cache.close()


def test_blocking_construction_gives_up_after_connect_wait() -> None:
    # Given nothing listening on a port / When a blocking proxy is built with a short wait
    config = RedisConfig(host="127.0.0.1", port=free_port())
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match=r"did not answer within 0\.5 s"):
        RedisProxy(config, connect_wait=0.5)
    # Then it waited about that long, no more
    assert 0.4 <= time.monotonic() - started < 3


def test_blocking_construction_waits_for_a_late_server() -> None:
    # Given a server that starts a moment after the proxy is built
    binary = redis_binary()
    if not binary:
        pytest.skip("redis-server not available")
    srv = RedisServer(binary)
    starter = threading.Timer(0.5, srv.start)
    starter.start()
    try:
        # When a blocking proxy is built / Then it returns once the server answers, and works
        p = RedisProxy(RedisConfig(port=srv.port), connect_wait=10)
        p.set_message("k", "v")
        assert p.get_message("k") == "v"
        p.close()
    finally:
        starter.join()
        srv.stop()


def test_lazy_construction_connects_on_first_call(redis_server: RedisServer) -> None:
    # Given a non-blocking proxy for a port nobody listens on / Then building it does not fail
    dead = RedisProxy(RedisConfig(port=free_port()), is_block=False)
    # And its calls raise redis' ConnectionError
    with pytest.raises(redis.ConnectionError):
        dead.get_message("k")
    # While a non-blocking proxy on a live server works at its first call
    with RedisProxy(_config(redis_server), is_block=False) as live:
        live.set_message("k", "v")
        assert live.get_message("k") == "v"


class _PasswordServer(RedisServer):
    def args(self) -> list[str]:
        return [*super().args(), "--requirepass", "the-password"]


def test_password_is_used_and_a_wrong_one_is_not_waited_out() -> None:
    binary = redis_binary()
    if not binary:
        pytest.skip("redis-server not available")
    srv = _PasswordServer(binary)
    srv.start()
    try:
        # Given a server with a password / Then the right one works
        with RedisProxy(RedisConfig(port=srv.port, password="the-password")) as p:
            p.set_message("k", "v")
            assert p.get_message("k") == "v"
        # And a wrong one is refused at once (not retried for connect_wait seconds), unshown
        started = time.monotonic()
        with pytest.raises(redis.AuthenticationError) as refused:
            RedisProxy(RedisConfig(port=srv.port, password="wrong-password"), connect_wait=10)
        assert time.monotonic() - started < 3
        assert "wrong-password" not in str(refused.value)
    finally:
        srv.stop()
