"""Cost in exact Decimal arithmetic.

djllm's `Usage.input_tokens` counts every prompt token. Of those, cached reads are billed at the cached rate, cache
writes at the cache-write rate, and the rest at the input rate. (OpenAI's `prompt_tokens` already include the
cached tokens; Anthropic's `input_tokens` exclude cache reads and writes — the providers normalise that.)
"""

import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.utils import timezone

from common.process_copy import ProcessCopy
from llm.models import DEFAULT_MAX_OUTPUT_TOKENS, ModelPrice
from llm.providers.base import ChatRequest, Usage
from llm.providers.registry import provider_class

MILLION = Decimal(1_000_000)
_PRICE_CACHE_SECONDS = 10.0


@dataclass(frozen=True)
class Price:
    input: Decimal
    output: Decimal
    cached_input: Decimal
    cache_write: Decimal
    max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS
    priced: bool = True  # False: no ModelPrice row; this is the UNPRICED_* fallback price


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
        max_output_tokens=row.max_output_tokens,
    )


def price_row_in(table: dict[tuple[str, str], list[ModelPrice]], provider: str, model: str) -> ModelPrice | None:
    """The price row in effect for a model in a table of current prices (see `current_prices`)."""
    rows = table.get((provider, model))
    if rows is None:
        # Dated snapshots ("gpt-4o-mini-2024-07-18") take the longest priced name they start with.
        candidates = [m for (p, m) in table if p == provider and model.startswith(m)]
        if not candidates:
            return None
        rows = table[(provider, max(candidates, key=len))]
    return rows[0]


def _match(table, provider: str, model: str) -> Price | None:
    row = price_row_in(table, provider, model)
    return None if row is None else _to_price(row)


_prices = ProcessCopy(_load, seconds=_PRICE_CACHE_SECONDS, empty={})


async def aprice_for(provider: str, model: str) -> Price | None:
    """The current price, from a per-process table re-read every few seconds. None: the model is not priced."""
    return _match(await _prices.aget(), provider, model)


def price_for(provider: str, model: str) -> Price | None:
    return _match(_load(), provider, model)


def prices_changed() -> None:
    _prices.changed()


def current_prices() -> dict[tuple[str, str], list[ModelPrice]]:
    """(provider, model) -> the rows in effect today, newest first, read now."""
    return _load()


async def acurrent_prices() -> dict[tuple[str, str], list[ModelPrice]]:
    """The same, from this process's copy (re-read every few seconds, and at once after a change here)."""
    return await _prices.aget()


# --- Models without a price ----------------------------------------------------------------------


def setting_rate(name: str) -> Decimal | None:
    raw = getattr(settings, name, "") or ""
    if not str(raw).strip():
        return None
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        raise ValueError(f"{name}={raw!r} is not a decimal number (USD per 1M tokens, e.g. 5.00).") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"{name}={raw!r} must be a number of USD per 1M tokens, 0 or more.")
    return value


def fallback_price() -> Price | None:
    """The price of a model with no ModelPrice row: UNPRICED_INPUT_PER_MTOK and UNPRICED_OUTPUT_PER_MTOK when both
    are set (cached reads and cache writes at the input rate), else None. `priced` is False on it."""
    try:
        input_rate = setting_rate("UNPRICED_INPUT_PER_MTOK")
        output_rate = setting_rate("UNPRICED_OUTPUT_PER_MTOK")
    except ValueError:  # reported by the system check llm.E001; a request is never failed by it
        return None
    if input_rate is None or output_rate is None:
        return None
    return Price(input=input_rate, output=output_rate, cached_input=input_rate, cache_write=input_rate, priced=False)


async def aprice_or_fallback(provider: str, model: str) -> Price | None:
    """The model's price, else the fallback price (`priced` False), else None."""
    return await aprice_for(provider, model) or fallback_price()


# --- The most a request can cost (budget reservations) -------------------------------------------

# Tokens a provider adds around each message (role, separators) and around the request (reply priming, tool
# framing): more than OpenAI's documented 3-4 per message and 3 per reply, so the bound holds with margin.
MESSAGE_OVERHEAD_TOKENS = 8
REQUEST_OVERHEAD_TOKENS = 32
_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


def _size(value) -> int:
    """UTF-8 bytes of a string; anything else (content parts, tool definitions) by the size of its JSON."""
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    return len(_json(value).encode("utf-8"))


def input_token_bound(request: ChatRequest) -> int:
    """A count of prompt tokens the provider can never exceed: its tokenizers turn every byte of text into at
    most one token, so the UTF-8 bytes of everything sent (system and user text, every content part — images and
    files by their JSON — tool definitions and calls, the response format) plus framing overhead per message."""
    total = REQUEST_OVERHEAD_TOKENS + _size(request.tools) + _size(request.tool_choice)
    total += _size(request.response_format) + _size(request.stop)
    for message in request.messages:
        total += MESSAGE_OVERHEAD_TOKENS + _size(message.content) + _size(message.name)
        total += _size(message.tool_call_id) + _size(message.tool_calls)
    return total


def output_token_bound(request: ChatRequest, price: Price, provider: str) -> int:
    """`max_tokens` when the request sets it; else what the provider is asked for (its `default_max_tokens_setting`:
    the gateway sends Anthropic ANTHROPIC_DEFAULT_MAX_TOKENS), else the model's output limit from its price row."""
    if request.max_tokens:
        return request.max_tokens
    declared = provider_class(provider)
    if declared is not None and declared.default_max_tokens_setting:
        return declared.default_max_tokens()
    return price.max_output_tokens


def max_cost_of(request: ChatRequest, price: Price, provider: str) -> Decimal:
    """The most this request can cost: the input bound at the highest input rate (a cache write costs more than
    plain input on Anthropic) plus the output bound at the output rate."""
    input_rate = max(price.input, price.cache_write, price.cached_input)
    total = input_token_bound(request) * input_rate + output_token_bound(request, price, provider) * price.output
    return total / MILLION
