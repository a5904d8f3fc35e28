"""`POST /api/v1/batch` through Django's test client against the fake upstream: order, per-item outcomes and costs,
failures that stay in their row, upstream 429s survived, limits, Idempotency-Key, and $0 recalculation."""

import asyncio
import logging
from decimal import Decimal

import httpx
import pytest
from django.test import Client

from bench.fake_upstream import Usage as FakeUsage
from jobs.models import IdempotencyKey
from llm.models import UsageRecord

pytestmark = pytest.mark.django_db

BATCH = "/api/v1/batch"


@pytest.fixture
def client(token, gateway_settings, prices, settings):
    settings.BATCH_RATE_LIMIT_MAX_WAIT = 0.05
    return Client(HTTP_AUTHORIZATION=f"Bearer {token[1]}")


def last_user_text(body: dict) -> str:
    return [m for m in body["messages"] if m["role"] == "user"][-1]["content"]


@pytest.fixture
def echo(fake_upstream):
    """Each reply names the row it answers; 100 input + 10 output tokens: $0.000021 a row on gpt-4o-mini."""
    fake_upstream.configure(
        reply=lambda body: "R:" + last_user_text(body), usage=FakeUsage(input_tokens=100, output_tokens=10)
    )
    return fake_upstream


def post(client, body, **headers):
    return client.post(BATCH, body, content_type="application/json", **headers)


def rows(n: int, prefix: str = "comment") -> list[dict]:
    return [{"id": f"A{i + 2}", "prompt": f"{prefix} {i}"} for i in range(n)]


def test_results_in_input_order_with_status_cost_and_usage_records(client, echo, token):
    echo.configure(latency_ms=30)
    response = post(client, {"type": "summary", "model": "gpt-4o-mini", "items": rows(12)})
    assert response.status_code == 200, response.content
    body = response.json()
    assert [r["id"] for r in body["results"]] == [f"A{i + 2}" for i in range(12)]
    for i, result in enumerate(body["results"]):
        assert result["status"] == "ok" and result["error"] is None and result["cached"] is False
        assert f"comment {i}" in result["result"]
        assert result["cost_usd"] == "0.000021"  # 100 x 0.15 + 10 x 0.60 per million
    assert body["totals"] == {"items": 12, "ok": 12, "errors": 0, "cached": 0, "cost_usd": "0.000252"}
    assert echo.stats["max_in_flight"] > 1  # the items ran concurrently
    records = UsageRecord.objects.filter(batch_id=body["batch_id"])
    assert records.count() == 12
    assert set(records.values_list("status", "endpoint", "type", "token_id")) == {
        ("ok", "batch", "summary", token[0].pk)
    }
    assert sum(r.cost_usd for r in records) == Decimal("0.000252")
    assert set(records.values_list("request_id", flat=True)) == {response["X-Request-ID"]}
    assert body["request_id"] == response["X-Request-ID"]


def test_failed_items_stay_in_their_row(client, echo, settings):
    settings.MAX_PROMPT_LENGTH = 50
    echo.fail_next("500", times=None, model="gpt-4o")
    items = [
        {"id": 1, "prompt": "fine"},
        {"id": 2, "prompt": "this row's model is down", "model": "gpt-4o"},
        {"id": 3, "prompt": ""},
        {"id": 4, "prompt": "x" * 51},
        {"id": 5, "prompt": 42},  # a number in the cell is a text like any other
    ]
    response = post(client, {"model": "gpt-4o-mini", "items": items})
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [(r["id"], r["status"]) for r in results] == [(1, "ok"), (2, "error"), (3, "error"), (4, "error"), (5, "ok")]
    assert results[1]["error"]["code"] == "upstream_server_error" and results[1]["result"] is None
    assert results[2]["error"] == {"code": "empty_prompt", "message": "The prompt is empty."}
    assert results[3]["error"]["code"] == "prompt_too_long" and "MAX_PROMPT_LENGTH=50" in results[3]["error"]["message"]
    assert "42" in results[4]["result"]
    assert response.json()["totals"]["errors"] == 3
    # Every item is a usage record with the batch id, refusals included.
    records = UsageRecord.objects.filter(batch_id=response.json()["batch_id"])
    assert sorted(records.values_list("status", "error_code")) == [
        ("client_error", "empty_prompt"),
        ("client_error", "prompt_too_long"),
        ("ok", ""),
        ("ok", ""),
        ("upstream_error", "upstream_server_error"),
    ]
    assert len(echo.requests_for(provider="openai")) == 2 + 3  # the failing model was tried three times


def test_upstream_rate_limit_mid_batch_is_backed_off_not_failed(client, echo, settings):
    settings.LLM_RETRY_ATTEMPTS = 1  # no pipeline retries: the batch's own backoff must absorb the 429s
    echo.fail_next("429", times=5, retry_after=None)
    response = post(client, {"items": rows(10)})
    assert response.status_code == 200, response.content
    body = response.json()
    assert [r["status"] for r in body["results"]] == ["ok"] * 10
    assert len(echo.requests) == 15
    # One record per item, however many attempts it took: the 429s stay inside it, counted.
    records = UsageRecord.objects.filter(batch_id=body["batch_id"])
    assert records.count() == 10 and records.filter(status="ok").count() == 10
    assert sorted(records.values_list("attempts", flat=True)) == [1] * 5 + [2] * 5


def test_upstream_retry_after_is_honoured(client, echo, settings, caplog):
    settings.LLM_RETRY_ATTEMPTS = 1
    settings.BATCH_RATE_LIMIT_MAX_WAIT = 30
    echo.fail_next("429", times=1, retry_after=1)
    with caplog.at_level(logging.WARNING, logger="llm.pipeline"):
        response = post(client, {"items": rows(1)})
    assert response.json()["results"][0]["status"] == "ok"
    assert "waiting 1.0s" in caplog.text


def test_rate_limited_until_the_bound_is_an_error_row_not_a_failed_batch(client, echo, settings):
    settings.LLM_RETRY_ATTEMPTS = 1
    settings.BATCH_RATE_LIMIT_RETRIES = 2
    echo.fail_next("429", times=None, retry_after=None, model="gpt-4o")
    response = post(client, {"items": [{"prompt": "a"}, {"prompt": "b", "model": "gpt-4o"}]})
    assert response.status_code == 200
    assert [r["status"] for r in response.json()["results"]] == ["ok", "error"]
    assert response.json()["results"][1]["error"]["code"] == "upstream_rate_limited"
    assert len(echo.requests_for(provider="openai")) == 1 + 3  # one try and two more rounds
    refused = UsageRecord.objects.get(requested_model="gpt-4o")  # one record for the item, all rounds inside it
    assert (refused.status, refused.error_code, refused.attempts) == ("upstream_error", "upstream_rate_limited", 3)


def test_item_limit_is_a_400_naming_it(client, echo, settings):
    settings.BATCH_MAX_ITEMS = 3
    response = post(client, {"items": rows(4)})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "too_many_items" and "BATCH_MAX_ITEMS=3" in error["message"]
    assert error["details"] == {"limit": 3, "items": 4}
    assert echo.requests == [] and UsageRecord.objects.count() == 0
    assert post(client, {"items": rows(3)}).status_code == 200


def test_idempotent_retry_returns_the_first_answer_and_is_not_billed(client, echo, make_token):
    body = {"parameters": {"temperature": 0.7}, "items": rows(3)}
    first = post(client, body, HTTP_IDEMPOTENCY_KEY="sheet1-run-7")
    assert first.status_code == 200
    assert UsageRecord.objects.count() == 3 and len(echo.requests) == 3
    retry = post(client, body, HTTP_IDEMPOTENCY_KEY="sheet1-run-7")
    assert retry.status_code == 200 and retry["Idempotent-Replayed"] == "true"
    assert retry.json() == first.json()
    assert UsageRecord.objects.count() == 3 and len(echo.requests) == 3
    # The same key with another body is a mistake, not a retry.
    other = post(client, {**body, "items": rows(2)}, HTTP_IDEMPOTENCY_KEY="sheet1-run-7")
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"
    # Keys belong to a token: another token's identical key runs its own batch.
    _, plaintext = make_token(name="other")
    mine = post(Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}"), body, HTTP_IDEMPOTENCY_KEY="sheet1-run-7")
    assert mine.status_code == 200 and mine.json()["batch_id"] != first.json()["batch_id"]
    assert UsageRecord.objects.count() == 6


def test_a_malformed_key_is_a_400_naming_the_header_and_an_empty_one_is_no_key(client, echo):
    bad = post(client, {"items": rows(1)}, HTTP_IDEMPOTENCY_KEY="two words")
    assert bad.status_code == 400, bad.content
    error = bad.json()["error"]
    assert error["code"] == "invalid_idempotency_key" and list(error["details"]) == ["Idempotency-Key"]
    assert error["message"].startswith("Invalid `Idempotency-Key`: must be 1 to 255 printable ASCII")
    assert echo.requests == [] and not IdempotencyKey.objects.exists()
    # An optional header a connector sends empty is no key (the batch runs, nothing is stored).
    assert post(client, {"items": rows(1)}, HTTP_IDEMPOTENCY_KEY="").status_code == 200
    assert not IdempotencyKey.objects.exists()


def test_a_failed_request_does_not_keep_its_key(client, echo, settings):
    settings.RATE_LIMIT = "1/h"  # per hour: no window can roll over between the two requests
    assert post(client, {"items": rows(1)}).status_code == 200
    refused = post(client, {"items": rows(2)}, HTTP_IDEMPOTENCY_KEY="k-1")
    assert refused.status_code == 429
    settings.RATE_LIMIT = "100/m"
    assert post(client, {"items": rows(2)}, HTTP_IDEMPOTENCY_KEY="k-1").status_code == 200


def test_recalculating_the_same_batch_costs_nothing_at_temperature_0(client, echo):
    body = {"type": "sentiment", "parameters": {"temperature": 0}, "items": rows(5)}
    first = post(client, body).json()
    assert first["totals"]["cost_usd"] == "0.000105" and first["totals"]["cached"] == 0
    second = post(client, body).json()
    assert [r["result"] for r in second["results"]] == [r["result"] for r in first["results"]]
    assert all(r["cached"] and r["cost_usd"] == "0" for r in second["results"])
    assert second["totals"] == {"items": 5, "ok": 5, "errors": 0, "cached": 5, "cost_usd": "0"}
    assert len(echo.requests) == 5
    assert set(UsageRecord.objects.filter(batch_id=second["batch_id"]).values_list("status", "cost_usd")) == {
        ("cached", Decimal("0"))
    }


def test_a_batch_counts_once_against_the_token_rate_limit(client, echo, settings):
    settings.RATE_LIMIT = "2/h"
    first = post(client, {"items": rows(5)})
    assert first.status_code == 200 and [r["status"] for r in first.json()["results"]] == ["ok"] * 5
    assert first["X-RateLimit-Limit"] == "2" and first["X-RateLimit-Remaining"] == "1"
    assert post(client, {"items": rows(5)}).status_code == 200
    third = post(client, {"items": rows(5)})
    assert third.status_code == 429 and third.json()["error"]["code"] == "rate_limited"
    assert int(third["Retry-After"]) >= 1
    assert UsageRecord.objects.count() == 10  # the refused batch ran no item


def test_template_is_an_alias_of_type(client, echo):
    response = post(client, {"template": "keywords", "items": rows(1)})
    assert response.status_code == 200
    assert UsageRecord.objects.get().type == "keywords"
    both = post(client, {"template": "keywords", "type": "summary", "items": rows(1)})
    assert both.status_code == 400 and both.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"items": []}, "invalid_request"),
        ({"items": "A2:A9"}, "invalid_request"),
        ({"items": [{"text": "x"}]}, "invalid_request"),
        ({"items": rows(1), "parameters": {"temperature": 3}}, "invalid_request"),
        ({"type": "calendar_event", "items": rows(2)}, "type_not_available"),
    ],
)
def test_request_level_problems_fail_the_request(client, echo, body, code):
    response = post(client, body)
    assert response.status_code == 400 and response.json()["error"]["code"] == code
    assert echo.requests == []


def test_needs_a_token_and_json(echo, gateway_settings):
    assert Client().post(BATCH, {"items": rows(1)}, content_type="application/json").status_code == 401


def test_wrong_method_and_media_type(client):
    assert client.get(BATCH).status_code == 405
    assert client.post(BATCH, "items", content_type="text/plain").status_code == 415


@pytest.mark.django_db(transaction=True)
def test_over_http_concurrent_batches_of_a_token_share_its_concurrency(
    live_djllm, fake_upstream, token, prices, settings
):
    """Three batches at once from one token (as the Office Script sends them), through uvicorn and the lean API
    stack: never more than BATCH_CONCURRENCY items at the upstream together, and every row answered."""
    settings.BATCH_CONCURRENCY = 3
    fake_upstream.configure(reply=lambda body: "R:" + last_user_text(body), latency_ms=100)

    async def send_all():
        headers = {"Authorization": f"Bearer {token[1]}", "Origin": "https://excel.officeapps.live.com"}
        async with httpx.AsyncClient(base_url=live_djllm.url, headers=headers, timeout=30) as http:
            return await asyncio.gather(
                *(http.post("/api/v1/batch", json={"items": rows(4, prefix=f"batch{b}")}) for b in range(3))
            )

    responses = asyncio.run(send_all())
    for b, response in enumerate(responses):
        assert response.status_code == 200, response.text
        assert response.headers["access-control-allow-origin"] == "*"  # Office Scripts need it
        assert [r["status"] for r in response.json()["results"]] == ["ok"] * 4
        assert all(f"batch{b}" in r["result"] for r in response.json()["results"])
    assert fake_upstream.stats["max_in_flight"] == 3
    assert UsageRecord.objects.filter(endpoint="batch").count() == 12


def test_bodies_past_django_s_form_limit_are_fine_up_to_job_upload_max_bytes(client, echo, settings):
    big = [{"prompt": "x" * 100_000} for _ in range(30)]  # 3 MB: past DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB)
    response = post(client, {"items": big})
    assert response.status_code == 200, response.content[:300]
    assert response.json()["totals"]["ok"] == 30
    settings.JOB_UPLOAD_MAX_BYTES = 1_000_000
    too_big = post(client, {"items": big})
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "body_too_large"
    assert "JOB_UPLOAD_MAX_BYTES=1000000" in too_big.json()["error"]["message"]
