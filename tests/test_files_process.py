"""`POST /api/v1/files/process`: every format made here (txt, md, csv, a hand-written PDF, python-docx, openpyxl),
split on its structure and answered map-reduce with one usage record per call and their total; the
FILE_SYNC_MAX_CHUNKS boundary between a 200 and a 202 job (run here as a worker runs it); hostile files refused
before any call; preferences; isolation; uploads not kept; and one document over real HTTP with httpx."""

import io
import re
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from django.core.files.uploadedfile import TemporaryUploadedFile
from django.test import Client

from accounts.models import UserPreferences
from bench.fake_upstream import Usage as FakeUsage
from jobs import xlsx_read
from jobs.models import Job
from llm.models import UsageRecord
from tests.documents import docx_bytes, encrypted_pdf, pdf_bytes, with_bomb, with_part, xlsx_bytes
from tests.factories import UserFactory
from tests.test_jobs import queued, run  # noqa: F401 - `queued` is a fixture

URL = "/api/v1/files/process"
JOBS = "/api/v1/jobs"
_MARK = re.compile(r"SEC-\d+")


def user_text(body: dict) -> str:
    return [m for m in body["messages"] if m["role"] == "user"][-1]["content"]


def _reply(body: dict) -> str:
    """A map call answers with the markers (SEC-n) of its chunk; a reduce call with those of its parts, so the
    final answer shows which chunks reached it."""
    text = user_text(body)
    marks = _MARK.findall(text)
    return ("combined " if "Part 1:" in text else "summary ") + " ".join(dict.fromkeys(marks))


@pytest.fixture
def upstream(fake_upstream):
    fake_upstream.configure(reply=_reply, usage=FakeUsage(input_tokens=100, output_tokens=10))
    return fake_upstream


@pytest.fixture
def client(token, gateway_settings, prices, queued, settings, tmp_path):  # noqa: F811
    settings.FILE_UPLOAD_DIR = str(tmp_path / "uploads")
    settings.JOB_CONCURRENCY = 4
    return Client(HTTP_AUTHORIZATION=f"Bearer {token[1]}")


def upload(data: bytes, name: str) -> io.BytesIO:
    f = io.BytesIO(data)
    f.name = name
    return f


def post(client, data: bytes, name: str, capture=None, **fields):
    body = {"file": upload(data, name), **fields}
    if capture is None:
        return client.post(URL, body)
    with capture(execute=True):
        return client.post(URL, body)


def assert_totals_are_the_records(body: dict) -> list[UsageRecord]:
    """The answer's calls are the usage records of its batch, one each, and its totals are their sums."""
    records = list(UsageRecord.objects.filter(batch_id=body["batch_id"]).order_by("request_id"))
    assert sorted(c["request_id"] for c in body["calls"]) == [r.request_id for r in records]
    assert {(r.endpoint, r.status) for r in records} == {("file", "ok")}
    assert body["usage"]["input_tokens"] == sum(r.input_tokens for r in records)
    assert body["usage"]["output_tokens"] == sum(r.output_tokens for r in records)
    assert body["usage"]["total_tokens"] == sum(r.input_tokens + r.output_tokens for r in records)
    assert Decimal(body["cost_usd"]) == sum(r.cost_usd for r in records) > 0
    by_id = {r.request_id: r for r in records}
    for call in body["calls"]:
        assert Decimal(call["cost_usd"]) == by_id[call["request_id"]].cost_usd
    return records


DOCUMENTS = {
    "txt": lambda: ("notes.txt", b"First paragraph SEC-1 about the budget.\n\nSecond paragraph SEC-2."),
    "md": lambda: ("notes.md", b"# Plan SEC-1\n\nShip it.\n\n## Risks SEC-2\n\nNone known.\n"),
    "csv": lambda: ("sales.csv", b"region,amount,note\nnorth,10,SEC-1\nsouth,20,SEC-2\n"),
    "pdf": lambda: ("report.pdf", pdf_bytes(["Page one SEC-1", "Page two SEC-2"])),
    "docx": lambda: ("memo.docx", docx_bytes([("h1", "Intro SEC-1"), ("p", "Body text."), ("table", "a|SEC-2")])),
    "xlsx": lambda: ("book.xlsx", xlsx_bytes({"Q1": [["item", "note"], ["x", "SEC-1"]], "Q2": [[1.5, "SEC-2"]]})),
}


@pytest.mark.django_db
@pytest.mark.parametrize("kind", list(DOCUMENTS))
def test_every_format_is_read_and_summarised_at_once(client, upstream, kind):
    name, data = DOCUMENTS[kind]()
    response = post(client, data, name, type="summary")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["file"]["format"] == kind and body["file"]["name"] == name and body["file"]["bytes"] == len(data)
    assert body["file"]["chunks"] == 1 and body["file"]["pages"] == (2 if kind == "pdf" else None)
    # The text of the whole document (both markers, wherever the format keeps them) reached the one call.
    assert body["result"] == "summary SEC-1 SEC-2"
    assert [c["step"] for c in body["calls"]] == ["map"]
    sent = user_text(upstream.last_request.body)
    assert "SEC-1" in sent and "SEC-2" in sent
    if kind == "xlsx":
        assert "Sheet Q2:\n1.5 | SEC-2" in sent
    if kind == "csv":
        assert "north | 10 | SEC-1" in sent
    records = assert_totals_are_the_records(body)
    assert records[0].type == "summary" and records[0].source == "document"


@pytest.mark.django_db
def test_a_long_document_is_split_on_its_headings_and_combined(client, upstream, settings):
    settings.FILE_CHUNK_MAX_CHARS = 120
    sections = [f"## Section SEC-{i}\n\n" + f"Text of section {i}. " * 3 for i in range(1, 6)]
    response = post(client, "\n\n".join(sections).encode(), "long.md")
    assert response.status_code == 200, response.content
    body = response.json()
    maps = [c for c in body["calls"] if c["step"] == "map"]
    assert body["file"]["chunks"] == len(maps) == 5  # one heading section per chunk: each fits, two do not
    map_prompts = [user_text(r.body) for r in upstream.requests if "Part 1:" not in user_text(r.body)]
    assert sorted(tuple(_MARK.findall(p)) for p in map_prompts) == [(f"SEC-{i}",) for i in range(1, 6)]
    assert any(c["step"] == "reduce" for c in body["calls"]) and body["calls"][-1]["step"] == "reduce"
    assert body["result"] == "combined " + " ".join(f"SEC-{i}" for i in range(1, 6))
    assert_totals_are_the_records(body)


@pytest.mark.django_db
def test_up_to_the_sync_limit_is_a_200_and_one_more_chunk_a_202_job(
    client,
    upstream,
    settings,
    queued,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    settings.FILE_CHUNK_MAX_CHARS = 60
    settings.FILE_SYNC_MAX_CHUNKS = 3
    page = "Page SEC-{} " + "words " * 6

    at_limit = post(client, pdf_bytes([page.format(i) for i in range(1, 4)]), "three.pdf")
    assert at_limit.status_code == 200, at_limit.content
    assert at_limit.json()["file"]["chunks"] == 3 and Job.objects.count() == 0

    over = post(
        client, pdf_bytes([page.format(i) for i in range(1, 5)]), "four.pdf", django_capture_on_commit_callbacks
    )
    assert over.status_code == 202, over.content
    job = over.json()
    assert over["Location"] == job["links"]["self"] and over["Retry-After"]
    assert (job["status"], job["total"], job["source"]) == ("queued", 4, "file")
    assert queued == [job["id"]] and UsageRecord.objects.filter(batch_id=job["batch_id"]).count() == 0

    run(job["id"])

    done = client.get(f"{JOBS}/{job['id']}")
    assert done.status_code == 200
    progress = done.json()
    assert progress["status"] == "done" and progress["failed"] == 0 and progress["pending"] == 0
    results = client.get(f"{JOBS}/{job['id']}/results").json()["results"]
    ids = [r["id"] for r in results]
    assert ids[:4] == ["chunk 1", "chunk 2", "chunk 3", "chunk 4"] and ids[-1] == "final"
    assert results[-1]["result"] == "combined SEC-1 SEC-2 SEC-3 SEC-4"
    assert progress["total"] == len(results) == progress["done"]
    records = UsageRecord.objects.filter(batch_id=job["batch_id"])
    assert records.count() == len(results) and {r.endpoint for r in records} == {"job"}
    assert Decimal(progress["cost_usd"]) == sum(r.cost_usd for r in records)
    assert Job.objects.get(pk=job["id"]).upload is None


LAUGHS = (  # entities that expand to 10^9 "lol"s, if a parser expanded them
    b'<?xml version="1.0"?><!DOCTYPE w [<!ENTITY a "lol">'
    + b"".join(b'<!ENTITY %c "%s">' % (98 + i, (b"&%c;" % (97 + i)) * 10) for i in range(8))
    + b']><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
    b"<w:body><w:p><w:r><w:t>&i;</w:t></w:r></w:p></w:body></w:document>"
)
HOSTILE = {
    "docx_zip_bomb": lambda: ("bomb.docx", with_bomb(docx_bytes([("p", "hi")]), "word/media/x.bin", 30 << 20)),
    "xlsx_zip_bomb": lambda: ("bomb.xlsx", with_bomb(xlsx_bytes({"S": [["hi"]]}), "xl/media/x.bin", 30 << 20)),
    "pdf_flate_bomb": lambda: ("bomb.pdf", pdf_bytes(["text"], padding=30 << 20)),
    "pdf_pages_bomb": lambda: ("bombs.pdf", pdf_bytes(["text"] * 3, padding=8 << 20)),
    "encrypted_pdf": lambda: ("secret.pdf", encrypted_pdf(["hidden text"])),
    "malformed_pdf": lambda: ("broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 9 0 R >>\n%%EOF garbage"),
    "truncated_docx": lambda: ("cut.docx", docx_bytes([("p", "hi")])[:3000]),
    "docx_entity_bomb": lambda: ("laughs.docx", with_part(docx_bytes([("p", "hi")]), "word/document.xml", LAUGHS)),
    "pdf_named_docx": lambda: ("report.docx", pdf_bytes(["text"])),
    "docx_named_pdf": lambda: ("memo.pdf", docx_bytes([("p", "text")])),
    "xlsx_named_docx": lambda: ("book.docx", xlsx_bytes({"S": [["text"]]})),
    "pdf_named_txt": lambda: ("notes.txt", pdf_bytes(["text"])),
    "text_named_xlsx": lambda: ("book.xlsx", b"just some text\n"),
    "empty": lambda: ("empty.txt", b""),
    "blank": lambda: ("blank.md", b"  \n\n \t\n"),
    "binary": lambda: ("data.csv", bytes(range(256)) * 64),
    "unsupported": lambda: ("tool.exe", b"MZ\x90\x00"),
    "no_text_pdf": lambda: ("scan.pdf", pdf_bytes([""])),
}
EXPECTED = {
    "docx_zip_bomb": (413, "file_too_large_uncompressed", "FILE_MAX_UNCOMPRESSED_BYTES="),
    "xlsx_zip_bomb": (413, "file_too_large_uncompressed", "FILE_MAX_UNCOMPRESSED_BYTES="),
    "pdf_flate_bomb": (413, "file_too_large_uncompressed", "FILE_MAX_UNCOMPRESSED_BYTES="),
    "pdf_pages_bomb": (413, "file_too_large_uncompressed", "FILE_MAX_UNCOMPRESSED_BYTES="),
    "encrypted_pdf": (400, "encrypted_file", "encrypted"),
    "malformed_pdf": (400, "invalid_file", "not a readable PDF"),
    "truncated_docx": (400, "invalid_file", "not a readable .docx document"),
    "docx_entity_bomb": (400, "invalid_file", "a DTD is not allowed"),
    "pdf_named_docx": (400, "file_type_mismatch", "named .docx but its content is a PDF"),
    "docx_named_pdf": (400, "file_type_mismatch", "named .pdf but its content is a Word document"),
    "xlsx_named_docx": (400, "file_type_mismatch", "named .docx but its content is an Excel workbook"),
    "pdf_named_txt": (400, "file_type_mismatch", "named .txt but its content is a PDF"),
    "text_named_xlsx": (400, "file_type_mismatch", "named .xlsx but its content is plain text"),
    "empty": (400, "empty_file", "empty"),
    "blank": (400, "empty_file", "empty"),
    "binary": (400, "binary_file", "binary"),
    "unsupported": (400, "unsupported_file_type", ".exe"),
    "no_text_pdf": (400, "no_text", "no text"),
}


@pytest.mark.django_db
@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_file_is_refused_before_any_call(client, upstream, case):
    name, data = HOSTILE[case]()
    response = post(client, data, name)
    status, code, words = EXPECTED[case]
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code and words in error["message"] and error["request_id"]
    if status == 413:
        assert error["details"]["setting"] == "FILE_MAX_UNCOMPRESSED_BYTES"
    assert UsageRecord.objects.count() == 0 and Job.objects.count() == 0 and upstream.requests == []
    assert post(client, b"still SEC-1 here", "ok.txt").status_code == 200  # and the service still answers


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("setting", "value", "data", "status", "code"),
    [
        ("FILE_UPLOAD_MAX_BYTES", 100, b"x" * 101, 413, "file_too_large"),
        ("FILE_MAX_CHARS", 50, b"y " * 40, 413, "too_much_text"),
        ("FILE_MAX_PAGES", 2, None, 400, "too_many_pages"),
    ],
)
def test_each_limit_names_its_setting(client, upstream, settings, setting, value, data, status, code):
    setattr(settings, setting, value)
    name = "doc.txt" if data is not None else "doc.pdf"
    response = post(client, data if data is not None else pdf_bytes(["a", "b", "c"]), name)
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code and f"{setting}={value}" in error["message"]
    assert UsageRecord.objects.count() == 0


@pytest.mark.django_db
def test_unknown_fields_are_a_400_naming_them(client, upstream):
    response = post(client, b"text SEC-1", "a.txt", prompt="hello", system="be brief")
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error["details"]) == {"prompt", "system"} and "prompt" in error["message"]
    missing = client.post(URL, {"type": "summary"})
    assert missing.status_code == 400 and "file" in missing.json()["error"]["details"]
    assert UsageRecord.objects.count() == 0


@pytest.mark.django_db
def test_preferences_apply_when_the_form_does_not_say(client, upstream, user):
    UserPreferences.objects.filter(user=user).update(language="German", default_model="gpt-4o")
    body = post(client, b"Quarterly numbers SEC-1.", "q.txt").json()
    request = upstream.last_request.body
    assert request["model"] == "gpt-4o" and "German" in str(request["messages"])
    assert body["calls"][0]["model"] == "gpt-4o"
    assert UsageRecord.objects.get(batch_id=body["batch_id"]).upstream_model == "gpt-4o"
    said = post(client, b"Quarterly numbers SEC-1.", "q.txt", language="French", model="gpt-4o-mini").json()
    request = upstream.last_request.body
    assert request["model"] == "gpt-4o-mini" and "French" in str(request["messages"])
    assert "German" not in str(request["messages"]) and said["calls"][0]["model"] == "gpt-4o-mini"


@pytest.mark.django_db
def test_a_document_job_is_its_owners_only(client, upstream, settings, make_token, django_capture_on_commit_callbacks):
    settings.FILE_CHUNK_MAX_CHARS = 40
    settings.FILE_SYNC_MAX_CHUNKS = 1
    job = post(
        client, pdf_bytes(["page SEC-1 " * 3, "page SEC-2 " * 3]), "two.pdf", django_capture_on_commit_callbacks
    ).json()
    _, other = make_token(user=UserFactory(username="mallory"), name="other", scopes=["llm"])
    stranger = Client(HTTP_AUTHORIZATION=f"Bearer {other}")
    for path in ("", "/results"):
        assert stranger.get(f"{JOBS}/{job['id']}{path}").status_code == 404
    assert stranger.post(f"{JOBS}/{job['id']}/cancel").status_code == 404
    assert stranger.get(JOBS).json()["results"] == []
    assert client.get(f"{JOBS}/{job['id']}").status_code == 202


@pytest.mark.django_db
def test_uploads_are_not_kept_unless_the_setting_says_so(client, upstream, settings, tmp_path, monkeypatch):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0  # Django writes the upload to a temporary file ...
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(temporary)
    written = []
    real_init = TemporaryUploadedFile.__init__

    def spy(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        written.append(Path(self.temporary_file_path()))

    monkeypatch.setattr(TemporaryUploadedFile, "__init__", spy)
    folder = Path(settings.FILE_UPLOAD_DIR)
    data = docx_bytes([("p", "keep SEC-1 or not")])
    assert post(client, data, "memo.docx").status_code == 200
    assert [p.parent for p in written] == [temporary]  # ... there ...
    assert list(temporary.iterdir()) == []  # ... and it is gone once answered
    assert not folder.exists()

    settings.FILE_KEEP_UPLOADS = True
    body = post(client, data, "my memo.docx").json()
    kept = list(folder.iterdir())
    assert [p.name for p in kept] == [f"{body['batch_id']}-my_memo.docx"] and kept[0].read_bytes() == data

    settings.FILE_SYNC_MAX_CHUNKS = 0  # a job: named by the job's batch id, which its records carry
    job = post(client, data, "job.docx").json()
    assert (folder / f"{job['batch_id']}-job.docx").read_bytes() == data


@pytest.mark.django_db(transaction=True)
def test_a_document_over_real_http(live_djllm, upstream, token, prices):
    data = docx_bytes([("h1", "Minutes SEC-1"), ("p", "Decisions were made."), ("h1", "Actions SEC-2")])
    response = httpx.post(
        f"{live_djllm.url}{URL}",
        headers={"Authorization": f"Bearer {token[1]}"},
        files={"file": ("minutes.docx", data, "application/octet-stream")},
        data={"type": "summary", "language": "English"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["result"] == "summary SEC-1 SEC-2" and body["file"]["format"] == "docx"
    assert response.headers["X-Request-ID"] == body["request_id"]
    assert_totals_are_the_records(body)


@pytest.mark.django_db
def test_each_chunk_call_counts_against_the_rate_limit_and_leaves_its_record(client, upstream, settings):
    settings.RATE_LIMIT = "2/h"
    settings.JOB_CONCURRENCY = 1  # one call at a time: the third is the one refused
    settings.FILE_CHUNK_MAX_CHARS = 40
    response = post(client, pdf_bytes([f"page SEC-{i} " * 3 for i in range(1, 5)]), "four.pdf")
    assert response.status_code == 429, response.content
    assert response.json()["error"]["code"] == "rate_limited"
    records = UsageRecord.objects.order_by("request_id")
    assert [r.status for r in records] == ["ok", "ok", "rate_limited"]  # the fourth chunk was never started
    assert len({r.batch_id for r in records}) == 1 and len(upstream.requests) == 2


@pytest.mark.django_db
def test_the_llm_scope_is_required(upstream, gateway_settings, make_token):
    _, calendar_only = make_token(name="cal", scopes=["calendar"])
    response = Client(HTTP_AUTHORIZATION=f"Bearer {calendar_only}").post(URL, {"file": upload(b"hi", "a.txt")})
    assert response.status_code == 403 and UsageRecord.objects.count() == 0


@pytest.mark.django_db
def test_a_job_whose_chunk_failed_stops_without_combining(
    client, upstream, settings, django_capture_on_commit_callbacks
):
    settings.FILE_CHUNK_MAX_CHARS = 40
    settings.FILE_SYNC_MAX_CHUNKS = 1
    settings.JOB_CONCURRENCY = 1  # the first call is chunk 1
    upstream.fail_next("400", times=1)
    job = post(
        client, pdf_bytes([f"page SEC-{i} " * 3 for i in (1, 2, 3)]), "three.pdf", django_capture_on_commit_callbacks
    ).json()
    run(job["id"])
    progress = client.get(f"{JOBS}/{job['id']}").json()
    assert progress["status"] == "failed" and progress["error"]["code"] == "part_failed"
    assert "`chunk 1`" in progress["error"]["message"]
    results = client.get(f"{JOBS}/{job['id']}/results").json()["results"]
    assert [(r["id"], r["status"]) for r in results] == [("chunk 1", "error"), ("chunk 2", "ok"), ("chunk 3", "ok")]
    assert UsageRecord.objects.filter(batch_id=job["batch_id"]).count() == 3  # no reduce call was made


@pytest.mark.django_db
def test_a_workbook_of_many_small_cells_stops_at_the_text_limit_while_reading(client, upstream, settings, monkeypatch):
    settings.FILE_MAX_CHARS = 1000
    resolved: list[int] = []
    real_resolve = xlsx_read._Values.resolve
    monkeypatch.setattr(
        xlsx_read._Values, "resolve", lambda self, cells: resolved.append(len(cells)) or real_resolve(self, cells)
    )
    data = xlsx_bytes({"S": [[1] * 50 for _ in range(30)]})  # 1,500 cells of one digit: 3,000 characters of text
    response = post(client, data, "cells.xlsx")
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "too_much_text" and "FILE_MAX_CHARS=1000" in error["message"]
    assert resolved == []  # stopped while scanning the sheet, before its cells were all held and turned into text
    assert post(client, xlsx_bytes({"S": [[1] * 5 for _ in range(3)]}), "small.xlsx").status_code == 200
    assert resolved == [15]


@pytest.mark.django_db
def test_a_budget_is_reserved_per_call_and_one_that_does_not_fit_is_a_402(client, upstream, token, settings):
    from accounts import token_cache

    settings.JOB_CONCURRENCY = 1
    token[0].monthly_budget_usd = Decimal("0.01")  # less than one call's worst case at gpt-4o
    token[0].save()
    token_cache.clear()
    response = post(client, b"Numbers SEC-1.", "q.txt", model="gpt-4o")
    assert response.status_code == 402, response.content
    assert response.json()["error"]["code"] == "budget_exceeded"
    assert [r.status for r in UsageRecord.objects.all()] == ["budget_exceeded"] and upstream.requests == []


@pytest.mark.django_db
def test_an_upstream_that_keeps_failing_is_a_502_with_the_calls_recorded(client, upstream):
    upstream.fail_next("500", times=None)
    response = post(client, b"Numbers SEC-1.", "q.txt")
    assert response.status_code == 502, response.content
    assert [r.status for r in UsageRecord.objects.all()] == ["upstream_error"]
