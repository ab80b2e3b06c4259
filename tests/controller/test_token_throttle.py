"""Guessing the token is throttled everywhere it can be tried, per TCP peer, whatever the headers say."""

from __future__ import annotations

from skalds.controller.auth import MAX_FAILED_TOKENS, AuthDecision, TokenThrottle, announce
from skalds.utils.logging import logger
from tests.controller.test_errors import error_of

TOKEN = "the-right-token-for-throttle-tests"


def test_wrong_bearer_tokens_are_throttled_and_forwarded_for_changes_nothing(start_controller):
    # Given a controller with a token
    api = start_controller(SKALDS_API_TOKEN=TOKEN)
    right = {"Authorization": f"Bearer {TOKEN}"}

    # When one client sends the same stale cookie many times, Then it is not taken for guessing
    for _ in range(2 * MAX_FAILED_TOKENS):
        error_of(api.http.get("/api/tasks", headers={"Cookie": "skalds_token=stale"}), 401, "unauthorized")
    assert api.http.get("/api/tasks", headers=right).status_code == 200

    # When it guesses bearer tokens, each claiming another origin in X-Forwarded-For
    refused = None
    for n in range(MAX_FAILED_TOKENS + 1):
        headers = {"Authorization": f"Bearer guess-{n}", "X-Forwarded-For": f"10.0.{n}.1", "X-Real-IP": f"10.1.{n}.1"}
        response = api.http.get("/api/tasks", headers=headers)
        if response.status_code == 429:
            refused = n
            break
        error_of(response, 401, "unauthorized")
    # Then the guesses are counted against its own address (the stale cookie was one of them)
    assert refused == MAX_FAILED_TOKENS - 1, refused
    # And from then on it is refused unchecked, the right token included, on every way in
    for response in (
        api.http.get("/api/tasks", headers=right),
        api.http.get("/api/tasks", headers={**right, "X-Forwarded-For": "192.0.2.9"}),
        api.http.post("/api/auth/login", json={"token": TOKEN}),
    ):
        error = error_of(response, 429, "too_many_requests")
        assert "try again" in error["message"]
        assert 0 < int(response.headers["retry-after"]) <= 60
    # And health still answers (probes need no token)
    assert api.http.get("/api/system/health").status_code == 200


def test_the_same_wrong_token_again_renews_instead_of_counting():
    throttle = TokenThrottle(limit=3, window=60)
    for _ in range(10):
        throttle.failed("a", b"stale")
    assert throttle.retry_after("a") == 0
    throttle.failed("a", b"guess-1")
    throttle.failed("a", b"guess-2")
    assert throttle.retry_after("a") > 0 and throttle.retry_after("b") == 0


def test_a_short_configured_token_is_warned_about():
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="WARNING", format="{message}")
    try:
        announce(AuthDecision("x", False, "SKALDS_API_TOKEN is set"))
        announce(AuthDecision("a-token-of-sixteen", False, "SKALDS_API_TOKEN is set"))
    finally:
        logger.remove(sink)
    assert len(lines) == 1 and "only 1 characters" in lines[0] and "at least 16" in lines[0], lines
