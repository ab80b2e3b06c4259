"""A node's labels and resources (declared, used, free) on its page in a real browser."""

from __future__ import annotations

from tests.dashboard.conftest import start_dev, stop_dev
from tests.support.procs import wait_for

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or fails under SKALDS_REQUIRE_SERVERS=1)
    expect = None


def _waiting_for_two_gpus(dev) -> str:
    """A long Counter needing two GPUs, once the dispatcher says why no node can take it."""
    task_id = dev.create(className="Counter", attachments={"ticks": 600}, requires={"gpu": 2})["id"]
    wait_for(
        lambda: dev.http.get(f"/api/tasks/{task_id}").json()["placement"] == "no online node has gpu ≥ 2 free",
        what="the reason",
    )
    return task_id


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
        task_id = _waiting_for_two_gpus(dev)

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


def _fact(page, label):
    """The value shown beside ``label`` in a task page's fields."""
    return page.locator(f"dl.facts dt:text-is('{label}') + dd")


def test_the_task_list_says_why_a_waiting_task_is_not_placed_and_follows_it_live(new_page, tmp_path):
    # Given skalds dev whose node has one GPU, a task that holds it and one that needs two, so it waits
    dev = start_dev(tmp_path, SKALD_RESOURCES="gpu=1")
    try:
        running = dev.create(className="Counter", attachments={"ticks": 600}, requires={"gpu": 1})["id"]
        wait_for(lambda: dev.status(running) == "Running", what="the first task Running")
        waiting = _waiting_for_two_gpus(dev)

        # When the list is opened
        page = new_page()
        page.goto(f"{dev.url}/#/tasks")

        # Then the waiting task's row says why it waits, in text and in its title; the running one's says nothing
        hint = page.locator(f"tr[data-task-id='{waiting}'] .placement-hint")
        expect(hint).to_have_text("waiting: no online node has gpu ≥ 2 free")
        expect(hint).to_have_attribute("title", "Waiting for a node: no online node has gpu ≥ 2 free")
        expect(page.locator(f"tr[data-task-id='{running}'] .status-cell")).to_have_text("Running")
        expect(page.locator(f"tr[data-task-id='{running}'] .placement-hint")).to_have_count(0)

        # When its requirements change behind the page's back, Then the row follows without a reload
        changed = dev.http.put(f"/api/tasks/{waiting}/requirements", json={"nodeSelector": {"zone": "mars"}})
        assert changed.status_code == 200, changed.text
        expect(hint).to_have_text("waiting: no online node has label zone=mars")

        # When the task asks for nothing it lacks, Then it runs and its row no longer says it waits
        dev.http.put(f"/api/tasks/{waiting}/requirements", json={"requires": {}, "nodeSelector": None})
        expect(page.locator(f"tr[data-task-id='{waiting}'] .status-cell")).to_have_text("Running")
        expect(hint).to_have_count(0)
    finally:
        stop_dev(dev)


def test_the_task_page_edits_the_placement_shows_refusals_and_warnings_and_follows_changes(new_page, tmp_path):
    # Given skalds dev whose node is in zone eu-1 with one GPU, and a task that needs two, so it waits
    dev = start_dev(tmp_path, SKALD_LABELS="zone=eu-1", SKALD_RESOURCES="gpu=1")
    try:
        task_id = _waiting_for_two_gpus(dev)
        page = new_page()
        page.goto(f"{dev.url}/#/tasks/{task_id}")
        expect(page.locator("#task-placement")).to_have_text("no online node has gpu ≥ 2 free")
        expect(_fact(page, "Node selector")).to_have_text("as its class declares")

        # When its node selector changes behind the page's back to the node's zone (so why it waits stays
        # the same: no task_placement), Then the page shows the new selector without a reload
        changed = dev.http.put(f"/api/tasks/{task_id}/requirements", json={"nodeSelector": {"zone": "eu-1"}})
        assert changed.status_code == 200 and changed.json()["placement"] == "no online node has gpu ≥ 2 free"
        expect(_fact(page, "Node selector")).to_have_text("zone=eu-1")
        expect(page.locator("#task-placement")).to_have_text("no online node has gpu ≥ 2 free")

        # When "Edit placement" is opened, Then it holds what the task has
        page.get_by_role("button", name="Edit placement").click()
        requires, selector = page.get_by_label("Requires", exact=True), page.get_by_label("Node selector", exact=True)
        expect(requires).to_have_value("gpu=2")
        expect(selector).to_have_value("zone=eu-1")
        expect(page.locator("#placement-requires-class")).not_to_be_checked()
        expect(page.locator("#placement-nodeSelector-class")).not_to_be_checked()

        # When a bad amount is saved, Then the API's message is shown under the field and nothing changes
        requires.fill("gpu=-1")
        page.get_by_role("button", name="Save placement").click()
        expect(page.locator("#placement-requires-error")).to_contain_text("amount of 'gpu' must be a number ≥ 0")
        expect(requires).to_have_attribute("aria-invalid", "true")
        assert dev.http.get(f"/api/tasks/{task_id}").json()["requires"] == {"gpu": 2.0}

        # When one GPU and a zone no node is in are saved, Then the page shows them and why it still waits
        requires.fill("gpu=1")
        selector.fill("zone=mars")
        page.get_by_role("button", name="Save placement").click()
        expect(page.locator("#placement-form")).to_have_count(0)
        expect(_fact(page, "Requires")).to_have_text("gpu=1")
        expect(_fact(page, "Node selector")).to_have_text("zone=mars")
        expect(page.locator("#task-placement")).to_have_text("no online node has label zone=mars")
        item = dev.http.get(f"/api/tasks/{task_id}").json()
        assert (item["requires"], item["nodeSelector"]) == ({"gpu": 1.0}, {"zone": "mars"})

        # When the selector goes back to the class's, Then the task runs
        page.get_by_role("button", name="Edit placement").click()
        page.locator("#placement-nodeSelector-class").check()
        expect(selector).to_be_disabled()
        page.get_by_role("button", name="Save placement").click()
        expect(page.locator("#task-status")).to_have_text("Running")
        expect(_fact(page, "Node selector")).to_have_text("as its class declares")
        expect(page.locator("#placement-warnings")).to_be_hidden()

        # When a running task is given more, Then the answer's warning says it is not moved
        page.get_by_role("button", name="Edit placement").click()
        requires.fill("gpu=1,slots=2")
        page.get_by_role("button", name="Save placement").click()
        expect(page.locator("#placement-warnings")).to_contain_text("it is not moved")
        expect(_fact(page, "Requires")).to_have_text("gpu=1, slots=2")

        # When the task is cancelled while the form is open, Then saving shows the refusal in the form
        page.get_by_role("button", name="Edit placement").click()
        assert dev.http.put(f"/api/tasks/{task_id}/status", json={"status": "Cancelled"}).status_code == 200
        expect(page.locator("#task-status")).to_have_text("Cancelled")
        requires.fill("gpu=1")
        page.get_by_role("button", name="Save placement").click()
        expect(page.locator("#placement-error")).to_contain_text("is Cancelled")
        # and once it is closed, a cancelled task offers no placement edit
        page.get_by_role("button", name="Cancel", exact=True).click()
        expect(page.get_by_role("button", name="Edit placement")).to_be_hidden()
    finally:
        stop_dev(dev)
