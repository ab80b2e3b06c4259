"""Contract of every state cache driver (see conftest.CACHE_DRIVERS)."""

from __future__ import annotations

import multiprocessing as mp

from skalds.backends.cache.base import StateCache
from skalds.backends.cache.sqlite import SqliteStateCache

FORK = mp.get_context("fork")
TTL = 0.2


def test_set_get_and_overwrite(state_cache: StateCache) -> None:
    # Given an empty cache / When a key is set, then set again
    assert state_cache.get("k") is None
    state_cache.set("k", "v1")
    first = state_cache.get("k")
    state_cache.set("k", "v2")
    # Then reads return the latest value
    assert (first, state_cache.get("k")) == ("v1", "v2")


def test_set_with_ttl_expires(state_cache: StateCache, wait_until) -> None:
    # Given a key with a short TTL and one without
    state_cache.set("short", "x", ttl=TTL)
    state_cache.set("long", "y")
    assert state_cache.get("short") == "x"
    # When the TTL passes / Then the short one reads as missing and leaves keys()
    assert wait_until(lambda: state_cache.get("short") is None, timeout=5)
    assert state_cache.get("long") == "y"
    assert state_cache.keys("") == ["long"]


def test_set_without_ttl_clears_previous_ttl(state_cache: StateCache, wait_until) -> None:
    # Given a key with a TTL, then overwritten without one
    state_cache.set("k", "a", ttl=TTL)
    state_cache.set("k", "b")
    # When another short-lived key has expired (the first TTL has passed too)
    state_cache.set("probe", "p", ttl=TTL)
    assert wait_until(lambda: state_cache.get("probe") is None, timeout=5)
    # Then the overwritten key is still there
    assert state_cache.get("k") == "b"


def test_delete_removes_keys_of_every_kind(state_cache: StateCache) -> None:
    # Given a string, a hash and a list
    state_cache.set("s", "1")
    state_cache.hset("h", {"f": "v"})
    state_cache.push_list("l", "x")
    # When all three (and a missing one) are deleted
    state_cache.delete("s", "h", "l", "missing")
    # Then none of them remains
    assert state_cache.get("s") is None
    assert state_cache.hgetall("h") == {}
    assert state_cache.lrange("l") == []
    assert state_cache.keys("") == []


def test_expire_sets_ttl_on_existing_keys(state_cache: StateCache, wait_until) -> None:
    # Given a string, a hash and a list without TTL
    state_cache.set("s", "1")
    state_cache.hset("h", {"f": "v"})
    state_cache.list_replace("l", ["a", "b"])
    state_cache.set("keep", "1")
    # When each gets a short TTL
    for key in ("s", "h", "l"):
        state_cache.expire(key, TTL)
    assert state_cache.get("s") == "1"
    # Then all three expire, the untouched key stays
    assert wait_until(lambda: state_cache.keys("") == ["keep"], timeout=5)
    assert (state_cache.get("s"), state_cache.hgetall("h"), state_cache.lrange("l")) == (None, {}, [])
    # And expiring a missing key creates nothing
    state_cache.expire("ghost", 10)
    assert state_cache.get("ghost") is None


def test_hash_set_get_delete(state_cache: StateCache) -> None:
    # Given a hash written in two steps
    state_cache.hset("h", {"a": "1", "b": "2"})
    state_cache.hset("h", {"b": "20", "c": "3"})
    # Then it holds the merged fields
    assert state_cache.hgetall("h") == {"a": "1", "b": "20", "c": "3"}
    # When fields are deleted
    state_cache.hdel("h", "a", "missing")
    # Then only the others remain
    assert state_cache.hgetall("h") == {"b": "20", "c": "3"}
    # And deleting the last fields removes the key
    state_cache.hdel("h", "b", "c")
    assert state_cache.hgetall("h") == {}
    assert state_cache.keys("h") == []


def test_hash_field_ttl_expires_fields_individually(state_cache: StateCache, wait_until) -> None:
    # Given a hash with two short-lived fields and one permanent field
    state_cache.hset("h", {"dying": "1", "also": "2"}, field_ttl=TTL)
    state_cache.hset("h", {"stays": "3"})
    state_cache.hset("only-short", {"x": "1"}, field_ttl=TTL)
    assert state_cache.hgetall("h") == {"dying": "1", "also": "2", "stays": "3"}
    if not getattr(state_cache, "supports_field_ttl", True):
        # A server without hash-field TTL (Redis 7.0) keeps the fields; readers judge them by value
        assert state_cache.hgetall("only-short") == {"x": "1"}
        return
    # When the field TTL passes
    assert wait_until(lambda: "dying" not in state_cache.hgetall("h"), timeout=5)
    # Then only the permanent field is left, and a hash of expired fields is gone
    assert state_cache.hgetall("h") == {"stays": "3"}
    assert state_cache.hgetall("only-short") == {}
    assert state_cache.keys("") == ["h"]


def test_list_replace_and_lrange(state_cache: StateCache) -> None:
    # Given a list replaced twice
    state_cache.list_replace("l", ["a", "b", "c"])
    state_cache.list_replace("l", ["x", "y", "z", "w"])
    # Then ranges read the second list, with Redis index rules
    assert state_cache.lrange("l") == ["x", "y", "z", "w"]
    assert state_cache.lrange("l", 1, 2) == ["y", "z"]
    assert state_cache.lrange("l", -2, -1) == ["z", "w"]
    assert state_cache.lrange("l", 2, 100) == ["z", "w"]
    assert state_cache.lrange("l", 3, 1) == []
    # And replacing with nothing removes the key
    state_cache.list_replace("l", [])
    assert state_cache.lrange("l") == []
    assert state_cache.keys("l") == []


def test_push_list_keeps_last_max_len(state_cache: StateCache) -> None:
    # Given pushes of 1..5 with max_len 3
    for i in range(1, 6):
        state_cache.push_list("log", str(i), max_len=3)
    # Then only the last three remain, oldest first
    assert state_cache.lrange("log") == ["3", "4", "5"]
    # And pushing without max_len appends
    state_cache.push_list("log", "6")
    assert state_cache.lrange("log", -1) == ["6"]
    assert len(state_cache.lrange("log")) == 4


def test_push_list_ttl(state_cache: StateCache, wait_until) -> None:
    # Given a list pushed with a short TTL / When it passes / Then the list is gone
    state_cache.push_list("l", "a", ttl=TTL)
    assert state_cache.lrange("l") == ["a"]
    assert wait_until(lambda: state_cache.lrange("l") == [], timeout=5)
    # And a push after expiry starts a fresh list
    state_cache.push_list("l", "b")
    assert state_cache.lrange("l") == ["b"]


def test_extend_list_appends_in_order_and_trims(state_cache: StateCache) -> None:
    # Given a list of two / When four more are appended at once with max_len 5
    state_cache.extend_list("tail", ["1", "2"])
    state_cache.extend_list("tail", ["3", "4", "5", "6"], max_len=5)
    # Then the last five remain, in order
    assert state_cache.lrange("tail") == ["2", "3", "4", "5", "6"]
    # And appending nothing changes nothing (and creates no key)
    state_cache.extend_list("tail", [])
    state_cache.extend_list("none", [], ttl=TTL)
    assert state_cache.lrange("tail") == ["2", "3", "4", "5", "6"]
    assert state_cache.lrange("none") == []
    # And a batch longer than max_len keeps only its own tail
    state_cache.extend_list("tail", [str(i) for i in range(10, 20)], max_len=3)
    assert state_cache.lrange("tail") == ["17", "18", "19"]


def test_extend_list_ttl_and_kind_replacement(state_cache: StateCache, wait_until) -> None:
    # Given a string key / When a list is appended under its name / Then the list replaces it
    state_cache.set("k", "v")
    state_cache.extend_list("k", ["a", "b"], ttl=TTL)
    assert state_cache.get("k") is None
    assert state_cache.lrange("k") == ["a", "b"]
    # And the TTL given with the append expires the list
    assert wait_until(lambda: state_cache.lrange("k") == [], timeout=5)


def test_get_many_reads_strings_in_order(state_cache: StateCache, wait_until) -> None:
    # Given strings, a list, an expiring string and a missing key
    state_cache.pipeline_set({f"s{i}": (str(i), None) for i in range(1200)})
    state_cache.push_list("a-list", "x")
    state_cache.set("short", "gone soon", ttl=TTL)
    keys = ["s5", "missing", "a-list", "s1199", "s5", "short", *[f"s{i}" for i in range(1200)]]
    # When they are read at once
    values = state_cache.get_many(keys)
    # Then each value is in its key's place; a list and a missing key read as None
    assert values[:5] == ["5", None, None, "1199", "5"]
    assert values[6:] == [str(i) for i in range(1200)]
    assert state_cache.get_many([]) == []
    # And an expired string reads as None
    assert wait_until(lambda: state_cache.get_many(["short"]) == [None], timeout=5)


def test_lrange_many_reads_whole_lists_in_order(state_cache: StateCache) -> None:
    # Given lists of different lengths, a string key and a missing key
    for i in range(30):
        state_cache.extend_list(f"l{i}", [f"{i}-{j}" for j in range(i % 4)])
    state_cache.set("str", "v")
    keys = ["l3", "str", "nope", *[f"l{i}" for i in range(30)]]
    # When they are read at once
    lists = state_cache.lrange_many(keys)
    # Then each list is whole and in order; the others read as empty
    assert lists[0] == ["3-0", "3-1", "3-2"]
    assert lists[1] == [] and lists[2] == []
    assert lists[3:] == [[f"{i}-{j}" for j in range(i % 4)] for i in range(30)]


def test_keys_by_prefix_across_kinds(state_cache: StateCache) -> None:
    # Given keys of every kind under two prefixes
    state_cache.set("skald:a", "1")
    state_cache.hset("skald:b", {"f": "v"})
    state_cache.push_list("skald:c", "x")
    state_cache.set("task:a", "1")
    state_cache.set("skald_x", "not a match for 'skald:'")
    # When keys are listed by prefix / Then only live matches of every kind come back
    assert sorted(state_cache.keys("skald:")) == ["skald:a", "skald:b", "skald:c"]
    assert state_cache.keys("task:") == ["task:a"]
    assert state_cache.keys("nothing") == []


def test_pipeline_set_sets_all_with_their_ttls(state_cache: StateCache, wait_until) -> None:
    # Given a batch of three keys, one of them short-lived
    state_cache.pipeline_set({"p:1": ("a", None), "p:2": ("b", 60.0), "p:3": ("c", TTL)})
    # Then all are readable at once
    assert [state_cache.get(f"p:{i}") for i in (1, 2, 3)] == ["a", "b", "c"]
    # And the short-lived one expires on its own
    assert wait_until(lambda: state_cache.get("p:3") is None, timeout=5)
    assert sorted(state_cache.keys("p:")) == ["p:1", "p:2"]


def test_set_replaces_a_key_of_another_kind(state_cache: StateCache) -> None:
    # Given a hash / When a string is set on its key / Then the key is a plain string
    state_cache.hset("k", {"f": "v"})
    state_cache.set("k", "s")
    assert (state_cache.get("k"), state_cache.hgetall("k")) == ("s", {})


def _write_heartbeat(factory, key: str) -> None:
    cache = factory()
    cache.set(key, "from-child")
    cache.hset("beats", {key: "1"})
    cache.close()


def test_writes_from_another_process_are_visible(state_cache_factory) -> None:
    # Given a cache used by the parent
    cache = state_cache_factory()
    cache.set("parent", "1")
    # When a child process writes through its own client
    child = FORK.Process(target=_write_heartbeat, args=(state_cache_factory, "child"))
    child.start()
    child.join(timeout=10)
    # Then the parent reads what the child wrote
    assert child.exitcode == 0
    assert cache.get("child") == "from-child"
    assert cache.hgetall("beats") == {"child": "1"}


def test_expired_rows_are_purged(tmp_path, wait_until) -> None:
    # Given an embedded cache with expired string, hash field and list rows
    cache = SqliteStateCache(str(tmp_path / "c.db"))
    cache.set("s", "1", ttl=TTL)
    cache.hset("h", {"f": "v"}, field_ttl=TTL)
    cache.push_list("l", "x", ttl=TTL)
    assert wait_until(lambda: cache.keys("") == [], timeout=5)
    # When the sweep runs
    cache.purge_expired()
    # Then no row is left in any table
    conn = cache._pool.get()
    counts = [conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("kv", "kv_hash", "kv_list")]
    assert counts == [0, 0, 0]
    cache.close()


# ---- leases: set_if_absent / compare_and_expire --------------------------------------------------
def test_set_if_absent_takes_only_a_free_key(state_cache: StateCache, wait_until) -> None:
    # Given a free key / When two owners try to take it
    first = state_cache.set_if_absent("lease", "a", ttl=TTL)
    second = state_cache.set_if_absent("lease", "b", ttl=10)
    # Then only the first gets it, and it keeps its value
    assert (first, second, state_cache.get("lease")) == (True, False, "a")
    # And once it expired, the other owner can take it
    assert wait_until(lambda: state_cache.get("lease") is None, timeout=5)
    assert state_cache.set_if_absent("lease", "b", ttl=10)
    assert state_cache.get("lease") == "b"


def test_set_if_absent_respects_keys_of_other_kinds(state_cache: StateCache) -> None:
    # Given a hash under the name / When someone tries to take it as a lease
    state_cache.hset("h", {"f": "v"})
    # Then it is not taken and the hash is untouched
    assert not state_cache.set_if_absent("h", "a", ttl=10)
    assert state_cache.hgetall("h") == {"f": "v"}


def test_compare_and_expire_renews_and_releases_only_own_lease(state_cache: StateCache, wait_until) -> None:
    # Given a lease held by "a" with a short TTL
    assert state_cache.set_if_absent("lease", "a", ttl=TTL)
    # When "b" tries to renew or release it / Then nothing changes
    assert not state_cache.compare_and_expire("lease", "b", 10)
    assert not state_cache.compare_and_expire("lease", "b", 0)
    assert state_cache.get("lease") == "a"
    # When "a" renews it for longer / Then it outlives its first TTL
    assert state_cache.compare_and_expire("lease", "a", 10)
    state_cache.set("probe", "p", ttl=TTL)
    assert wait_until(lambda: state_cache.get("probe") is None, timeout=5)
    assert state_cache.get("lease") == "a"
    # When "a" releases it (TTL 0) / Then it is free at once
    assert state_cache.compare_and_expire("lease", "a", 0)
    assert state_cache.get("lease") is None
    assert state_cache.set_if_absent("lease", "b", ttl=10)


def test_compare_and_expire_on_missing_or_expired_key_is_false(state_cache: StateCache, wait_until) -> None:
    # Given no key, then an expired one / Then compare-and-expire changes nothing
    assert not state_cache.compare_and_expire("ghost", "a", 10)
    state_cache.set("lease", "a", ttl=TTL)
    assert wait_until(lambda: state_cache.get("lease") is None, timeout=5)
    assert not state_cache.compare_and_expire("lease", "a", 10)
    assert state_cache.get("lease") is None
    # And on a key of another kind it is False too
    state_cache.push_list("l", "a")
    assert not state_cache.compare_and_expire("l", "a", 10)


def _race_for_lease(factory, name: str, results) -> None:
    cache = factory()
    results.put((name, cache.set_if_absent("race", name, ttl=30)))
    cache.close()


def test_set_if_absent_has_one_winner_across_processes(state_cache_factory) -> None:
    # Given four processes racing for the same free lease
    results = FORK.Queue()
    racers = [FORK.Process(target=_race_for_lease, args=(state_cache_factory, f"p{i}", results)) for i in range(4)]
    for p in racers:
        p.start()
    for p in racers:
        p.join(timeout=10)
    got = dict(results.get(timeout=5) for _ in racers)
    # Then exactly one won, and the key holds its name
    winners = [name for name, won in got.items() if won]
    assert len(winners) == 1
    assert state_cache_factory().get("race") == winners[0]
