"""Hostile input, each item as an attacker would send it: the status and the JSON body, nothing recorded, sent
upstream or billed that should not be, and the service still answering afterwards."""

import asyncio
import io
import json

import pytest
from django.core.exceptions import ValidationError
from django.test import Client, override_settings

from accounts.checks import rate_limit_setting_check
from accounts.forms import AdminTokenForm
from accounts.models import APIToken, rate_limit_validator
from jobs.models import Job
from llm.models import UsageRecord

pytestmark = pytest.mark.django_db

CHAT = "/v1/chat/completions"
WEBHOOK = "/api/v1/webhook"


@pytest.fixture
def client(token, gateway_settings, prices):
    return Client(HTTP_AUTHORIZATION=f"Bearer {token[1]}")


def post(client, path, body):
    return client.post(path, body, content_type="application/json")


def claude(**extra) -> dict:
    return {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "Hi"}], **extra}


def still_serves(client) -> None:
    response = post(client, CHAT, claude())
    assert response.status_code == 200, response.content


# --- Claude: request translation errors are 400s naming the field --------------------------------------------------

BAD_TOOL_INPUT = {
    "tool without function": (claude(tools=[{"type": "function"}]), "tools[0].function.name"),
    "tool with a non-object schema": (
        claude(tools=[{"type": "function", "function": {"name": "f", "parameters": "yes"}}]),
        "tools[0].function.parameters",
    ),
    "tool call arguments not JSON": (
        claude(
            messages=[
                {"role": "user", "content": "Weather?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{not json"}}
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            ]
        ),
        "messages[1].tool_calls[0].function.arguments",
    ),
    "tool call without a name": (
        claude(
            messages=[
                {"role": "user", "content": "x"},
                {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": "w"}]},
            ]
        ),
        "messages[1].tool_calls[0].function.name",
    ),
    "tool choice without a name": (
        claude(
            tools=[{"type": "function", "function": {"name": "f"}}],
            tool_choice={"type": "function", "function": {}},
        ),
        "tool_choice.function.name",
    ),
    "image part without a URL": (
        claude(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": "nope"}]}]),
        "messages[0].content[0].image_url.url",
    ),
}


@pytest.mark.django_db(transaction=True)  # WSGI streams run on a thread of their own, with its own connection
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("case", BAD_TOOL_INPUT)
def test_malformed_tool_input_on_a_claude_model_is_a_400_naming_the_field(case, stream, client, fake_upstream):
    body, param = BAD_TOOL_INPUT[case]
    response = post(client, CHAT, {**body, "stream": stream})
    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == param
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert fake_upstream.requests_for("anthropic") == []  # nothing sent, nothing to bill
    record = UsageRecord.objects.get()
    assert (record.status, record.http_status, record.output_tokens) == ("client_error", 400, 0)
    assert not record.cost_usd
    still_serves(client)


# --- MAX_PROMPT_LENGTH counts everything the upstream is sent ------------------------------------------------------


def test_the_prompt_limit_counts_system_tools_and_non_text_parts(client, settings, fake_upstream):
    settings.MAX_PROMPT_LENGTH = 200
    short = "x" * 50
    tools = [{"type": "function", "function": {"name": "f", "description": "y" * 300}}]
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 300}}
    cases = [
        (CHAT, claude(messages=[{"role": "system", "content": "s" * 300}, {"role": "user", "content": short}])),
        (CHAT, claude(messages=[{"role": "user", "content": short}], tools=tools)),
        (CHAT, claude(messages=[{"role": "user", "content": [{"type": "text", "text": short}, image]}])),
        (WEBHOOK, {"prompt": short, "system": "s" * 300}),
    ]
    for path, body in cases:
        response = post(client, path, body)
        assert response.status_code == 400, (path, response.content)
        assert response.json()["error"]["code"] == "prompt_too_long"
        assert "MAX_PROMPT_LENGTH=200" in response.json()["error"]["message"]
    assert fake_upstream.requests == [] and UsageRecord.objects.count() == 0
    # Under the limit, all of it together: served.
    ok = claude(messages=[{"role": "user", "content": [{"type": "text", "text": short}]}])
    assert post(client, CHAT, ok).status_code == 200


# --- Rates: `10/0s` is refused everywhere a rate is set -----------------------------------------------------------


@pytest.mark.parametrize("rate", ["10/0s", "10/00m", "10/s/", "abc", "10/x", "/m", "10/5", "١٠/m", " 10/m"])
def test_invalid_rates_are_refused(rate):
    with pytest.raises(ValidationError):
        rate_limit_validator(rate)


@pytest.mark.parametrize("rate", ["60/m", "10/5s", "1000/h", "0/d", "5/10m"])
def test_valid_rates_pass(rate):
    rate_limit_validator(rate)


def test_the_token_form_refuses_a_zero_second_window(user):
    form = AdminTokenForm(data={"user": user.pk, "name": "t", "scopes": ["llm"], "rate_limit": "10/0s"})
    assert not form.is_valid()
    assert "rate_limit" in form.errors


def test_the_rate_limit_setting_is_checked_at_startup():
    with override_settings(RATE_LIMIT="10/0s"):
        errors = rate_limit_setting_check(None)
    assert [e.id for e in errors] == ["accounts.E001"]
    with override_settings(RATE_LIMIT="60/m"):
        assert rate_limit_setting_check(None) == []


def test_a_stored_invalid_rate_falls_back_to_the_default_instead_of_a_500(client, token, settings):
    APIToken.objects.filter(pk=token[0].pk).update(rate_limit="10/0s")  # a row saved before validation existed
    settings.RATE_LIMIT = "7/h"
    from accounts import token_cache

    token_cache.clear()
    response = post(client, CHAT, claude())
    assert response.status_code == 200, response.content
    assert response["X-RateLimit-Limit"] == "7"


# --- Dates and CSV ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["to=9999-12-31", "from=0001-01-01", "from=0001-01-01&to=0001-01-31"])
def test_usage_dates_at_the_ends_of_the_calendar_are_400(client, query):
    response = client.get(f"/api/v1/usage?{query}")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and "between" in error["message"]
    assert client.get("/api/v1/usage?to=2026-01-31").status_code == 200


def test_a_csv_field_over_the_csv_module_limit_is_a_400(client, monkeypatch):
    import csv

    monkeypatch.setattr(csv, "field_size_limit", csv.field_size_limit)  # restored after the test
    data = b"comment\n" + b'"' + b"x" * (csv.field_size_limit() + 10) + b'"\n'
    upload = io.BytesIO(data)
    upload.name = "huge.csv"
    response = client.post("/api/v1/jobs", {"file": upload, "column": "comment"})
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_file" and "field larger than field limit" in error["message"]
    assert Job.objects.count() == 0 and UsageRecord.objects.count() == 0


# --- The fast path (ASGI): headers before the body -----------------------------------------------------------------


def _scope(path: str, headers: list[tuple[bytes, bytes]], method: str = "POST", scheme: str = "http") -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 443 if scheme == "https" else 80),
    }


async def _call(scope: dict, body_chunks: list[bytes], application=None) -> tuple[int, dict, dict, int]:
    """Run the ASGI app; returns (status, headers, JSON body, body messages the app asked for)."""
    if application is None:
        from config.asgi import application

    asked = 0
    chunks = list(body_chunks) or [b""]
    sent: list[dict] = []

    async def receive():
        nonlocal asked
        if asked < len(chunks):
            asked += 1
            return {"type": "http.request", "body": chunks[asked - 1], "more_body": asked < len(chunks)}
        await asyncio.Event().wait()  # the client stays connected until the answer is sent

    async def send(message):
        sent.append(message)

    await application(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], headers, json.loads(content), asked


JSON = (b"content-type", b"application/json")


@pytest.mark.django_db(transaction=True)
async def test_an_unauthenticated_body_is_never_read(token):
    body = json.dumps(claude(messages=[{"role": "user", "content": "x" * 100_000}])).encode()
    status, headers, payload, asked = await _call(
        _scope(CHAT, [JSON, (b"origin", b"https://excel.example"), (b"content-length", str(len(body)).encode())]),
        [body[:50_000], body[50_000:]],
    )
    assert status == 401 and payload["error"]["code"] == "token_missing"
    assert asked == 0  # answered from the headers alone
    assert headers["x-request-id"] and headers["access-control-allow-origin"] == "*"
    bad = [JSON, (b"authorization", b"Bearer djl_deadbeef_nope")]
    status, _, payload, asked = await _call(_scope("/api/v1/webhook", bad), [b'{"prompt": "x"}'])
    assert (status, payload["error"]["code"], asked) == (401, "token_invalid", 0)
    assert await UsageRecord.objects.acount() == 0


@pytest.mark.django_db(transaction=True)
async def test_a_body_over_the_limit_is_refused_before_or_while_reading(token, gateway_settings, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000
    auth = (b"authorization", f"Bearer {token[1]}".encode())
    status, _, payload, asked = await _call(_scope(CHAT, [JSON, auth, (b"content-length", b"5000")]), [b"x" * 5000])
    assert (status, payload["error"]["code"], asked) == (413, "request_too_large", 0)
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE=1000" in payload["error"]["message"]
    # Chunked: no declared length, so the reading stops at the limit.
    status, _, payload, asked = await _call(_scope("/api/v1/webhook", [JSON, auth]), [b"x" * 600] * 5)
    assert (status, payload["error"]["code"]) == (413, "request_too_large")
    assert payload["error"]["details"] == {"limit": 1_000, "setting": "DATA_UPLOAD_MAX_MEMORY_SIZE"}
    assert asked == 2
    assert await UsageRecord.objects.acount() == 0
    ok = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}).encode()
    status, _, payload, _ = await _call(_scope(CHAT, [JSON, auth]), [ok])
    assert status == 200, payload


@pytest.mark.django_db(transaction=True)
async def test_the_fast_path_validates_the_host_and_sends_security_headers(token, gateway_settings, settings):
    from common.asgi import build_application

    settings.SECURE_HSTS_SECONDS = 600
    app = build_application()  # middleware reads its settings when the handler is built, at start-up
    auth = (b"authorization", f"Bearer {token[1]}".encode())
    scope = _scope(CHAT, [JSON, auth])
    scope["headers"] = [(b"host", b"evil.example"), JSON, auth]
    status, _, payload, asked = await _call(scope, [b"{}"], app)
    assert (status, payload["error"]["code"], asked) == (400, "disallowed_host", 0)
    assert payload["error"]["type"] == "invalid_request_error"

    ok = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}).encode()
    status, headers, _, _ = await _call(_scope(CHAT, [JSON, auth], scheme="https"), [ok], app)
    assert status == 200
    assert headers["strict-transport-security"] == "max-age=600"
    assert headers["x-content-type-options"] == "nosniff"
    status, headers, _, _ = await _call(_scope("/api/v1/health", [], method="GET", scheme="https"), [], app)
    assert status == 200 and headers["strict-transport-security"] == "max-age=600"


@pytest.mark.django_db(transaction=True)
async def test_an_unexpected_error_on_the_fast_path_is_json_even_under_debug(
    token, gateway_settings, settings, monkeypatch
):
    from llm import pipeline

    async def boom(*args, **kwargs):
        raise RuntimeError("forced failure")

    settings.DEBUG = True
    monkeypatch.setattr(pipeline, "_with_retries", boom)
    auth = (b"authorization", f"Bearer {token[1]}".encode())
    ok = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}).encode()
    status, headers, payload, _ = await _call(_scope(CHAT, [JSON, auth]), [ok])
    assert status == 500 and headers["content-type"] == "application/json"
    assert payload == {
        "error": {
            "message": "An internal error occurred.",
            "type": "api_error",
            "param": None,
            "code": "internal_error",
        }
    }
    assert token[1] not in json.dumps(payload)
