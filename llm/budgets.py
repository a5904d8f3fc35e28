"""Budgets that hold: before the upstream call, reserve the most the request can cost; the transaction that writes
its usage record adds the real cost and releases the reservation (llm/services.py).

The most a request can cost is its prompt's byte count (a true upper bound of its tokens, see
`pricing.input_token_bound`) at the highest input rate plus its `max_tokens` (else the model's output limit) at
the output rate, over every route it may take (its fallbacks included). The reservation is one database
transaction of conditional UPDATEs on the token's and the user's counters, so it holds across processes and
machines, with or without Redis. Without a budget nothing here touches the database.
"""

import asyncio
import logging
from datetime import date
from decimal import Decimal

from accounts.token_cache import CachedToken
from common.aio import shielded
from common.db_thread import in_sqlite_write_turn, run_in_db_thread
from common.errors import ModelNotPriced
from llm.limits import budgets_for
from llm.pricing import Price, aprice_or_fallback, max_cost_of
from llm.providers import ChatRequest
from llm.routing import Route
from llm.services import Reservation
from llm.services import spend_release as _spend_release
from llm.services import spend_reserve as _spend_reserve

logger = logging.getLogger(__name__)

spend_reserve = in_sqlite_write_turn(_spend_reserve)
spend_release = in_sqlite_write_turn(_spend_release)

ADD_PRICE_HINT = "Admin › LLM gateway › Model prices › Add (/admin/llm/modelprice/add/)"


def model_not_priced(route: Route, labels: list[str], *, primary: Route) -> ModelNotPriced:
    fallback = "" if route is primary else f" (the fallback of {primary.provider}/{primary.model})"
    return ModelNotPriced(
        f"The model {route.provider}/{route.model}{fallback} has no price, and a monthly budget applies to "
        f"{' and '.join(labels)}: a budget cannot be kept without a price. Ask an admin to add one in "
        f"{ADD_PRICE_HINT} with provider {route.provider!r} and model {route.model!r}, or to set "
        "UNPRICED_INPUT_PER_MTOK and UNPRICED_OUTPUT_PER_MTOK.",
        details={"provider": route.provider, "model": route.model, "admin_url": "/admin/llm/modelprice/add/"},
        param="model",
    )


async def request_max_cost(*, route: Route, request: ChatRequest, price: Price | None) -> tuple[Decimal, Route | None]:
    """The most `request` can cost over `route` and its fallbacks (what a budget reservation holds, and what the
    batch's dry run reports), and the first route of them without any price (None when all are priced)."""
    amount, current = Decimal("0"), route
    while current is not None:
        current_price = price if current is route else await aprice_or_fallback(current.provider, current.model)
        if current_price is None:
            return amount, current
        amount = max(amount, max_cost_of(request, current_price, current.provider))
        current = current.fallback
    return amount, None


async def budget_reserve(
    cached: CachedToken, *, month: date, route: Route, request: ChatRequest, price: Price | None
) -> Reservation | None:
    """Reserve the request's maximum cost on every budget that applies; None when none does (no database work).
    Raises ModelNotPriced (a route without any price) or BudgetExceeded (it does not fit)."""
    budgets = budgets_for(cached)
    if not budgets:
        return None
    amount, unpriced = await request_max_cost(route=route, request=request, price=price)
    if unpriced is not None:
        raise model_not_priced(unpriced, [label for _, _, _, label in budgets], primary=route)
    reserving = asyncio.ensure_future(run_in_db_thread(spend_reserve, month=month, amount=amount, budgets=budgets))
    try:
        return await asyncio.shield(reserving)
    except asyncio.CancelledError:
        # The caller left while the database thread was reserving: the reservation may still be taken, and no usage
        # record will carry it. Give it back once it is.
        reserving.add_done_callback(_release_abandoned)
        raise


def _release_abandoned(reserving: asyncio.Future) -> None:
    if reserving.cancelled() or reserving.exception() is not None:
        return  # nothing was reserved
    releasing = asyncio.ensure_future(shielded(run_in_db_thread(spend_release, reservation=reserving.result())))
    releasing.add_done_callback(_log_failure)


def _log_failure(releasing: asyncio.Future) -> None:
    if not releasing.cancelled() and releasing.exception() is not None:
        logger.error("An abandoned budget reservation was not released", exc_info=releasing.exception())
