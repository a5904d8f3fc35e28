"""The add-in's range functions (=DJLLM.ASK, EACH, CLASSIFY, EXTRACT) in Node: clients/excel/addin/functions.js run
with the fake office.js (clients/excel/test/run-functions.js) against a live djllm (uvicorn) whose upstream is the
fake OpenAI server. Assertions are on what the cells would show (spilled arrays and per-cell errors), on the batch
requests the functions sent, on what reached the upstream, and on djllm's usage records."""

import json
import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from jobs.models import Job
from llm.models import UsageRecord
from tests.test_excel_office_script import job_worker  # noqa: F401  (a fixture: jobs run in a thread)

BASE_DIR = Path(__file__).resolve().parent.parent
RUNNER = BASE_DIR / "clients" / "excel" / "test" / "run-functions.js"
NODE = shutil.which("node")

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node is not installed (apt-get install nodejs)"),
    pytest.mark.django_db(transaction=True),  # the live server thread reads what the test writes
]


def user_text(body: dict) -> str:
    return [m for m in body["messages"] if m["role"] == "user"][-1]["content"]


def system_text(body: dict) -> str:
    return next((m["content"] for m in body["messages"] if m["role"] == "system"), "")


def structured(body: dict):
    """The fake model's JSON answers, by the schema asked for."""
    name = body["response_format"]["json_schema"]["name"]
    text = user_text(body)
    if name == "list":
        return {"items": ["North", "South", "East"]}
    if name == "table":
        return {"columns": ["Region", "Sales"], "rows": [["North", "120"], ["South", "80.5"]]}
    fields = list(body["response_format"]["json_schema"]["schema"]["properties"])
    return {field: f"{field} of {text}" for field in fields}


@pytest.fixture
def upstream(fake_upstream):
    fake_upstream.configure(reply=lambda body: f"A[{user_text(body)}]", structured=structured)
    return fake_upstream


@pytest.fixture
def run(live_djllm, token, prices, tmp_path):
    def run(*recalculations, **options) -> dict:
        scenario = {
            "server": live_djllm.url,
            "storage": {"djllm.token": token[1]},
            "recalculations": [[[name, args] for name, args in cells] for cells in recalculations],
            **options,
        }
        path = tmp_path / "scenario.json"
        path.write_text(json.dumps(scenario))
        done = subprocess.run([NODE, str(RUNNER), str(path)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    return run


def batches(result: dict) -> list[dict]:
    return [r for r in result["requests"] if r["url"].endswith("/api/v1/batch")]


def column(*texts) -> list[list]:
    return [[t] for t in texts]


def test_each_spills_in_the_range_s_shape_in_chunks_of_the_server_s_limit_and_recalculates_for_free(
    run, upstream, settings
):
    settings.BATCH_MAX_ITEMS = 3
    grid = [["great", "bad"], ["fine", None], ["meh", "superb"], ["ok", "awful"]]  # 4 x 2, one empty cell
    result = run([("EACH", [grid, "sentiment in one word"])], [("EACH", [grid, "sentiment in one word"])])
    first, again = result["recalculations"]
    [cell] = first
    values = cell["value"]
    assert [len(row) for row in values] == [2, 2, 2, 2]  # the same shape as the range: it spills 4 x 2
    for row_in, row_out in zip(grid, values, strict=True):
        for text, answer in zip(row_in, row_out, strict=True):
            assert answer == "" if text is None else (answer.startswith("A[") and text in answer)
    sent = batches(result)
    # The add-in read the server's limit from /excel/settings.json: chunks of 3, each recalculation alike.
    assert result["requests"][0]["url"].endswith("/excel/settings.json")
    assert [sorted(len(r["body"]["items"]) for r in sent[i : i + 3]) for i in (0, 3)] == [[1, 3, 3]] * 2
    assert len(sent) == 6 and all(r["status"] == 200 for r in sent)
    assert again == first
    assert all(r["body"]["parameters"] == {"temperature": 0} for r in sent)
    assert all("sentiment in one word" in r["body"]["system"] for r in sent)
    assert len(upstream.requests) == 7  # nothing new on recalculation
    cached = UsageRecord.objects.filter(status="cached")
    assert cached.count() == 7 and sum(r.cost_usd for r in cached) == Decimal(0)


def test_a_server_that_does_not_say_its_limit_names_it_in_its_400_and_the_add_in_splits(run, upstream, settings):
    settings.BATCH_MAX_ITEMS = 3
    texts = column(*(f"text {i}" for i in range(7)))
    result = run([("EACH", [texts, "shorten"])], faults=[{"status": 404, "url": "/excel/settings.json"}])
    assert [row[0].startswith("A[") for row in result["recalculations"][0][0]["value"]] == [True] * 7
    sent = batches(result)
    assert sent[0]["status"] == 400 and len(sent[0]["body"]["items"]) == 7  # too_many_items, naming the limit
    assert sorted(len(r["body"]["items"]) for r in sent[1:]) == [1, 3, 3]


def test_classify_keeps_answers_to_the_labels_retries_once_past_the_cache_then_errs_per_cell(run, upstream):
    def reply(body):
        text, restated = user_text(body), "spelled exactly" in system_text(body)
        if "late" in text:
            return "negative." if restated else "It sounds negative to me"  # right only once the labels are restated
        if "weird" in text:
            return "no idea"  # never a label
        return "Positive"

    upstream.configure(reply=reply)
    labels = [["Positive"], ["Negative"], ["Neutral"]]  # a range of labels
    texts = column("Great service", "The parcel was late", "weird text", None)
    result = run([("CLASSIFY", [texts, labels])], [("CLASSIFY", [texts, labels])])
    first, again = result["recalculations"]
    assert first[0]["value"] == [
        ["Positive"],
        ["Negative"],
        [{"error": "#N/A", "message": "NOT A LABEL: the answer was none of Positive, Negative, Neutral"}],
        [""],
    ]
    assert again == first
    sent = batches(result)
    assert all(r["body"]["labels"] == ["Positive", "Negative", "Neutral"] for r in sent)
    retries = [r for r in sent if r["body"].get("cache") is False]
    assert retries and all("spelled exactly" in r["body"]["system"] for r in retries)
    assert all(len(r["body"]["items"]) == 2 for r in retries[:1])  # the two wrong cells, asked again together
    # On recalculation the labelled answers come from the cache; the wrong ones were never cached, so they are
    # asked again (first the cached way, then past the cache).
    upstream_texts = [user_text(json.loads(r.raw_body)) for r in upstream.requests]
    assert sum("Great service" in t for t in upstream_texts) == 1
    assert sum("weird text" in t for t in upstream_texts) == 4


def test_classify_takes_labels_as_a_list_text(run, upstream):
    upstream.configure(reply=lambda body: "neutral")
    result = run([("CLASSIFY", [[["it was fine"]], "positive; negative; neutral"]), ("CLASSIFY", [[["x"]], "one"])])
    fine, too_few = result["recalculations"][0]
    assert fine == {"value": [["neutral"]]}
    assert too_few["error"] == "#VALUE!" and too_few["message"].startswith("LABELS: give at least two labels")


def test_extract_spills_one_row_per_input_row_and_one_column_per_field(run, upstream):
    header = [["name", "city"]]
    rows = [["Ann Lee", "lives in Oslo"], [None, None], ["Bo", 42]]
    result = run([("EXTRACT", [rows, header]), ("EXTRACT", [rows, "name, city, zip"])])
    by_header, by_list = result["recalculations"][0]
    assert by_header["value"] == [
        ["name of Ann Lee | lives in Oslo", "city of Ann Lee | lives in Oslo"],
        ["", ""],
        ["name of Bo | 42", "city of Bo | 42"],
    ]
    assert [len(row) for row in by_list["value"]] == [3, 3, 3]
    schemas = [r["body"]["parameters"]["response_format"]["json_schema"]["schema"] for r in batches(result)]
    assert {tuple(s["required"]) for s in schemas} == {("name", "city"), ("name", "city", "zip")}
    assert all(s["additionalProperties"] is False for s in schemas)


def test_ask_sends_the_range_as_a_table_and_spills_lists_and_tables(run, upstream):
    data = [["Region", "Sales"], ["North", 120], ["South", 80.5], [None, None]]
    result = run(
        [
            ("ASK", ["Which region sold most?", data]),
            ("ASK", ["List the regions", data, "list"]),
            ("ASK", ["Sales by region", data, "TABLE"]),
            ("ASK", ["Anything", data, "chart"]),
            ("ASK", [None, data]),
        ]
    )
    text, listed, table, bad_shape, no_prompt = result["recalculations"][0]
    assert text["value"] == [[text["value"][0][0]]] and "Which region sold most?" in text["value"][0][0]
    assert "| Region | Sales |\n| --- | --- |\n| North | 120 |\n| South | 80.5 |" in text["value"][0][0]
    assert listed["value"] == [["North"], ["South"], ["East"]]  # a column that spills
    assert table["value"] == [["Region", "Sales"], ["North", 120], ["South", 80.5]]  # rows and columns
    assert bad_shape["error"] == "#VALUE!" and bad_shape["message"] == "SHAPE: use text, list or table"
    assert no_prompt["error"] == "#VALUE!" and no_prompt["message"].startswith("ASK: give a prompt")
    formats = {
        (r["body"].get("parameters", {}).get("response_format") or {}).get("json_schema", {}).get("name")
        for r in batches(result)
    }
    assert formats == {None, "list", "table"}


def test_an_answer_not_in_the_shape_asked_is_a_readable_error(run, upstream):
    upstream.configure(structured={"items": []})
    [[cell]] = run([("ASK", ["List nothing", None, "list"])])["recalculations"]
    assert cell == {"error": "#N/A", "message": "SHAPE: the answer was not a list; recalculate or rephrase the prompt"}


def test_429_is_waited_out_with_retry_after_up_to_60_seconds(run, upstream):
    result = run([("EACH", [[["a"]], "x"])], faults=[{"status": 429, "retry_after": 30}] * 2, fast_clock=True)
    assert result["recalculations"] == [[{"value": [["A[a]"]]}]]
    assert result["waits"] == [30, 30]
    assert [r["status"] for r in batches(result)] == [429, 429, 200]


def test_429_beyond_60_seconds_shows_throttled_after_the_retries(run, upstream):
    long_wait = run([("EACH", [[["a"]], "x"])], faults=[{"status": 429, "retry_after": 61}], fast_clock=True)
    assert long_wait["recalculations"][0][0]["value"] == [[{"error": "#N/A", "message": "THROTTLED: retry"}]]
    assert long_wait["waits"] == [] and len(batches(long_wait)) == 1
    over_time = run([("EACH", [[["a"]], "x"])], faults=[{"status": 429, "retry_after": 25}] * 3, fast_clock=True)
    assert over_time["waits"] == [25, 25]  # a third wait would pass 60 s: the cell says so instead
    assert over_time["recalculations"][0][0]["value"] == [[{"error": "#N/A", "message": "THROTTLED: retry"}]]
    assert len(upstream.requests) == 0


def test_an_item_error_stays_in_its_cell(run, upstream, settings):
    settings.MAX_PROMPT_LENGTH = 150  # the instruction (the system prompt) counts too
    result = run([("EACH", [column("short", "x" * 100), "translate"])])
    ok, too_long = result["recalculations"][0][0]["value"]
    assert ok[0].startswith("A[")
    assert too_long[0]["error"] == "#N/A" and too_long[0]["message"].startswith("PROMPT_TOO_LONG: ")
    assert re.match(r"^[A-Z_]+: ", too_long[0]["message"])


@pytest.mark.usefixtures("job_worker")
def test_over_the_job_threshold_each_runs_as_a_job_and_its_cells_fill_in(run, upstream, settings):
    settings.EXCEL_JOB_THRESHOLD = 3
    texts = [*column(*(f"row {i}" for i in range(6))), [None]]
    result = run([("EACH", [texts, "shorten"])], [("EACH", [texts, "shorten"])])
    first, again = (r[0]["value"] for r in result["recalculations"])
    assert first == [*([f"A[row {i}]"] for i in range(6)), [""]] and again == first
    assert not batches(result)  # no batch: one job per calculation
    created = [r for r in result["requests"] if r["url"].endswith("/api/v1/jobs")]
    assert [(r["status"], len(r["body"]["items"])) for r in created] == [(202, 6), (202, 6)]
    assert all(r["body"]["parameters"] == {"temperature": 0} for r in created)
    polled = [r for r in result["requests"] if "/results" in r["url"]]
    assert polled and all(r["status"] == 200 for r in polled)
    # The cells showed every row pending as soon as the job started, then the answers (a streaming function).
    streamed = [s["value"] for s in result["streamed"] if s["id"] == "EACH"]
    assert streamed[0] == [*(["…"] for _ in range(6)), [""]]
    assert streamed[-1] == first
    records = UsageRecord.objects.filter(endpoint="job")
    assert records.filter(status="ok").count() == 6
    recalculated = records.filter(status="cached")
    assert recalculated.count() == 6 and sum(r.cost_usd for r in recalculated) == 0  # the second job: from the cache
    assert Job.objects.filter(status="done").count() == 2


@pytest.mark.usefixtures("job_worker")
def test_over_the_job_threshold_extract_runs_as_a_job(run, upstream, settings):
    settings.EXCEL_JOB_THRESHOLD = 2
    rows = [["Ann", "Oslo"], ["Bo", "Rome"], ["Cy", "Oslo"]]
    result = run([("EXTRACT", [rows, "name"])])
    assert result["recalculations"][0][0]["value"] == [
        ["name of Ann | Oslo"],
        ["name of Bo | Rome"],
        ["name of Cy | Oslo"],
    ]
    [created] = [r for r in result["requests"] if r["url"].endswith("/api/v1/jobs")]
    assert created["body"]["parameters"]["response_format"]["json_schema"]["name"] == "fields"
    assert [s["value"] for s in result["streamed"]][0] == [["…"]] * 3


@pytest.mark.usefixtures("job_worker")
def test_over_the_job_threshold_classify_runs_as_a_job_that_keeps_to_the_labels(run, upstream, settings):
    settings.EXCEL_JOB_THRESHOLD = 2

    def reply(body):
        text, restated = user_text(body), "spelled exactly" in system_text(body)
        if "late" in text:
            return "NEGATIVE." if restated else "hmm, negative-ish"  # a label only once restated
        return "odd" if "weird" in text else "positive"

    upstream.configure(reply=reply)
    texts = column("great", "late again", "weird", "fine")
    result = run([("CLASSIFY", [texts, "positive, negative"])])
    [cell] = result["recalculations"][0]
    assert cell["value"] == [
        ["positive"],
        ["negative"],
        [{"error": "#N/A", "message": "NOT A LABEL: the answer was none of positive, negative"}],
        ["positive"],
    ]
    [created] = [r for r in result["requests"] if r["url"].endswith("/api/v1/jobs")]
    assert created["body"]["labels"] == ["positive", "negative"] and len(created["body"]["items"]) == 4
    # The job's off-label rows failed `answer_not_in_labels`; they were asked again past the cache, as a batch.
    [retry] = batches(result)
    assert retry["body"]["cache"] is False and len(retry["body"]["items"]) == 2
    job_rows = UsageRecord.objects.filter(endpoint="job")
    assert job_rows.count() == 4
    assert [s["value"] for s in result["streamed"]][0] == [["…"]] * 4
