"""`template` + `variables` on the batch and on jobs (JSON rows, and a workbook whose columns are the template's
variables): what the fake upstream receives, per-item errors naming the variable, and the usage records' template
version."""

import io

import pytest
from asgiref.sync import async_to_sync
from django.test import Client
from openpyxl import Workbook

from jobs import services as job_services
from jobs.runner import job_run
from llm import services
from llm.models import UsageRecord

BATCH = "/api/v1/batch"
JOBS = "/api/v1/jobs"

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(monkeypatch):
    ids: list[str] = []
    monkeypatch.setattr(job_services, "job_enqueue", lambda *, job_id: ids.append(str(job_id)))
    return ids


@pytest.fixture
def client(token, gateway_settings, prices, queued):
    return Client(HTTP_AUTHORIZATION=f"Bearer {token[1]}")


@pytest.fixture
def echo(fake_upstream):
    fake_upstream.configure(reply=lambda body: "R:" + body["messages"][-1]["content"])
    return fake_upstream


@pytest.fixture
def review(user):
    return services.prompt_template_create(
        owner_id=user.pk,
        created_by_id=user.pk,
        name="review",
        system="Review for $audience.",
        user_template="Product $product: $prompt",
        default_model="gpt-4o",
    )


def sent_user_texts(fake_upstream) -> list[str]:
    return sorted(r.body["messages"][-1]["content"] for r in fake_upstream.requests)


def test_batch_with_template_batch_and_item_variables(client, echo, review):
    body = {
        "template": "review",
        "variables": {"audience": "buyers", "product": "lamp"},
        "items": [
            {"id": "a", "prompt": "bright"},
            {"id": "b", "prompt": "dim", "variables": {"product": "torch"}},
            {"id": "c", "prompt": "odd", "variables": {"colour": "red"}},
        ],
    }
    answer = client.post(BATCH, body, content_type="application/json")
    assert answer.status_code == 200, answer.content
    results = {r["id"]: r for r in answer.json()["results"]}
    assert results["a"]["result"] == "R:Product lamp: bright"
    assert results["b"]["result"] == "R:Product torch: dim"
    assert results["c"]["status"] == "error" and "colour" in results["c"]["error"]["message"]
    assert results["c"]["error"]["code"] == "invalid_request"
    assert sent_user_texts(echo) == ["Product lamp: bright", "Product torch: dim"]
    assert {r.model for r in echo.requests} == {"gpt-4o"}
    assert echo.requests[0].body["messages"][0] == {"role": "system", "content": "Review for buyers."}
    ok = UsageRecord.objects.filter(status="ok")
    assert ok.count() == 2 and set(ok.values_list("template_version_id", flat=True)) == {review.current_version_id}


def test_batch_with_an_unknown_template_is_a_400(client, echo):
    answer = client.post(BATCH, {"template": "nope", "items": [{"prompt": "x"}]}, content_type="application/json")
    assert answer.status_code == 400, answer.content
    assert answer.json()["error"]["code"] == "template_not_found" and "nope" in answer.json()["error"]["message"]
    assert echo.requests == []


def run(job_id) -> None:
    async_to_sync(job_run)(job_id)


def test_json_job_with_template_and_row_variables(client, echo, review, queued, django_capture_on_commit_callbacks):
    body = {
        "template": review.pk,
        "variables": {"audience": "shops"},
        "items": [
            {"id": 1, "prompt": "sturdy", "variables": {"product": "chair"}},
            {"id": 2, "prompt": "wobbly"},
        ],
    }
    with django_capture_on_commit_callbacks(execute=True):
        created = client.post(JOBS, body, content_type="application/json")
    assert created.status_code == 202, created.content
    run(queued[0])
    results = client.get(f"{JOBS}/{queued[0]}/results").json()
    rows = {r["id"]: r for r in results["results"]}
    assert rows[1]["result"] == "R:Product chair: sturdy"
    assert rows[2]["status"] == "error" and "variables.product" in rows[2]["error"]["message"]
    assert sent_user_texts(echo) == ["Product chair: sturdy"]
    assert UsageRecord.objects.get(status="ok").template_version_id == review.current_version_id


def test_workbook_job_reads_variables_from_named_columns(
    client, echo, review, queued, django_capture_on_commit_callbacks
):
    workbook = Workbook()
    for row in (["Comment", "product", "audience"], ["great", "lamp", "kids"], ["poor", "", "adults"]):
        workbook.active.append(row)
    data = io.BytesIO()
    workbook.save(data)
    upload = io.BytesIO(data.getvalue())
    upload.name = "reviews.xlsx"
    with django_capture_on_commit_callbacks(execute=True):
        created = client.post(JOBS, {"file": upload, "column": "Comment", "template": "review"})
    assert created.status_code == 202, created.content
    run(queued[0])
    assert sent_user_texts(echo) == ["Product : poor", "Product lamp: great"]
    systems = sorted(r.body["messages"][0]["content"] for r in echo.requests)
    assert systems == ["Review for adults.", "Review for kids."]

    missing = io.BytesIO(data.getvalue())
    missing.name = "reviews.xlsx"
    services.prompt_template_update(
        template=review, changed_by_id=review.owner_id, user_template="$prompt for $shop", system=""
    )
    with django_capture_on_commit_callbacks(execute=True):
        refused = client.post(JOBS, {"file": missing, "column": "Comment", "template": "review"})
    assert refused.status_code == 400, refused.content
    assert "shop" in refused.json()["error"]["message"]
