"""What a gateway call would cost, without making it (the batch API's `dry_run`).

Built from the same pieces as the real call, so the two cannot drift apart: the route and price the pipeline would
use, the input-token bound and the maximum cost that a budget reservation holds (llm/budgets.py), and the response
cache key the pipeline would look up. A call the cache would answer costs $0.
"""

from dataclasses import dataclass, replace
from decimal import Decimal

from llm import response_cache
from llm.budgets import request_max_cost
from llm.pipeline import GatewayCall, cache_key_for
from llm.pricing import MILLION, aprice_or_fallback, input_token_bound, output_token_bound
from llm.routing import aresolve

ZERO = Decimal("0")


@dataclass(frozen=True)
class CallEstimate:
    provider: str
    model: str
    cached: bool  # the response cache holds the answer: no upstream call, no cost
    input_tokens: int  # the budget reservation's bound: the provider's count never exceeds it
    max_output_tokens: int | None  # max_tokens, else the model's output limit (None: no price row to know it)
    input_usd_per_mtok: Decimal | None  # the rate the usage record bills uncached input at
    input_cost_usd: Decimal | None  # input_tokens at that rate ($0 when cached; None: no price)
    max_cost_usd: Decimal | None  # what a budget reservation holds: an upper bound of the real cost
    priced: bool  # False: the model has no price row (the UNPRICED_* fallback, if set, applies)


async def call_estimate(call: GatewayCall) -> CallEstimate:
    route = await aresolve(call.requested_model, provider=call.provider_hint, preferences=call.cached.preferences)
    request = replace(call.chat, model=route.model)
    price = await aprice_or_fallback(route.provider, route.model)
    key = cache_key_for(call, route, request)
    cached = key is not None and await response_cache.get(key) is not None
    input_tokens = input_token_bound(request)
    max_cost, unpriced = await request_max_cost(route=route, request=request, price=price)
    input_cost = None if price is None else input_tokens * price.input / MILLION
    return CallEstimate(
        provider=route.provider,
        model=route.model,
        cached=cached,
        input_tokens=input_tokens,
        max_output_tokens=request.max_tokens if price is None else output_token_bound(request, price, route.provider),
        input_usd_per_mtok=None if price is None else price.input,
        input_cost_usd=ZERO if cached else input_cost,
        max_cost_usd=ZERO if cached else (None if unpriced is not None else max_cost),
        priced=price is not None and price.priced,
    )
