"""Background jobs through Django's test client: create from JSON, CSV or XLSX, poll progress, results as JSON, CSV
and XLSX, cancel, Idempotency-Key, limits. A worker's run is `job_run` called here (the queue is replaced by a
list of the job ids it was given); real worker processes are in test_jobs_worker.py."""

import csv
import io
import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.db import connections
from django.test import Client
from django.utils import timezone
from openpyxl import Workbook, load_workbook

from bench.fake_upstream import Usage as FakeUsage
from jobs import services
from jobs.models import ItemStatus, Job, JobItem
from jobs.runner import job_run
from llm.models import UsageRecord

JOBS = "/api/v1/jobs"


def last_user_text(body: dict) -> str:
    return [m for m in body["messages"] if m["role"] == "user"][-1]["content"]


@pytest.fixture
def echo(fake_upstream):
    fake_upstream.configure(
        reply=lambda body: "R:" + last_user_text(body), usage=FakeUsage(input_tokens=100, output_tokens=10)
    )
    return fake_upstream


@pytest.fixture
def queued(monkeypatch):
    """The job ids handed to the queue (instead of a broker)."""
    ids: list[str] = []
    monkeypatch.setattr(services, "job_enqueue", lambda *, job_id: ids.append(str(job_id)))
    return ids


@pytest.fixture
def client(token, gateway_settings, prices, queued, settings):
    settings.JOB_CONCURRENCY = 4
    return Client(HTTP_AUTHORIZATION=f"Bearer {token[1]}")


def create(client, django_capture_on_commit_callbacks, body=None, **extra):
    with django_capture_on_commit_callbacks(execute=True):
        if "data" in extra:
            return client.post(JOBS, extra.pop("data"), **extra)
        return client.post(JOBS, body, content_type="application/json", **extra)


def run(job_id) -> None:
    async_to_sync(job_run)(job_id)


def rows(n: int) -> list[dict]:
    return [{"id": f"r{i}", "prompt": f"comment {i}"} for i in range(n)]


@pytest.mark.django_db
def test_json_job_from_202_to_results(client, echo, queued, django_capture_on_commit_callbacks):
    response = create(client, django_capture_on_commit_callbacks, {"type": "summary", "items": rows(5)})
    assert response.status_code == 202, response.content
    body = response.json()
    job_url = f"http://testserver/api/v1/jobs/{body['id']}"
    assert response["Location"] == job_url and response["Retry-After"] == "5"
    assert queued == [body["id"]]
    assert (body["status"], body["total"], body["done"], body["pending"], body["cost_usd"]) == ("queued", 5, 0, 5, "0")
    assert body["links"] == {"self": job_url, "results": f"{job_url}/results", "cancel": f"{job_url}/cancel"}
    polled = client.get(f"{JOBS}/{body['id']}")
    assert polled.status_code == 202 and polled["Location"] == job_url

    run(body["id"])

    done = client.get(f"{JOBS}/{body['id']}")
    assert done.status_code == 200 and "Location" not in done
    progress = done.json()
    assert (progress["status"], progress["done"], progress["failed"], progress["pending"]) == ("done", 5, 0, 0)
    assert progress["cost_usd"] == "0.000105" and progress["eta_seconds"] == 0
    assert progress["started_at"] and progress["finished_at"]

    results = client.get(f"{JOBS}/{body['id']}/results").json()
    assert [r["id"] for r in results["results"]] == [f"r{i}" for i in range(5)]
    assert all(f"comment {i}" in r["result"] and r["status"] == "ok" for i, r in enumerate(results["results"]))
    assert results["totals"] == {"items": 5, "ok": 5, "errors": 0, "cached": 0, "cost_usd": "0.000105"}

    # One usage record per row, with the job's batch id and the row's own request id, linked from the row.
    job = Job.objects.get(pk=body["id"])
    records = UsageRecord.objects.filter(batch_id=job.batch_id)
    assert sorted(records.values_list("request_id", flat=True)) == [f"job_{job.pk.hex}.{i}" for i in range(5)]
    assert set(records.values_list("endpoint", "status", "type")) == {("job", "ok", "summary")}
    for item in JobItem.objects.filter(job=job):
        assert item.usage_record.request_id == item.request_id and item.cost_usd == Decimal("0.000021")


@pytest.mark.django_db
def test_a_failing_row_does_not_fail_the_job(client, echo, django_capture_on_commit_callbacks):
    echo.fail_next("500", times=None, model="gpt-4o")
    items = [{"prompt": "a"}, {"prompt": "b", "model": "gpt-4o"}, {"prompt": " "}, {"prompt": "d"}]
    job_id = create(client, django_capture_on_commit_callbacks, {"items": items}).json()["id"]
    run(job_id)
    progress = client.get(f"{JOBS}/{job_id}").json()
    assert (progress["status"], progress["done"], progress["failed"]) == ("done", 4, 2)
    results = client.get(f"{JOBS}/{job_id}/results").json()["results"]
    assert [(r["id"], r["status"]) for r in results] == [(0, "ok"), (1, "error"), (2, "error"), (3, "ok")]
    assert results[1]["error"]["code"] == "upstream_server_error"
    assert results[2]["error"]["code"] == "empty_prompt"


@pytest.mark.django_db
def test_csv_upload(client, echo, django_capture_on_commit_callbacks):
    data = "Name;Comment\nAnna;Great product\nBen;\nCara;Too expensive\n".encode("utf-8-sig")
    upload = io.BytesIO(data)
    upload.name = "feedback.csv"
    response = create(
        client, django_capture_on_commit_callbacks, data={"file": upload, "column": "comment", "type": "sentiment"}
    )
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    assert (response.json()["total"], response.json()["source"]) == (2, "csv")
    run(job_id)
    table = list(csv.reader(io.StringIO(client.get(f"{JOBS}/{job_id}/results?format=csv").content.decode("utf-8-sig"))))
    assert table[0] == ["id", "prompt", "status", "result", "error_code", "error_message", "cached", "cost_usd"]
    assert [(row[0], row[1], row[2]) for row in table[1:]] == [
        ("2", "Great product", "ok"),
        ("4", "Too expensive", "ok"),
    ]
    assert "Great product" in table[1][3] and table[1][7] == "0.000021"
    assert UsageRecord.objects.get(request_id=f"job_{Job.objects.get().pk.hex}.0").type == "sentiment"


def _workbook(rows_: list[list]) -> io.BytesIO:
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Feedback"
    for row in rows_:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    out.seek(0)
    out.name = "feedback.xlsx"
    return out


@pytest.mark.django_db
def test_xlsx_upload_gives_back_the_workbook_with_a_result_column(client, echo, django_capture_on_commit_callbacks):
    echo.fail_next("500", times=None, model="gpt-4o")
    upload = _workbook([["Customer", "Comment"], ["Anna", "Fast delivery"], ["Ben", None], ["Cara", 1234]])
    response = create(
        client, django_capture_on_commit_callbacks, data={"file": upload, "column": "Comment", "type": "summary"}
    )
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    run(job_id)
    xlsx = client.get(f"{JOBS}/{job_id}/results?format=xlsx")
    assert xlsx.status_code == 200
    assert xlsx["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert xlsx["Content-Disposition"] == f'attachment; filename="djllm-job-{job_id}.xlsx"'
    sheet = load_workbook(io.BytesIO(xlsx.content))["Feedback"]
    values = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert values[0] == ["Customer", "Comment", "djllm summary"]
    assert values[1][:2] == ["Anna", "Fast delivery"] and "Fast delivery" in values[1][2]
    assert values[2] == ["Ben", None, None]  # an empty cell is not a row to run
    assert values[3][:2] == ["Cara", 1234] and "1234" in values[3][2]
    # The JSON results name the rows by their row number.
    assert [r["id"] for r in client.get(f"{JOBS}/{job_id}/results").json()["results"]] == [2, 4]


@pytest.mark.django_db
def test_xlsx_result_column_shows_errors_readably(client, echo, django_capture_on_commit_callbacks, settings):
    settings.MAX_PROMPT_LENGTH = 10
    upload = _workbook([["Comment"], ["short"], ["far too long for the limit"]])
    job_id = create(client, django_capture_on_commit_callbacks, data={"file": upload, "column": "A"}).json()["id"]
    run(job_id)
    sheet = load_workbook(io.BytesIO(client.get(f"{JOBS}/{job_id}/results?format=xlsx").content)).active
    assert "short" in sheet["B2"].value
    assert sheet["B3"].value.startswith("#ERROR prompt_too_long: ")


@pytest.mark.django_db
def test_json_job_results_as_xlsx_and_csv_tables(client, echo, django_capture_on_commit_callbacks):
    job_id = create(client, django_capture_on_commit_callbacks, {"items": rows(2)}).json()["id"]
    run(job_id)
    sheet = load_workbook(io.BytesIO(client.get(f"{JOBS}/{job_id}/results?format=xlsx").content)).active
    assert [c.value for c in sheet[1]] == [
        "id",
        "prompt",
        "status",
        "result",
        "error_code",
        "error_message",
        "cached",
        "cost_usd",
    ]
    assert [sheet["A2"].value, sheet["B2"].value, sheet["C2"].value] == ["r0", "comment 0", "ok"]
    assert client.get(f"{JOBS}/{job_id}/results?format=pdf").status_code == 400


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({"column": "Comment"}, "invalid_request"),  # no file
        ({"column": "Nope", "file": ("feedback.csv", b"Comment\nhello\n")}, "column_not_found"),
        ({"column": "Comment", "file": ("feedback.txt", b"Comment\nhello\n")}, "unsupported_file_type"),
        ({"column": "Comment", "file": ("feedback.xlsx", b"not a zip")}, "invalid_file"),
        ({"column": "Comment", "file": ("feedback.csv", b"Comment\n\n")}, "no_items"),
        ({"column": "Comment", "sheet": "Nope", "file": ("f.xlsx", None)}, "sheet_not_found"),
    ],
)
def test_upload_problems_are_400s(client, echo, django_capture_on_commit_callbacks, data, code):
    if "file" in data:
        name, content = data["file"]
        upload = _workbook([["Comment"], ["x"]]) if content is None else io.BytesIO(content)
        upload.name = name
        data = {**data, "file": upload}
    response = create(client, django_capture_on_commit_callbacks, data=data)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == code
    assert Job.objects.count() == 0


@pytest.mark.django_db
def test_item_limit(client, echo, settings, django_capture_on_commit_callbacks):
    settings.JOB_MAX_ITEMS = 3
    response = create(client, django_capture_on_commit_callbacks, {"items": rows(4)})
    assert response.status_code == 400
    assert (
        response.json()["error"]["code"] == "too_many_items"
        and "JOB_MAX_ITEMS=3" in response.json()["error"]["message"]
    )
    upload = io.BytesIO(b"c\n1\n2\n3\n4\n")
    upload.name = "big.csv"
    too_big = create(client, django_capture_on_commit_callbacks, data={"file": upload, "column": "c"})
    assert too_big.status_code == 400 and "JOB_MAX_ITEMS=3" in too_big.json()["error"]["message"]
    assert Job.objects.count() == 0


@pytest.mark.django_db
def test_cancel_before_it_runs(client, echo, django_capture_on_commit_callbacks):
    job_id = create(client, django_capture_on_commit_callbacks, {"items": rows(3)}).json()["id"]
    cancelled = client.post(f"{JOBS}/{job_id}/cancel")
    assert cancelled.status_code == 200
    assert (cancelled.json()["status"], cancelled.json()["cancelled"], cancelled.json()["pending"]) == (
        "cancelled",
        3,
        0,
    )
    run(job_id)
    assert echo.requests == [] and UsageRecord.objects.count() == 0
    again = client.post(f"{JOBS}/{job_id}/cancel")
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_finished"
    results = client.get(f"{JOBS}/{job_id}/results").json()["results"]
    assert {r["status"] for r in results} == {"cancelled"}


@pytest.mark.django_db
def test_idempotent_job_creation(client, echo, django_capture_on_commit_callbacks, queued):
    body = {"items": rows(2)}
    first = create(client, django_capture_on_commit_callbacks, body, HTTP_IDEMPOTENCY_KEY="import-2026-01-05")
    retry = create(client, django_capture_on_commit_callbacks, body, HTTP_IDEMPOTENCY_KEY="import-2026-01-05")
    assert first.status_code == retry.status_code == 202
    assert retry.json() == first.json() and retry["Location"] == first["Location"]
    assert retry["Idempotent-Replayed"] == "true"
    assert Job.objects.count() == 1 and queued == [first.json()["id"]]
    other = create(
        client, django_capture_on_commit_callbacks, {"items": rows(3)}, HTTP_IDEMPOTENCY_KEY="import-2026-01-05"
    )
    assert other.status_code == 409


@pytest.mark.django_db
def test_idempotent_upload_ignores_the_multipart_boundary(client, echo, django_capture_on_commit_callbacks):
    def upload():
        f = io.BytesIO(b"Comment\nhello\n")
        f.name = "a.csv"
        return {"file": f, "column": "Comment"}

    first = create(client, django_capture_on_commit_callbacks, data=upload(), HTTP_IDEMPOTENCY_KEY="u-1")
    second = create(client, django_capture_on_commit_callbacks, data=upload(), HTTP_IDEMPOTENCY_KEY="u-1")
    assert first.json()["id"] == second.json()["id"] and Job.objects.count() == 1


@pytest.mark.django_db
def test_jobs_are_private_to_their_user(client, echo, django_capture_on_commit_callbacks, make_token):
    job_id = create(client, django_capture_on_commit_callbacks, {"items": rows(1)}).json()["id"]
    _, stranger = make_token(name="stranger")
    other = Client(HTTP_AUTHORIZATION=f"Bearer {stranger}")
    for response in (
        other.get(f"{JOBS}/{job_id}"),
        other.get(f"{JOBS}/{job_id}/results"),
        other.post(f"{JOBS}/{job_id}/cancel"),
    ):
        assert response.status_code == 404 and response.json()["error"]["code"] == "job_not_found"
    assert Client().get(f"{JOBS}/{job_id}").status_code == 401


@pytest.mark.django_db
def test_rows_a_dead_worker_held_are_run_again_and_billed_once(client, echo, django_capture_on_commit_callbacks):
    """A worker that died mid-job leaves rows claimed under a lease: expired ones are claimed again at once, and
    the run waits for the others' leases to run out rather than finishing the job without them."""
    job_id = create(client, django_capture_on_commit_callbacks, {"items": rows(4)}).json()["id"]
    now = timezone.now()
    JobItem.objects.filter(job_id=job_id, position__in=[0, 1]).update(
        status=ItemStatus.RUNNING, claim="dead-worker", lease_until=now - timedelta(seconds=1)
    )
    JobItem.objects.filter(job_id=job_id, position=2).update(
        status=ItemStatus.RUNNING, claim="worker-that-just-died", lease_until=now + timedelta(seconds=0.5)
    )
    run(job_id)
    job = Job.objects.get(pk=job_id)
    assert job.status == "done"
    items = list(job.items.order_by("position"))
    assert [i.status for i in items] == ["ok"] * 4
    assert [UsageRecord.objects.filter(request_id=i.request_id).count() for i in items] == [1, 1, 1, 1]
    assert all(i.usage_record.request_id == i.request_id for i in items)


@pytest.mark.django_db
def test_recalculating_the_same_job_costs_nothing_at_temperature_0(client, echo, django_capture_on_commit_callbacks):
    body = {"type": "sentiment", "parameters": {"temperature": 0}, "items": rows(3)}
    first = create(client, django_capture_on_commit_callbacks, body).json()["id"]
    run(first)
    second = create(client, django_capture_on_commit_callbacks, body).json()["id"]
    run(second)
    progress = client.get(f"{JOBS}/{second}").json()
    assert (progress["cost_usd"], progress["cached"], progress["done"]) == ("0", 3, 3)
    assert client.get(f"{JOBS}/{first}").json()["cost_usd"] == "0.000063"
    assert len(echo.requests) == 3


@pytest.mark.django_db
def test_a_used_up_budget_stops_the_job(client, echo, django_capture_on_commit_callbacks, token, settings):
    settings.JOB_CONCURRENCY = 1
    echo.configure(usage=FakeUsage(input_tokens=40_000, output_tokens=0))  # $0.006 a row
    token[0].monthly_budget_usd = Decimal("0.01")  # spent after the second row
    token[0].save()
    # max_tokens keeps each row's reservation small, so the second row still fits after the first one's $0.006.
    body = {"parameters": {"max_tokens": 10}, "items": rows(6)}
    job_id = create(client, django_capture_on_commit_callbacks, body).json()["id"]
    run(job_id)
    progress = client.get(f"{JOBS}/{job_id}").json()
    assert progress["status"] == "failed" and progress["error"]["code"] == "budget_exceeded"
    assert progress["done"] == 3 and progress["failed"] == 1 and progress["cancelled"] == 3
    assert len(echo.requests) == 2


@pytest.mark.django_db
def test_a_job_stops_when_its_next_row_may_cost_more_than_is_left(
    client, echo, django_capture_on_commit_callbacks, token, settings
):
    from llm.models import SpendCounter

    settings.JOB_CONCURRENCY = 1
    echo.configure(usage=FakeUsage(input_tokens=40_000, output_tokens=0))  # $0.006 a row
    token[0].monthly_budget_usd = Decimal("0.01")
    token[0].save()
    # No max_tokens: a row may write gpt-4o-mini's 16,384 output tokens (~$0.0098), which no longer fits once the
    # first row's $0.006 is spent, though the budget is not used up.
    job_id = create(client, django_capture_on_commit_callbacks, {"items": rows(6)}).json()["id"]
    run(job_id)
    progress = client.get(f"{JOBS}/{job_id}").json()
    assert progress["status"] == "failed" and progress["error"]["code"] == "budget_exceeded"
    assert len(echo.requests) == 1
    counter = SpendCounter.objects.get(scope="token", key=token[0].pk)
    assert counter.spent_usd == Decimal("0.006") and counter.reserved_usd == 0


@pytest.mark.django_db(transaction=True)
def test_progress_while_running_then_cancel_mid_job(client, echo, django_capture_on_commit_callbacks, settings):
    settings.JOB_CONCURRENCY = 2
    echo.configure(latency_ms=150)
    job_id = create(client, django_capture_on_commit_callbacks, {"items": rows(20)}).json()["id"]

    def work():
        try:
            run(job_id)
        finally:
            connections.close_all()  # this thread's own connection, so the test database can be dropped

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    deadline = time.monotonic() + 10
    while True:
        progress = client.get(f"{JOBS}/{job_id}")
        if progress.json()["done"] >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    body = progress.json()
    assert progress.status_code == 202 and body["status"] == "running"
    assert 2 <= body["done"] < 20 and body["pending"] == 20 - body["done"]
    assert Decimal(body["cost_usd"]) == Decimal("0.000021") * body["done"]
    assert body["eta_seconds"] is not None and body["eta_seconds"] > 0
    assert client.post(f"{JOBS}/{job_id}/cancel").status_code == 200
    worker.join(timeout=10)
    assert not worker.is_alive()
    final = client.get(f"{JOBS}/{job_id}").json()
    assert final["status"] == "cancelled"
    # Rows at the upstream when the job was cancelled finished; rows claimed but not started were cancelled too.
    assert (final["pending"], final["running"]) == (0, 0)
    assert final["done"] + final["cancelled"] == 20 and final["cancelled"] >= 12
    assert UsageRecord.objects.filter(status="ok").count() == final["done"] == len(echo.requests)


@pytest.mark.django_db
def test_request_level_problems_fail_the_job_request(client, echo, django_capture_on_commit_callbacks, queued):
    response = create(client, django_capture_on_commit_callbacks, {"type": "calendar_event", "items": rows(2)})
    assert response.status_code == 400 and response.json()["error"]["code"] == "type_not_available"
    bad = create(client, django_capture_on_commit_callbacks, {"items": rows(1), "parameters": {"top_k": 3}})
    assert bad.status_code == 400 and "parameters.top_k" in bad.json()["error"]["details"]
    assert Job.objects.count() == 0 and queued == []


@pytest.mark.django_db
def test_json_body_limit(client, echo, django_capture_on_commit_callbacks, settings):
    settings.JOB_UPLOAD_MAX_BYTES = 1000
    response = create(client, django_capture_on_commit_callbacks, {"items": [{"prompt": "x" * 2000}]})
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"
    assert Job.objects.count() == 0


@pytest.mark.django_db
def test_rows_claimed_but_not_started_when_a_job_stops_are_cancelled(client, echo, django_capture_on_commit_callbacks):
    from jobs import claims

    job_id = create(client, django_capture_on_commit_callbacks, {"items": rows(4)}).json()["id"]
    claims.job_start(job_id=job_id)
    held = claims.items_claim(job_id=job_id, claim="w1", limit=2, lease_seconds=60)
    assert [i.position for i in held] == [0, 1]
    assert claims.items_claim(job_id=job_id, claim="w2", limit=4, lease_seconds=60) != []  # the other two
    assert claims.items_claim(job_id=job_id, claim="w3", limit=4, lease_seconds=60) == []  # nothing left
    claims.items_release(job_id=job_id, item_ids=[held[1].pk], claim="w1")
    assert JobItem.objects.get(pk=held[1].pk).status == "pending"  # the job goes on: someone else runs it
    assert client.post(f"{JOBS}/{job_id}/cancel").status_code == 200
    claims.items_release(job_id=job_id, item_ids=[held[0].pk], claim="w1")
    assert JobItem.objects.get(pk=held[0].pk).status == "cancelled"
