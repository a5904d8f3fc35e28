"""The Excel add-in in headless Chromium: djllm's own /excel/taskpane.html (which loads functions.js and taskpane.js,
as Excel's shared runtime does), with a fake office.js (clients/excel/test/fake-office.js) served in place of
Microsoft's CDN file, against a live djllm (uvicorn) whose upstream is the fake OpenAI server.

Cells are simulated the way Excel calls custom functions: many calls at once, each awaiting its promise. The
assertions are on what the cells would show, on djllm's usage records (one batch id for concurrent cells, `cached`
and $0 on recalculation) and on what reached the fake upstream. The task pane screenshot for docs/excel.md is taken
here too: set UPDATE_DOCS_IMAGES=1 to write it to docs/images/excel-taskpane.png.
"""

import html
import json
import os
import re
import time
import types
import zlib
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connections

from accounts import token_cache
from llm import limits
from llm.models import UsageRecord
from tests.browser import DEFAULT_TIMEOUT_MS
from tests.test_excel_office_script import job_worker  # noqa: F401  (a fixture: jobs run in a thread)

BASE_DIR = Path(__file__).resolve().parent.parent
FAKE_OFFICE_JS = BASE_DIR / "clients" / "excel" / "test" / "fake-office.js"
OFFICE_JS = "https://appsforoffice.microsoft.com/lib/1/hosted/office.js"
SCREENSHOT = BASE_DIR / "docs" / "images" / "excel-taskpane.png"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def answer(body: dict) -> str:
    return f"ANSWER[{body['messages'][-1]['content']}]"


@pytest.fixture
def addin(chromium, live_djllm, fake_upstream, monkeypatch):
    """The task pane page in a fresh context, sized like Excel's task pane; while it loads, only the live server
    is reachable and office.js is the fake."""
    fake_upstream.configure(reply=answer)
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    chromium.show_loop()
    context = chromium.browser.new_context(base_url=live_djllm.url, viewport={"width": 360, "height": 820})
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    blocked = []

    def route(r):
        url = r.request.url
        if url == OFFICE_JS:
            r.fulfill(body=FAKE_OFFICE_JS.read_text(), content_type="text/javascript")
        elif url.startswith(live_djllm.url):
            r.continue_()
        else:
            blocked.append(url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto("/excel/taskpane.html")
    page.wait_for_function("() => window.__excel && window.__excel.functions.PROMPT && window.djllmFunctions")
    # While routes are active Playwright disables the browser cache, and Chromium then sends `Cache-Control:
    # no-cache` on every request, which djllm honours by skipping its response cache. Excel sends no such header.
    # The page is loaded (office.js served from the fake); from here on it only calls its own origin.
    context.unroute_all()
    try:
        yield page
        assert errors == [], errors
        assert blocked == [], blocked
    finally:
        context.close()
        connections.close_all()
        chromium.hide_loop()


def save_token(page, token: str) -> None:
    page.evaluate("t => OfficeRuntime.storage.setItem('djllm.token', t)", token)


def cells(page, calls: list[tuple[str, list]]) -> list[dict]:
    """Calculates the cells at once, as a recalculation does, and returns what each would show."""
    return page.evaluate(
        "calls => Promise.all(calls.map(([id, args]) => __excel.calculate(id, args)))",
        [[name, args] for name, args in calls],
    )


def test_taskpane_saves_the_token_in_office_storage_and_checks_the_connection(addin, token, live_djllm):
    page = addin
    assert "No token saved" in page.text_content("#token-state")
    page.fill("#token", token[1])
    page.click("#save-token")
    page.wait_for_selector("#status.ok")
    prefix = token[0].prefix
    assert page.text_content("#token-state") == f"Token saved: djl_{prefix}_…"
    assert page.text_content("#status").startswith("Connected: token accepted, ")
    assert page.input_value("#token") == ""  # not left on screen
    assert page.evaluate("OfficeRuntime.storage.getItem('djllm.token')") == token[1]
    assert token[1] not in page.content()
    models = page.eval_on_selector_all("#models option", "options => options.map(o => o.value)")
    assert "gpt-4o-mini" in models

    page.fill("#language", "English")
    page.fill("#model", "gpt-4o-mini")
    page.click("#save-defaults")
    page.wait_for_function("document.querySelector('#status').textContent.startsWith('Defaults saved')")
    stored = page.evaluate("Promise.all(['djllm.language', 'djllm.model'].map(k => OfficeRuntime.storage.getItem(k)))")
    assert stored == ["English", "gpt-4o-mini"]
    assert page.text_content("#server") == live_djllm.url

    page.click("#forget-token")
    page.wait_for_selector("#token-state.bad")
    assert page.evaluate("OfficeRuntime.storage.getItem('djllm.token')") is None


def test_taskpane_screenshot_for_the_docs(addin, token, tmp_path):
    page = addin
    page.fill("#token", token[1])
    page.click("#save-token")
    page.wait_for_selector("#status.ok")
    page.fill("#language", "English")
    page.fill("#model", "gpt-4o-mini")
    page.evaluate("document.querySelector('#server').textContent = 'https://djllm.example.com'")
    page.evaluate("document.activeElement.blur()")
    target = SCREENSHOT if os.environ.get("UPDATE_DOCS_IMAGES") else tmp_path / "excel-taskpane.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=True)
    png = target.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_a_wrong_token_is_reported_by_the_pane(addin, db):
    page = addin
    page.fill("#token", "djl_00000000_" + "x" * 43)
    page.click("#save-token")
    page.wait_for_selector("#status.bad")
    assert page.text_content("#status").startswith("Token rejected: ")


def test_concurrent_cells_become_one_batch_and_recalculation_costs_nothing(addin, token, prices, fake_upstream):
    page = addin
    save_token(page, token[1])
    calls = [
        ("PROMPT", ["great product", "sentiment"]),
        ("PROMPT", ["awful service", "sentiment"]),
        ("PROMPT", ["it was fine", "sentiment"]),
        ("PROMPT", ["great product", "sentiment"]),  # the same text twice: one item, one bill
        ("PROMPT", [None, "sentiment"]),  # an empty cell: empty answer, no request
    ]
    first = cells(page, calls)
    assert [c.get("value") for c in first] == [
        "ANSWER[great product]",
        "ANSWER[awful service]",
        "ANSWER[it was fine]",
        "ANSWER[great product]",
        "",
    ]
    records = list(UsageRecord.objects.filter(endpoint="batch"))
    assert len(records) == 3
    assert len({r.batch_id for r in records}) == 1 and records[0].batch_id  # one batch request for all the cells
    assert {(r.status, r.type, r.source) for r in records} == {("ok", "sentiment", "excel")}
    assert all(r.cost_usd > 0 for r in records)
    assert len(fake_upstream.requests) == 3
    assert {json.loads(r.raw_body)["temperature"] for r in fake_upstream.requests} == {0}

    again = cells(page, calls)  # Excel recalculates (F9, reopening the workbook)
    assert again == first
    recalculated = UsageRecord.objects.exclude(pk__in=[r.pk for r in records])
    assert recalculated.count() == 3
    assert set(recalculated.values_list("status", flat=True)) == {"cached"}
    assert sum(r.cost_usd or Decimal(0) for r in recalculated) == 0
    assert len(fake_upstream.requests) == 3  # nothing new reached the upstream


def test_types_models_and_template_are_sent_as_given(addin, token, prices, fake_upstream):
    page = addin
    save_token(page, token[1])
    results = cells(
        page,
        [
            ("PROMPT", ["first text"]),  # default type: summary, the server's default model
            ("PROMPT", ["second text", "summary", "gpt-4o"]),
            ("PROMPT", ["third text", "KEYWORDS", "gpt-4o"]),
            # =DJLLM.TEMPLATE("translation", A1, B1:C1): Excel passes the repeating ranges as matrices.
            ("TEMPLATE", ["translation", [[["Bonjour"]], [["le", ""], ["monde", 7]]]]),
        ],
    )
    assert [r.get("value", r) for r in results] == [
        "ANSWER[first text]",
        "ANSWER[second text]",
        "ANSWER[third text]",
        "ANSWER[Bonjour\nle\nmonde\n7]",
    ]
    rows = {r.upstream_model + "/" + r.type: r.batch_id for r in UsageRecord.objects.all()}
    assert set(rows) == {"gpt-4o-mini/summary", "gpt-4o/summary", "gpt-4o/keywords", "gpt-4o-mini/translation"}
    assert len(set(rows.values())) == 4  # one batch carries one type and one model


def test_cell_errors_are_readable(addin, token, prices, settings, fake_upstream):
    page = addin
    [no_token] = cells(page, [("PROMPT", ["hello"])])
    assert no_token == {"error": "#N/A", "message": "NO TOKEN: open the djllm task pane and save your token"}

    save_token(page, token[1])
    settings.MAX_PROMPT_LENGTH = 60
    bad_type, too_long, fine, no_name = cells(
        page,
        [
            ("PROMPT", ["hello", "poem"]),
            ("PROMPT", ["x" * 100, "summary"]),
            ("PROMPT", ["short", "summary"]),
            ("TEMPLATE", [None, [[["a"]]]]),
        ],
    )
    assert bad_type["error"] == "#VALUE!" and bad_type["message"].startswith("TYPE: use one of summary, keywords")
    assert too_long["error"] == "#N/A" and too_long["message"].startswith("PROMPT_TOO_LONG: ")
    assert fine == {"value": "ANSWER[short]"}  # a failed row never fails its neighbours
    assert no_name["error"] == "#VALUE!" and no_name["message"].startswith("TEMPLATE: give a template name")

    save_token(page, "djl_00000000_" + "x" * 43)
    [rejected] = cells(page, [("PROMPT", ["hello again"])])
    assert rejected == {"error": "#N/A", "message": "TOKEN REJECTED: check the token in the djllm task pane"}


def test_throttled_cells_say_so(addin, token, prices, fake_upstream, monkeypatch):
    page = addin
    row = token[0]
    # One batch a day: the next is answered 429 with a Retry-After of hours. A window ends at an offset of its own
    # key's (the token's prefix): the limiter's clock is held a minute into this token's window, or a window ending
    # within the add-in's 60 s of waiting would let its retry inside the cell through.
    row.rate_limit = "1/d"
    row.save()
    day, offset = 86400, zlib.crc32(row.prefix.encode()) % 86400
    window_start = int(time.time()) // day * day + offset
    monkeypatch.setattr(limits, "time", types.SimpleNamespace(time=lambda: window_start + 60))
    save_token(page, token[1])
    assert cells(page, [("PROMPT", ["one"])]) == [{"value": "ANSWER[one]"}]
    throttled = cells(page, [("PROMPT", ["two"]), ("PROMPT", ["three"])])
    # Too long to sit out inside a cell: the cells say THROTTLED now and recalculate fine later.
    assert throttled == [{"error": "#N/A", "message": "THROTTLED: retry"}] * 2
    assert len(fake_upstream.requests) == 1


# ---- The range functions ------------------------------------------------------------------------------------------


def structured_answer(body: dict):
    schema = body["response_format"]["json_schema"]
    if schema["name"] == "table":
        return {"columns": ["Region", "Total"], "rows": [["North", "200"], ["South", "80"]]}
    if schema["name"] == "list":
        return {"items": ["North", "South"]}
    text = body["messages"][-1]["content"]
    return {field: f"{field}({text.split(' | ')[0]})" for field in schema["schema"]["properties"]}


def classify_answer(body: dict) -> str:
    text = body["messages"][-1]["content"]
    if "Classify" in body["messages"][0]["content"]:
        return "negative" if "late" in text else "positive"
    return answer(body)


def test_range_functions_spill_and_recalculate_for_free(addin, token, prices, fake_upstream):
    page = addin
    fake_upstream.configure(reply=classify_answer, structured=structured_answer)
    save_token(page, token[1])
    reviews = [["Great service"], ["The parcel was late"], [None]]
    calls = [
        ("EACH", [[["bonjour", "merci"], ["salut", None]], "translate to English"]),
        ("CLASSIFY", [reviews, "positive, negative"]),
        ("EXTRACT", [[["Ann Lee", "Oslo"], ["Bo Berg", "Bergen"]], [["name", "city"]]]),
        ("ASK", ["Total by region", [["Region", "Sales"], ["North", 120], ["North", 80], ["South", 80]], "table"]),
        ("ASK", ["Which regions?", [["Region"], ["North"], ["South"]], "list"]),
    ]
    first = cells(page, calls)
    each, classified, extracted, table, listed = (c["value"] for c in first)
    assert each == [["ANSWER[bonjour]", "ANSWER[merci]"], ["ANSWER[salut]", ""]]  # 2 x 2, like its range
    assert classified == [["positive"], ["negative"], [""]]
    assert extracted == [["name(Ann Lee)", "city(Ann Lee)"], ["name(Bo Berg)", "city(Bo Berg)"]]
    assert table == [["Region", "Total"], ["North", 200], ["South", 80]]
    assert listed == [["North"], ["South"]]
    billed = UsageRecord.objects.count()
    assert billed == 9 and UsageRecord.objects.filter(status="ok").count() == 9

    again = cells(page, calls)  # a recalculation
    assert again == first
    recalculated = UsageRecord.objects.order_by("id")[billed:]
    assert {r.status for r in recalculated} == {"cached"} and len(recalculated) == 9
    assert sum(r.cost_usd for r in recalculated) == 0
    assert len(fake_upstream.requests) == 9


def test_a_wrong_cell_fails_alone_in_its_spilled_array(addin, token, prices, settings, fake_upstream):
    page = addin
    save_token(page, token[1])
    settings.MAX_PROMPT_LENGTH = 200
    [cell] = cells(page, [("EACH", [[["fine"], ["x" * 300], ["also fine"]], "shorten"])])
    ok, too_long, also_ok = cell["value"]
    assert ok == ["ANSWER[fine]"] and also_ok == ["ANSWER[also fine]"]
    assert too_long[0]["error"] == "#N/A" and too_long[0]["message"].startswith("PROMPT_TOO_LONG: ")


# ---- The task pane and the selection -------------------------------------------------------------------------------


def select(page, values: list[list], formulas: list[list] | None = None, address: str = "Sheet1!A2:A5") -> None:
    page.evaluate(
        "s => { __excel.selection = s; }",
        {"address": address, "values": values, "formulas": formulas if formulas is not None else values},
    )


def test_the_pane_prices_the_selection_with_a_dry_run(addin, token, prices, fake_upstream, tmp_path):
    page = addin
    save_token(page, token[1])
    assert cells(page, [("EACH", [[["great"]], "sentiment"])]) == [{"value": [["ANSWER[great]"]]}]  # now cached
    records, upstream_calls = UsageRecord.objects.count(), len(fake_upstream.requests)

    select(page, [["great"], ["bad"], ["great"], [""]])
    page.select_option("#operation", "EACH")
    page.fill("#argument", "sentiment")
    page.click("#estimate")
    page.wait_for_selector("#estimate-state.ok")
    lines = page.text_content("#estimate-state").splitlines()
    assert lines[0] == "Sheet1!A2:A5: 2 texts, 1 calls, 1 cached ($0)"
    assert re.fullmatch(r"≈ \d+ input tokens, \$[0-9.e-]+; at most \$[0-9.e-]+", lines[1]), lines[1]
    assert lines[2] == "No monthly budget on this token."
    # A dry run: nothing reached the model and nothing was recorded.
    assert (UsageRecord.objects.count(), len(fake_upstream.requests)) == (records, upstream_calls)

    row = token[0]
    row.monthly_budget_usd = Decimal("5")
    row.save()
    token_cache.clear()
    page.select_option("#operation", "CLASSIFY")
    page.fill("#argument", "positive, negative")
    page.click("#estimate")
    page.wait_for_function("document.querySelector('#estimate-state').textContent.includes('Budget left')")
    lines = page.text_content("#estimate-state").splitlines()
    assert lines[0] == "Sheet1!A2:A5: 2 texts, 2 calls, 0 cached ($0)"  # another function: not cached
    assert lines[2] == "Budget left this month: $5.00"  # $5 less the first cell's few millionths of a dollar
    # For docs/excel.md: the pane's selection section with its estimate.
    target = (SCREENSHOT.parent if os.environ.get("UPDATE_DOCS_IMAGES") else tmp_path) / "excel-estimate.png"
    page.locator("section[aria-labelledby=selection-heading]").screenshot(path=str(target))
    assert 1_000 < len(target.read_bytes()) < 60_000


def test_freeze_results_turns_djllm_cells_into_text_values(addin):
    page = addin
    formulas = [['=DJLLM.EACH(A2:A3,"x")', "=SUM(1,2)"], ["-it spilled", "plain"]]
    values = [['=HYPERLINK("http://example.com")', 3], ["-it spilled", "plain"]]
    select(page, values, formulas, address="Sheet1!B2:C3")
    page.click("#freeze")
    page.wait_for_selector("#estimate-state.ok")
    assert page.text_content("#estimate-state") == "Frozen: 1 =DJLLM cells now hold their values."
    selection = page.evaluate("__excel.selection")
    assert selection["values"] == values  # what the cells show, unchanged
    assert selection["formulas"] == [['=HYPERLINK("http://example.com")', "=SUM(1,2)"], ["-it spilled", "plain"]]
    assert page.evaluate("__excel.entered") == []  # the answer went in as text: Excel never runs it
    assert page.evaluate("__excel.writes") == 1  # one write: a spilled array goes with its formula


def test_freeze_with_no_djllm_cells_says_so(addin):
    page = addin
    select(page, [[1, 2]], [["=A1*2", 2]], address="Sheet1!D1:E1")
    page.click("#freeze")
    page.wait_for_function("document.querySelector('#estimate-state').textContent.startsWith('No =DJLLM')")
    assert page.evaluate("__excel.selection")["formulas"] == [["=A1*2", 2]]


# ---- Screenshots of the range functions for docs/excel.md ---------------------------------------------------------

SHEET_CSS = """
body { margin: 0; font: 13px "Segoe UI", system-ui, sans-serif; background: #fff; }
.bar { display: flex; border-bottom: 1px solid #d4d4d4; font-size: 12px; }
.bar b { padding: 4px 8px; background: #f3f3f3; border-right: 1px solid #d4d4d4; color: #444; }
.bar code { padding: 4px 8px; font: 12px Consolas, "DejaVu Sans Mono", monospace; white-space: nowrap; }
table { border-collapse: collapse; }
th { background: #f3f3f3; color: #444; font-weight: normal; border: 1px solid #d4d4d4; padding: 2px 6px; }
td { border: 1px solid #e1e1e1; padding: 3px 6px; white-space: nowrap; max-width: 260px; overflow: hidden; }
td.anchor { outline: 2px solid #107c41; outline-offset: -2px; }
td.spill { background: #f3faf6; }
td.num { text-align: right; }
td.err { color: #a4262c; }
"""


def sheet_html(formula: str, anchor: str, grid: list[list], spill: set) -> str:
    """A small Excel-like grid: the formula bar, column letters, row numbers; the spilled cells shaded."""
    letters = "ABCDEFGH"[: max(len(r) for r in grid)]
    head = "".join(f"<th>{c}</th>" for c in letters)
    rows = []
    for r, row in enumerate(grid, start=1):
        cells = []
        for c, value in enumerate(row):
            ref = f"{letters[c]}{r}"
            kind = "anchor" if ref == anchor else ("spill" if ref in spill else "")
            if isinstance(value, dict):
                value, kind = f"{value['error']} {value['message']}", kind + " err"
            elif isinstance(value, int | float):
                kind += " num"
            cells.append(f'<td class="{kind}">{html.escape(str(value))}</td>')
        rows.append(f"<tr><th>{r}</th>{''.join(cells)}</tr>")
    return (
        f"<style>{SHEET_CSS}</style><div class='bar'><b>{anchor}</b><code>{html.escape(formula)}</code></div>"
        f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>"
    )


def place(grid: list[list], top: int, left: int, values: list[list]) -> set:
    """Writes a spilled array into the grid from (top, left), zero-based; returns the cells it covers."""
    covered = set()
    for r, row in enumerate(values):
        for c, value in enumerate(row):
            grid[top + r][left + c] = value
            covered.add(f"{'ABCDEFGH'[left + c]}{top + r + 1}")
    return covered


def docs_model(body: dict):
    """A stand-in model with plausible answers, so the screenshots show what the functions make of them."""
    system, text = body["messages"][0]["content"], body["messages"][-1]["content"]
    if "Classify" in system:
        return "negative" if any(w in text.lower() for w in ("late", "broken", "never")) else "positive"
    words = {"Guten Morgen": "Good morning", "Danke schön": "Thank you very much", "Bis bald": "See you soon"}
    return words.get(text, text)


def docs_structured(body: dict):
    name = body["response_format"]["json_schema"]["name"]
    if name == "table":
        return {
            "columns": ["Region", "Q1", "Q2", "Growth"],
            "rows": [["North", "120", "150", "25%"], ["South", "95", "99", "4%"]],
        }
    text = body["messages"][-1]["content"]
    found = re.search(
        r"(?P<name>[A-Z][a-z]+ [A-Z][a-z]+)\W+(?:in |from )?(?P<city>[A-Z][a-zø]+)\)?\D*(?P<amount>\d+) EUR", text
    )
    return {"name": found["name"], "city": found["city"], "amount": found["amount"]} if found else {}


def test_screenshots_of_the_range_functions_for_the_docs(addin, token, prices, fake_upstream, tmp_path):
    page = addin
    fake_upstream.configure(reply=docs_model, structured=docs_structured)
    save_token(page, token[1])
    sales = [["Region", "Q1", "Q2"], ["North", 120, 150], ["South", 95, 99]]
    german = [["Guten Morgen"], ["Danke schön"], ["Bis bald"]]
    reviews = [["Arrived fast, works great"], ["Parcel came late and broken"], ["Lovely staff"], ["Never again"]]
    orders = [
        ["Order from Anna Berg in Oslo, 120 EUR"],
        ["Jon Lund (Bergen) paid 75 EUR"],
        ["Mia Holm in Tromsø: 42 EUR"],
    ]
    ask, each, classified, extracted = (
        c["value"]
        for c in cells(
            page,
            [
                ("ASK", ["Growth by region", sales, "table"]),
                ("EACH", [german, "translate to English"]),
                ("CLASSIFY", [reviews, "positive, negative"]),
                ("EXTRACT", [orders, "name, city, amount"]),
            ],
        )
    )
    assert ask == [["Region", "Q1", "Q2", "Growth"], ["North", 120, 150, "25%"], ["South", 95, 99, "4%"]]
    assert [r[0] for r in each] == ["Good morning", "Thank you very much", "See you soon"]
    assert classified == [["positive"], ["negative"], ["positive"], ["negative"]]
    assert extracted == [["Anna Berg", "Oslo", 120], ["Jon Lund", "Bergen", 75], ["Mia Holm", "Tromsø", 42]]

    shots = []
    grid = [[*row, "", "", "", ""] for row in sales] + [["", "", "", "", "", "", ""]] * 1
    grid = [row[:7] for row in grid]
    spill = place(grid, 0, 3, ask)
    shots.append(("excel-ask.png", '=DJLLM.ASK("Growth by region", A1:C3, "table")', "D1", grid, spill))
    grid = [[g[0], ""] for g in german]
    shots.append(("excel-each.png", '=DJLLM.EACH(A1:A3, "translate to English")', "B1", grid, place(grid, 0, 1, each)))
    grid = [[r[0], ""] for r in reviews]
    shots.append(
        (
            "excel-classify.png",
            '=DJLLM.CLASSIFY(A1:A4, "positive, negative")',
            "B1",
            grid,
            place(grid, 0, 1, classified),
        )
    )
    grid = [[o[0], "", "", ""] for o in orders]
    shots.append(
        ("excel-extract.png", '=DJLLM.EXTRACT(A1:A3, "name, city, amount")', "B1", grid, place(grid, 0, 1, extracted))
    )

    target_dir = SCREENSHOT.parent if os.environ.get("UPDATE_DOCS_IMAGES") else tmp_path
    sheet = page.context.new_page()
    sheet.set_viewport_size({"width": 900, "height": 400})
    try:
        for name, formula, anchor, grid, spill in shots:
            sheet.set_content(sheet_html(formula, anchor, grid, spill))
            box = sheet.eval_on_selector(
                "body",
                "b => { const r = b.firstElementChild.nextElementSibling.getBoundingClientRect(); return [Math.ceil(Math.max(r.width, document.querySelector('.bar').scrollWidth)), Math.ceil(r.bottom)]; }",
            )
            path = target_dir / name
            sheet.screenshot(path=str(path), clip={"x": 0, "y": 0, "width": box[0] + 2, "height": box[1] + 2})
            png = path.read_bytes()
            assert png[:8] == b"\x89PNG\r\n\x1a\n" and 1_000 < len(png) < 60_000, (name, len(png))
    finally:
        sheet.close()


@pytest.mark.usefixtures("job_worker")
def test_a_range_over_the_job_threshold_runs_as_a_job_with_progress_in_the_pane(addin, token, prices, settings):
    page = addin
    settings.EXCEL_JOB_THRESHOLD = 4
    save_token(page, token[1])
    assert page.is_hidden("#jobs-section")
    texts = [[f"line {i}"] for i in range(6)]
    [cell] = cells(page, [("EACH", [texts, "shorten"])])
    assert cell["value"] == [[f"ANSWER[line {i}]"] for i in range(6)]
    streamed = page.evaluate("__excel.streamed.map(s => s.value)")
    assert streamed[0] == [["…"]] * 6 and streamed[-1] == cell["value"]  # pending first, then filled in
    page.wait_for_selector("#jobs-section:not([hidden])")
    assert page.text_content("#jobs li") == "EACH: 6/6 rows, done"
    assert page.eval_on_selector("#jobs progress", "p => [p.value, p.max]") == [6, 6]
    assert UsageRecord.objects.filter(endpoint="job", status="ok").count() == 6
