"""The landing page at `/` and the styled `/account/` page with the user's own spend this month."""

from decimal import Decimal
from urllib.parse import urlsplit

import pytest
from django.test import Client

from accounts import services
from llm.services import UsageDraft, usage_record_create
from tests.admin_pages import WIDTH, assert_on_screen, screenshot
from tests.browser import log_in

pytestmark = pytest.mark.django_db

PASSWORD = "dave-pw-for-tests-1"


def spend(user, model: str, cost: str, request_id: str):
    usage_record_create(
        draft=UsageDraft(
            request_id=request_id,
            endpoint="chat",
            user_id=user.pk,
            provider="openai",
            requested_model=model,
            upstream_model=model,
            status="ok",
            http_status=200,
            cost_usd=Decimal(cost),
        )
    )


@pytest.fixture
def dave():
    user = services.user_create(username="dave", password=PASSWORD)
    spend(user, "gpt-4o-mini", "0.000974100000", "d1")
    spend(user, "gpt-4o-mini", "0.001", "d2")
    spend(user, "claude-haiku-4-5", "0.25", "d3")
    return user


def test_landing_page_links_account_docs_and_admin(client):
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    for href in ('href="/account/"', 'href="/api/docs/"', 'href="/admin/"'):
        assert href in html
    assert '<link rel="stylesheet" href="/static/djllm/site.css">' in html
    assert client.get("/static/djllm/site.css").status_code == 200


def test_account_page_shows_only_the_users_own_spend(dave):
    erin = services.user_create(username="erin", password="erin-pw-for-tests-1")
    spend(erin, "secret-model-of-erin", "9", "e1")
    client = Client()
    client.force_login(dave)
    html = client.get("/account/").content.decode()
    assert 'data-testid="spend-total">$0.252</strong>' in html and "for 3 requests" in html
    assert "<td>claude-haiku-4-5</td><td>1</td><td>$0.25</td>" in html
    assert "<td>gpt-4o-mini</td><td>2</td><td>$0.00197</td>" in html
    assert "secret-model-of-erin" not in html and "$9.00" not in html

    client.force_login(erin)
    html = client.get("/account/").content.decode()
    assert "secret-model-of-erin" in html and "gpt-4o-mini" not in html and "claude-haiku" not in html


@pytest.mark.browser
@pytest.mark.parametrize("path", ["/", "/account/"])
def test_site_pages_at_1400_px_use_only_the_apps_own_files(browser_page, live_server, dave, tmp_path, path):
    page = browser_page
    page.set_viewport_size({"width": WIDTH, "height": 900})
    log_in(page, "dave", PASSWORD)
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(path)
    screenshot(page, tmp_path, "landing" if path == "/" else "account")
    assert all(urlsplit(url)[:2] == urlsplit(live_server.url)[:2] for url in requested), requested
    assert any(url.endswith("/static/djllm/site.css") for url in requested)
    # The stylesheet applies (the header bar is coloured, not browser-default).
    assert page.evaluate("getComputedStyle(document.querySelector('header.site')).display") == "flex"
    if path == "/":
        for selector in ("#link-account", "#link-docs", "#link-admin"):
            assert_on_screen(page, selector)
    else:
        for selector in ("#tokens th", "#spend-by-day td", "#spend-by-model td", "#preferences", "#google-calendar"):
            assert_on_screen(page, selector)
        assert "$0.252" in page.inner_text("#spend")
