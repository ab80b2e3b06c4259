"""What the state cache contract cannot see on the Redis driver: the commands and key kinds it really
leaves on the server (read back with a raw client), hash-field TTL per server version, a server that
dies and comes back, secrets, forks and URL errors."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Iterator

import pytest
import redis

from skalds.backends.cache.redis import RedisStateCache
from skalds.backends.cache.state import ENDED_TASK_TTL, SKALD_ACTIVITY_TTL, StateView
from skalds.backends.factory import open_cache
from skalds.errors import BackendUnavailable, ConfigError
from tests.support.servers import RedisServer, missing, redis_binary

FORK = mp.get_context("fork")
SECRET = "s3cret-Pa55word"


@pytest.fixture(params=["redis_server", "valkey_server"], ids=["redis-7.0", "valkey-9"])
def server(request: pytest.FixtureRequest) -> RedisServer:
    """One of the session servers, flushed for this test."""
    srv: RedisServer = request.getfixturevalue(request.param)
    redis.Redis.from_url(srv.url).flushdb()
    return srv


@pytest.fixture
def raw(server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server.url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def cache(server: RedisServer) -> Iterator[RedisStateCache]:
    c = RedisStateCache(server.url)
    yield c
    c.close()


def _own_server(*extra_args: str) -> RedisServer:
    """A function-scoped Redis 7.0 server (the caller stops it), with extra command-line args."""
    binary = redis_binary()
    if not binary:
        missing("redis-server (Redis 7.0)")

    class _Server(RedisServer):
        def args(self) -> list[str]:
            return [*super().args(), *extra_args]

    srv = _Server(str(binary))
    srv.start()
    return srv


def _error_replies(client: redis.Redis) -> int:
    return int(client.info("stats")["total_error_replies"])


# ---- hash-field TTL -----------------------------------------------------------------------------
def test_field_ttl_uses_hpexpire_on_valkey(valkey_server: RedisServer) -> None:
    # Given a cache on Valkey 9 and a raw client
    redis.Redis.from_url(valkey_server.url).flushdb()
    cache = RedisStateCache(valkey_server.url)
    raw = redis.Redis.from_url(valkey_server.url, decode_responses=True)
    # When fields are written with and without a field TTL
    cache.hset("h", {"lease": "1"}, field_ttl=30)
    cache.hset("h", {"plain": "2"})
    # Then the server itself expires the leased field, and only that one
    assert cache.supports_field_ttl is True
    lease_ms, plain_ms = raw.hpttl("h", "lease", "plain")
    assert 25_000 < lease_ms <= 30_000
    assert plain_ms == -1
    # And rewriting the field without a TTL makes it permanent (as in the embedded driver)
    cache.hset("h", {"lease": "3"})
    assert raw.hpttl("h", "lease") == [-1]
    cache.close()
    raw.close()


def test_field_ttl_not_attempted_on_redis_70(redis_server: RedisServer) -> None:
    # Given a cache on Redis 7.0, which has no HPEXPIRE
    redis.Redis.from_url(redis_server.url).flushdb()
    cache = RedisStateCache(redis_server.url)
    raw = redis.Redis.from_url(redis_server.url, decode_responses=True)
    # When fields are written with a field TTL (the first call probes the server), many times
    cache.hset("h", {"f0": "0"}, field_ttl=0.05)
    errors_after_probe = _error_replies(raw)
    for i in range(1, 5):
        cache.hset("h", {f"f{i}": str(i)}, field_ttl=0.05)
    time.sleep(0.1)
    # Then no call failed, the fields are plain fields (readers judge them by value)
    assert cache.supports_field_ttl is False
    assert raw.hgetall("h") == {f"f{i}": str(i) for i in range(5)}
    assert raw.pttl("h") == -1
    # And after the probe HPEXPIRE was never sent again (the server counted no more errors)
    assert _error_replies(raw) == errors_after_probe
    cache.close()
    raw.close()


def test_supports_field_ttl_is_probed_without_side_effects(cache: RedisStateCache, raw: redis.Redis) -> None:
    # Given an empty server / When the capability is asked for twice
    first = cache.supports_field_ttl
    second = cache.supports_field_ttl
    # Then it answers consistently and leaves no key behind
    assert first == second
    assert raw.dbsize() == 0


# ---- the 0.3.x key layout ---------------------------------------------------------------------
def test_state_view_writes_the_03x_keys(cache: RedisStateCache, raw: redis.Redis, server: RedisServer) -> None:
    # Given a skald that registers, heartbeats and runs tasks through StateView
    view = StateView(cache, key_ttl=30.0)
    before_ms = int(time.time() * 1000)
    view.register_skald("sk-1", "node", ["Alpha", "Beta"], {"Alpha": {"type": "object"}})
    view.skald_heartbeat("sk-1", 7, ["t-run"], ["Alpha", "Beta"])
    view.task_heartbeats({"t-run": 42}, lease=10.0)
    view.task_ended("t-done", 200)
    view.task_ended("t-fail", -1, "Traceback (most recent call last):\n  ...\nValueError: boom")
    view.task_ended("t-cancel", -2)

    # Then a raw client reads exactly the names and kinds of Skalds 0.3.x
    assert raw.type("skalds:hash") == "hash"
    last_ms = int(raw.hget("skalds:hash", "sk-1") or 0)
    assert before_ms - 1000 <= last_ms <= int(time.time() * 1000) + 1000
    assert raw.type("skalds:mode:hash") == "hash"
    assert raw.hgetall("skalds:mode:hash") == {"sk-1": "node"}
    assert raw.type("skalds:sk-1:heartbeat") == "string"
    assert raw.get("skalds:sk-1:heartbeat") == "7"
    assert 25_000 < raw.pttl("skalds:sk-1:heartbeat") <= 30_000
    assert raw.type("skalds:sk-1:allow-task-class-name") == "list"
    assert raw.lrange("skalds:sk-1:allow-task-class-name", 0, -1) == ["Alpha", "Beta"]
    assert raw.pttl("skalds:sk-1:allow-task-class-name") > 0
    assert raw.type("skalds:sk-1:all-task") == "list"
    assert raw.lrange("skalds:sk-1:all-task", 0, -1) == ["t-run"]
    assert raw.pttl("skalds:sk-1:all-task") > 0
    assert raw.get("skalds:sk-1:task-schemas") == '{"Alpha": {"type": "object"}}'
    # task heartbeats: 0 to 199 alive (with a lease), 200 / -1 / -2 final (kept an hour)
    assert raw.type("task:t-run:heartbeat") == "string"
    assert 0 <= int(raw.get("task:t-run:heartbeat") or "x") < 200
    assert 5_000 < raw.pttl("task:t-run:heartbeat") <= 10_000
    finals = {t: raw.get(f"task:{t}:heartbeat") for t in ("t-done", "t-fail", "t-cancel")}
    assert finals == {"t-done": "200", "t-fail": "-1", "t-cancel": "-2"}
    assert (ENDED_TASK_TTL - 60) * 1000 < raw.pttl("task:t-fail:heartbeat") <= ENDED_TASK_TTL * 1000
    assert raw.get("task:t-fail:has-error") == "ValueError: boom"
    assert (raw.get("task:t-fail:exception") or "").startswith("Traceback")
    # the skald's entry in skalds:hash expires on its own where the server can do it — long after
    # its lease, so the monitor still finds when a dead skald was last seen
    if server.name == "valkey":
        assert (SKALD_ACTIVITY_TTL - 60) * 1000 < raw.hpttl("skalds:hash", "sk-1")[0] <= SKALD_ACTIVITY_TTL * 1000
    # And StateView reads them back
    assert view.skald_alive("sk-1")
    assert view.task_state("t-fail")["heartbeat"] == -1

    # When the skald unregisters / Then its keys are gone, both hashes lose its field
    view.unregister_skald("sk-1")
    assert raw.keys("skalds:*") == []


# ---- driver behaviour -------------------------------------------------------------------------
def test_ttls_are_milliseconds(cache: RedisStateCache, raw: redis.Redis) -> None:
    # Given keys written with float-second TTLs
    cache.set("a", "1", ttl=1.5)
    cache.push_list("l", "x", ttl=2.25)
    cache.list_replace("r", ["x"], ttl=0.0004)
    # Then the server holds them in milliseconds (never 0, which would delete)
    assert 1_400 < raw.pttl("a") <= 1_500
    assert 2_150 < raw.pttl("l") <= 2_250
    assert raw.pttl("r") in (-2, 0, 1)  # 1 ms at most, or already gone
    # And a TTL of zero or less deletes, as a key written already expired
    cache.set("a", "1", ttl=0)
    cache.expire("l", -1)
    assert raw.exists("a", "l") == 0


def test_keys_escape_glob_characters(cache: RedisStateCache) -> None:
    # Given keys whose prefixes contain SCAN glob characters
    for key in ("a*b:1", "axb:1", "q?:1", "qz:1", "[x]:1", "x:1", "back\\slash:1", "backslash:1"):
        cache.set(key, "v")
    # Then a prefix matches literally
    assert cache.keys("a*b:") == ["a*b:1"]
    assert cache.keys("q?") == ["q?:1"]
    assert cache.keys("[x]") == ["[x]:1"]
    assert cache.keys("back\\") == ["back\\slash:1"]


def test_other_kinds_are_replaced_or_read_as_missing(cache: RedisStateCache, raw: redis.Redis) -> None:
    # Given a string, a hash and a list
    cache.set("s", "1")
    cache.hset("h", {"f": "v"})
    cache.push_list("l", "x")
    # Then reading one as another kind reads as missing (no WRONGTYPE)
    assert (cache.get("h"), cache.hgetall("s"), cache.lrange("h")) == (None, {}, [])
    cache.hdel("s", "f")
    assert raw.get("s") == "1"
    # And writing one as another kind replaces it, as the embedded driver does
    cache.hset("s", {"g": "w"}, field_ttl=30)
    cache.push_list("h", "y", max_len=5, ttl=30)
    assert (raw.type("s"), raw.hgetall("s")) == ("hash", {"g": "w"})
    assert (raw.type("h"), raw.lrange("h", 0, -1)) == ("list", ["y"])
    assert raw.pttl("h") > 0


def test_push_list_with_max_len_zero_leaves_nothing(cache: RedisStateCache, raw: redis.Redis) -> None:
    cache.push_list("l", "a")
    cache.push_list("l", "b", max_len=0)
    assert raw.exists("l") == 0


def test_dead_server_raises_fast_and_recovers_on_restart() -> None:
    # Given a cache on a server of its own, used once
    srv = _own_server()
    try:
        cache = RedisStateCache(srv.url)
        cache.set("k", "v")
        # When the server restarts (its data is gone: no persistence) / Then the same object works
        srv.restart()
        assert cache.get("k") is None
        cache.set("k", "v2")
        assert cache.get("k") == "v2"
        # When the server is killed / Then every call raises BackendUnavailable (from a redis
        # ConnectionError), fast
        srv.kill()
        for call in (lambda: cache.get("k"), lambda: cache.set("k", "x"), lambda: cache.keys("")):
            started = time.monotonic()
            with pytest.raises(BackendUnavailable) as down:
                call()
            assert isinstance(down.value.__cause__, redis.ConnectionError)
            assert time.monotonic() - started < 1.5
        # When it is back / Then the same object works again, without being recreated
        srv.start()
        cache.list_replace("l", ["a", "b"], ttl=10)
        assert cache.lrange("l") == ["a", "b"]
        cache.close()
    finally:
        srv.stop()


def test_password_never_shown() -> None:
    # Given a server that requires a password
    srv = _own_server("--requirepass", SECRET)
    try:
        url = f"redis://:{SECRET}@127.0.0.1:{srv.port}/0"
        # When a cache is opened through the factory (which sets .url) / Then it works
        cache = open_cache(url)
        cache.set("k", "v")
        assert cache.get("k") == "v"
        # And its repr masks the password
        assert SECRET not in repr(cache)
        assert "***" in repr(cache)
        # And a wrong password fails without showing either password
        wrong = RedisStateCache(f"redis://:wrong-{SECRET}@127.0.0.1:{srv.port}/0")
        with pytest.raises(BackendUnavailable) as auth_error:
            wrong.get("k")
        assert isinstance(auth_error.value.__cause__, redis.AuthenticationError)
        assert SECRET not in str(auth_error.value)
        assert SECRET not in repr(wrong)
        # And a dead server's error does not show it
        srv.kill()
        with pytest.raises(BackendUnavailable) as down:
            cache.get("k")
        assert SECRET not in str(down.value)
        cache.close()
        wrong.close()
    finally:
        srv.stop()


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{SECRET}@127.0.0.1:notaport/0",
        f"redis://:{SECRET}@127.0.0.1:99999/0",
        f"redis://:{SECRET}@/0",
        f"redis://:{SECRET}@127.0.0.1:6379/db-one",
        f"redis://:{SECRET}@127.0.0.1:6379/0?socket_timeout=soon",
        f"redis://:{SECRET}@127.0.0.1:6379/0?no_such_option=1",
        f"http://:{SECRET}@127.0.0.1:6379/0",
        f"redis://:{SECRET}@[::1/0",
    ],
)
def test_malformed_urls_raise_config_error_without_the_password(url: str) -> None:
    # When a cache is built from a malformed URL / Then ConfigError, with the password masked
    with pytest.raises(ConfigError) as exc_info:
        RedisStateCache(url)
    message = str(exc_info.value)
    assert SECRET not in message
    assert "state cache URL" in message


def test_malformed_url_through_the_factory() -> None:
    with pytest.raises(ConfigError) as exc_info:
        open_cache(f"redis://user:{SECRET}@/0")
    assert SECRET not in str(exc_info.value)


def _child_uses_inherited_cache(cache: RedisStateCache, key: str) -> None:
    cache.set(key, "from-child")
    cache.close()


def test_forked_child_gets_its_own_connection(cache: RedisStateCache, raw: redis.Redis) -> None:
    # Given a cache whose connection is open in the parent
    cache.set("parent", "1")
    parent_client = cache.client
    # When a forked child uses the very same object, then closes it
    child = FORK.Process(target=_child_uses_inherited_cache, args=(cache, "child"))
    child.start()
    child.join(timeout=10)
    # Then the child wrote through its own client, and the parent's connection is untouched
    assert child.exitcode == 0
    assert raw.get("child") == "from-child"
    assert cache.client is parent_client
    assert cache.get("parent") == "1"
    cache.set("parent", "2")
    assert cache.get("parent") == "2"


def test_pickled_cache_reconnects(cache: RedisStateCache) -> None:
    import pickle

    cache.set("k", "v")
    copy = pickle.loads(pickle.dumps(cache))
    assert copy.get("k") == "v"
    assert repr(copy) == repr(cache)
    copy.close()
