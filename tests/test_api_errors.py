"""Every API path answers JSON in the documented error shape, for every status, as an attacker would provoke it:
`{"error": {"code", "message", "details", "request_id"}}` under `/api/`, OpenAI's `{"error": {"message", "type",
"param", "code"}}` under `/v1/`. Nothing is recorded or billed for a refused request, and the service answers
normally afterwards. Under DEBUG too: a forced 500 on every gateway path shows no key or token anywhere."""

import io
import json
import logging

import pytest
from cryptography.fernet import Fernet
from django.test import Client, RequestFactory
from django.views.debug import ExceptionReporter

from accounts.models import APIToken
from jobs.models import Job
from llm.models import ModelRoute, UsageRecord
from tests.gateway_fixtures import ANTHROPIC_KEY, OPENAI_KEY

pytestmark = pytest.mark.django_db

CHAT = "/v1/chat/completions"
WEBHOOK = "/api/v1/webhook"
BATCH = "/api/v1/batch"
JOBS = "/api/v1/jobs"
ROUTE_KEY = "route-own-key-5f2b9c0e7d"
GOOGLE_SECRET = "google-client-secret-8a7b6c"


@pytest.fixture
def client(token, gateway_settings, prices):
    return Client(HTTP_AUTHORIZATION=f"Bearer {token[1]}")


def chat_body(**extra) -> dict:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}], **extra}


def api_error(response, status: int, code: str) -> dict:
    """The djllm shape, exactly."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details", "request_id"}, body
    assert body["error"]["code"] == code, body
    assert body["error"]["request_id"] == response["X-Request-ID"]
    return body["error"]


def openai_error(response, status: int, code: str) -> dict:
    """OpenAI's shape, exactly (what its SDKs parse)."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert body["error"]["code"] == code, body
    return body["error"]


def still_serves(client) -> None:
    response = client.post(CHAT, chat_body(), content_type="application/json")
    assert response.status_code == 200, response.content


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


# --- 404 / CSRF: never Django's HTML pages -----------------------------------------------------------------------


def test_a_post_to_an_unknown_api_path_is_a_json_404_not_a_csrf_page(token):
    browser_like = Client(enforce_csrf_checks=True)
    for method in ("get", "post", "put", "delete"):
        api_error(getattr(browser_like, method)("/api/v1/no-such-thing"), 404, "not_found")
        openai_error(getattr(browser_like, method)("/v1/no-such-thing"), 404, "not_found")
    assert browser_like.get("/api/v1/health").status_code == 200


def test_a_failed_csrf_check_on_an_api_path_is_json_and_pages_keep_django_s(token):
    browser_like = Client(enforce_csrf_checks=True)
    error = api_error(browser_like.post("/api/v1/swagger2.json"), 403, "csrf_failed")
    assert "CSRF" in error["message"]
    page = browser_like.post("/account/login/", {"username": "x", "password": "y"})
    assert page.status_code == 403 and page["Content-Type"].startswith("text/html")


def test_token_endpoints_are_not_subject_to_csrf(client):
    # `/v1/models` is token-authenticated: a POST is answered 405 in OpenAI's shape, not refused by the CSRF check.
    browser_like = Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=client.defaults["HTTP_AUTHORIZATION"])
    response = browser_like.post("/v1/models")
    openai_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "GET"


# --- 400 / 401 / 403 / 405 / 415 / 429 in both dialects --------------------------------------------------------


def test_each_status_in_each_dialect(client, token, make_token, settings):
    anonymous = Client()
    openai_error(anonymous.post(CHAT, chat_body(), content_type="application/json"), 401, "token_missing")
    api_error(anonymous.post(WEBHOOK, {"prompt": "x"}, content_type="application/json"), 401, "token_missing")
    api_error(anonymous.get("/api/v1/usage"), 401, "token_missing")

    _, calendar_only = make_token(user=token[0].user, scopes=["calendar"])
    scoped = Client(HTTP_AUTHORIZATION=f"Bearer {calendar_only}")
    openai_error(scoped.post(CHAT, chat_body(), content_type="application/json"), 403, "insufficient_scope")
    api_error(scoped.post(WEBHOOK, {"prompt": "x"}, content_type="application/json"), 403, "insufficient_scope")

    openai_error(client.get(CHAT), 405, "method_not_allowed")
    api_error(client.get(WEBHOOK), 405, "method_not_allowed")
    api_error(client.delete("/api/v1/usage"), 405, "method_not_allowed")

    openai_error(client.post(CHAT, "model=x", content_type="text/plain"), 415, "unsupported_media_type")
    api_error(client.post(WEBHOOK, "prompt=x", content_type="text/plain"), 415, "unsupported_media_type")
    api_error(client.post(JOBS, "x", content_type="text/plain"), 415, "unsupported_media_type")

    openai_error(client.post(CHAT, "{not json", content_type="application/json"), 400, "invalid_json")
    api_error(client.post(WEBHOOK, "{not json", content_type="application/json"), 400, "invalid_json")
    api_error(client.patch("/api/v1/me", "{not json", content_type="application/json"), 400, "invalid_json")
    bad = openai_error(
        client.post(CHAT, chat_body(temperature=9), content_type="application/json"), 400, "invalid_request"
    )
    assert bad["param"] == "temperature"

    settings.RATE_LIMIT = "1/h"
    assert client.post(CHAT, chat_body(), content_type="application/json").status_code == 200
    limited = client.post(CHAT, chat_body(), content_type="application/json")
    openai_error(limited, 429, "rate_limited")
    assert limited["Retry-After"]
    api_error(client.post(WEBHOOK, {"prompt": "x"}, content_type="application/json"), 429, "rate_limited")


# --- 413: Django's in-memory limit and the API's own --------------------------------------------------------------


def test_a_body_over_django_s_memory_limit_is_a_413_naming_the_limit(client, settings, fake_upstream):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2_000
    big = chat_body(messages=[{"role": "user", "content": "x" * 5_000}])
    error = openai_error(client.post(CHAT, big, content_type="application/json"), 413, "request_too_large")
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE=2000" in error["message"]
    error = api_error(
        client.post(WEBHOOK, {"prompt": "x" * 5_000}, content_type="application/json"), 413, "request_too_large"
    )
    assert error["details"] == {"limit": 2_000, "setting": "DATA_UPLOAD_MAX_MEMORY_SIZE"}
    # DRF endpoints keep to the same limit (DRF reads the raw stream, past Django's check).
    error = api_error(
        client.patch("/api/v1/me", {"language": "x" * 5_000}, content_type="application/json"),
        413,
        "request_too_large",
    )
    assert error["details"]["limit"] == 2_000
    assert UsageRecord.objects.count() == 0 and fake_upstream.requests == []
    still_serves(client)


def test_a_multipart_form_with_too_many_fields_is_json(client, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 5
    upload = io.BytesIO(b"comment\nhello\n")
    upload.name = "rows.csv"
    form = {"file": upload, "column": "comment", **{f"f{i}": "x" for i in range(10)}}
    error = api_error(client.post(JOBS, form), 413, "too_many_fields")
    assert error["details"] == {"limit": 5, "setting": "DATA_UPLOAD_MAX_NUMBER_FIELDS"}
    assert Job.objects.count() == 0


# --- 400: nested too deep ----------------------------------------------------------------------------------------


def test_json_nested_deeper_than_python_can_parse_is_a_400(client, fake_upstream):
    nested = deep(100_000)
    body = json.dumps(chat_body())[:-1] + f', "metadata": {nested}}}'
    openai_error(client.post(CHAT, body, content_type="application/json"), 400, "too_deep")
    webhook = '{"prompt": "x", "stop": ' + nested + "}"
    api_error(client.post(WEBHOOK, webhook, content_type="application/json"), 400, "too_deep")
    batch = '{"items": ' + nested + "}"
    api_error(client.post(BATCH, batch, content_type="application/json"), 400, "too_deep")
    api_error(client.post(JOBS, batch, content_type="application/json"), 400, "too_deep")
    api_error(
        client.patch("/api/v1/me", '{"language": ' + nested + "}", content_type="application/json"), 400, "too_deep"
    )
    assert UsageRecord.objects.count() == 0 and Job.objects.count() == 0 and fake_upstream.requests == []
    still_serves(client)


# --- 5xx under DEBUG: JSON, and no secret in the answer, the log, or the debug page -------------------------------


def _force(monkeypatch, target: str, attribute: str) -> None:
    import importlib

    def fail(*args, **kwargs):
        raise RuntimeError("forced failure")

    monkeypatch.setattr(importlib.import_module(target), attribute, fail)


GATEWAY_PATHS = {
    "chat": ("llm.pipeline", "_with_retries", CHAT, chat_body(), "openai"),
    "chat-stream-route": (
        "llm.providers.anthropic_provider",
        "params_for",
        CHAT,
        chat_body(model="team-claude", stream=True),
        "openai",
    ),
    "chat-claude": (
        "llm.providers.anthropic_provider",
        "params_for",
        CHAT,
        chat_body(model="claude-haiku-4-5"),
        "openai",
    ),
    "webhook": ("llm.pipeline", "_with_retries", WEBHOOK, {"prompt": "Summarise this"}, "api"),
    "webhook-stream": ("llm.pipeline", "_with_retries", WEBHOOK, {"prompt": "x", "stream": True}, "api"),
    "batch": ("jobs.batch", "totals", BATCH, {"items": [{"prompt": "one"}]}, "api"),
    "jobs": ("jobs.services", "job_create", JOBS, {"items": [{"prompt": "one"}]}, "api"),
    "calendar": (
        "llm.providers.anthropic_provider",
        "params_for",
        "/api/v1/calendar/process-text",
        {"text": "Lunch tomorrow at 1", "dry_run": True, "model": "claude-haiku-4-5"},
        "api",
    ),
}


@pytest.mark.django_db(transaction=True)  # WSGI streams run on a thread of their own, with its own connection
@pytest.mark.parametrize("case", GATEWAY_PATHS)
def test_a_forced_500_under_debug_shows_no_key_or_token(
    case, client, token, settings, monkeypatch, caplog, fake_upstream
):
    settings.DEBUG = True
    settings.GOOGLE_CLIENT_ID, settings.GOOGLE_CLIENT_SECRET = "client-id", GOOGLE_SECRET
    settings.GOOGLE_TOKEN_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    ModelRoute.objects.create(
        alias="team-claude",
        provider="anthropic",
        upstream_model="claude-haiku-4-5",
        base_url=fake_upstream.anthropic_base_url,
        api_key=ROUTE_KEY,
    )
    from llm import routing

    routing.routes_changed()
    target, attribute, path, body, dialect = GATEWAY_PATHS[case]
    _force(monkeypatch, target, attribute)
    debug_client = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {token[1]}")
    with caplog.at_level(logging.INFO):
        response = debug_client.post(path, body, content_type="application/json")

    if dialect == "openai":
        error = openai_error(response, 500, "internal_error")
        assert error["type"] == "api_error"
    else:
        error = api_error(response, 500, "internal_error")
    assert error["message"] == "An internal error occurred."
    secrets = [OPENAI_KEY, ANTHROPIC_KEY, ROUTE_KEY, GOOGLE_SECRET, token[1], settings.SECRET_KEY]
    secrets += [*settings.FIELD_ENCRYPTION_KEYS, *settings.GOOGLE_TOKEN_ENCRYPTION_KEYS]
    for secret in secrets:
        assert secret not in response.content.decode()
        assert secret not in caplog.text

    # The page Django's DEBUG would have shown for this exception (frames, locals, settings, request headers): the
    # keys are hidden there too (repr=False on what holds them, sensitive_variables on the frames).
    failures = [r for r in caplog.records if r.exc_info and r.levelno >= logging.ERROR]
    assert failures, "the unexpected error is logged with its traceback"
    assert "forced failure" in caplog.text
    request = RequestFactory().post(path, HTTP_AUTHORIZATION=f"Bearer {token[1]}")
    page = ExceptionReporter(request, *failures[-1].exc_info).get_traceback_html()
    assert "forced failure" in page and "Local vars" in page
    for secret in secrets:
        assert secret not in page

    monkeypatch.undo()
    settings.DEBUG = False
    still_serves(client)


def test_reprs_of_what_holds_a_key_never_show_it():
    from calendars.config import GoogleConfig
    from calendars.oauth import TokenGrant
    from llm.providers.anthropic_provider import AnthropicProvider
    from llm.routing import Route

    route = Route(requested="a", provider="openai", model="m", base_url=None, api_key=ROUTE_KEY)
    provider = AnthropicProvider(name="anthropic", base_url=None, api_key=ROUTE_KEY)
    config = GoogleConfig("id", GOOGLE_SECRET, "https://a", "https://t", "https://r", None, "https://cb")
    grant = TokenGrant(access_token="ya29.access-xyz", refresh_token="1//refresh-xyz", expiry=None, scopes=[], email="")
    for thing, secret in ((route, ROUTE_KEY), (provider, ROUTE_KEY), (config, GOOGLE_SECRET), (grant, "xyz")):
        assert secret not in repr(thing) and secret not in str(thing)


def test_a_db_token_row_never_prints_its_digest(token):
    row = APIToken.objects.get(pk=token[0].pk)
    assert row.digest not in repr(row) and token[1] not in repr(row)
