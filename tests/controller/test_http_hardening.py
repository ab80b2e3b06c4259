"""Hostile HTTP: framing, cross-site bodies, rebound host names. Nothing reaches a route or the store."""

from __future__ import annotations

import httpx
import pytest

from skalds.controller.hardening import host_name, is_loopback_name, with_frame_ancestors
from tests.controller.test_errors import error_of

TOKEN = "a-long-enough-token-for-the-tests"


@pytest.fixture
def api(start_controller):
    return start_controller()


def _forbids_framing(response: httpx.Response) -> None:
    assert response.headers["content-type"].startswith("text/html"), response.headers
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"


def test_no_html_response_can_be_framed(api):
    # When any HTML page of the controller is fetched, the dashboard's shell through its static path too
    for path in ("/", "/dashboard", "/dashboard/login", "/dashboard/static/index.html", "/api/docs"):
        response = api.http.get(path)
        # Then it forbids every frame ancestor
        assert response.status_code == 200, (path, response.text)
        _forbids_framing(response)
    # And the static shell carries the dashboard's whole policy, not just the frame rule
    csp = api.http.get("/dashboard/static/index.html").headers["content-security-policy"]
    assert "script-src 'self'" in csp and csp.count("frame-ancestors") == 1
    # And every other answer (JSON, errors, scripts) says nosniff
    for path in ("/api/tasks", "/api/tasks/nope", "/dashboard/static/js/app.js", "/api/system/health"):
        assert api.http.get(path).headers["x-content-type-options"] == "nosniff", path


def test_frame_ancestors_is_merged_into_a_policy():
    assert with_frame_ancestors("") == "frame-ancestors 'none'"
    assert with_frame_ancestors("default-src 'self';") == "default-src 'self'; frame-ancestors 'none'"
    assert with_frame_ancestors("frame-ancestors 'self'") == "frame-ancestors 'self'"  # a stricter choice is kept


def test_a_body_that_is_not_declared_json_is_415(api):
    body = '{"id": "csrf", "className": "Recorder", "attachments": {}}'
    # When a browser-style cross-site request sends JSON as text/plain, as a form, or with no type at all
    for headers in ({"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"}, {}):
        for method, path in (("POST", "/api/tasks"), ("PUT", "/api/tasks/csrf/status"), ("POST", "/api/auth/login")):
            request = api.http.build_request(method, path, content=body, headers=headers)
            request.headers.pop("content-type", None)
            request.headers.update(headers)
            # Then 415 in the API's error shape, naming what to send
            error = error_of(api.http.send(request), 415, "unsupported_media_type")
            assert "application/json" in error["message"]
    # And nothing was created
    error_of(api.http.get("/api/tasks/csrf"), 404, "not_found")
    # And JSON (with a charset, or a +json type) is still read as JSON
    response = api.http.post(
        "/api/tasks",
        content='{"className": "Nope", "attachments": {}, "priority": 11}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    error_of(response, 422, "invalid_request")
    response = api.http.post(
        "/api/tasks",
        content='{"className": "Nope", "attachments": {}, "priority": 11}',
        headers={"Content-Type": "application/x+json"},
    )
    error_of(response, 422, "invalid_request")
    # And a request without a body needs no type
    assert api.http.post("/api/auth/logout").status_code == 200


def test_the_fastapi_pin_is_one_that_checks_content_types():
    import tomllib

    from tests.support.procs import ROOT

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = [d for d in config["project"]["optional-dependencies"]["controller"] if d.startswith("fastapi")]
    assert pins == ["fastapi>=0.132"], pins


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("localhost", True),
        ("LOCALHOST:8000", True),
        ("dashboard.localhost:1", True),
        ("127.0.0.1:8000", True),
        ("127.0.0.1", True),
        ("[::1]:8000", True),
        ("[::1]", True),
        ("evil.example", False),
        ("evil.example:8000", False),
        ("localhost.evil.example", False),
        ("127.0.0.1.evil.example", False),
        ("10.0.0.1", False),
    ],
)
def test_loopback_host_names(host, ok):
    assert is_loopback_name(host_name(host)) is ok


def test_open_mode_answers_only_loopback_host_names(api, start_controller):
    # Given a controller without a token on loopback
    # When a rebound name reaches it (the browser thinks it talks to evil.example)
    for path in ("/api/tasks", "/", "/api/system/health"):
        response = api.http.get(path, headers={"Host": "evil.example:8000"})
        # Then 403 with a message that says why and what to do
        error = error_of(response, 403, "host_not_allowed")
        assert "evil.example" in error["message"] and "SKALDS_API_TOKEN" in error["message"]
    response = api.http.post(
        "/api/tasks", json={"id": "rebound", "className": "Recorder", "attachments": {}}, headers={"Host": "evil"}
    )
    error_of(response, 403, "host_not_allowed")
    # And loopback names still work, with any port
    for host in ("localhost", "localhost:1234", "127.0.0.1:9", "[::1]:8000", "app.localhost"):
        assert api.http.get("/api/tasks", headers={"Host": host}).status_code == 200, host
    error_of(api.http.get("/api/tasks/rebound"), 404, "not_found")

    # Given a controller with a token, Then any host name is served (the token is the guard)
    guarded = start_controller(SKALDS_API_TOKEN=TOKEN)
    response = guarded.http.get(
        "/api/tasks", headers={"Host": "controller.example", "Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 200, response.text
