"""`POST /api/v1/batch` with `dry_run: true`: the batch priced against the fake upstream without calling it, then
run for real, to hold the estimate to what the usage records then bill."""

from decimal import Decimal

import pytest
from django.test import Client

from accounts import token_cache
from bench.fake_upstream import Usage as FakeUsage
from llm import pricing
from llm.models import ModelPrice, SpendCounter, UsageRecord
from llm.pricing import MILLION

pytestmark = pytest.mark.django_db

BATCH = "/api/v1/batch"


@pytest.fixture
def client(token, gateway_settings, prices, settings):
    settings.BATCH_RATE_LIMIT_MAX_WAIT = 0.05
    return Client(HTTP_AUTHORIZATION=f"Bearer {token[1]}")


def post(client, body, **headers):
    return client.post(BATCH, body, content_type="application/json", **headers)


def body_of(*texts, **options) -> dict:
    return {"type": "sentiment", **options, "items": [{"id": f"A{i + 2}", "prompt": t} for i, t in enumerate(texts)]}


def test_a_dry_run_calls_nothing_records_nothing_and_counts_no_rate_limit(client, fake_upstream, settings):
    settings.RATE_LIMIT = "1/h"
    for _ in range(3):
        response = post(client, body_of("great product", "awful service", dry_run=True))
        assert response.status_code == 200, response.content
    body = response.json()
    assert body["dry_run"] is True and "batch_id" not in body
    assert [r["id"] for r in body["results"]] == ["A2", "A3"]
    assert fake_upstream.requests == []
    assert UsageRecord.objects.count() == 0
    assert body["totals"]["calls"] == 2 and body["totals"]["cached"] == 0
    assert body["budget"] == {"left_usd": None, "budgets": []}
    assert post(client, body_of("great product")).status_code == 200  # the one real batch of the hour still runs


def test_the_dry_run_prices_input_tokens_at_the_rate_the_real_run_records(client, fake_upstream):
    request = body_of("The delivery was late and the box was damaged.", model="gpt-4o-mini")
    dry = post(client, {**request, "dry_run": True}).json()
    [estimate] = dry["results"]
    assert (estimate["provider"], estimate["model"], estimate["priced"]) == ("openai", "gpt-4o-mini", True)
    assert estimate["input_usd_per_mtok"] == "0.15"
    tokens = estimate["input_tokens"]
    assert Decimal(estimate["input_cost_usd"]) == tokens * Decimal("0.15") / MILLION
    # The real run, with the upstream reporting as many input tokens as the estimate counted and no output: the
    # usage record bills exactly the estimated input cost.
    fake_upstream.configure(reply="", usage=FakeUsage(input_tokens=tokens, output_tokens=0))
    real = post(client, request).json()
    [record] = UsageRecord.objects.filter(batch_id=real["batch_id"])
    assert record.input_tokens == tokens and record.output_tokens == 0
    assert record.cost_usd == Decimal(estimate["input_cost_usd"])
    assert real["totals"]["cost_usd"] == dry["totals"]["input_cost_usd"]


def test_with_max_tokens_the_estimate_is_an_upper_bound_of_the_real_cost(client, fake_upstream):
    texts = ["Great service, thank you!", "Ce produit est arrivé cassé, très déçu.", "ok", "x" * 500]
    request = body_of(*texts, model="gpt-4o", parameters={"max_tokens": 5})
    dry = post(client, {**request, "dry_run": True}).json()
    assert all(r["max_output_tokens"] == 5 for r in dry["results"])
    # The fake counts input tokens from the text it got (characters / 4) and answers the full 5 tokens allowed.
    fake_upstream.configure(reply="x" * 20)
    real = post(client, request).json()
    records = list(UsageRecord.objects.filter(batch_id=real["batch_id"]))
    assert len(records) == 4 and {r.output_tokens for r in records} == {5}
    for estimate, result in zip(dry["results"], real["results"], strict=True):
        assert Decimal(result["cost_usd"]) <= Decimal(estimate["max_cost_usd"])
    assert Decimal(real["totals"]["cost_usd"]) <= Decimal(dry["totals"]["max_cost_usd"])
    # The input side of the bound: the tokens the upstream reported never exceed the estimate's.
    reported = sorted(r.input_tokens for r in records)
    assert all(n <= e for n, e in zip(reported, sorted(r["input_tokens"] for r in dry["results"]), strict=True))


def test_cached_items_cost_nothing_and_are_not_calls(client, fake_upstream):
    fake_upstream.configure(reply="positive")
    first = body_of("great product", "awful service", parameters={"temperature": 0})
    post(client, first)  # answered and cached
    dry = post(client, {**body_of("great product", "it was fine", parameters={"temperature": 0}), "dry_run": True})
    cached, fresh = dry.json()["results"]
    assert cached["cached"] is True and cached["input_cost_usd"] == "0" and cached["max_cost_usd"] == "0"
    assert fresh["cached"] is False and Decimal(fresh["max_cost_usd"]) > 0
    totals = dry.json()["totals"]
    assert (totals["items"], totals["calls"], totals["cached"]) == (2, 1, 1)
    assert totals["input_tokens"] == fresh["input_tokens"] and totals["max_cost_usd"] == fresh["max_cost_usd"]
    # Without the cache (temperature unset, or Cache-Control: no-cache) the same text is a call again.
    again = post(client, {**body_of("great product"), "dry_run": True}).json()
    assert again["results"][0]["cached"] is False
    no_cache = post(
        client,
        {**body_of("great product", parameters={"temperature": 0}), "dry_run": True},
        HTTP_CACHE_CONTROL="no-cache",
    ).json()
    assert no_cache["results"][0]["cached"] is False


def test_refused_items_are_error_rows_and_unpriced_models_have_no_cost(client, fake_upstream, settings):
    settings.MAX_PROMPT_LENGTH = 50
    ModelPrice.objects.filter(model="gpt-4o").delete()
    pricing.prices_changed()
    items = [
        {"id": 1, "prompt": ""},
        {"id": 2, "prompt": "x" * 51},
        {"id": 3, "prompt": "fine", "model": "gpt-4o"},
        {"id": 4, "prompt": "fine"},
    ]
    body = post(client, {"items": items, "dry_run": True}).json()
    empty, long, unpriced, fine = body["results"]
    assert empty == {"id": 1, "status": "error", "error": {"code": "empty_prompt", "message": "The prompt is empty."}}
    assert long["error"]["code"] == "prompt_too_long"
    assert unpriced["priced"] is False and unpriced["input_cost_usd"] is None and unpriced["max_cost_usd"] is None
    assert fine["priced"] is True and fine["max_cost_usd"] is not None
    assert body["totals"]["errors"] == 2 and body["totals"]["calls"] == 2
    assert body["totals"]["max_cost_usd"] is None  # a partial total would understate the cost


def test_the_budget_left_of_the_token_and_its_user(client, token, fake_upstream):
    row = token[0]
    row.monthly_budget_usd = Decimal("2")
    row.save()
    row.user.preferences.monthly_budget_usd = Decimal("5")
    row.user.preferences.save()
    token_cache.clear()
    post(client, body_of("great product"))  # spends a little of both
    spent = SpendCounter.objects.get(scope="token", key=row.pk).spent_usd
    assert spent > 0
    budget = post(client, {**body_of("again"), "dry_run": True}).json()["budget"]
    by_scope = {b["scope"]: b for b in budget["budgets"]}
    assert set(by_scope) == {"token", "user"}
    assert Decimal(by_scope["token"]["left_usd"]) == Decimal("2") - spent
    assert Decimal(by_scope["user"]["left_usd"]) == Decimal("5") - spent
    assert Decimal(budget["left_usd"]) == Decimal("2") - spent
    assert by_scope["token"]["reserved_usd"] == "0"


def test_dry_run_must_be_a_boolean(client):
    response = post(client, {**body_of("x"), "dry_run": "yes"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request"
    assert "dry_run" in str(response.json()["error"])
