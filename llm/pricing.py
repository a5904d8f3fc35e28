"""Cost in exact Decimal arithmetic.

djllm's `Usage.input_tokens` counts every prompt token. Of those, cached reads are billed at the cached rate, cache
writes at the cache-write rate, and the rest at the input rate. (OpenAI's `prompt_tokens` already include the
cached tokens; Anthropic's `input_tokens` exclude cache reads and writes — the providers normalise that.)
"""

from dataclasses import dataclass
from decimal import Decimal

from django.utils import timezone

from common.process_copy import ProcessCopy
from llm.models import ModelPrice
from llm.providers.base import Usage

MILLION = Decimal(1_000_000)
_PRICE_CACHE_SECONDS = 10.0


@dataclass(frozen=True)
class Price:
    input: Decimal
    output: Decimal
    cached_input: Decimal
    cache_write: Decimal


def cost_of(usage: Usage, price: Price) -> Decimal:
    total = (
        usage.uncached_input_tokens * price.input
        + usage.cached_input_tokens * price.cached_input
        + usage.cache_write_tokens * price.cache_write
        + usage.output_tokens * price.output
    )
    return total / MILLION


def saved_by_cache(usage: Usage, price: Price) -> Decimal:
    return cost_of(usage, price)


def _load() -> dict[tuple[str, str], list[ModelPrice]]:
    table: dict[tuple[str, str], list[ModelPrice]] = {}
    for row in ModelPrice.objects.filter(effective_from__lte=timezone.localdate()).order_by("-effective_from"):
        table.setdefault((row.provider, row.model), []).append(row)
    return table


def _to_price(row: ModelPrice) -> Price:
    return Price(
        input=row.input_per_mtok,
        output=row.output_per_mtok,
        cached_input=row.cached_input_per_mtok if row.cached_input_per_mtok is not None else row.input_per_mtok,
        cache_write=row.cache_write_per_mtok if row.cache_write_per_mtok is not None else row.input_per_mtok,
    )


def _match(table, provider: str, model: str) -> Price | None:
    rows = table.get((provider, model))
    if rows is None:
        # Dated snapshots ("gpt-4o-mini-2024-07-18") take the longest priced name they start with.
        candidates = [m for (p, m) in table if p == provider and model.startswith(m)]
        if not candidates:
            return None
        rows = table[(provider, max(candidates, key=len))]
    return _to_price(rows[0])


_prices = ProcessCopy(_load, seconds=_PRICE_CACHE_SECONDS, empty={})


async def aprice_for(provider: str, model: str) -> Price | None:
    """The current price, from a per-process table re-read every few seconds. None: the model is not priced."""
    return _match(await _prices.aget(), provider, model)


def price_for(provider: str, model: str) -> Price | None:
    return _match(_load(), provider, model)


def prices_changed() -> None:
    _prices.changed()
