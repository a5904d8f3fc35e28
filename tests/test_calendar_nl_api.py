"""Natural language -> events through the gateway: POST /api/v1/calendar/process-text and the webhook's
`type: calendar_event`. The fake LLM upstream returns the structured extraction; the fake Google stores events."""

from decimal import Decimal

import pytest

from bench.fake_upstream import Usage as FakeUsage
from llm.models import UsageRecord

pytest_plugins = ["tests.fake_google"]
pytestmark = pytest.mark.django_db

PROCESS = "/api/v1/calendar/process-text"


def extraction(*events, status="events", question=None) -> dict:
    return {"status": status, "question": question, "events": list(events)}


def event(summary="Team lunch", start="2026-12-01T13:00:00", end=None, all_day=False, attendees=(), **extra):
    return {
        "summary": summary,
        "description": None,
        "location": None,
        "all_day": all_day,
        "start": start,
        "end": end,
        "timezone": None,
        "attendees": list(attendees),
        "recurrence": None,
        **extra,
    }


@pytest.fixture
def nl(gateway_settings, prices, google_settings, user):
    user.preferences.timezone = "Europe/Berlin"
    user.preferences.save()
    gateway_settings.configure(usage=FakeUsage(input_tokens=800, output_tokens=100))
    return gateway_settings


def test_dry_run_previews_and_records_the_llm_call(nl, auth_client, fake_google):
    nl.configure(structured=extraction(event(attendees=["team@example.com"])))
    response = auth_client.post(
        PROCESS, {"text": "Team lunch next Tuesday at 1, invite team@example.com", "dry_run": True}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "preview" and body["timezone"] == "Europe/Berlin"
    [preview] = body["events"]
    assert preview["summary"] == "Team lunch" and preview["created"] is False
    assert preview["google_event"]["start"] == {"dateTime": "2026-12-01T13:00:00+01:00", "timeZone": "Europe/Berlin"}
    assert preview["google_event"]["attendees"] == [{"email": "team@example.com"}]
    assert body["cost_usd"] == "0.00018"  # 800 x 0.15 + 100 x 0.60, per million (gpt-4o-mini)
    assert fake_google.live_events() == []
    sent = nl.last_request.body
    assert sent["response_format"]["json_schema"]["name"] == "calendar_events"
    assert sent["temperature"] == 0
    system = sent["messages"][0]["content"]
    assert "Europe/Berlin" in system and "The current time is 20" in system
    record = UsageRecord.objects.get()
    assert (record.endpoint, record.type, record.status, record.cost_usd) == (
        "calendar.process_text",
        "calendar_event",
        "ok",
        Decimal("0.00018"),
    )


def test_creates_events_in_google(nl, auth_client, connected, fake_google):
    nl.configure(
        structured=extraction(event(), event("Standup", start="2026-12-02T09:30:00", end="2026-12-02T09:45:00"))
    )
    response = auth_client.post(PROCESS, {"text": "Lunch Tuesday at 1 and standup Wednesday 9:30"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "created"
    stored = sorted(fake_google.live_events(), key=lambda e: e["start"]["dateTime"])
    assert [e["summary"] for e in stored] == ["Team lunch", "Standup"]
    assert stored[1]["end"]["dateTime"] == "2026-12-02T09:45:00+01:00"


def test_retry_with_idempotency_key_creates_no_duplicate(nl, auth_client, connected, fake_google):
    nl.configure(structured=extraction(event()))
    for _ in range(2):
        response = auth_client.post(
            PROCESS, {"text": "Team lunch next Tuesday at 1"}, format="json", HTTP_IDEMPOTENCY_KEY="lunch-1"
        )
        assert response.status_code == 200, response.content
    assert len(fake_google.live_events()) == 1
    assert UsageRecord.objects.count() == 2  # each LLM call is billed; Google got one event


def test_a_malformed_idempotency_key_is_refused_before_the_llm_is_called(nl, auth_client, connected, fake_google):
    nl.configure(structured=extraction(event()))
    response = auth_client.post(
        PROCESS, {"text": "Team lunch next Tuesday at 1"}, format="json", HTTP_IDEMPOTENCY_KEY="lunch one"
    )
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_idempotency_key"
    assert not UsageRecord.objects.exists() and fake_google.live_events() == []


def test_ambiguous_text_asks_instead_of_guessing(nl, auth_client, connected, fake_google):
    nl.configure(structured=extraction(status="needs_clarification", question="Which day next week?"))
    response = auth_client.post(PROCESS, {"text": "Lunch sometime next week"}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "needs_clarification"
    assert response.json()["question"] == "Which day next week?"
    assert fake_google.live_events() == []


def test_claude_extracts_by_forced_tool_use(nl, auth_client, fake_google):
    nl.configure(structured=extraction(event(all_day=True, start="2026-12-24", end="2026-12-26", summary="Holiday")))
    response = auth_client.post(
        PROCESS,
        {"text": "Holiday from Christmas Eve to Boxing Day", "dry_run": True, "model": "claude-haiku-4-5"},
        format="json",
    )
    assert response.status_code == 200, response.content
    google_event = response.json()["events"][0]["google_event"]
    assert google_event["start"] == {"date": "2026-12-24"} and google_event["end"] == {"date": "2026-12-27"}
    assert nl.last_request.body["tool_choice"] == {"type": "tool", "name": "structured_output"}


def test_invalid_extraction_is_422(nl, auth_client):
    nl.configure(structured=extraction(event(start="not a date")))
    response = auth_client.post(PROCESS, {"text": "whenever", "dry_run": True}, format="json")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "calendar_extraction_invalid"


def test_input_validation(nl, auth_client):
    response = auth_client.post(PROCESS, {"text": "", "timezone": "Mars/Base"}, format="json")
    assert response.status_code == 400
    assert set(response.json()["error"]["details"]) == {"text", "timezone"}


def test_webhook_calendar_event_uses_the_same_service(nl, auth_client, connected, fake_google):
    nl.configure(structured=extraction(event(attendees=["team@example.com"])))
    response = auth_client.post(
        "/api/v1/webhook",
        {
            "prompt": "Team lunch next Tuesday at 1, invite team@example.com",
            "type": "calendar_event",
            "source": "email",
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["result"]["status"] == "created" and body["cost_usd"] == "0.00018"
    [stored] = fake_google.live_events()
    assert [a["email"] for a in stored["attendees"]] == ["team@example.com"]
    record = UsageRecord.objects.get()
    assert (record.endpoint, record.type, record.source) == ("webhook", "calendar_event", "email")
    assert nl.last_request.body["messages"][-1]["content"] == "Team lunch next Tuesday at 1, invite team@example.com"


def test_webhook_calendar_event_needs_the_calendar_scope(nl, make_token, user):
    from rest_framework.test import APIClient

    _, plaintext = make_token(user=user, scopes=["llm"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    response = client.post("/api/v1/webhook", {"prompt": "lunch tomorrow", "type": "calendar_event"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "insufficient_scope"
