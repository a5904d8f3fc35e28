"""Admin pages at 1400 px in headless Chromium: the essentials are on screen without scrolling sideways."""

from decimal import Decimal

import pytest

from accounts import services as account_services
from llm.providers.base import Usage
from llm.services import UsageDraft, usage_record_create
from tests.browser import log_in

pytestmark = pytest.mark.browser

PASSWORD = "admin-pw-for-tests-1"
WIDTH = 1400


@pytest.fixture
def admin_page(browser_page):
    account_services.user_create(username="root", password=PASSWORD, is_superuser=True)
    browser_page.set_viewport_size({"width": WIDTH, "height": 900})
    log_in(browser_page, "root", PASSWORD, path="/admin/login/")
    return browser_page


def assert_on_screen(page, selector: str, within: str | None = None) -> None:
    """Every element the selector finds lies within the viewport's width (no horizontal scroll needed) and, with
    `within`, inside that container's box, which does not scroll sideways either (the admin's list scrolls
    inside its own column)."""
    right = WIDTH
    if within:
        container = page.locator(within).first
        assert container.evaluate("e => e.scrollWidth <= e.clientWidth"), f"{within} scrolls sideways"
        box = container.bounding_box()
        right = min(right, box["x"] + box["width"])
    boxes = [element.bounding_box() for element in page.locator(selector).all()]
    assert boxes, f"nothing matches {selector}"
    for box in boxes:
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= right + 0.5, (selector, box, right)
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH


def screenshot(page, tmp_path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0


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
