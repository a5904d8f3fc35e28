"""The `/account/` page for a normal (non-staff) user: tokens and preferences, in headless Chromium."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services
from accounts.models import APIToken, UserPreferences
from accounts.tokens import token_digest
from tests.browser import log_in

PASSWORD = "carol-pw-for-tests-1"


def me(plaintext: str):
    return APIClient().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {plaintext}")


@pytest.fixture
def carol():
    return services.user_create(username="carol", password=PASSWORD)


@pytest.mark.browser
def test_login_create_use_and_revoke_a_token(browser_page, carol):
    page = browser_page
    page.goto("/account/")
    assert "/account/login/" in page.url  # a session page, so anonymous visitors are sent to log in
    log_in(page, "carol", PASSWORD, path=None)
    assert page.url.endswith("/account/")
    assert "No tokens yet." in page.inner_text("#tokens")

    page.fill("#token-create input[name=name]", "excel")
    page.fill("#token-create input[name=expires_days]", "30")
    with page.expect_navigation():
        page.click("#token-create button[type=submit]")

    plaintext = page.inner_text("[data-testid=new-token]").strip()
    row = APIToken.objects.get(user=carol)
    assert (row.name, row.scopes) == ("excel", ["calendar", "llm"])
    assert timedelta(days=29) < row.expires_at - timezone.now() <= timedelta(days=30)
    assert row.digest == token_digest(plaintext) and plaintext.startswith(f"djl_{row.prefix}_")
    response = me(plaintext)
    assert response.status_code == 200, response.content
    assert response.json()["user"]["username"] == "carol"

    # Shown once: the page never shows it again.
    page.goto("/account/")
    assert plaintext not in page.content()
    token_row = page.locator(f"tr[data-prefix='djl_{row.prefix}']")
    assert token_row.locator(".status").inner_text().strip() == "active"

    with page.expect_navigation():
        token_row.locator("button", has_text="Revoke").click()
    assert f"Token djl_{row.prefix}… revoked." in page.inner_text(".messages")
    assert page.locator(f"tr[data-prefix='djl_{row.prefix}'] .status").inner_text().strip() == "revoked"
    assert page.locator(f"tr[data-prefix='djl_{row.prefix}'] button").count() == 0
    assert APIToken.objects.get(pk=row.pk).is_revoked
    response = me(plaintext)
    assert response.status_code == 401 and response.json()["error"]["code"] == "token_revoked"


@pytest.mark.browser
def test_preferences_reject_a_bad_timezone_and_store_a_good_one(browser_page, carol):
    page = browser_page
    log_in(page, "carol", PASSWORD)

    page.fill("#preferences input[name=timezone]", "Mars/Olympus")
    with page.expect_navigation():
        page.click("#preferences button[type=submit]")
    assert "not an IANA timezone name" in page.inner_text("#preferences .errorlist")
    assert UserPreferences.objects.get(user=carol).timezone == "UTC"

    page.select_option("#preferences select[name=default_provider]", "anthropic")
    page.fill("#preferences input[name=default_model]", "claude-3-5-haiku-latest")
    page.fill("#preferences input[name=language]", "German")
    page.fill("#preferences input[name=timezone]", "Europe/Berlin")
    with page.expect_navigation():
        page.click("#preferences button[type=submit]")
    assert "Preferences saved." in page.inner_text(".messages")
    stored = UserPreferences.objects.get(user=carol)
    assert (stored.default_provider, stored.default_model, stored.language, stored.timezone) == (
        "anthropic",
        "claude-3-5-haiku-latest",
        "German",
        "Europe/Berlin",
    )
    assert page.input_value("#preferences input[name=timezone]") == "Europe/Berlin"


@pytest.mark.browser
def test_a_post_without_the_csrf_token_is_refused(browser_page, carol):
    page = browser_page
    log_in(page, "carol", PASSWORD)
    # The browser sends its session cookie but no csrfmiddlewaretoken: what a forged form would send.
    post_without_csrf = """([url, fields]) => fetch(url, {method: "POST", body: new URLSearchParams(fields)})
        .then(r => r.status)"""
    assert page.evaluate(post_without_csrf, ["/account/tokens/create", {"name": "sneaky", "scopes": "llm"}]) == 403
    assert page.evaluate(post_without_csrf, ["/account/preferences", {"timezone": "Asia/Tokyo"}]) == 403
    # ... while the session itself is fine: the page still shows the user's account.
    page.goto("/account/")
    assert "Your account" in page.inner_text("h1")
    assert not APIToken.objects.filter(user=carol).exists()
    assert UserPreferences.objects.get(user=carol).timezone == "UTC"


@pytest.mark.django_db
def test_csrf_is_enforced_for_every_account_form(carol):
    own, _ = services.api_token_create(user=carol, name="own")
    client = Client(enforce_csrf_checks=True)
    client.force_login(carol)
    for url in ("/account/tokens/create", f"/account/tokens/{own.pk}/revoke", "/account/preferences"):
        assert client.post(url, {"name": "x", "scopes": ["llm"], "timezone": "UTC"}).status_code == 403
    assert not APIToken.objects.get(pk=own.pk).is_revoked
    assert APIToken.objects.filter(user=carol).count() == 1


@pytest.mark.django_db
def test_a_user_cannot_revoke_someone_elses_token(carol):
    dave = services.user_create(username="dave", password=PASSWORD)
    theirs, _ = services.api_token_create(user=dave)
    client = Client()
    client.force_login(carol)
    assert client.post(f"/account/tokens/{theirs.pk}/revoke").status_code == 404
    assert not APIToken.objects.get(pk=theirs.pk).is_revoked
    assert f"djl_{theirs.prefix}" not in client.get("/account/").content.decode()


@pytest.mark.django_db
def test_anonymous_posts_are_sent_to_log_in(carol):
    response = Client().post("/account/tokens/create", {"name": "x", "scopes": ["llm"]})
    assert response.status_code == 302 and response["Location"].startswith("/account/login/")
    assert not APIToken.objects.exists()
