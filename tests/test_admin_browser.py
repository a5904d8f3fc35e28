"""The API-token admin, driven in headless Chromium as a superuser would use it."""

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts import services
from accounts.models import APIToken
from accounts.tokens import token_digest
from tests.browser import log_in

pytestmark = pytest.mark.browser

PASSWORD = "admin-pw-for-tests-1"
CHANGELIST = "/admin/accounts/apitoken/"


def me(plaintext: str):
    return APIClient().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {plaintext}")


@pytest.fixture
def admin_page(browser_page):
    services.user_create(username="root", password=PASSWORD, is_superuser=True)
    log_in(browser_page, "root", PASSWORD, path="/admin/login/")
    return browser_page


@pytest.fixture
def bob():
    return services.user_create(username="bob", email="bob@example.com")


def run_action(page, action: str, tokens: list[APIToken]) -> None:
    page.goto(CHANGELIST)
    for token in tokens:
        page.check(f"input[name=_selected_action][value='{token.pk}']")
    page.select_option("select[name=action]", action)
    with page.expect_navigation():
        page.click("button[name=index]")


def row_for(page, token: APIToken):
    return page.locator("#result_list tbody tr", has_text=f"djl_{token.prefix}")


def test_create_token_shows_the_plaintext_once(admin_page, bob):
    page = admin_page
    page.goto(CHANGELIST + "add/")
    assert page.locator("input[name=digest]").count() == 0 and page.locator("input[name=prefix]").count() == 0
    page.select_option("select[name=user]", label="bob")
    page.fill("input[name=name]", "excel laptop")
    page.uncheck("input[name=scopes][value=calendar]")
    page.fill("input[name=rate_limit]", "30/m")
    with page.expect_navigation():
        page.click("input[name=_save]")

    assert "shown only this once" in page.inner_text("#content")
    plaintext = page.inner_text("code.new-token").strip()
    row = APIToken.objects.get(name="excel laptop")
    assert (row.user, row.scopes, row.rate_limit) == (bob, ["llm"], "30/m")
    assert plaintext.startswith(f"djl_{row.prefix}_") and row.digest == token_digest(plaintext)
    response = me(plaintext)
    assert response.status_code == 200, response.content
    assert response.json()["user"]["username"] == "bob" and response.json()["token"]["scopes"] == ["llm"]

    # The list: the documented columns, the new row, never the digest, and the plaintext never again.
    page.goto(CHANGELIST)
    headers = [h.strip().lower() for h in page.locator("#result_list thead th").all_inner_texts()][1:]
    assert headers == ["prefix", "name", "user", "scopes", "last used at", "expires at", "status"]
    cells = [c.strip() for c in row_for(page, row).locator("td, th").all_inner_texts()][1:]
    last_used = cells.pop(4)
    assert cells == [f"djl_{row.prefix}…", "excel laptop", "bob", "llm", "-", "active"]
    assert last_used != "-"  # the call to /api/v1/me above stamped it
    page_html = page.content()
    assert row.digest not in page_html and plaintext not in page_html

    page.goto(f"{CHANGELIST}{row.pk}/change/")
    page_html = page.content()
    assert f"djl_{row.prefix}" in page_html
    assert row.digest not in page_html and plaintext not in page_html
    assert page.locator("input[name=_save]").count() == 1  # an active token can still be edited


def test_list_filters_and_search(admin_page, bob):
    page = admin_page
    services.api_token_create(user=bob, name="laptop")
    gone, _ = services.api_token_create(user=bob, name="old phone")
    services.api_token_revoke(token=gone)

    page.goto(CHANGELIST)
    page.fill("#searchbar", "phone")
    with page.expect_navigation():
        page.press("#searchbar", "Enter")
    assert page.locator("#result_list tbody tr").count() == 1
    assert "old phone" in page.inner_text("#result_list")

    page.goto(CHANGELIST)
    with page.expect_navigation():
        page.click("#changelist-filter a[href*='status=revoked']")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1 and "old phone" in rows.inner_text() and "revoked" in rows.inner_text()


def test_bulk_revoke_then_revoked_tokens_are_read_only(admin_page, bob):
    page = admin_page
    (first, first_plain), (second, second_plain), (kept, kept_plain) = (
        services.api_token_create(user=bob, name=name) for name in ("one", "two", "kept")
    )
    run_action(page, "revoke_tokens", [first, second])

    assert "Revoked 2 token(s)." in page.inner_text(".messagelist")
    assert [APIToken.objects.get(pk=t.pk).is_revoked for t in (first, second, kept)] == [True, True, False]
    for token, plaintext in ((first, first_plain), (second, second_plain)):
        assert "revoked" in row_for(page, token).inner_text()
        response = me(plaintext)
        assert response.status_code == 401 and response.json()["error"]["code"] == "token_revoked"
    assert "active" in row_for(page, kept).inner_text()
    assert me(kept_plain).status_code == 200

    # A revoked token's page is a read-only view: no inputs, no save button.
    page.goto(f"{CHANGELIST}{first.pk}/change/")
    assert "View API token" in page.inner_text("#content")
    assert page.locator("input[name=_save]").count() == 0
    assert page.locator("input[name=name], select[name=user], input[name=scopes]").count() == 0
    assert "one" in page.inner_text("#content")

    # ... and the server refuses an edit posted anyway.
    client = Client()
    client.force_login(first.user.__class__.objects.get(username="root"))
    response = client.post(f"{CHANGELIST}{first.pk}/change/", {"user": bob.pk, "name": "renamed", "scopes": ["llm"]})
    assert response.status_code == 403
    assert APIToken.objects.get(pk=first.pk).name == "one"


def test_bulk_rotate_shows_each_new_plaintext(admin_page, bob):
    page = admin_page
    old = [services.api_token_create(user=bob, name=name, scopes=["llm"]) for name in ("excel", "script")]
    run_action(page, "rotate_tokens", [token for token, _ in old])

    assert "shown only this once" in page.inner_text("#content")
    new_plaintexts = [text.strip() for text in page.locator("code.new-token").all_inner_texts()]
    assert len(new_plaintexts) == 2
    for token, old_plaintext in old:
        new = APIToken.objects.get(rotated_from=token)
        assert (new.name, new.scopes, new.user) == (token.name, ["llm"], bob)
        assert any(p.startswith(f"djl_{new.prefix}_") and token_digest(p) == new.digest for p in new_plaintexts)
        assert APIToken.objects.get(pk=token.pk).is_revoked  # no grace period from the admin action
        assert me(old_plaintext).json()["error"]["code"] == "token_revoked"
    for plaintext in new_plaintexts:
        assert me(plaintext).status_code == 200

    page.goto(CHANGELIST)
    assert all(p not in page.content() for p in new_plaintexts)
