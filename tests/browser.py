"""Headless Chromium for page tests: `browser_page` is a Playwright page on pytest-django's `live_server`.

Registered for the whole suite through `pytest_plugins` in `tests/conftest.py`, so any test can write::

    @pytest.mark.browser
    def test_something(browser_page, live_server):
        browser_page.goto("/account/")          # relative to live_server.url
        log_in(browser_page, "alice", "pw-for-tests-123")

Chromium is Debian's `/usr/bin/chromium` (override with `CHROMIUM_PATH`); nothing is ever downloaded.
It is launched once per session; each test gets a fresh context (its own cookies) and page.

Playwright's sync API keeps an asyncio loop marked as running in this thread. While a page test runs, Django's
ORM therefore needs `DJANGO_ALLOW_ASYNC_UNSAFE`; between page tests the loop is hidden again so that the rest
of the suite (async tests, Django's async-safety guard) behaves exactly as without a browser.
"""

import asyncio
import os
import re

import pytest

CHROMIUM_PATH = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DEFAULT_TIMEOUT_MS = 15_000


class _Chromium:
    """The session's Playwright driver, browser and the loop Playwright drives them with."""

    def __init__(self) -> None:
        from playwright.sync_api import sync_playwright

        self.playwright = sync_playwright().start()
        # Playwright leaves its loop registered as this thread's running loop; remember it, then hide it.
        self.loop = asyncio.get_running_loop()
        self.browser = self.playwright.chromium.launch(executable_path=CHROMIUM_PATH, args=CHROMIUM_ARGS, headless=True)
        self.hide_loop()

    def show_loop(self) -> None:
        asyncio._set_running_loop(self.loop)

    def hide_loop(self) -> None:
        asyncio._set_running_loop(None)

    def close(self) -> None:
        self.show_loop()
        try:
            self.browser.close()
        finally:
            self.playwright.stop()
            self.hide_loop()


@pytest.fixture(scope="session")
def chromium():
    """One headless Chromium for the session (started on first use)."""
    if not os.path.exists(CHROMIUM_PATH):
        pytest.fail(f"No Chromium at {CHROMIUM_PATH}: run `make browser` (Debian's chromium package).")
    driver = _Chromium()
    yield driver
    driver.close()


@pytest.fixture
def browser_page(chromium, live_server, monkeypatch):
    """A fresh Playwright page whose relative URLs go to `live_server.url`."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    chromium.show_loop()
    context = chromium.browser.new_context(base_url=live_server.url)
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()
        chromium.hide_loop()


def log_in(page, username: str, password: str, path: str = "/account/login/") -> None:
    """Fill Django's login form (the account page's or, with path="/admin/login/", the admin's) and submit."""
    if path:
        page.goto(path)
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("[type=submit]")
    if re.search(r"/login/", page.url):
        raise AssertionError(f"login as {username!r} failed; still on {page.url}")
