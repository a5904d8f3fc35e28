"""The gateway through Django's test client (non-streamed): routing, retries, fallback, budgets, cache, limits.

Streams, client disconnects and the real OpenAI SDK as a client are in test_gateway_live.py."""

import json
from decimal import Decimal

import pytest
from django.test import Client

from accounts import services as account_services
from bench.fake_upstream import Usage as FakeUsage
from llm.models import ModelRoute, SpendCounter, UsageRecord
from tests.gateway_fixtures import ANTHROPIC_KEY

pytestmark = pytest.mark.django_db

CHAT = "/v1/chat/completions"
WEBHOOK = "/api/v1/webhook"


@pytest.fixture
def client(token, gateway_settings, prices):
    return Client(HTTP_AUTHORIZATION=f"Bearer {token[1]}")


def chat(client, model="gpt-4o-mini", content="Hello there", **extra):
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    return client.post(CHAT, body, content_type="application/json")


def only_record() -> UsageRecord:
    records = list(UsageRecord.objects.all())
    assert len(records) == 1, records
    return records[0]


def test_openai_plain_records_exact_usage_and_cost(client, fake_upstream, token):
    fake_upstream.configure(
        reply="Hi!", usage=FakeUsage(input_tokens=1000, output_tokens=200, cached_tokens=400, reasoning_tokens=50)
    )
    response = chat(client, **{"x-ignored": 1})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hi!", "refusal": None}
    assert body["usage"]["prompt_tokens"] == 1000
    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 400}
    record = only_record()
    assert (record.status, record.http_status, record.provider, record.upstream_model) == (
        "ok",
        200,
        "openai",
        "gpt-4o-mini",
    )
    assert (record.input_tokens, record.cached_input_tokens, record.output_tokens, record.reasoning_tokens) == (
        1000,
        400,
        200,
        50,
    )
    # 600 uncached x 0.15 + 400 cached x 0.075 + 200 out x 0.60, per million
    assert record.cost_usd == Decimal("0.000240")
    assert record.request_id == response["X-Request-ID"]
    assert record.token_id == token[0].pk and record.user_id == token[0].user_id
    assert response["X-Djllm-Cost-USD"] == "0.00024"


def test_anthropic_plain_translates_and_bills_cache_read_and_write(client, fake_upstream):
    fake_upstream.configure(
        reply="Bonjour",
        usage=FakeUsage(input_tokens=300, output_tokens=100, cached_tokens=1000, cache_write_tokens=500),
        finish_reason="length",
    )
    response = client.post(
        CHAT,
        {
            "model": "claude-haiku-4-5",
            "max_tokens": 64,
            "stop": "END",
            "messages": [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Hello"}],
        },
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["prompt_tokens"] == 1800  # 300 + 1000 read + 500 written, OpenAI's convention
    sent = fake_upstream.last_request.body
    assert sent["system"] == "Answer in French."
    assert sent["messages"] == [{"role": "user", "content": "Hello"}]
    assert sent["max_tokens"] == 64 and sent["stop_sequences"] == ["END"]
    assert fake_upstream.last_request.headers["x-api-key"] == ANTHROPIC_KEY
    record = only_record()
    assert (record.input_tokens, record.cached_input_tokens, record.cache_write_tokens, record.output_tokens) == (
        1800,
        1000,
        500,
        100,
    )
    # 300 x 1.00 + 1000 x 0.10 + 500 x 1.25 + 100 x 5.00, per million
    assert record.cost_usd == Decimal("0.001525")


def test_retry_then_success_is_one_record(client, fake_upstream):
    fake_upstream.fail_next("429", times=2, retry_after=0)
    response = chat(client)
    assert response.status_code == 200
    assert len(fake_upstream.requests_for(path="/v1/chat/completions")) == 3
    record = only_record()
    assert (record.status, record.attempts) == ("ok", 3)


@pytest.mark.parametrize("kind", ["500", "529", "reset", "malformed", "timeout"])
def test_upstream_failures_are_mapped_and_recorded(client, fake_upstream, settings, kind):
    settings.REQUEST_TIMEOUT = 0.5
    fake_upstream.fail_next(kind, times=None, hold_s=2.0)
    response = chat(client)
    body = response.json()["error"]
    expected = {
        "500": (502, "upstream_server_error"),
        "529": (502, "upstream_overloaded"),
        "reset": (502, "upstream_unreachable"),
        "malformed": (502, "upstream_bad_response"),
        "timeout": (504, "upstream_timeout"),
    }[kind]
    assert (response.status_code, body["code"]) == expected
    assert body["type"] == "api_error" and body["message"]
    record = only_record()
    assert (record.status, record.http_status, record.error_code) == ("upstream_error", expected[0], expected[1])
    assert record.error_message == body["message"]  # the record says what the client was told
    assert record.cost_usd == 0 and record.input_tokens == 0  # nothing was billed upstream
    retryable = kind != "malformed"
    assert len(fake_upstream.requests_for(path="/v1/chat/completions")) == (3 if retryable else 1)
    assert record.attempts == (3 if retryable else 1)


def test_fallback_route_after_retries(client, fake_upstream):
    backup = ModelRoute.objects.create(alias="backup", provider="anthropic", upstream_model="claude-haiku-4-5")
    ModelRoute.objects.create(alias="smart", provider="openai", upstream_model="gpt-4o", fallback=backup)
    fake_upstream.fail_next("500", times=None, provider="openai")
    response = chat(client, model="smart")
    assert response.status_code == 200, response.content
    assert len(fake_upstream.requests_for(provider="openai")) == 3
    assert len(fake_upstream.requests_for(provider="anthropic")) == 1
    record = only_record()
    assert (record.requested_model, record.provider, record.upstream_model) == (
        "smart",
        "anthropic",
        "claude-haiku-4-5",
    )
    assert record.attempts == 4  # three on the route, one on its fallback


def test_routing_prefixes_and_alias_key(client, fake_upstream):
    ModelRoute.objects.create(alias="mine", provider="openai", upstream_model="gpt-4o", api_key="sk-route-own-key-1234")
    assert chat(client, model="openai/gpt-4o").status_code == 200
    assert fake_upstream.last_request.body["model"] == "gpt-4o"
    assert chat(client, model="local/llama3.2").status_code == 200
    assert fake_upstream.last_request.body["model"] == "llama3.2"
    assert chat(client, model="mine").status_code == 200
    assert fake_upstream.last_request.headers["authorization"] == "Bearer sk-route-own-key-1234"
    # The key is encrypted at rest.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key FROM llm_modelroute WHERE alias = 'mine'")
        assert "sk-route-own-key" not in cursor.fetchone()[0]


def test_unknown_model_is_400_and_recorded(client):
    response = chat(client, model="mystery-model")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_model"
    assert response.json()["error"]["param"] == "model"
    record = only_record()
    assert (record.status, record.error_code) == ("client_error", "unknown_model")
    assert record.error_message == response.json()["error"]["message"] and "mystery-model" in record.error_message


def test_missing_provider_key_is_503_naming_the_variable(client, settings):
    settings.ANTHROPIC_API_KEY = ""
    response = chat(client, model="claude-haiku-4-5")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "provider_not_configured" and "ANTHROPIC_API_KEY" in error["message"]


def test_max_prompt_length(client, settings, fake_upstream):
    settings.MAX_PROMPT_LENGTH = 10
    response = chat(client, content="x" * 11)
    assert response.status_code == 400
    assert "MAX_PROMPT_LENGTH=10" in response.json()["error"]["message"]
    webhook = client.post(WEBHOOK, {"prompt": "y" * 11, "type": "summary"}, content_type="application/json")
    assert webhook.status_code == 400 and webhook.json()["error"]["code"] == "prompt_too_long"
    assert "MAX_PROMPT_LENGTH=10" in webhook.json()["error"]["message"]
    assert fake_upstream.requests == []


def test_cache_hit_miss_and_opt_out(client, fake_upstream):
    fake_upstream.configure(usage=FakeUsage(input_tokens=1000, output_tokens=1000))
    first = chat(client, temperature=0)
    second = chat(client, temperature=0)
    assert first.json()["choices"] == second.json()["choices"]
    assert second["X-Djllm-Cached"] == "true" and first["X-Djllm-Cached"] == "false"
    assert len(fake_upstream.requests) == 1
    bypass = chat(client, temperature=0, cache=False)
    header_bypass = client.post(
        CHAT,
        {"model": "gpt-4o-mini", "temperature": 0, "messages": [{"role": "user", "content": "Hello there"}]},
        content_type="application/json",
        HTTP_CACHE_CONTROL="no-cache",
    )
    not_cacheable = chat(client, temperature=0.7)
    assert all(r.status_code == 200 for r in (bypass, header_bypass, not_cacheable))
    assert len(fake_upstream.requests) == 4
    statuses = list(UsageRecord.objects.order_by("created_at", "id").values_list("status", "cost_usd", "saved_usd"))
    full = Decimal("0.00075")  # 1000 x 0.15 + 1000 x 0.60, per million
    assert statuses[0] == ("ok", full, Decimal("0"))
    assert statuses[1] == ("cached", Decimal("0"), full)
    assert [s[0] for s in statuses[2:]] == ["ok", "ok", "ok"]


def test_cache_true_caches_at_any_temperature(client, fake_upstream):
    chat(client, temperature=1.0, cache=True)
    again = chat(client, temperature=1.0, cache=True)
    assert again["X-Djllm-Cached"] == "true"
    assert len(fake_upstream.requests) == 1


def test_budget_stops_before_upstream_and_is_recorded(client, fake_upstream, token):
    row = token[0]
    row.monthly_budget_usd = Decimal("0.01")
    row.save()
    fake_upstream.configure(usage=FakeUsage(input_tokens=10_000, output_tokens=20_000))  # $0.0135
    assert chat(client).status_code == 200
    counter = SpendCounter.objects.get(scope="token", key=row.pk)
    assert counter.spent_usd == Decimal("0.0135")
    assert SpendCounter.objects.get(scope="user", key=row.user_id).spent_usd == Decimal("0.0135")
    blocked = chat(client, content="another")
    assert blocked.status_code == 402
    error = blocked.json()["error"]
    assert error["code"] == "budget_exceeded" and error["type"] == "insufficient_quota"
    assert len(fake_upstream.requests) == 1
    assert UsageRecord.objects.filter(status="budget_exceeded", http_status=402).count() == 1


def test_user_budget_applies_across_tokens(client, fake_upstream, user, token):
    user.preferences.monthly_budget_usd = Decimal("0.01")
    user.preferences.save()
    account_services.user_preferences_update(user=user)  # as the API would: forget cached copies
    fake_upstream.configure(usage=FakeUsage(input_tokens=10_000, output_tokens=20_000))
    assert chat(client).status_code == 200
    _, other = account_services.api_token_create(user=user, name="second")
    response = Client(HTTP_AUTHORIZATION=f"Bearer {other}").post(
        CHAT, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}, content_type="application/json"
    )
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "budget_exceeded"


def test_rate_limit_429_with_headers(client, token, fake_upstream):
    row = token[0]
    row.rate_limit = "2/h"
    row.save()
    from accounts import token_cache

    token_cache.clear()
    ok = [chat(client, content=f"n{i}") for i in range(2)]
    assert [r.status_code for r in ok] == [200, 200]
    assert ok[0]["X-RateLimit-Limit"] == "2" and ok[1]["X-RateLimit-Remaining"] == "0"
    limited = chat(client, content="n3")
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert int(limited["Retry-After"]) >= 1 and limited["X-RateLimit-Remaining"] == "0"
    assert len(fake_upstream.requests) == 2
    assert UsageRecord.objects.filter(status="rate_limited").count() == 1


def test_rate_limit_can_be_disabled(client, token, settings):
    settings.RATE_LIMIT_ENABLED = False
    row = token[0]
    row.rate_limit = "1/h"
    row.save()
    assert [chat(client, content=f"n{i}").status_code for i in range(3)] == [200, 200, 200]


def test_structured_output_passes_through_both_providers(client, fake_upstream):
    schema = {
        "type": "json_schema",
        "json_schema": {
            "name": "event",
            "schema": {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]},
        },
    }
    fake_upstream.configure(structured={"title": "Team lunch"})
    openai_response = chat(client, response_format=schema)
    assert json.loads(openai_response.json()["choices"][0]["message"]["content"]) == {"title": "Team lunch"}
    assert fake_upstream.last_request.body["response_format"] == schema
    claude = chat(client, model="claude-haiku-4-5", response_format=schema)
    assert claude.status_code == 200, claude.content
    assert json.loads(claude.json()["choices"][0]["message"]["content"]) == {"title": "Team lunch"}
    assert claude.json()["choices"][0]["finish_reason"] == "stop"
    sent = fake_upstream.last_request.body
    assert sent["tool_choice"] == {"type": "tool", "name": "structured_output"}
    assert sent["tools"][0]["input_schema"] == schema["json_schema"]["schema"]


def test_a_schema_with_an_integer_beyond_64_bits_reaches_the_upstream_intact(client, fake_upstream):
    # JSON has no integer limit; the body is written with the standard library when orjson cannot write it.
    huge = 2**70
    schema = {
        "type": "json_schema",
        "json_schema": {"name": "count", "schema": {"type": "integer", "maximum": huge}},
    }
    fake_upstream.configure(structured={"n": 1})
    response = chat(client, response_format=schema)
    assert response.status_code == 200, response.content
    assert fake_upstream.last_request.body["response_format"]["json_schema"]["schema"]["maximum"] == huge
    # The response cache's key is written the same way: the second deterministic call is answered from the cache.
    first, again = (chat(client, response_format=schema, temperature=0) for _ in range(2))
    assert (first.status_code, first["X-Djllm-Cached"]) == (200, "false"), first.content
    assert (again.status_code, again["X-Djllm-Cached"]) == (200, "true"), again.content
    assert again.json()["choices"][0]["message"]["content"] == first.json()["choices"][0]["message"]["content"]
    assert len(fake_upstream.requests) == 2


def test_validation_errors_in_openai_shape(client):
    for body, param in (
        ({"model": "gpt-4o-mini", "messages": []}, "messages"),
        ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "temperature": 9}, "temperature"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
    ):
        response = client.post(CHAT, body, content_type="application/json")
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["param"] == param
    not_json = client.post(CHAT, "{broken", content_type="application/json")
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "invalid_json"
    wrong_type = client.post(CHAT, "a=b", content_type="application/x-www-form-urlencoded")
    assert wrong_type.status_code == 415
    assert client.get(CHAT).status_code == 405


def test_missing_llm_scope_is_403(gateway_settings, make_token, user):
    _, plaintext = make_token(user=user, scopes=["calendar"])
    response = chat(Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}"))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "insufficient_scope"


def test_webhook_uses_template_and_reports_cost(client, fake_upstream):
    from llm.models import PromptTemplate

    PromptTemplate.objects.update_or_create(
        type="sentiment",
        source="excel",
        defaults={"system": "Classify the sentiment. Answer in $language.", "user_template": "Cell: $prompt"},
    )
    fake_upstream.configure(reply="positive", usage=FakeUsage(input_tokens=100, output_tokens=10))
    response = client.post(
        WEBHOOK,
        {"prompt": "Great product", "type": "sentiment", "source": "excel", "language": "German"},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["result"] == "positive" and body["provider"] == "openai" and body["cached"] is False
    assert body["cost_usd"] == "0.000021"  # 100 x 0.15 + 10 x 0.60, per million
    assert body["usage"]["input_tokens"] == 100 and body["request_id"] == response["X-Request-ID"]
    sent = fake_upstream.last_request.body["messages"]
    assert sent == [
        {"role": "system", "content": "Classify the sentiment. Answer in German."},
        {"role": "user", "content": "Cell: Great product"},
    ]
    record = only_record()
    assert (record.endpoint, record.type, record.source, record.cost_usd) == (
        "webhook",
        "sentiment",
        "excel",
        Decimal("0.000021"),
    )


def test_webhook_errors_in_api_shape(client):
    calendar = client.post(
        WEBHOOK, {"prompt": "lunch tomorrow", "type": "calendar_event"}, content_type="application/json"
    )
    assert calendar.status_code == 503  # served by the calendars app, which has no Google configuration here
    assert calendar.json()["error"]["code"] == "calendar_not_configured"
    assert calendar.json()["error"]["request_id"] == calendar["X-Request-ID"]
    bad = client.post(WEBHOOK, {"prompt": "", "type": "poem"}, content_type="application/json")
    assert bad.status_code == 400
    assert set(bad.json()["error"]["details"]) == {"prompt", "type"}
    unauthenticated = Client().post(WEBHOOK, {"prompt": "x"}, content_type="application/json")
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"]["code"] == "token_missing"


def test_models_lists_aliases_and_defaults(client):
    ModelRoute.objects.create(alias="fast", provider="anthropic", upstream_model="claude-haiku-4-5")
    data = client.get("/v1/models").json()["data"]
    ids = {m["id"]: m["owned_by"] for m in data}
    assert ids["fast"] == "anthropic" and ids["gpt-4o-mini"] == "openai"
