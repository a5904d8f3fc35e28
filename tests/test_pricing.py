"""Cost in exact Decimal arithmetic, price lookup, and the seeded price list."""

import importlib
from datetime import date, timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.apps import apps as django_apps
from django.utils import timezone

from llm import pricing
from llm.models import ModelPrice, PromptTemplate
from llm.pricing import Price, cost_of, price_for
from llm.providers.anthropic_provider import usage_from_anthropic
from llm.providers.openai_provider import usage_from_openai

pytestmark = pytest.mark.django_db

seed_migration = importlib.import_module("llm.migrations.0002_seed_prices_and_templates")


def add_price(provider, model, input, output, cached=None, write=None, effective_from="2025-01-01"):
    return ModelPrice.objects.create(
        provider=provider,
        model=model,
        input_per_mtok=Decimal(input),
        output_per_mtok=Decimal(output),
        cached_input_per_mtok=Decimal(cached) if cached is not None else None,
        cache_write_per_mtok=Decimal(write) if write is not None else None,
        effective_from=effective_from,
    )


@pytest.fixture
def no_prices():
    ModelPrice.objects.all().delete()
    pricing.prices_changed()
    yield
    pricing.prices_changed()


def openai_usage(prompt, completion, cached, reasoning=0):
    """OpenAI's `usage` object as it arrives: `prompt_tokens` include the cached ones."""
    return usage_from_openai(
        {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        }
    )


def test_openai_cost_bills_cached_prompt_tokens_at_the_cached_rate(no_prices):
    add_price("openai", "gpt-4o-mini", "0.15", "0.60", cached="0.075")
    usage = openai_usage(prompt=1234, completion=567, cached=1000, reasoning=100)
    assert (usage.input_tokens, usage.cached_input_tokens, usage.uncached_input_tokens) == (1234, 1000, 234)
    # uncached prompt 234 x 0.15   =  35.1
    # cached prompt  1000 x 0.075  =  75.0
    # output          567 x 0.60   = 340.2   (reasoning tokens are part of the 567, not billed again)
    #                                 -----
    #                                 450.3 per million tokens = $0.0004503
    assert cost_of(usage, price_for("openai", "gpt-4o-mini")) == Decimal("0.0004503")


def test_openai_cost_without_cached_tokens(no_prices):
    add_price("openai", "gpt-4o", "2.50", "10.00", cached="1.25")
    usage = openai_usage(prompt=1_000_001, completion=3, cached=0)
    # 1,000,001 x 2.50 + 3 x 10.00 = 2,500,002.5 + 30 = 2,500,032.5 per million = $2.5000325
    assert cost_of(usage, price_for("openai", "gpt-4o")) == Decimal("2.5000325")


def test_anthropic_cost_bills_cache_reads_and_writes_separately(no_prices):
    add_price("anthropic", "claude-sonnet-4-5", "3.00", "15.00", cached="0.30", write="3.75")
    # Anthropic's `input_tokens` (50) exclude the 2000 cache reads and the 1000 cache writes.
    usage = usage_from_anthropic(input_tokens=50, output_tokens=300, cache_read=2000, cache_write=1000)
    assert (usage.input_tokens, usage.uncached_input_tokens) == (3050, 50)
    # input         50 x 3.00  =   150
    # cache read  2000 x 0.30  =   600
    # cache write 1000 x 3.75  =  3750
    # output       300 x 15.00 =  4500
    #                             ----
    #                             9000 per million = $0.009
    assert cost_of(usage, price_for("anthropic", "claude-sonnet-4-5")) == Decimal("0.009")


def test_anthropic_cost_to_the_last_digit(no_prices):
    add_price("anthropic", "claude-3-5-haiku", "0.80", "4.00", cached="0.08", write="1.00")
    usage = usage_from_anthropic(input_tokens=7, output_tokens=13, cache_read=11, cache_write=3)
    # 7 x 0.80 + 11 x 0.08 + 3 x 1.00 + 13 x 4.00 = 5.6 + 0.88 + 3 + 52 = 61.48 per million = $0.00006148
    assert cost_of(usage, price_for("anthropic", "claude-3-5-haiku")) == Decimal("0.00006148")


def test_missing_cached_and_write_rates_fall_back_to_the_input_rate(no_prices):
    add_price("local", "llama3.1", "0.20", "0.40")
    price = price_for("local", "llama3.1")
    assert price == Price(
        input=Decimal("0.2"), output=Decimal("0.4"), cached_input=Decimal("0.2"), cache_write=Decimal("0.2")
    )


def test_unknown_model_has_no_price(no_prices):
    add_price("openai", "gpt-4o", "2.50", "10.00", cached="1.25")
    assert price_for("openai", "gpt-3.5-turbo") is None
    assert price_for("openai", "my-finetune") is None
    # Prices are per provider: the same name through another provider is not priced.
    assert price_for("local", "gpt-4o") is None
    # A priced name must be a prefix of the model, not merely contained in it.
    assert price_for("openai", "ft:gpt-4o:acme") is None


def test_dated_snapshots_take_the_longest_priced_prefix(no_prices):
    add_price("openai", "gpt-4o", "2.50", "10.00", cached="1.25")
    add_price("openai", "gpt-4o-mini", "0.15", "0.60", cached="0.075")
    add_price("openai", "gpt-4o-2024-05-13", "5.00", "15.00")
    add_price("anthropic", "claude-sonnet-4", "3.00", "15.00", cached="0.30", write="3.75")
    assert price_for("openai", "gpt-4o-2024-08-06").input == Decimal("2.50")
    assert price_for("openai", "gpt-4o-mini-2024-07-18").input == Decimal("0.15")  # not gpt-4o
    assert price_for("openai", "gpt-4o-2024-05-13").input == Decimal("5.00")  # its own row beats gpt-4o
    assert price_for("anthropic", "claude-sonnet-4-20250514").output == Decimal("15.00")


def test_effective_from_picks_the_newest_row_not_in_the_future(no_prices):
    today = timezone.localdate()
    add_price("openai", "o3", "10.00", "40.00", cached="2.50", effective_from=today - timedelta(days=400))
    add_price("openai", "o3", "2.00", "8.00", cached="0.50", effective_from=today - timedelta(days=30))
    add_price("openai", "o3", "1.00", "4.00", cached="0.25", effective_from=today + timedelta(days=1))
    assert price_for("openai", "o3").input == Decimal("2.00")
    add_price("openai", "o3", "3.00", "12.00", cached="0.75", effective_from=today)
    assert price_for("openai", "o3").input == Decimal("3.00")  # a row effective today counts


def test_effective_from_in_the_future_only_is_unpriced(no_prices):
    add_price("openai", "gpt-6", "9.00", "9.00", effective_from=timezone.localdate() + timedelta(days=1))
    assert price_for("openai", "gpt-6") is None


def test_async_lookup_sees_a_change_after_prices_changed(no_prices):
    aprice_for = async_to_sync(pricing.aprice_for)  # its DB read runs back on this thread (test transaction)
    add_price("openai", "gpt-5", "1.25", "10.00", cached="0.125")
    assert aprice_for("openai", "gpt-5-2025-08-07").input == Decimal("1.25")
    ModelPrice.objects.filter(model="gpt-5").update(input_per_mtok=Decimal("1.00"))
    assert aprice_for("openai", "gpt-5").input == Decimal("1.25")  # the per-process copy, for a few seconds
    pricing.prices_changed()  # what the admin calls after a save
    assert aprice_for("openai", "gpt-5").input == Decimal("1.00")


# --- the seed migration --------------------------------------------------------------------------


REQUIRED_MODELS = {
    "openai": [
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1-nano",
        "o1",
        "o3",
        "o3-mini",
        "o4-mini",
        "gpt-5",
        "gpt-5-mini",
        "gpt-5-nano",
    ],
    "anthropic": [
        "claude-opus-4-1",
        "claude-opus-4",
        "claude-sonnet-4-5",
        "claude-sonnet-4",
        "claude-3-7-sonnet",
        "claude-haiku-4-5",
        "claude-3-5-haiku",
    ],
}


@pytest.fixture
def seeded(no_prices):
    PromptTemplate.objects.all().delete()
    seed_migration.seed(django_apps, None)
    pricing.prices_changed()


def test_seed_prices_every_required_model(seeded):
    for provider, models in REQUIRED_MODELS.items():
        for model in models:
            row = ModelPrice.objects.get(provider=provider, model=model)
            assert row.effective_from == date(2025, 1, 1)
            assert row.input_per_mtok > 0 and row.output_per_mtok > row.input_per_mtok
            assert row.cached_input_per_mtok is not None and row.cached_input_per_mtok < row.input_per_mtok


def test_seeded_anthropic_cache_rates_follow_the_list_ratios(seeded):
    for model in REQUIRED_MODELS["anthropic"]:
        row = ModelPrice.objects.get(provider="anthropic", model=model)
        assert row.cache_write_per_mtok == row.input_per_mtok * Decimal("1.25"), model
        assert row.cached_input_per_mtok == row.input_per_mtok * Decimal("0.1"), model


def test_seeded_openai_has_no_cache_write_rate(seeded):
    for row in ModelPrice.objects.filter(provider="openai"):
        assert row.cache_write_per_mtok in (None, row.input_per_mtok), row.model


def test_seeded_prices_match_real_snapshot_names(seeded):
    assert price_for("openai", "gpt-4o-mini-2024-07-18") == Price(
        input=Decimal("0.15"), output=Decimal("0.60"), cached_input=Decimal("0.075"), cache_write=Decimal("0.15")
    )
    assert price_for("openai", "o3-mini-2025-01-31").input == Decimal("1.10")  # not o3
    assert price_for("openai", "gpt-4.1-nano-2025-04-14").input == Decimal("0.10")
    assert price_for("anthropic", "claude-sonnet-4-5-20250929").input == Decimal("3.00")
    assert price_for("anthropic", "claude-3-5-haiku-latest").input == Decimal("0.80")
    # claude-opus-4-5 has its own, lower, price: the shorter claude-opus-4 must not be used for it.
    assert price_for("anthropic", "claude-opus-4-5-20251101").input == Decimal("5.00")
    assert price_for("anthropic", "claude-opus-4-20250514").input == Decimal("15.00")


def test_seeded_templates(seeded):
    types = ["summary", "keywords", "sentiment", "entities", "translation", "custom"]
    defaults = {t.type: t for t in PromptTemplate.objects.filter(source="")}
    assert sorted(defaults) == sorted(types)
    for type_ in types[:-1]:
        assert "{language}" in defaults[type_].system, type_
        assert defaults[type_].user_template == "{prompt}"
    assert defaults["custom"].system == ""  # the user's prompt alone
    excel = {t.type: t.system for t in PromptTemplate.objects.filter(source="excel")}
    assert set(excel) == set(types[:-1])
    assert all("single short line" in system or "one lowercase" in system for system in excel.values())
    meeting = PromptTemplate.objects.get(type="summary", source="meeting").system
    assert "Decisions" in meeting and "Action items" in meeting
    assert set(PromptTemplate.objects.values_list("source", flat=True)) == {
        "",
        "excel",
        "email",
        "meeting",
        "chat",
        "document",
    }


def test_seed_keeps_existing_rows_and_unseed_removes_only_unchanged_seeds(no_prices):
    PromptTemplate.objects.all().delete()
    add_price("openai", "gpt-4o", "9.99", "9.99")  # an admin's own price for the seed's day
    PromptTemplate.objects.create(type="summary", source="", system="Mine, in {language}.")
    seed_migration.seed(django_apps, None)
    assert ModelPrice.objects.get(model="gpt-4o").input_per_mtok == Decimal("9.99")
    assert PromptTemplate.objects.get(type="summary", source="").system == "Mine, in {language}."
    seeded_prices = ModelPrice.objects.count()
    assert seeded_prices == len(seed_migration.PRICES)
    ModelPrice.objects.filter(model="o3").update(input_per_mtok=Decimal("1.50"))  # edited after seeding

    seed_migration.unseed(django_apps, None)
    assert set(ModelPrice.objects.values_list("model", flat=True)) == {"gpt-4o", "o3"}
    assert list(PromptTemplate.objects.values_list("system", flat=True)) == ["Mine, in {language}."]
