"""Swagger UI and ReDoc load nothing from outside the app: every request the page makes goes to its own origin,
or is refused by the page's Content-Security-Policy before it leaves the browser."""

from urllib.parse import urlsplit

import pytest

from tests.admin_pages import WIDTH, screenshot


@pytest.mark.browser
@pytest.mark.parametrize(("path", "ready"), [("/api/docs/", ".swagger-ui .info"), ("/api/redoc/", "h1")])
def test_api_docs_load_only_from_the_app(browser_page, live_server, tmp_path, path, ready):
    page = browser_page
    page.set_viewport_size({"width": WIDTH, "height": 900})
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    blocked = []
    page.on("requestfailed", lambda request: blocked.append((request.url, request.failure)))
    page.goto(path)
    page.wait_for_selector(ready)
    page.wait_for_load_state("networkidle")
    screenshot(page, tmp_path, path.strip("/").replace("/", "-"))
    assert "djllm" in page.inner_text("body").lower()
    origin = urlsplit(live_server.url)[:2]
    outside = {url for url in requested if urlsplit(url).scheme not in ("data", "blob") and urlsplit(url)[:2] != origin}
    # ReDoc's bundle asks for Redocly's logo on their CDN: the page's Content-Security-Policy refuses it before
    # anything leaves the browser. Every other request is to the app.
    refused = {url for url, failure in blocked if failure == "csp"}
    assert requested and outside <= refused, (outside, blocked)
    assert outside <= {"https://cdn.redoc.ly/redoc/logo-mini.svg"}, outside
    assert "fonts.googleapis" not in page.content()


@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
def test_api_docs_pages_allow_only_their_own_origin(client, path):
    response = client.get(path)
    assert response.status_code == 200
    policy = dict(part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";"))
    assert policy["default-src"] == "'self'" and policy["img-src"] == "'self' data:"
    assert "https:" not in response["Content-Security-Policy"] and "fonts.googleapis" not in response.content.decode()
