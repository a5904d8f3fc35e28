"""What the Excel add-in's range functions ask of `POST /api/v1/batch`: `labels` (an answer must be one of them; any
other is the item's error and never comes back from the response cache: =DJLLM.CLASSIFY) and
`parameters.response_format` (answers in a JSON shape: =DJLLM.ASK's lists and tables, =DJLLM.EXTRACT)."""

import json

import pytest
from asgiref.sync import async_to_sync
from django.test import Client

from jobs import services as job_services
from jobs.runner import job_run
from llm.models import UsageRecord

pytestmark = pytest.mark.django_db

BATCH = "/api/v1/batch"
LABELS = ["Positive", "Negative", "Neutral"]


@pytest.fixture
def client(token, gateway_settings, prices):
    return Client(HTTP_AUTHORIZATION=f"Bearer {token[1]}")


def post(client, body, **headers):
    return client.post(BATCH, body, content_type="application/json", **headers)


def replies(fake_upstream, table: dict[str, str]):
    def reply(body):
        text = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
        return next(answer for key, answer in table.items() if key in text)

    fake_upstream.configure(reply=reply)


def test_answers_are_matched_to_the_labels_as_given(client, fake_upstream):
    replies(fake_upstream, {"great": " positive.", "awful": '"NEGATIVE"', "fine": "Neutral"})
    body = {
        "parameters": {"temperature": 0},
        "labels": LABELS,
        "items": [{"prompt": t} for t in ("great", "awful", "fine")],
    }
    results = post(client, body).json()["results"]
    assert [r["result"] for r in results] == ["Positive", "Negative", "Neutral"]


def test_an_answer_outside_the_labels_is_an_error_and_is_not_cached(client, fake_upstream):
    replies(fake_upstream, {"great": "Positive", "odd": "I cannot tell"})
    body = {"parameters": {"temperature": 0}, "labels": LABELS, "items": [{"prompt": "great"}, {"prompt": "odd"}]}
    first = post(client, body).json()["results"]
    assert first[0]["status"] == "ok" and first[0]["result"] == "Positive"
    assert first[1]["status"] == "error" and first[1]["result"] is None
    assert first[1]["error"] == {
        "code": "answer_not_in_labels",
        "message": "The answer 'I cannot tell' is not one of the labels.",
    }
    assert float(first[1]["cost_usd"]) > 0  # the call was made and is billed
    again = post(client, body).json()["results"]
    assert again[0]["cached"] is True  # the label was kept
    assert again[1]["cached"] is False and again[1]["error"]["code"] == "answer_not_in_labels"  # asked again
    assert len(fake_upstream.requests) == 3
    assert UsageRecord.objects.filter(status="cached").count() == 1


def test_labels_must_be_a_non_empty_list(client, fake_upstream):
    for labels in ([], "Positive", [1]):
        response = post(client, {"labels": labels, "items": [{"prompt": "x"}]})
        assert response.status_code == 400 and "`labels" in response.json()["error"]["message"], labels


SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "list",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"items": {"type": "array", "items": {"type": "string"}}},
            "required": ["items"],
            "additionalProperties": False,
        },
    },
}


def test_response_format_is_sent_with_every_item_and_keys_the_cache(client, fake_upstream):
    fake_upstream.configure(structured=lambda body: {"items": ["a", body["messages"][-1]["content"]]})
    body = {
        "parameters": {"temperature": 0, "response_format": SCHEMA},
        "items": [{"prompt": "one"}, {"prompt": "two"}],
    }
    first = post(client, body).json()
    assert [json.loads(r["result"]) for r in first["results"]] == [{"items": ["a", "one"]}, {"items": ["a", "two"]}]
    sent = [json.loads(r.raw_body) for r in fake_upstream.requests]
    assert [s["response_format"] for s in sent] == [SCHEMA, SCHEMA]
    assert all(r["cached"] for r in post(client, body).json()["results"])
    plain = {"parameters": {"temperature": 0}, "items": [{"prompt": "one"}]}
    assert post(client, plain).json()["results"][0]["cached"] is False  # another request: another cache entry
    dry = post(client, {**body, "dry_run": True}).json()["results"][0]
    priced_plain = post(client, {**plain, "items": [{"prompt": "three"}], "dry_run": True}).json()["results"][0]
    assert dry["input_tokens"] > priced_plain["input_tokens"] + 100  # the schema is input, counted by the bound


def test_a_job_keeps_to_its_labels_too(client, fake_upstream, monkeypatch, django_capture_on_commit_callbacks):
    queued: list[str] = []
    monkeypatch.setattr(job_services, "job_enqueue", lambda *, job_id: queued.append(str(job_id)))
    replies(fake_upstream, {"great": "Positive.", "odd": "no idea"})
    body = {"parameters": {"temperature": 0}, "labels": LABELS, "items": [{"prompt": "great"}, {"prompt": "odd"}]}
    with django_capture_on_commit_callbacks(execute=True):
        created = client.post("/api/v1/jobs", body, content_type="application/json")
    assert created.status_code == 202, created.content
    async_to_sync(job_run)(queued[0])
    results = client.get(f"/api/v1/jobs/{queued[0]}/results").json()["results"]
    assert (results[0]["status"], results[0]["result"]) == ("ok", "Positive")  # the label as given
    assert results[1]["status"] == "error" and results[1]["error"]["code"] == "answer_not_in_labels"
    assert UsageRecord.objects.filter(endpoint="job", status="ok").count() == 2  # both were billed
    again = post(client, {**body, "items": [{"prompt": "great"}, {"prompt": "odd"}]}).json()["results"]
    assert [r["cached"] for r in again] == [True, False]  # the off-label answer was not kept
