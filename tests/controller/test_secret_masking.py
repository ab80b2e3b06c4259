"""Exception text that quotes a DSN shows *** for its password in the API, the streams and every log."""

from __future__ import annotations

import asyncio
from typing import Any

from skalds.controller.app import _every
from skalds.controller.errors import error_body
from skalds.utils.logging import mask_secrets
from tests.controller.conftest import online
from tests.controller.sse_client import SSEReader
from tests.support.procs import wait_for

PG_PASSWORD = "hunter2-pg"
REDIS_PASSWORD = "p@ss-w0rd"  # an unencoded "@" in a password
LEAKY = f"cannot reach postgresql://admin:{PG_PASSWORD}@db:5432/skalds or redis://:{REDIS_PASSWORD}@cache:6379/0"


def test_a_password_with_an_at_sign_is_masked_whole():
    assert mask_secrets("redis://:p@ss@host:6379") == "redis://:***@host:6379"
    assert mask_secrets(f"redis://:{REDIS_PASSWORD}@cache:6379/0 down") == "redis://:***@cache:6379/0 down"
    assert mask_secrets("redis://user:a@b@c@host/0, postgresql://u:pw@db/x?a=b@c") == (
        "redis://user:***@host/0, postgresql://u:***@db/x?a=b@c"
    )
    assert mask_secrets("see https://example.com/a@b and mail ops@example.com") == (
        "see https://example.com/a@b and mail ops@example.com"
    )


def _no_secret(text: Any) -> None:
    text = str(text)
    assert PG_PASSWORD not in text and REDIS_PASSWORD not in text and "ss-w0rd" not in text, text[:2000]


def test_exception_text_is_masked_in_api_streams_and_logs(start_controller, start_skald):
    # Given a controller that logs at DEBUG (access log on) and a node
    api = start_controller(LOG_LEVEL="DEBUG")
    skald = start_skald("node-a")
    wait_for(lambda: online(api, "node-a"), what="node-a online")
    stream = SSEReader(api.url + "/api/events/tasks?taskId=leaky")
    try:
        # When a task fails with an exception whose message quotes two DSNs with passwords
        api.create(id="leaky", className="Recorder", attachments={"fail": True, "duration": 0, "label": LEAKY})
        wait_for(lambda: api.status_is("leaky", "Failed"), timeout=20, what="the task to fail")
        wait_for(lambda: stream.of("task_exception"), timeout=10, what="the exception on the stream")

        # Then the API shows the exception with *** for each password, everywhere it shows it
        task = api.task("leaky")
        assert "postgresql://admin:***@db:5432" in task["exception"] and "redis://:***@cache:6379" in task["exception"]
        for field in ("exception", "error", "statusHistory"):
            _no_secret(task[field])
        _no_secret(api.http.get("/api/tasks/leaky/heartbeat").json())
        _no_secret(api.http.get("/api/tasks/leaky/history").json())
        _no_secret(api.http.get("/api/tasks?q=leaky").json()["items"][0]["exception"])
        _no_secret(api.http.get("/api/system/activity").json())
        # And so does the task stream
        _no_secret([e for _, e in stream.events])
        assert "***" in stream.of("task_exception")[0][1]["data"]["exception"]

        # When a request carries a secret in its query string
        api.http.get("/api/tasks", params={"token": "query-secret-123"})
        wait_for(lambda: '"GET /api/tasks HTTP/1.1" 200' in api.proc.output(), what="the access log line")
        # Then the access log shows the path only
        assert "query-secret-123" not in api.proc.output()
    finally:
        stream.close()
    # And neither the controller's nor the skald's log (the worker's traceback included) shows a password
    assert "boom from main" in skald.output()
    _no_secret(api.proc.output())
    _no_secret(skald.output())


def test_a_loops_last_error_is_masked():
    # Given a background loop whose pass fails with a DSN in its message
    status: dict[str, Any] = {}

    def failing() -> None:
        raise ConnectionError(LEAKY)

    async def run() -> None:
        loop = asyncio.create_task(_every(0.01, "probe", failing, status))
        try:
            for _ in range(500):
                if status.get("lastError"):
                    break
                await asyncio.sleep(0.01)
        finally:
            loop.cancel()

    asyncio.run(run())
    # Then the status that /api/system/status shows has *** for the passwords
    assert status["lastError"].startswith("ConnectionError: cannot reach postgresql://admin:***@db")
    _no_secret(status["lastError"])


def test_api_error_messages_are_masked():
    body = error_body("backend_unavailable", LEAKY, [{"field": "store", "message": LEAKY}])
    _no_secret(body)
    assert "***" in body["error"]["message"] and "***" in body["error"]["details"][0]["message"]
