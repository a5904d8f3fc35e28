"""Usage for the dashboard tests, made as clients make it: HTTP requests to the gateway (Django's test client)
against the fake upstream, so records, spend counters and daily rollups are all written by the real pipeline."""

from dataclasses import dataclass
from decimal import Decimal

from django.test import Client

from accounts import services as account_services
from accounts.models import APIToken
from bench.fake_upstream import Usage as FakeUsage
from llm import pricing
from llm.models import ModelPrice

CHAT = "/v1/chat/completions"
# A model name is whatever a client sends: it reaches the dashboard's legend, tooltips and tables.
HOSTILE_MODEL = 'gpt-"><script>alert(1)</script>'


@dataclass
class DashboardData:
    alice: object
    bob: object
    excel: APIToken  # alice's
    laptop: APIToken  # alice's, budget $1
    bobs: APIToken  # bob's (no budget: bob uses a model without a price)


def chat(plaintext: str, model: str, content: str, **extra):
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    return Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}").post(CHAT, body, content_type="application/json")


def send_usage(fake_upstream) -> DashboardData:
    """alice: two priced OpenAI answers and a cache hit on `excel`, an Anthropic answer and an upstream error on
    `laptop` (alice has a $5 budget, `laptop` $1); bob: a model without a price, and one with a hostile name."""
    alice = account_services.user_create(username="alice", password="alice-pw-for-tests-1")
    bob = account_services.user_create(username="bob", password="bob-pw-for-tests-1")
    account_services.user_preferences_update(user=alice, monthly_budget_usd=Decimal("5"))
    excel, excel_key = account_services.api_token_create(user=alice, name="excel")
    laptop, laptop_key = account_services.api_token_create(user=alice, name="laptop", monthly_budget_usd=Decimal("1"))
    bobs, bob_key = account_services.api_token_create(user=bob, name="bob-cli")
    # Priced, so the hostile name gets a bar (and a tooltip) in the cost chart too.
    ModelPrice.objects.create(
        provider="openai", model=HOSTILE_MODEL, input_per_mtok=Decimal("1"), output_per_mtok=Decimal("2"),
        effective_from="2025-01-01",
    )  # fmt: skip
    pricing.prices_changed()

    def ok(key, model, content, usage, **extra):
        fake_upstream.configure(usage=usage)
        response = chat(key, model, content, **extra)
        assert response.status_code == 200, response.content
        return response

    ok(excel_key, "gpt-4o-mini", "first", FakeUsage(input_tokens=1000, output_tokens=200), temperature=0)
    assert ok(excel_key, "gpt-4o-mini", "first", FakeUsage(1, 1), temperature=0)["X-Djllm-Cached"] == "true"
    ok(excel_key, "gpt-4o", "second", FakeUsage(input_tokens=20000, output_tokens=3000))
    ok(laptop_key, "claude-haiku-4-5", "third", FakeUsage(input_tokens=5000, output_tokens=1000))
    fake_upstream.fail_next("500", times=None)
    assert chat(laptop_key, "gpt-4o-mini", "fails").status_code == 502
    fake_upstream.clear_faults()
    ok(bob_key, "gpt-3.5-turbo", "unpriced", FakeUsage(input_tokens=300, output_tokens=30))
    ok(bob_key, HOSTILE_MODEL, "hostile", FakeUsage(input_tokens=10, output_tokens=10))
    return DashboardData(alice=alice, bob=bob, excel=excel, laptop=laptop, bobs=bobs)
