"""Fixtures for gateway tests: djllm pointed at the fake upstream, known prices, and clean per-process caches."""

from decimal import Decimal

import pytest

from llm import pricing, routing, templates_store
from llm.models import ModelPrice

OPENAI_KEY = "sk-test-openai-key-000000000000"
ANTHROPIC_KEY = "test-anthropic-key-0000000000"  # fake; not shaped like a real key

# Prices the cost tests compute by hand (USD per 1M tokens).
PRICES = {
    ("openai", "gpt-4o-mini"): dict(input="0.15", output="0.60", cached="0.075", write=None),
    ("openai", "gpt-4o"): dict(input="2.50", output="10.00", cached="1.25", write=None),
    ("anthropic", "claude-haiku-4-5"): dict(input="1.00", output="5.00", cached="0.10", write="1.25"),
    ("anthropic", "claude-sonnet-4-5"): dict(input="3.00", output="15.00", cached="0.30", write="3.75"),
}


def _reset_process_caches() -> None:
    pricing.prices_changed()
    routing.routes_changed()
    templates_store.templates_changed()


@pytest.fixture
def gateway_settings(settings, fake_upstream):
    settings.OPENAI_API_KEY = OPENAI_KEY
    settings.OPENAI_BASE_URL = fake_upstream.openai_base_url
    settings.ANTHROPIC_API_KEY = ANTHROPIC_KEY
    settings.ANTHROPIC_BASE_URL = fake_upstream.anthropic_base_url
    settings.LOCAL_LLM_BASE_URL = fake_upstream.openai_base_url
    settings.LLM_PROVIDER = "openai"
    settings.OPENAI_MODEL = "gpt-4o-mini"
    settings.LLM_RETRY_ATTEMPTS = 3
    settings.LLM_RETRY_BASE_DELAY = 0.01
    settings.LLM_RETRY_MAX_DELAY = 0.05
    settings.REQUEST_TIMEOUT = 5.0
    settings.RATE_LIMIT = "1000/m"
    _reset_process_caches()
    yield fake_upstream
    _reset_process_caches()


@pytest.fixture
def prices(db):
    ModelPrice.objects.all().delete()
    for (provider, model), p in PRICES.items():
        ModelPrice.objects.create(
            provider=provider,
            model=model,
            input_per_mtok=Decimal(p["input"]),
            output_per_mtok=Decimal(p["output"]),
            cached_input_per_mtok=Decimal(p["cached"]),
            cache_write_per_mtok=Decimal(p["write"]) if p["write"] else None,
            effective_from="2025-01-01",
        )
    pricing.prices_changed()
    return PRICES


def route_form(**overrides) -> dict:
    """The admin's model-route form, filled in as a person would: an OpenAI alias with no base URL or key."""
    data = {
        "alias": "fast",
        "provider": "openai",
        "upstream_model": "gpt-4o-mini",
        "base_url": "",
        "api_key": "",
        "fallback": "",
        "is_active": "on",
    }
    data.update(overrides)
    return data
