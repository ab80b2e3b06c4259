"""Cordon and uncordon a node skald from its page in a real browser (each confirmed first)."""

from __future__ import annotations

from tests.dashboard.conftest import shot

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or fails under SKALDS_REQUIRE_SERVERS=1)
    expect = None


def test_cordon_and_uncordon_a_node_from_its_page(dev, new_page):
    # Given the page of the dev node skald
    node = next(s["id"] for s in dev.http.get("/api/skalds").json()["items"] if s["type"] == "node")
    page = new_page()
    page.goto(f"{dev.url}/#/skalds/{node}")

    # When it is cordoned, then uncordoned (each confirmed in the dialog)
    for action, cordoned, offered in (("Cordon", True, "Drain skald"), ("Uncordon", False, "Cordon skald")):
        page.get_by_role("button", name=f"{action} skald", exact=True).click()
        page.get_by_role("dialog").get_by_role("button", name=f"{action} skald", exact=True).click()
        expect(page.get_by_role("dialog")).to_be_hidden()

        # Then the page offers what comes next, and the API says the same
        expect(page.get_by_role("button", name=offered, exact=True)).to_be_visible()
        expect(page.locator("[data-scheduling=cordoned]")).to_have_count(1 if cordoned else 0)
        assert dev.http.get(f"/api/skalds/{node}").json()["cordoned"] is cordoned
        if cordoned:
            shot(page, "skald-cordoned")
