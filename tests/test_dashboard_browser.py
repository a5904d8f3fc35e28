"""The spend dashboards at 1400 px in headless Chromium: charts and key figures on screen without scrolling
sideways, and a click on a bar opens the matching usage records."""

import pytest
from django.db.models import Sum

from common.formatting import usd
from llm.models import UsageRecord
from tests.admin_pages import WIDTH, assert_on_screen, logged_in_admin, screenshot
from tests.browser import log_in
from tests.dashboard_data import send_usage

pytestmark = pytest.mark.browser


@pytest.fixture
def data(transactional_db, gateway_settings, prices):
    """Sent before the page fixtures start the browser (the gateway's async views need the loop hidden)."""
    return send_usage(gateway_settings)


def test_admin_dashboard_fits_1400_px_and_its_bars_open_the_records(data, browser_page, tmp_path):
    page = logged_in_admin(browser_page)
    page.goto("/admin/")
    with page.expect_navigation():
        page.click("#dashboard-link a")
    assert page.url.endswith("/admin/dashboard/")
    screenshot(page, tmp_path, "admin-dashboard")

    total = UsageRecord.objects.aggregate(total=Sum("cost_usd"))["total"]
    assert page.inner_text("[data-figure=cost]").strip() == usd(total)
    assert page.inner_text("[data-figure=requests]").strip() == "7"
    for selector in ("#chart-cost svg.chart", "#chart-requests svg.chart"):
        assert page.locator(selector).is_visible(), selector
        box = page.locator(selector).bounding_box()
        assert box["width"] > 300 and box["height"] > 100, (selector, box)  # drawn at a readable size
    assert_on_screen(page, "#dash-totals dd")
    assert_on_screen(page, ".dash-chart")
    for table in ("#top-users", "#top-tokens", "#top-models", "#latency", "#cache", "#unpriced", "#budgets"):
        assert_on_screen(page, f"{table} td", within=table)  # no column cut off or scrolled away
    assert page.locator("#chart-cost .chart-legend li", has_text="openai").is_visible()

    # The toggle stacks cost by model instead.
    with page.expect_navigation():
        page.click("#chart-cost .dash-toggle a")
    assert "split=model" in page.url
    assert page.locator("#chart-cost .chart-legend li", has_text="claude-haiku-4-5").is_visible()
    assert_on_screen(page, ".dash-chart")

    # A bar is a link to its day's records of that model.
    with page.expect_navigation():
        page.locator("#chart-cost svg a").first.click()
    assert "/admin/llm/usagerecord/" in page.url and "upstream_model=" in page.url
    assert page.locator("#result_list tbody tr").count() >= 1


def test_account_dashboard_fits_1400_px_and_shows_only_the_users_figures(data, browser_page, tmp_path):
    page = browser_page
    page.set_viewport_size({"width": WIDTH, "height": 900})
    log_in(page, "alice", "alice-pw-for-tests-1")
    page.goto("/account/")
    page.locator("#dashboard").scroll_into_view_if_needed()
    screenshot(page, tmp_path, "account-dashboard")

    alice = UsageRecord.objects.filter(user=data.alice)
    assert page.inner_text("#dashboard [data-figure=requests]").strip() == str(alice.count())
    assert page.inner_text("#dashboard [data-figure=cost]").strip() == usd(alice.aggregate(t=Sum("cost_usd"))["t"])
    for selector in ("#chart-cost svg.chart", "#chart-requests svg.chart"):
        assert page.locator(selector).is_visible(), selector
    assert_on_screen(page, "#dashboard .dash-chart")
    assert_on_screen(page, "#dash-totals dd")
    for table in ("#top-tokens", "#top-models", "#latency", "#cache", "#unpriced", "#budgets"):
        assert_on_screen(page, f"{table} td", within=table)
    assert "gpt-3.5-turbo" not in page.inner_text("#dashboard")
