"""Under WSGI (PythonAnywhere) each request runs the async views in an event loop of its own. The hot path's
per-process parts (the DB thread's group commit, single-flight cache reads, SDK clients per loop) must still
answer and record every request, as under ASGI."""

import json
from decimal import Decimal

import pytest
from django.test import Client

from bench.fake_upstream import Usage as FakeUsage
from llm.models import SpendCounter, UsageRecord
from tests.live import close_server_thread_connections

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def wsgi_client(token, gateway_settings, prices, settings):
    settings.DB_THREAD_ENABLED = True  # as in production
    yield Client(HTTP_AUTHORIZATION=f"Bearer {token[1]}")
    close_server_thread_connections()


def test_requests_in_their_own_loops_are_answered_and_recorded(wsgi_client, fake_upstream, token):
    fake_upstream.configure(reply="one two three four", chunks=4, usage=FakeUsage(input_tokens=100, output_tokens=50))
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(3):
        response = wsgi_client.post("/v1/chat/completions", body, content_type="application/json")
        assert response.status_code == 200, response.content
    streamed = wsgi_client.post("/v1/chat/completions", {**body, "stream": True}, content_type="application/json")
    assert streamed.status_code == 200
    events = [e for e in b"".join(streamed).decode().split("\n\n") if e]  # a WSGI server iterates it like this
    assert events[-1] == "data: [DONE]"
    deltas = [json.loads(e.removeprefix("data: "))["choices"][0]["delta"] for e in events[:-1]]
    assert "".join(d.get("content", "") for d in deltas) == "one two three four"  # every chunk, not just the first
    webhook = wsgi_client.post("/api/v1/webhook", {"prompt": "some text", "type": "summary"}, "application/json")
    assert webhook.status_code == 200, webhook.content

    records = list(UsageRecord.objects.order_by("id"))
    assert [(r.endpoint, r.status, r.stream) for r in records] == [("chat.completions", "ok", False)] * 3 + [
        ("chat.completions", "ok", True),
        ("webhook", "ok", False),
    ]
    # 100 input x $0.15 + 50 output x $0.60 per million = $0.000045 a request, five requests.
    assert [(r.input_tokens, r.output_tokens, r.cost_usd) for r in records] == [(100, 50, Decimal("0.000045"))] * 5
    counter = SpendCounter.objects.get(scope="token", key=token[0].pk)
    assert counter.spent_usd == Decimal("0.000225")


def test_a_wsgi_client_hanging_up_mid_stream_is_recorded_as_cancelled(wsgi_client, fake_upstream):
    fake_upstream.configure(reply="a b c d e f g h", chunks=8, chunk_delay_ms=50)
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "count"}]}
    streamed = wsgi_client.post("/v1/chat/completions", body, content_type="application/json")
    events = iter(streamed)
    first = next(events)
    assert first.startswith(b"data: ")
    streamed.close()  # what a WSGI server does when the client has gone

    [record] = UsageRecord.objects.all()
    assert (record.status, record.error_code, record.stream, record.usage_estimated) == (
        "cancelled",
        "client_disconnected",
        True,
        True,
    )
