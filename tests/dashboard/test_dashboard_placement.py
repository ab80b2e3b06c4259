"""A node's labels and resources (declared, used, free) on its page in a real browser."""

from __future__ import annotations

from tests.dashboard.conftest import start_dev, stop_dev
from tests.support.procs import wait_for

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or fails under SKALDS_REQUIRE_SERVERS=1)
    expect = None


def test_a_nodes_page_shows_its_labels_and_resources(new_page, tmp_path):
    # Given skalds dev whose node declares a zone and two GPUs, one of them used by a task
    dev = start_dev(tmp_path, SKALD_LABELS="zone=eu-1", SKALD_RESOURCES="gpu=2")
    try:
        node = next(s["id"] for s in dev.http.get("/api/skalds").json()["items"] if s["type"] == "node")
        body = {"className": "Counter", "attachments": {"ticks": 600}, "requires": {"gpu": 1}}
        task_id = dev.http.post("/api/tasks", json=body).json()["id"]
        wait_for(lambda: dev.http.get(f"/api/tasks/{task_id}").json()["status"] == "Running", what="task Running")

        # When its page is opened
        page = new_page()
        page.goto(f"{dev.url}/#/skalds/{node}")

        # Then it shows the labels and what is used and free
        expect(page.get_by_text("zone=eu-1", exact=True)).to_be_visible()
        expect(page.get_by_text("gpu 1 / 2 (1 free)", exact=True)).to_be_visible()
    finally:
        stop_dev(dev)


def test_a_waiting_tasks_page_says_why_and_follows_new_requirements_live(new_page, tmp_path):
    # Given skalds dev whose node has one GPU, and a task that needs two, so it waits
    dev = start_dev(tmp_path, SKALD_RESOURCES="gpu=1")
    try:
        task_id = dev.create(className="Counter", attachments={"ticks": 600}, requires={"gpu": 2})["id"]
        wait_for(
            lambda: dev.http.get(f"/api/tasks/{task_id}").json()["placement"] == "no online node has gpu ≥ 2 free",
            what="the reason",
        )

        # When its page is opened, Then it says why it waits and what it requires
        page = new_page()
        page.goto(f"{dev.url}/#/tasks/{task_id}")
        reason = page.locator("#task-placement")
        expect(reason).to_have_text("no online node has gpu ≥ 2 free")
        expect(page.get_by_text("gpu=2", exact=True)).to_be_visible()
        expect(page.get_by_text("as its class declares", exact=True)).to_be_visible()  # its node selector

        # When its requirements change behind the page's back, Then the page follows without a reload
        changed = dev.http.put(f"/api/tasks/{task_id}/requirements", json={"requires": {"gpu": 3}})
        assert changed.status_code == 200, changed.text
        expect(reason).to_have_text("no online node has gpu ≥ 3 free")

        # When it asks for what the node has, Then it runs and the reason goes
        dev.http.put(f"/api/tasks/{task_id}/requirements", json={"requires": {"gpu": 1}})
        expect(page.locator("#task-status")).to_have_text("Running")
        expect(reason).to_have_count(0)
        expect(page.get_by_text("gpu=1", exact=True)).to_be_visible()
    finally:
        stop_dev(dev)
