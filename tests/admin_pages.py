"""Helpers for page tests at 1400 px: log in to the admin, save a screenshot, check elements are on screen."""

from accounts import services as account_services
from tests.browser import log_in

PASSWORD = "admin-pw-for-tests-1"
WIDTH = 1400


def logged_in_admin(page, username: str = "root"):
    account_services.user_create(username=username, password=PASSWORD, is_superuser=True)
    page.set_viewport_size({"width": WIDTH, "height": 900})
    log_in(page, username, PASSWORD, path="/admin/login/")
    return page


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
    """A full-page screenshot under the test's tmp dir (kept for people to look at)."""
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0
