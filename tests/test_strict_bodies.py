"""JSON bodies are taken at their declared types: what the schema forbids (`cache: 0`, a number for a string) is a
400 naming the field, with nothing sent upstream and nothing billed. Form fields of an upload are text by nature
and keep being read as such."""

import io

import pytest
from django.test import Client

from jobs import services as job_services
from jobs.models import Job
from llm.models import UsageRecord

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(token, gateway_settings, prices):
    return Client(HTTP_AUTHORIZATION=f"Bearer {token[1]}")


@pytest.mark.parametrize(
    "field, value",
    [("cache", 0), ("stream", "true"), ("temperature", "0"), ("model", 4)],
)
def test_chat_completions_rejects_values_of_the_wrong_type(client, fake_upstream, field, value):
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], field: value}
    response = client.post("/v1/chat/completions", body, content_type="application/json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", field)
    assert fake_upstream.requests == [] and not UsageRecord.objects.exists()


@pytest.mark.parametrize("field, value", [("cache", 1), ("prompt", 42), ("max_tokens", 10.5)])
def test_webhook_rejects_values_of_the_wrong_type(client, fake_upstream, field, value):
    body = {"prompt": "Some text", "type": "summary", field: value}
    response = client.post("/api/v1/webhook", body, content_type="application/json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and field in error["details"]
    assert fake_upstream.requests == [] and not UsageRecord.objects.exists()


def test_batch_rejects_a_string_temperature(client, fake_upstream):
    body = {"items": [{"prompt": "a"}], "parameters": {"temperature": "0"}}
    response = client.post("/api/v1/batch", body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert "parameters.temperature" in response.json()["error"]["details"]
    assert fake_upstream.requests == []


def test_upload_form_fields_are_read_as_text(client, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(job_services, "job_enqueue", lambda *, job_id: None)
    upload = io.BytesIO(b"Comment\nGreat product\n")
    upload.name = "feedback.csv"
    form = {"file": upload, "column": "comment", "temperature": "0", "max_tokens": "20", "cache": "true"}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/v1/jobs", form)
    assert response.status_code == 202, response.content
    options = Job.objects.get(pk=response.json()["id"]).options
    assert (options["parameters"]["temperature"], options["parameters"]["max_tokens"], options["cache"]) == (
        0.0,
        20,
        True,
    )


@pytest.mark.parametrize("query", ["to=", "from=", "group_by="])
def test_usage_rejects_a_blank_query_value(client, query):
    """A blank value is not the same as leaving the parameter out: the schema says a date (or a choice)."""
    response = client.get(f"/api/v1/usage?{query}")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and query.rstrip("=") in error["details"]
