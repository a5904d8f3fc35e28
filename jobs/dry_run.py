"""`POST /api/v1/batch` with `"dry_run": true`: the batch priced, not run.

Every item goes through the same template, checks, routing, price and response-cache lookup as in the real run
(llm/estimates.py), and nothing is sent upstream. Nothing is written either: a dry run leaves no usage record
(it used no tokens and cost nothing, and the usage report counts requests that reached the gateway), holds no
budget reservation and does not count against the token's rate limit. What it reads: the cache, the prices, the
token's budget counters.
"""

import asyncio
from decimal import Decimal
from typing import Any

from django.utils import timezone

from common.db_thread import run_in_db_thread
from common.errors import AppError
from common.formatting import money
from jobs.execution import ItemContext, item_call
from jobs.inputs import BatchIn, ItemIn
from llm.estimates import CallEstimate, call_estimate
from llm.limits import month_start
from llm.selectors import budgets_left


async def _estimate(ctx: ItemContext, item: ItemIn, request_id: str) -> CallEstimate | AppError:
    try:
        call = await item_call(
            ctx, prompt=item.text(), model=item.model, request_id=request_id, variables=item.variables
        )
        return await call_estimate(call)
    except AppError as error:  # refused as the real run would refuse it: an error row, not a failed request
        return error


def _item_out(ref: Any, estimate: CallEstimate | AppError) -> dict[str, Any]:
    if isinstance(estimate, AppError):
        return {"id": ref, "status": "error", "error": {"code": estimate.code, "message": estimate.message}}
    return {
        "id": ref,
        "status": "ok",
        "error": None,
        "cached": estimate.cached,
        "provider": estimate.provider,
        "model": estimate.model,
        "priced": estimate.priced,
        "input_tokens": estimate.input_tokens,
        "max_output_tokens": estimate.max_output_tokens,
        "input_usd_per_mtok": money(estimate.input_usd_per_mtok),
        "input_cost_usd": money(estimate.input_cost_usd),
        "max_cost_usd": money(estimate.max_cost_usd),
    }


def _sum(values: list[Decimal | None]) -> Decimal | None:
    """None as soon as one amount is unknown (a model without any price): a partial total would understate."""
    return None if any(v is None for v in values) else sum(values, Decimal("0"))


def _totals(estimates: list[CallEstimate]) -> dict[str, Any]:
    calls = [e for e in estimates if not e.cached]
    return {
        "calls": len(calls),
        "cached": len(estimates) - len(calls),
        "input_tokens": sum(e.input_tokens for e in calls),
        "input_cost_usd": money(_sum([e.input_cost_usd for e in calls])),
        "max_cost_usd": money(_sum([e.max_cost_usd for e in calls])),
    }


def _budget(ctx: ItemContext) -> dict[str, Any]:
    budgets = budgets_left(cached=ctx.cached_token, month=month_start(timezone.now().date()))
    return {
        "left_usd": money(min(b.left_usd for b in budgets)) if budgets else None,
        "budgets": [
            {
                "scope": b.scope,
                "budget_usd": money(b.budget_usd),
                "spent_usd": money(b.spent_usd),
                "reserved_usd": money(b.reserved_usd),
                "left_usd": money(b.left_usd),
            }
            for b in budgets
        ],
    }


async def dry_run_batch(ctx: ItemContext, body: BatchIn, request_id: str) -> dict[str, Any]:
    estimates = await asyncio.gather(*(_estimate(ctx, item, request_id) for item in body.items))
    refs = [item.id if item.id is not None else index for index, item in enumerate(body.items)]
    priced = [e for e in estimates if not isinstance(e, AppError)]
    totals = {"items": len(estimates), **_totals(priced), "errors": len(estimates) - len(priced)}
    return {
        "dry_run": True,
        "request_id": request_id,
        "results": [_item_out(ref, e) for ref, e in zip(refs, estimates, strict=True)],
        "totals": totals,
        "budget": await run_in_db_thread(_budget, ctx),
    }
