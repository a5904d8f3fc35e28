"""Admin pages at 1400 px in headless Chromium: the essentials are on screen without scrolling sideways."""

from decimal import Decimal

import pytest

from accounts import services as account_services
from llm.providers.base import Usage
from llm.services import UsageDraft, usage_record_create
from tests.admin_pages import assert_on_screen, logged_in_admin, screenshot

pytestmark = pytest.mark.browser


@pytest.fixture
def admin_page(browser_page):
    return logged_in_admin(browser_page)


def test_usage_records_list_fits_1400_px(admin_page, tmp_path):
    alice = account_services.user_create(username="alice-with-a-long-name")
    token, _ = account_services.api_token_create(user=alice, name="excel")
    for index, (status, code) in enumerate([("ok", ""), ("upstream_error", "upstream_rate_limited")]):
        usage_record_create(
            draft=UsageDraft(
                request_id=f"req-{index}-0123456789abcdef0123456789abcdef",
                endpoint="chat",
                user_id=alice.pk,
                token_id=token.pk,
                provider="anthropic",
                requested_model="claude-3-5-sonnet-20241022",
                upstream_model="claude-3-5-sonnet-20241022",
                status=status,
                http_status=200 if status == "ok" else 502,
                error_code=code,
                usage=Usage(123456, 65432),
                cost_usd=Decimal("0.000974100000"),
                latency_ms=12345,
            )
        )
    page = admin_page
    page.goto("/admin/llm/usagerecord/")
    screenshot(page, tmp_path, "usage-records")
    headers = [h.strip() for h in page.locator("#result_list thead th").all_inner_texts()][1:]
    assert headers == ["TIME", "USER / TOKEN", "UPSTREAM MODEL", "STATUS", "TOKENS IN / OUT", "COST", "LATENCY"]
    assert_on_screen(page, "#result_list thead th", within="#changelist .results")
    assert_on_screen(page, "#result_list tbody td, #result_list tbody th", within="#changelist .results")
    text = page.inner_text("#result_list")
    assert "$0.000974" in text and "123,456 / 65,432" in text and "12,345 ms" in text
    assert "upstream_rate_limited" in text and "alice-with-a-long-name" in text


def test_token_page_shows_spend_and_buttons_at_1400_px(admin_page, tmp_path):
    bob = account_services.user_create(username="bob")
    token, _ = account_services.api_token_create(user=bob, name="laptop", monthly_budget_usd=Decimal("2"))
    page = admin_page
    page.goto(f"/admin/accounts/apitoken/{token.pk}/change/")
    screenshot(page, tmp_path, "token")
    for selector in ("#token-revoke", "#token-rotate", ".budget-bar", ".usage-records-link", ".field-last_used_at"):
        assert page.locator(selector).is_visible(), selector
        assert_on_screen(page, selector)
    assert "$0 spent, $0 reserved of $2.00 (0.0%)" in page.inner_text("#content")

    with page.expect_navigation():
        page.click("#token-rotate")
    assert "Yes, rotate it" in page.inner_text("#content")
    with page.expect_navigation():
        page.click("button[name=confirm]")
    assert page.inner_text("code.new-token").startswith("djl_")
    token.refresh_from_db()
    assert token.is_revoked
