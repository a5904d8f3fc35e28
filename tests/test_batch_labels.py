"""`labels` on `POST /api/v1/batch`: an answer must be one of them; any other is the item's error and never comes
back from the response cache (what the Excel add-in's =DJLLM.CLASSIFY relies on)."""

import pytest
from django.test import Client

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
