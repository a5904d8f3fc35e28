"""Headless Chromium for page tests: `browser_page` is a Playwright page on pytest-django's `live_server`.

Registered for the whole suite through `pytest_plugins` in `tests/conftest.py`, so any test can write::

    @pytest.mark.browser
    def test_something(browser_page):
        services.user_create(username="alice", password="pw-for-tests-123")
        log_in(browser_page, "alice", "pw-for-tests-123")   # goes to /account/login/ on live_server.url
        browser_page.goto("/account/")                        # relative URLs are on live_server.url too

(`tests.factories.UserFactory` does not store its password; create users who log in with `user_create`.)

Chromium is Debian's `/usr/bin/chromium` (override with `CHROMIUM_PATH`); nothing is ever downloaded.
It is launched once per session; each test gets a fresh context (its own cookies) and page.

Prefer `page.evaluate("fetch(...)")` to `page.request` for raw HTTP calls: the latter is sent by the Playwright
driver, which keeps its connections to the live server open until the session ends.

Playwright's sync API keeps an asyncio loop marked as running in this thread. While a page test runs, Django's
ORM therefore needs `DJANGO_ALLOW_ASYNC_UNSAFE`; between page tests the loop is hidden again so that the rest
of the suite (async tests, Django's async-safety guard) behaves exactly as without a browser.
"""

import asyncio
import os
import re
import threading
import time

import pytest
from django.db import connections

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
        _wait_for_live_server_connections()


def _wait_for_live_server_connections(timeout: float = 5.0) -> None:
    """Let the live server's per-connection threads finish now that the browser's sockets are closed.

    Django's threaded test server runs them as daemon threads that its shutdown does not join; one still closing
    its database connection while `live_server` and the test database are torn down fails with "DatabaseWrapper
    objects created in a thread can only be used in that same thread" (SQLite) or "database is being accessed by
    other users" (PostgreSQL)."""
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread.name.endswith("(process_request_thread)"):
            thread.join(max(0.0, deadline - time.monotonic()))


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
        # While the loop shows, Django keeps this thread's database connections in a separate (async) slot; close
        # them before hiding it, or the connection opened during the test stays open for the rest of the session.
        connections.close_all()
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
