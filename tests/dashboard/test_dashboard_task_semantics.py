"""In a real browser: why a task whose dependency was cancelled failed, and a deleted ended task
leaving the task list live."""

from __future__ import annotations

import uuid

from tests.dashboard.conftest import shot

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or fails under SKALDS_REQUIRE_SERVERS=1)
    expect = None

RUNNING_S = 20_000  # ms: dispatch + worker start + first heartbeat + one SSE pass, with margin


def test_a_task_failed_for_its_dependency_says_so_on_its_page(dev, new_page):
    # Given a long Counter and a task waiting for it
    first = dev.create(className="Counter", name="ui-dep-first", attachments={"ticks": 1000})
    second = dev.create(className="Counter", name="ui-dep-second", dependencies=[first["id"]], attachments={})
    page = new_page()
    page.goto(f"{dev.url}/#/tasks/{second['id']}")
    expect(page.locator("#task-status [data-status]")).to_have_text("Created", timeout=RUNNING_S)

    # When the first is cancelled
    assert dev.http.put(f"/api/tasks/{first['id']}/status", json={"status": "Cancelled"}).status_code == 200

    # Then the second fails, and its page says which dependency and why
    expect(page.locator("#task-status [data-status]")).to_have_text("Failed", timeout=RUNNING_S)
    expect(page.locator("#exception")).to_contain_text(f"dependency {first['id']} was cancelled", timeout=10_000)
    shot(page, "task-dependency-failed")


def test_a_deleted_ended_task_leaves_the_list(dev, new_page):
    # Given a finished task shown in the task list
    name = f"ui-gone-{uuid.uuid4().hex[:6]}"
    task = dev.create(className="Counter", name=name, attachments={"ticks": 1, "interval": 0.01})
    page = new_page()
    page.goto(f"{dev.url}/#/tasks?q={name}")
    row = page.locator(f'tr[data-task-id="{task["id"]}"]')
    expect(row.locator("[data-status]")).to_have_text("Finished", timeout=RUNNING_S)

    # When it is deleted behind the page's back, Then its row goes without a reload
    assert dev.http.delete(f"/api/tasks/{task['id']}").status_code == 204
    expect(row).to_have_count(0, timeout=3_000)
    expect(page.get_by_text("No tasks.")).to_be_visible()
