"""Token auth: every route but health needs the token when one is set; loopback may run open."""

from __future__ import annotations

import pytest

from skalds.controller.auth import AuthDecision, announce, decide_token, is_loopback
from skalds.utils.logging import mask_secrets
from tests.controller.sse_client import SSEReader
from tests.support.procs import wait_for

TOKEN = "s3cret-t0ken-for-tests"

# Every route of the app, with a request that would succeed or fail on its merits once authenticated.
ROUTES = [
    ("GET", "/api/tasks", None),
    ("GET", "/api/tasks/classes", None),
    ("GET", "/api/tasks/nope", None),
    ("GET", "/api/tasks/nope/heartbeat", None),
    ("POST", "/api/tasks", {"className": "Recorder", "attachments": {}}),
    ("PUT", "/api/tasks/nope/attachments", {"attachments": {}}),
    ("PUT", "/api/tasks/nope/status", {"status": "Cancelled"}),
    ("DELETE", "/api/tasks/nope", None),
    ("GET", "/api/skalds", None),
    ("GET", "/api/skalds/nope", None),
    ("GET", "/api/skalds/nope/status", None),
    ("GET", "/api/skalds/nope/tasks", None),
    ("GET", "/api/system/status", None),
    ("GET", "/api/system/dashboard/summary", None),
    ("GET", "/api/openapi.json", None),
    ("GET", "/api/docs", None),
    ("GET", "/metrics", None),
    ("GET", "/api/no/such/route", None),  # default deny: unknown paths do not reveal what exists
    ("GET", "/", None),  # the dashboard's future home
]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.1.2.3", False),
        ("192.168.0.5", False),
        ("example.com", False),
        ("localhost.example.com", False),
    ],
)
def test_what_counts_as_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_decision_is_secure_by_default():
    # Given a controller bound beyond loopback without a token, Then it makes one and enforces it
    for host in ("0.0.0.0", "10.1.2.3", "::"):
        decision = decide_token(host, None, make_token=lambda: "made")
        assert decision == AuthDecision("made", True, decision.reason) and decision.enforced
    made = decide_token("0.0.0.0", None)
    assert made.token is not None and len(made.token) >= 40  # token_urlsafe(32): 43 characters
    assert made.token != decide_token("0.0.0.0", None).token
    # Given loopback and no token, Then it runs open
    open_ = decide_token("127.0.0.1", None)
    assert open_.token is None and not open_.generated and not open_.enforced
    # Given a configured token, Then that one is enforced wherever it is bound
    for host in ("127.0.0.1", "0.0.0.0"):
        assert decide_token(host, "mine") == AuthDecision("mine", False, "SKALDS_API_TOKEN is set")


def test_generated_token_is_printed_once_and_masked_in_logs(capsys):
    # Given a generated token
    decision = decide_token("0.0.0.0", None)
    assert decision.token is not None
    # When it is announced
    announce(decision)
    # Then the operator sees it on stderr, and any later log line shows *** instead
    err = capsys.readouterr().err
    assert err.count(decision.token) == 1 and "Authorization: Bearer" in err
    assert mask_secrets(f"header was Bearer {decision.token}") == "header was Bearer ***"


def _unauthorized(response, invalid: bool) -> None:
    assert response.status_code == 401, (response.request.url, response.text)
    assert response.json()["error"]["code"] == "unauthorized"
    assert set(response.json()) == {"error"} and response.json()["error"]["message"]
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer") and (("invalid_token" in challenge) is invalid)


def test_token_required_on_every_route_but_health(start_controller):
    # Given a controller with SKALDS_API_TOKEN set
    api = start_controller(SKALDS_API_TOKEN=TOKEN)
    http = api.http

    # Then health answers anyone (probes need no secret)
    assert http.get("/api/system/health").status_code == 200

    for method, path, body in ROUTES:
        # When a route is called without a token, or with a wrong one, Then 401 in the error shape
        _unauthorized(http.request(method, path, json=body), invalid=False)
        _unauthorized(http.request(method, path, json=body, headers={"Authorization": "Bearer nope"}), invalid=True)
        _unauthorized(http.request(method, path, json=body, headers={"Authorization": f"Basic {TOKEN}"}), False)
        _unauthorized(http.request(method, path, json=body, headers={"Cookie": "skalds_token=nope"}), invalid=True)
        # When it is called with the token, as a header or as the cookie, Then it is not refused
        for auth in ({"Authorization": f"Bearer {TOKEN}"}, {"Cookie": f"theme=dark; skalds_token={TOKEN}"}):
            response = http.request(method, path, json=body, headers=auth)
            assert response.status_code != 401, (method, path, response.text)

    # And the answers are the real ones
    headers = {"Authorization": f"Bearer {TOKEN}"}
    # (only the calls with the token created anything: a class no skald runs is queued, not refused)
    creates = sum(1 for method, path, _ in ROUTES if (method, path) == ("POST", "/api/tasks"))
    assert http.get("/api/tasks", headers=headers).json()["total"] == 2 * creates
    assert http.get("/api/system/status", headers=headers).json()["auth"] == "token"
    schema = http.get("/api/openapi.json", headers=headers).json()
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    assert {"bearerAuth": []} in schema["security"]
    assert schema["paths"]["/api/system/health"]["get"]["security"] == []

    # And the token never shows in the controller's log
    assert TOKEN not in api.proc.output()


def test_event_streams_need_the_token(start_controller):
    # Given a controller with a token
    api = start_controller(SKALDS_API_TOKEN=TOKEN)
    for path in ("/api/events/skalds", "/api/events/tasks"):
        # When a stream is opened without it, Then 401
        _unauthorized(api.http.get(path), invalid=False)
        # When it is opened with it (header, then cookie), Then it streams, starting with a snapshot
        for auth in ({"headers": {"Authorization": f"Bearer {TOKEN}"}}, {"cookies": {"skalds_token": TOKEN}}):
            reader = SSEReader(api.url + path, **auth)
            try:
                assert reader.status_code == 200
                wait_for(lambda r=reader: r.of("snapshot"), what=f"snapshot of {path}")
            finally:
                reader.close()


def test_loopback_without_token_runs_open(start_controller):
    # Given a controller on 127.0.0.1 and no SKALDS_API_TOKEN
    api = start_controller()
    # Then every route answers without a token, and the log says it runs open
    assert api.http.get("/api/tasks").status_code == 200
    assert api.http.get("/metrics").status_code == 200
    assert api.http.get("/api/system/status").json()["auth"] == "open"
    assert "without authentication" in api.proc.output()
    schema = api.http.get("/api/openapi.json").json()
    assert "bearerAuth" in schema["components"]["securitySchemes"] and "security" not in schema
