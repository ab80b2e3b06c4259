"""With ``SKALDS_API_TOKEN`` set, the dashboard asks for the token and shows nothing before."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.dashboard.conftest import Dev, shot, start_dev, stop_dev

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or fails under SKALDS_REQUIRE_SERVERS=1)
    expect = None

TOKEN = "dashboard-test-token-9d1f"


@pytest.fixture(scope="module")
def secured(tmp_path_factory) -> Iterator[Dev]:
    server = start_dev(tmp_path_factory.mktemp("secured"), SKALDS_API_TOKEN=TOKEN)
    try:
        yield server
    finally:
        stop_dev(server)


def _status_of(page, path: str) -> int:
    # Only the status: the stream would never end, so the body is not read.
    return int(
        page.evaluate("p => fetch(p).then(r => { const s = r.status; r.body && r.body.cancel(); return s; })", path)
    )


def test_login_required_before_anything_is_shown(secured, new_page):
    # Given a controller with a token, and a task and a skald it could show
    task = secured.create(className="Counter", name="secret-task-name", attachments={"ticks": 100000, "interval": 0.2})

    # When a browser without the token opens the dashboard
    page = new_page()
    page.goto(f"{secured.url}/#/tasks")

    # Then it lands on the login page, which shows no task or skald data
    expect(page).to_have_url(re.compile(r"/dashboard/login#/tasks$"))
    expect(page.get_by_label("API token")).to_be_visible()
    html = page.content()
    for secret in (task["id"], "secret-task-name", "dev-node", "Counter"):
        assert secret not in html
    # And the API refuses the page's requests
    for path in ("/api/tasks", "/api/skalds", "/api/system/dashboard/summary", "/api/events/tasks", "/dashboard"):
        assert _status_of(page, path) == 401, path
    shot(page, "login")

    # When a wrong token is entered, Then it says so and stays on the login page
    page.get_by_label("API token").fill("not-the-token")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#login-error")).to_have_text(re.compile("not the controller's API token"))
    expect(page).to_have_url(re.compile(r"/dashboard/login"))
    assert _status_of(page, "/api/tasks") == 401

    # When the right token is entered, Then the page asked for opens, with live data
    page.get_by_label("API token").fill(TOKEN)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/dashboard#/tasks$"))
    expect(page.locator(f'tr[data-task-id="{task["id"]}"]')).to_be_visible()
    expect(page.locator("#conn")).to_have_text("Live")
    page.get_by_role("link", name="Skalds", exact=True).click()
    expect(page.locator('tr[data-skald-id="dev-node"]')).to_contain_text("online")
    shot(page, "skalds-after-login")

    # And the token sits in an HttpOnly, SameSite=Strict cookie that page scripts cannot read
    cookie = next(c for c in page.context.cookies() if c["name"] == "skalds_token")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert "skalds_token" not in page.evaluate("document.cookie")
    assert TOKEN not in page.content()

    # When the operator logs out, Then the token is forgotten and the API refuses again
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/dashboard/login"))
    assert _status_of(page, "/api/tasks") == 401
    assert not [c for c in page.context.cookies() if c["name"] == "skalds_token"]
    secured.http.put(f"/api/tasks/{task['id']}/status", json={"status": "Cancelled"})


def test_auth_endpoints_and_redirects(secured):
    url = secured.url
    # A browser asking for a page is sent to the login page; API clients get the JSON 401
    for path in ("/", "/dashboard"):
        r = httpx.get(url + path, headers={"Accept": "text/html,*/*"})
        assert r.status_code == 303 and r.headers["location"] == "/dashboard/login"
        r = httpx.get(url + path)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    # The login page and the static files need no token and contain no data
    login = httpx.get(url + "/dashboard/login")
    assert login.status_code == 200 and "API token" in login.text
    assert "default-src 'self'" in login.headers["content-security-policy"]
    assert httpx.get(url + "/dashboard/static/js/app.js").headers["content-type"].startswith("text/javascript")
    for path in (
        "/dashboard/static/../../api/tasks",
        "/dashboard/static/%2e%2e/index.html",
        "/dashboard/static/nope.js",
    ):
        assert httpx.get(url + path).status_code in (401, 404), path
    # Login checks the token; only the right one sets the cookie
    assert httpx.get(url + "/api/auth/session").json() == {"auth": "token", "authenticated": False}
    wrong = httpx.post(url + "/api/auth/login", json={"token": "nope"})
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    right = httpx.post(url + "/api/auth/login", json={"token": TOKEN})
    assert right.status_code == 200 and right.json() == {"auth": "token", "authenticated": True}
    cookie = right.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    jar = {"skalds_token": TOKEN}
    assert httpx.get(url + "/api/auth/session", cookies=jar).json()["authenticated"] is True
    assert httpx.get(url + "/", cookies=jar, headers={"Accept": "text/html"}).status_code == 200
    # A stale cookie on a page request: back to login, and the cookie is dropped
    stale = httpx.get(url + "/dashboard", cookies={"skalds_token": "old"}, headers={"Accept": "text/html"})
    assert stale.status_code == 303 and "skalds_token=" in stale.headers.get("set-cookie", "")
    # The token never reaches the controller's log
    assert TOKEN not in secured.proc.output()


def test_login_refuses_a_client_that_keeps_guessing(tmp_path_factory):
    # Given a controller with a token (its own: the lock-out must not touch the other tests)
    server = start_dev(tmp_path_factory.mktemp("throttled"), SKALDS_API_TOKEN=TOKEN)
    try:
        login = server.url + "/api/auth/login"
        # When one address sends ten wrong tokens, each is refused as wrong
        for n in range(10):
            assert httpx.post(login, json={"token": f"guess-{n}"}).status_code == 401
        # Then the next attempt is refused without being checked, even with the right token
        locked = httpx.post(login, json={"token": TOKEN})
        assert locked.status_code == 429 and "set-cookie" not in locked.headers
        assert locked.json()["error"]["code"] == "too_many_requests"
        assert 0 < int(locked.headers["retry-after"]) <= 60
        # And so is a bearer token from the same address: guesses count wherever they are tried
        bearer = httpx.get(server.url + "/api/tasks", headers={"Authorization": f"Bearer {TOKEN}"})
        assert bearer.status_code == 429
    finally:
        stop_dev(server)


def test_the_throttle_forgets_failures_once_they_leave_the_window():
    from skalds.controller.routes.auth import LoginThrottle
    from tests.support.procs import wait_for

    throttle = LoginThrottle(limit=2, window=0.3)
    throttle.failed("a")
    assert throttle.retry_after("a") == 0  # one failure: below the limit
    throttle.failed("a")
    assert 0 < throttle.retry_after("a") <= 0.3 and throttle.retry_after("b") == 0
    wait_for(lambda: throttle.retry_after("a") == 0, timeout=5, what="the window to pass")
    throttle.failed("a")
    throttle.succeeded("a")  # a right token clears the record
    throttle.failed("a")
    assert throttle.retry_after("a") == 0
