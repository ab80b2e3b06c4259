"""The dashboard's Delete button and its bulk action on the tasks list, in a real browser against a
real ``skalds dev``. Every wait is a Playwright condition or a polled condition with a timeout."""

from __future__ import annotations

import re

from tests.dashboard.conftest import shot
from tests.support.procs import wait_for

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or fails under SKALDS_REQUIRE_SERVERS=1)
    expect = None

RUNNING_S = 20_000  # ms


def _long(dev, name: str) -> str:
    task = dev.create(className="Counter", name=name, attachments={"ticks": 100000, "interval": 0.2})
    return str(task["id"])


def test_delete_button_and_bulk_action_on_the_filtered_list(dev, new_page):
    # Given three running tasks named bulk-ui-* and one other
    ids = [_long(dev, f"bulk-ui-{n}") for n in range(3)]
    keep = _long(dev, "keep-ui")
    wait_for(lambda: all(dev.status(i) == "Running" for i in [*ids, keep]), timeout=20, what="all Running")
    page = new_page()

    # When the list is filtered by search and Pause is chosen and applied with the keyboard
    page.goto(f"{dev.url}/#/tasks?q=bulk-ui")
    expect(page.locator("tr[data-task-id]")).to_have_count(3)
    page.get_by_label("Action").focus()
    page.get_by_label("Action").select_option("pause")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Apply to matching tasks…")).to_be_focused()
    page.keyboard.press("Enter")
    # Then a dialog says how many tasks a dry run found, and Back changes nothing
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("The filters match 3 task(s): 3 will be paused.")
    shot(page, "bulk-confirm-dialog")
    dialog.get_by_role("button", name="Back").click()
    expect(dialog).to_be_hidden()
    assert all(dev.status(i) == "Running" for i in ids)
    # When it is confirmed, the three are paused and the other task is not
    page.get_by_role("button", name="Apply to matching tasks…").click()
    dialog.get_by_role("button", name="Pause 3 task(s)", exact=True).click()
    expect(page.locator("#notices")).to_contain_text("Pause: 3 paused, 0 skipped")
    assert all(dev.status(i) == "Paused" for i in ids) and dev.status(keep) == "Running"
    expect(page.locator("tr[data-task-id]", has_text="Running")).to_have_count(0)

    # When a bulk action is asked for without a filter, it is refused with what to do
    page.goto(f"{dev.url}/#/tasks")
    page.get_by_role("button", name="Apply to matching tasks…").click()
    expect(page.locator("#notices")).to_contain_text("Choose a filter first")
    assert dev.status(keep) == "Running"

    # When one task is deleted from its page (confirmed), the list comes back without it
    page.goto(f"{dev.url}/#/tasks/{ids[0]}")
    expect(page.locator("#task-status [data-status]")).to_have_text("Paused", timeout=RUNNING_S)
    page.get_by_role("button", name="Delete task", exact=True).click()
    expect(dialog).to_contain_text("gone for good")
    dialog.get_by_role("button", name="Delete task", exact=True).click()
    expect(page).to_have_url(re.compile(r"#/tasks$"))
    assert dev.http.get(f"/api/tasks/{ids[0]}").status_code == 404

    # When the rest are deleted in bulk by their filter, the filtered list is empty
    page.goto(f"{dev.url}/#/tasks?q=bulk-ui")
    expect(page.locator("tr[data-task-id]")).to_have_count(2)
    page.get_by_label("Action").select_option("delete")
    page.get_by_role("button", name="Apply to matching tasks…").click()
    dialog.get_by_role("button", name="Delete 2 task(s)", exact=True).click()
    expect(page.locator("tr[data-task-id]")).to_have_count(0)
    assert all(dev.http.get(f"/api/tasks/{i}").status_code == 404 for i in ids)
    dev.http.put(f"/api/tasks/{keep}/status", json={"status": "Cancelled"})
