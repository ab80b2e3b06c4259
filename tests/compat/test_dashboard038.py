"""The web dashboard of Skalds 0.3.8, unchanged, against our controller in Chromium: every page,
the tasks page's status filter, the task dialog's "Update Attachments" and "Set Cancelled", and a
status change arriving over SSE without a reload.

What the 0.3.8 build requests and reads is listed in ``skalds/controller/routes/compat.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.controller.conftest import online
from tests.dashboard.conftest import shot
from tests.support.procs import wait_for

pytestmark = pytest.mark.timeout(180)

LONG = {"duration": 300}


def _row(page: Any, task_id: str) -> Any:
    return page.locator("tbody tr", has_text=task_id)


def test_the_038_dashboard_runs_against_our_controller(
    dashboard038: Path, start_controller, start_skald, events, new_page
):
    # Given our controller serving the 0.3.8 build at /dashboard, a node skald, and tasks in each state
    api = start_controller(SKALDS_DASHBOARD_DIR=str(dashboard038))
    start_skald("node-a")
    wait_for(lambda: online(api, "node-a"), what="node-a online")
    api.create(id="t-edit", className="Recorder", attachments=LONG)
    api.create(id="t-live", className="Recorder", attachments=LONG)
    api.create(id="t-done", className="Recorder", attachments={"duration": 0})
    wait_for(lambda: api.status_is("t-done", "Finished"), timeout=20, what="t-done Finished")
    for task_id in ("t-edit", "t-live"):
        wait_for(lambda t=task_id: bool(events(t, "main")), timeout=20, what=f"{task_id} main")
    # and its page under our security headers (it needs no inline script: same policy as ours)
    index = api.http.get("/dashboard/")
    assert index.status_code == 200 and '<div id="root">' in index.text
    assert "script-src 'self'" in index.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in index.headers["content-security-policy"]
    assert index.headers["x-frame-options"] == "DENY"
    assert "Skalds" in api.http.get("/").text  # ours still at /

    page = new_page()
    refused: list[str] = []  # anything the Content Security Policy blocked
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)

    # When the overview opens, Then it shows the counts
    page.goto(api.url + "/dashboard/")
    card = lambda name: page.locator(".card", has=page.get_by_text(name, exact=True))  # noqa: E731
    card("Total Skalds").get_by_text("1 online").wait_for()
    assert card("Total Skalds").locator(".text-2xl").inner_text() == "1"
    assert card("Total Tasks").locator(".text-2xl").inner_text() == "3"
    card("Total Tasks").get_by_text("2 running").wait_for()
    assert card("Finished Tasks").locator(".text-2xl").inner_text() == "1"
    assert card("Failed Tasks").locator(".text-2xl").inner_text() == "0"
    shot(page, "038-overview")

    # When the Skalds page opens, Then it lists the node: online, its classes, its two tasks, live
    page.get_by_role("link", name="Skalds").first.click()
    node = _row(page, "node-a")
    node.get_by_text("Online").wait_for()
    assert "node" in node.inner_text() and "Recorder" in node.inner_text()
    wait_for(lambda: node.locator("td").last.inner_text().strip() == "2", what="2 current tasks")
    page.get_by_text("Live Updates").wait_for()  # both SSE streams open
    shot(page, "038-skalds")

    # When the Tasks page opens, Then all three are listed with their status
    page.get_by_role("link", name="Tasks").first.click()
    _row(page, "t-done").get_by_text("Finished").wait_for()
    _row(page, "t-edit").get_by_text("Running").wait_for()
    _row(page, "t-live").get_by_text("Running").wait_for()
    # and the class filter offers the stored classes
    assert "Recorder" in page.locator("select").first.inner_text()

    # When the status filter asks for Finished, Then only t-done is listed
    status_filter = page.locator("select", has=page.locator("option", has_text="All Status"))
    status_filter.select_option("Finished")
    _row(page, "t-edit").wait_for(state="detached")
    _row(page, "t-done").wait_for()  # the filtered page (while it loads, no row is shown)
    assert page.locator("tbody tr").count() == 1
    # and Running lists the two others
    status_filter.select_option("Running")
    _row(page, "t-live").wait_for()
    assert page.locator("tbody tr").count() == 2 and _row(page, "t-done").count() == 0
    shot(page, "038-tasks-running")

    # When t-edit's dialog sends new attachments
    _row(page, "t-edit").get_by_role("button", name="Details").click()
    dialog = page.locator("div.fixed", has=page.get_by_role("heading", name="Task Details"))
    text = dialog.locator("textarea")
    assert json.loads(text.input_value())["duration"] == 300
    text.fill(json.dumps({"duration": 300, "someValue": 7, "label": "from-038"}))
    dialog.get_by_role("button", name="Update Attachments").click()
    # Then the dialog closes on success and the worker receives them
    dialog.wait_for(state="detached")
    update = wait_for(lambda: events("t-edit", "update"), timeout=10, what="t-edit's update")
    assert update[-1]["value"] == 7 and update[-1]["label"] == "from-038"
    assert api.task("t-edit")["attachments"]["someValue"] == 7

    # When its dialog sets it Cancelled
    _row(page, "t-edit").get_by_role("button", name="Details").click()
    dialog.get_by_role("button", name="Set Cancelled").click()
    dialog.wait_for(state="detached")
    # Then the worker's release runs, the store says Cancelled and so does the row
    wait_for(lambda: events("t-edit", "release"), timeout=15, what="t-edit's release")
    assert api.task("t-edit")["status"] == "Cancelled"
    _row(page, "t-edit").get_by_text("Cancelled").wait_for()

    # When t-live is cancelled through the API, behind the page's back
    assert api.set_status("t-live", "Cancelled").status_code == 200
    # Then its row turns Cancelled without a reload (the task stream's events)
    _row(page, "t-live").get_by_text("Cancelled", exact=True).wait_for(timeout=10_000)
    shot(page, "038-live-update")

    # When the filters ask for all statuses, class Recorder and an id containing "t-do"
    status_filter.select_option("")
    page.locator("select").first.select_option("Recorder")
    page.get_by_placeholder("Filter by Task ID").fill("t-do")
    # Then only t-done is listed
    _row(page, "t-edit").wait_for(state="detached")
    _row(page, "t-done").wait_for()
    assert page.locator("tbody tr").count() == 1

    # When t-done's dialog sets it Created (0.3.x for "run it again")
    _row(page, "t-done").get_by_role("button", name="Details").click()
    dialog.get_by_role("button", name="Set Created").click()
    dialog.wait_for(state="detached")
    # Then it runs again
    wait_for(lambda: len(events("t-done", "main")) == 2, timeout=15, what="t-done's second run")
    assert not refused, refused
