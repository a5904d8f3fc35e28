"""Connecting Google Calendar as a person does it, in headless Chromium: /account/ -> Connect -> the (fake)
Google consent page -> djllm's callback -> "Connected". The real google-auth-oauthlib runs in the live server."""

import pytest

from accounts import services
from calendars.models import GoogleCredential
from tests.browser import log_in

pytest_plugins = ["tests.fake_google"]
pytestmark = pytest.mark.browser

PASSWORD = "dora-pw-for-tests-1"


@pytest.fixture
def dora_page(browser_page, live_server, google_settings):
    google_settings.GOOGLE_OAUTH_REDIRECT_URI = f"{live_server.url}/api/v1/calendar/oauth2callback"
    services.user_create(username="dora", email="dora@example.com", password=PASSWORD)
    log_in(browser_page, "dora", PASSWORD)
    browser_page.goto("/account/")
    return browser_page


def test_connect_and_disconnect_in_the_browser(dora_page, live_server, fake_google):
    page = dora_page
    assert "Not connected" in page.inner_text("#google-calendar")

    page.click("#calendar-connect")
    page.wait_for_url(f"{fake_google.auth_uri}?*")  # Google's consent page (the fake one)
    assert "djllm wants to access your Google Account" in page.inner_text("h1")
    assert page.locator("input[name=granted]").count() == 3

    with page.expect_navigation(url=f"{live_server.url}/account/"):
        page.click("#allow")
    assert f"Google Calendar connected as {fake_google.account_email}." in page.inner_text(".messages")
    assert f"Connected as {fake_google.account_email}." in page.inner_text("#google-calendar")
    credential = GoogleCredential.objects.get(user__username="dora")
    assert credential.status == "connected" and credential.refresh_token == fake_google.grants[-1].refresh_token

    with page.expect_navigation(url=f"{live_server.url}/account/"):
        page.click("#calendar-disconnect button")
    assert "Google Calendar disconnected." in page.inner_text(".messages")
    assert "Not connected" in page.inner_text("#google-calendar")
    assert not GoogleCredential.objects.exists()
    assert fake_google.revoked == [fake_google.grants[-1].refresh_token]


def test_cancel_on_the_consent_page(dora_page, live_server, fake_google):
    page = dora_page
    page.click("#calendar-connect")
    page.wait_for_url(f"{fake_google.auth_uri}?*")
    with page.expect_navigation(url=f"{live_server.url}/account/"):
        page.click("#deny")
    assert "You declined access; Google Calendar was not connected." in page.inner_text(".messages")
    assert "Not connected" in page.inner_text("#google-calendar")
    assert not GoogleCredential.objects.exists()


def test_unticking_the_calendar_scope(dora_page, live_server, fake_google):
    page = dora_page
    page.click("#calendar-connect")
    page.wait_for_url(f"{fake_google.auth_uri}?*")
    page.uncheck("input[name=granted][value='https://www.googleapis.com/auth/calendar.events']")
    with page.expect_navigation(url=f"{live_server.url}/account/"):
        page.click("#allow")
    assert "access to your calendar events was not granted" in page.inner_text(".messages")
    assert not GoogleCredential.objects.exists()
