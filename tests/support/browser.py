"""Debian's chromium driven by Playwright, shared by the browser tests (dashboard, 0.3.x compat):
one browser per test session, a fresh context per page. ``scripts/test`` installs chromium; never
``playwright install`` (it downloads a browser)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("SKALDS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 900}


def unavailable(reason: str) -> None:
    if os.environ.get("SKALDS_REQUIRE_SERVERS") == "1":
        pytest.fail(f"{reason} (SKALDS_REQUIRE_SERVERS=1)")
    pytest.skip(reason)


def launch_browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed: pip install playwright (never `playwright install`)")
    if not Path(CHROMIUM).exists():
        unavailable(f"no chromium at {CHROMIUM}: apt-get install -y chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def pages(browser: Any) -> Iterator[Callable[..., Any]]:
    """``new_page(viewport=DESKTOP)``: a page in a fresh context; uncaught page errors fail the test."""
    contexts: list[Any] = []
    errors: list[str] = []

    def make(viewport: dict[str, int] = DESKTOP) -> Any:
        context = browser.new_context(viewport=viewport)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.set_default_timeout(10_000)
        return page

    yield make
    for context in contexts:
        context.close()
    assert not errors, f"uncaught errors in the page: {errors}"
