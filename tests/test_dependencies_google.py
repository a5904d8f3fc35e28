"""Google slow or down: a Google call never runs on a thread that other requests wait for. While the fake Google
hangs on a call, the health check, the readiness probe and another user's LLM call are answered; the hung call
finishes once Google answers. Over real HTTP (uvicorn in a thread), because the thread layout is what is tested."""

import threading

import httpx
import pytest

pytest_plugins = ["tests.fake_google"]
pytestmark = pytest.mark.django_db(transaction=True)

# If the fix regresses, the requests made while Google hangs wait behind it: they then fail with a timeout error
# (a behaviour, not a measured duration).
WAIT = 30


def _extraction() -> dict:
    event = {
        "summary": "Team lunch",
        "description": None,
        "location": None,
        "all_day": False,
        "start": "2026-12-01T13:00:00",
        "end": None,
        "timezone": None,
        "attendees": [],
        "recurrence": None,
    }
    return {"status": "events", "question": None, "events": [event]}


def _in_background(fn) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def run():
        try:
            outcome["response"] = fn()
        except Exception as exc:  # surfaced by the assertions below
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _others_are_served(url: str, other_token: str) -> None:
    with httpx.Client(base_url=url, timeout=WAIT) as http:
        assert http.get("/api/v1/health").json() == {"status": "ok"}
        ready = http.get("/api/v1/health/ready")
        assert ready.status_code == 200, ready.text
        chat = http.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.7},
            headers={"Authorization": f"Bearer {other_token}"},
        )
        assert chat.status_code == 200, chat.text


@pytest.fixture
def calendar_setup(live_djllm, connected, gateway_settings, prices, token, make_token, settings):
    settings.GOOGLE_API_TIMEOUT = 4 * WAIT  # the hung call outlasts whatever the test does meanwhile
    gateway_settings.configure(structured=_extraction())
    _, other = make_token()  # another user's token, first used while Google hangs
    return live_djllm.url, token[1], other


def test_a_hung_google_call_from_the_webhook_delays_no_one_else(calendar_setup, fake_google):
    url, plaintext, other = calendar_setup
    hang = fake_google.hang(method="POST", path_contains="/events")
    thread, outcome = _in_background(
        lambda: httpx.post(
            f"{url}/api/v1/webhook",
            json={"prompt": "Team lunch next Tuesday at 1", "type": "calendar_event"},
            headers={"Authorization": f"Bearer {plaintext}"},
            timeout=120,
        )
    )
    assert hang.arrived.wait(timeout=WAIT), outcome  # the event's insert reached Google, which does not answer

    _others_are_served(url, other)
    assert thread.is_alive() and outcome == {}, outcome  # all the above was answered while the Google call still hangs
    assert [e["summary"] for e in fake_google.live_events()] == []

    hang.release()
    thread.join(timeout=WAIT)
    response = outcome["response"]
    assert response.status_code == 200, response.text
    assert response.json()["result"]["status"] == "created"
    assert [e["summary"] for e in fake_google.live_events()] == ["Team lunch"]


def test_a_hung_google_call_from_the_calendar_api_delays_no_one_else(calendar_setup, fake_google):
    url, plaintext, other = calendar_setup
    hang = fake_google.hang(method="GET", path_contains="/events")
    thread, outcome = _in_background(
        lambda: httpx.get(
            f"{url}/api/v1/calendar/events", headers={"Authorization": f"Bearer {plaintext}"}, timeout=120
        )
    )
    assert hang.arrived.wait(timeout=WAIT), outcome

    _others_are_served(url, other)
    assert thread.is_alive() and outcome == {}

    hang.release()
    thread.join(timeout=WAIT)
    assert outcome["response"].status_code == 200, outcome["response"].text
    assert outcome["response"].json()["events"] == []
