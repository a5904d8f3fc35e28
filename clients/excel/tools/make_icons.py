"""Renders the add-in's icons (clients/excel/addin/assets/icon-{16,32,64,80}.png) from one SVG with headless
Chromium, so no image library is needed. Run after changing the SVG:

    .venv/bin/python clients/excel/tools/make_icons.py
"""

from pathlib import Path

from playwright.sync_api import sync_playwright

ASSETS = Path(__file__).resolve().parents[1] / "addin" / "assets"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]  # fmt: skip
# A green tile (Excel's colour) with a white speech bubble and three dots: "ask the model from a cell".
SVG = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64" width="{size}" height="{size}">
  <rect x="2" y="2" width="60" height="60" rx="12" fill="#107c41"/>
  <path d="M14 16h36a4 4 0 0 1 4 4v20a4 4 0 0 1-4 4H30l-10 9v-9h-6a4 4 0 0 1-4-4V20a4 4 0 0 1 4-4z" fill="#fff"/>
  <circle cx="22" cy="30" r="4" fill="#107c41"/><circle cx="32" cy="30" r="4" fill="#107c41"/>
  <circle cx="42" cy="30" r="4" fill="#107c41"/>
</svg>"""


def main() -> None:
    ASSETS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        for size in (16, 32, 64, 80):
            page = browser.new_page(viewport={"width": 200, "height": 200})  # Chromium dislikes tiny windows
            svg = SVG.format(size=size).replace("<svg ", "<svg style='display:block' ", 1)
            page.set_content(f"<html><body style='margin:0;background:transparent'>{svg}</body></html>")
            clip = {"x": 0, "y": 0, "width": size, "height": size}
            page.screenshot(path=str(ASSETS / f"icon-{size}.png"), clip=clip, omit_background=True)
            page.close()
        browser.close()


if __name__ == "__main__":
    main()
