"""The dashboard in a real browser against a real ``skalds dev`` (auth off: loopback, no token).

Every wait is a Playwright condition (``expect`` with a timeout) — the page shows what the
controller's SSE streams and API say, so each assertion waits for the UI to get there.
"""

from __future__ import annotations

import re
import uuid

import httpx

from tests.dashboard.conftest import PHONE, shot

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or fails under SKALDS_REQUIRE_SERVERS=1)
    expect = None

RUNNING_S = 20_000  # ms: dispatch + worker start + first heartbeat + one SSE pass, with margin on a busy machine


def _status(page):
    return page.locator("#task-status [data-status]")


def _confirm(page, action: str) -> None:
    """Click a task action, then confirm it in the dialog."""
    page.get_by_role("button", name=f"{action} task", exact=True).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name=f"{action} task", exact=True).click()
    expect(dialog).to_be_hidden()


def test_create_from_form_and_see_it_running(dev, new_page):
    page = new_page()
    name = f"ui-counter-{uuid.uuid4().hex[:6]}"

    # Given the New task page, with the form generated from Counter's attachment schema
    page.goto(f"{dev.url}/#/new")
    page.get_by_label("Class").select_option("Counter")
    step = page.get_by_label("Step", exact=True)
    expect(step).to_have_value("1")  # the schema's default
    expect(page.get_by_label("Ticks", exact=True)).to_have_value("60")
    shot(page, "new-task")

    # When the operator fills it in and creates the task
    step.fill("1")
    page.get_by_label("Ticks", exact=True).fill("100000")
    page.get_by_label("Interval", exact=True).fill("0.2")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_role("button", name="Create task").click()

    # Then the task's page opens and shows it Running, live (no reload)
    expect(page).to_have_url(re.compile(r"#/tasks/[0-9a-f]{32}$"))
    task_id = page.url.rsplit("/", 1)[1]
    page.evaluate("window.__sameDocument = true")
    expect(page.get_by_role("heading", name=name)).to_be_visible()
    expect(_status(page)).to_have_text("Running", timeout=RUNNING_S)
    assert dev.status(task_id) == "Running"

    # When the step attachment is changed in the page, Then the task has the new value
    page.get_by_label("Step", exact=True).fill("7")
    page.get_by_role("button", name="Save attachments").click()
    expect(page.locator("#attachments-json")).to_contain_text('"step": 7')
    assert dev.http.get(f"/api/tasks/{task_id}").json()["attachments"]["step"] == 7
    expect(page.locator("#heartbeat svg path.chart-line")).to_have_count(1)
    expect(page.locator("#status-history")).to_contain_text("Running")
    assert page.evaluate("window.__sameDocument") is True
    shot(page, "task")

    # And the task lists show it, with filters and search in the address
    page.goto(f"{dev.url}/#/tasks")
    page.get_by_label("Status").select_option("Running")
    expect(page).to_have_url(re.compile(r"status=Running"))
    page.get_by_label("Search").fill(name)
    expect(page).to_have_url(re.compile(rf"q={name}"))
    rows = page.locator("table.tasks tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-task-id", task_id)
    shot(page, "tasks")

    # And the list pages through the tasks
    dev.create(className="Counter", name="ui-short", attachments={"ticks": 1, "interval": 0.1})
    page.goto(f"{dev.url}/#/tasks?pageSize=1")

    # (the same document still shows the filtered list until the new one renders, so each page is
    # matched against the API's answer to the same query, not read back from the table)
    def api_page(n: int) -> str:
        query = {"page": n, "pageSize": 1, "order": "-createDateTime"}
        items = dev.http.get("/api/tasks", params=query).json()["items"]
        return str(items[0]["id"])

    first, second = api_page(1), api_page(2)
    assert first != second
    pager = page.get_by_role("navigation", name="Pages of tasks")
    expect(pager).to_contain_text(re.compile(r"Page 1 of ([2-9]|\d\d+)"))
    expect(page.locator("table.tasks tbody tr")).to_have_count(1)
    expect(page.locator("table.tasks tbody tr").first).to_have_attribute("data-task-id", first)
    pager.get_by_role("button", name="Next").click()
    expect(page).to_have_url(re.compile(r"page=2"))
    expect(pager).to_contain_text("Page 2 of")
    expect(page.locator("table.tasks tbody tr").first).to_have_attribute("data-task-id", second)

    page.get_by_role("link", name="dev-node").first.click()
    expect(page.get_by_role("heading", name="Skald dev-node")).to_be_visible()
    expect(page.locator(f'tr[data-task-id="{task_id}"]')).to_be_visible()
    shot(page, "skald")

    dev.http.put(f"/api/tasks/{task_id}/status", json={"status": "Cancelled"})


def test_hot_update_reaches_the_worker_as_its_log_tail_shows(dev, new_page):
    # Given a running Counter task, open on its page, its log tail following the worker
    task = dev.create(className="Counter", name="ui-update", attachments={"ticks": 100000, "interval": 0.2})
    page = new_page()
    page.goto(f"{dev.url}/#/tasks/{task['id']}")
    expect(_status(page)).to_have_text("Running", timeout=RUNNING_S)
    log = page.locator("#log-lines")
    expect(log).to_contain_text("(step 1)", timeout=10_000)

    # When the step attachment is changed in the page
    page.get_by_label("Step", exact=True).fill("7")
    page.get_by_role("button", name="Save attachments").click()

    # Then the worker's own log lines show it took the new value
    expect(log).to_contain_text("update: step=7", timeout=10_000)
    expect(log).to_contain_text("step 1 -> 7")
    expect(log).to_contain_text("(step 7)", timeout=10_000)
    shot(page, "task-log")
    dev.http.put(f"/api/tasks/{task['id']}/status", json={"status": "Cancelled"})


def test_pause_resume_and_cancel_with_confirmation(dev, new_page):
    # Given a running Counter task, open on its page
    task = dev.create(className="Counter", name="ui-actions", attachments={"ticks": 100000, "interval": 0.2})
    page = new_page()
    page.goto(f"{dev.url}/#/tasks/{task['id']}")
    expect(_status(page)).to_have_text("Running", timeout=RUNNING_S)

    # When Pause is clicked and then dismissed in the dialog, Then nothing changes
    page.get_by_role("button", name="Pause task", exact=True).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("ui-actions")
    shot(page, "confirm-dialog")
    dialog.get_by_role("button", name="Back").click()
    expect(dialog).to_be_hidden()
    assert dev.status(task["id"]) == "Running"

    # When Pause is confirmed, Then the task is Paused
    _confirm(page, "Pause")
    expect(_status(page)).to_have_text("Paused", timeout=10_000)
    assert dev.status(task["id"]) == "Paused"

    # When it is resumed, Then it runs again
    _confirm(page, "Resume")
    expect(_status(page)).to_have_text("Running", timeout=RUNNING_S)

    # When it is cancelled, Then it is Cancelled and Retry is offered
    _confirm(page, "Cancel")
    expect(_status(page)).to_have_text("Cancelled", timeout=10_000)
    assert dev.status(task["id"]) == "Cancelled"
    expect(page.locator("#status-history")).to_contain_text("Paused")

    # When it is retried, Then it runs again
    _confirm(page, "Retry")
    expect(_status(page)).to_have_text("Running", timeout=RUNNING_S)
    dev.http.put(f"/api/tasks/{task['id']}/status", json={"status": "Cancelled"})


def test_wrong_value_shows_the_api_message_next_to_the_field(dev, new_page):
    page = new_page()
    page.goto(f"{dev.url}/#/new")
    page.get_by_label("Class").select_option("Counter")

    # When a value the schema forbids is submitted
    page.get_by_label("Step", exact=True).fill("5000")
    page.get_by_role("button", name="Create task").click()

    # Then the API's own message is shown under that field, which is marked invalid
    api = dev.http.post("/api/tasks", json={"className": "Counter", "attachments": {"step": 5000}})
    assert api.status_code == 422
    message = next(d["message"] for d in api.json()["error"]["details"] if d["field"] == "attachments.step")
    error = page.locator('[data-field="attachments.step"] .field-error')
    expect(error).to_have_text(message)
    expect(page.get_by_label("Step", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(page.locator('[data-field="attachments.ticks"] .field-error')).to_be_hidden()
    expect(page).to_have_url(re.compile(r"#/new$"))
    shot(page, "new-task-invalid")

    # And a task-level field error lands under its own field too
    page.get_by_label("Step", exact=True).fill("2")
    page.get_by_label("Priority", exact=True).fill("11")
    page.get_by_role("button", name="Create task").click()
    expect(page.locator('[data-field="priority"] .field-error')).to_contain_text("10")
    expect(error).to_be_hidden()

    # And a required field left empty is named under that field (Camera needs an RTSP URL)
    page.get_by_label("Priority", exact=True).fill("0")
    page.get_by_label("Class").select_option("Camera")
    page.get_by_role("button", name="Create task").click()
    expect(page.locator('[data-field="attachments.rtspUrl"] .field-error')).to_be_visible()
    expect(page.locator('[data-field="attachments.rtspUrl"] .field-error')).to_contain_text("''")


def test_overview_updates_live_and_every_page_fits_a_phone(dev, new_page):
    # Given the overview
    page = new_page()
    page.goto(f"{dev.url}/")
    running = page.locator('.stat[data-status="Running"] .stat-value')
    expect(running).to_have_text(re.compile(r"^\d+$"))
    expect(page.locator("#skalds-online")).to_have_text("1")
    expect(page.locator("#conn")).to_have_text("Live")
    before = int(running.inner_text())
    page.evaluate("window.__sameDocument = true")

    # When a task starts behind the page's back, Then the counts follow without a reload
    task = dev.create(className="Counter", name="ui-overview", attachments={"ticks": 100000, "interval": 0.2})
    expect(running).to_have_text(str(before + 1), timeout=RUNNING_S)
    expect(page.locator("#running-per-skald")).to_contain_text("dev-node")
    expect(page.locator("#activity")).to_contain_text("ui-overview", timeout=10_000)
    expect(page.locator("#timeline svg")).to_be_visible()
    assert page.evaluate("window.__sameDocument") is True
    shot(page, "overview")

    # And the skalds page lists the node with its classes and heartbeat age
    page.get_by_role("link", name="Skalds", exact=True).click()
    row = page.locator('tr[data-skald-id="dev-node"]')
    expect(row).to_contain_text("online")
    expect(row).to_contain_text("Counter")
    expect(row.locator("td.ago")).to_have_text(re.compile(r"\d+ s ago"))
    shot(page, "skalds")

    # And at phone width every page fits the screen, and every control has a label
    phone = new_page(PHONE)
    pages = {
        "overview": "#/",
        "skalds": "#/skalds",
        "tasks": "#/tasks",
        "task": f"#/tasks/{task['id']}",
        "new-task": "#/new",
    }
    for name, where in pages.items():
        phone.goto(f"{dev.url}/{where}")
        expect(phone.locator("main h1")).to_be_visible()
        expect(phone.locator("main [role=status]:text('Loading')")).to_have_count(0)
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{name} is {width} px wide at phone width"
        unlabelled = phone.evaluate(
            """() => [...document.querySelectorAll('input, select, textarea, button')]
                .filter(el => !el.closest('[hidden]') && el.type !== 'hidden')
                .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                              && !(el.textContent || '').trim())
                .map(el => el.outerHTML)"""
        )
        assert not unlabelled, f"controls without a label on {name}: {unlabelled}"
        shot(phone, f"phone-{name}")

    dev.http.put(f"/api/tasks/{task['id']}/status", json={"status": "Cancelled"})


def test_keyboard_reaches_the_pages(dev, new_page):
    page = new_page()
    page.goto(f"{dev.url}/")
    expect(page.locator("#conn")).to_have_text("Live")
    # The skip link comes first, then the main navigation
    page.keyboard.press("Tab")
    expect(page.locator("#skip-link")).to_be_focused()
    focused = []
    for _ in range(6):
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.textContent.trim()"))
        if focused[-1] == "Tasks":
            break
    assert focused[-1] == "Tasks", focused
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"#/tasks$"))
    expect(page.get_by_role("heading", name="Tasks", exact=True)).to_be_visible()
    # The filters are reachable by keyboard too
    page.get_by_label("Search").focus()
    page.keyboard.press("Tab")
    expect(page.get_by_label("Status")).to_be_focused()


def test_open_controller_needs_no_login(dev):
    r = httpx.get(dev.url + "/api/auth/session")
    assert r.json() == {"auth": "open", "authenticated": True}
    assert httpx.get(dev.url + "/", headers={"Accept": "text/html"}).status_code == 200
    assert httpx.get(dev.url + "/dashboard/login").status_code == 200


def test_a_finished_tasks_result_shows_on_its_page(dev, new_page):
    # Given a Counter that finishes after 3 ticks of 3 (its main returns its total)
    task = dev.create(className="Counter", name="ui-result", attachments={"ticks": 3, "step": 3, "interval": 0.01})
    page = new_page()
    page.goto(f"{dev.url}/#/tasks/{task['id']}")
    # Then, once Finished, its page shows the result main returned
    expect(_status(page)).to_have_text("Finished", timeout=RUNNING_S)
    expect(page.locator("#result-json")).to_contain_text('"total": 9', timeout=10_000)
    expect(page.locator("#result-json")).to_contain_text('"ticks": 3')
    assert dev.http.get(f"/api/tasks/{task['id']}").json()["result"] == {"total": 9, "ticks": 3}
