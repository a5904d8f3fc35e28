"""`POST /api/v1/batch`: many prompts in one request, run concurrently, answered in input order.

An async view on the lean API stack like the webhook (no DRF on the hot path). The batch counts once against the
token's RATE_LIMIT; its items skip the per-request limiter but each goes through budgets, the response cache and
the usage records (with the batch id). Items of one token run at most BATCH_CONCURRENCY at a time per process,
whatever number of batches that token sends at once.
"""

import asyncio
import uuid
import weakref
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from common.errors import InvalidRequest, RequestTooLarge, UnsupportedMediaType
from common.formatting import money
from common.operations import openapi_operation
from common.parsers import loads
from common.request_id import current_request_id
from common.request_input import no_cache_requested
from jobs import idempotency, schema
from jobs.dry_run import dry_run_batch
from jobs.execution import ItemContext, ItemOutcome, check_options, record_unsent, run_item
from jobs.inputs import BatchIn
from jobs.schema import BatchDryRunOut, BatchItemOut, BatchOut, BatchTotals, ItemError
from llm.endpoints import fast_endpoint, rate_headers
from llm.limits import rate_limit_hit

# event loop -> (token id, limit) -> semaphore. Keyed by loop because a semaphore belongs to one loop (tests and
# WSGI run each request in a fresh loop); under ASGI there is one loop per process.
_semaphores: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[int, int], asyncio.Semaphore]]"
_semaphores = weakref.WeakKeyDictionary()


def token_semaphore(token_id: int) -> asyncio.Semaphore:
    limit = max(settings.BATCH_CONCURRENCY, 1)
    per_loop = _semaphores.setdefault(asyncio.get_running_loop(), {})
    semaphore = per_loop.get((token_id, limit))
    if semaphore is None:
        semaphore = per_loop[(token_id, limit)] = asyncio.Semaphore(limit)
    return semaphore


class BodyTooLarge(RequestTooLarge):
    code = "body_too_large"  # the batch/job body limit (JOB_UPLOAD_MAX_BYTES), named before 413 had one code


def check_body_size(request: HttpRequest) -> None:
    limit = settings.JOB_UPLOAD_MAX_BYTES
    length = int(request.META.get("CONTENT_LENGTH") or 0)
    if length > limit:
        raise BodyTooLarge(
            f"The body is {length} bytes; the limit is JOB_UPLOAD_MAX_BYTES={limit}.",
            details={"limit": limit, "setting": "JOB_UPLOAD_MAX_BYTES"},
        )


def parse_body(request: HttpRequest) -> Any:
    """Like the webhook's `parse_json`, but up to JOB_UPLOAD_MAX_BYTES (20 MB: 200 long texts) rather than
    Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB), which `request.body` enforces."""
    content_type = request.content_type or ""
    if content_type != "application/json":
        raise UnsupportedMediaType(f"Send JSON with `Content-Type: application/json` (got {content_type or 'none'}).")
    check_body_size(request)
    raw = request.read(settings.JOB_UPLOAD_MAX_BYTES + 1)
    if len(raw) > settings.JOB_UPLOAD_MAX_BYTES:
        raise BodyTooLarge(
            f"The body is over JOB_UPLOAD_MAX_BYTES={settings.JOB_UPLOAD_MAX_BYTES} bytes.",
            details={"limit": settings.JOB_UPLOAD_MAX_BYTES, "setting": "JOB_UPLOAD_MAX_BYTES"},
        )
    return loads(raw)


def check_item_count(data: Any, *, limit: int, setting: str) -> None:
    """Before validating thousands of items one by one: too many is a 400 naming the limit."""
    items = data.get("items") if isinstance(data, dict) else None
    if isinstance(items, list) and len(items) > limit:
        raise InvalidRequest(
            f"{len(items)} items; the limit is {setting}={limit} per request.",
            code="too_many_items",
            details={"limit": limit, "items": len(items)},
            param="items",
        )


def check_batch_size(data: Any) -> None:
    check_item_count(data, limit=settings.BATCH_MAX_ITEMS, setting="BATCH_MAX_ITEMS")


def item_out(ref: Any, outcome: ItemOutcome) -> BatchItemOut:
    return BatchItemOut(
        id=ref,
        status="ok" if outcome.ok else "error",
        result=outcome.result,
        error=None if outcome.ok else ItemError(code=outcome.error_code, message=outcome.error_message),
        cached=outcome.cached,
        cost_usd=money(outcome.cost_usd),
    )


def totals(outcomes: list[ItemOutcome]) -> BatchTotals:
    cost = sum((o.cost_usd or Decimal("0") for o in outcomes), Decimal("0"))
    return BatchTotals(
        items=len(outcomes),
        ok=sum(o.ok for o in outcomes),
        errors=sum(not o.ok for o in outcomes),
        cached=sum(o.cached for o in outcomes),
        cost_usd=money(cost),
    )


async def run_batch(ctx: ItemContext, body: BatchIn, request_id: str) -> dict[str, Any]:
    semaphore = token_semaphore(ctx.cached_token.token.pk)

    async def one(item) -> ItemOutcome:
        # If the client hangs up, the view and these tasks are cancelled: an item already sent upstream finishes in
        # the background and is billed `cancelled`; one still waiting for its turn is not sent, and recorded so.
        try:
            await semaphore.acquire()
        except asyncio.CancelledError:
            await record_unsent(ctx, request_id=request_id, model=item.model)
            raise
        slot = {"held": True}

        def left_behind(task: asyncio.Task) -> None:
            # The item's upstream call goes on: its slot is freed when that call ends, so a client that hangs up
            # and sends the batch again never has more than BATCH_CONCURRENCY items at the upstream.
            slot["held"] = False
            task.add_done_callback(lambda _: semaphore.release())

        try:
            return await run_item(
                ctx,
                prompt=item.text(),
                model=item.model,
                request_id=request_id,
                variables=item.variables,
                record_if_cancelled=True,
                on_left_behind=left_behind,
            )
        finally:
            if slot["held"]:
                semaphore.release()

    outcomes = await asyncio.gather(*(one(item) for item in body.items))
    refs = [item.id if item.id is not None else index for index, item in enumerate(body.items)]
    return BatchOut(
        batch_id=ctx.batch_id,
        request_id=request_id,
        results=[item_out(ref, outcome) for ref, outcome in zip(refs, outcomes, strict=True)],
        totals=totals(outcomes),
    ).model_dump(mode="json")


@openapi_operation(request=BatchIn, **schema.BATCH)
@fast_endpoint(parse=parse_body, check=check_batch_size, body=BatchIn, with_data=True)
async def batch(request: HttpRequest, cached_token, body: BatchIn, data: dict[str, Any]) -> HttpResponse:
    request_id = current_request_id()
    ctx = ItemContext(
        cached_token=cached_token,
        options=body,
        endpoint="batch",
        batch_id=f"batch_{uuid.uuid4().hex}",
        no_cache=no_cache_requested(request),
    )
    await check_options(cached_token, body, request_id=request_id, endpoint="batch")
    if body.dry_run:  # priced, not run: no idempotency key taken, no rate limit counted, nothing recorded
        estimate = BatchDryRunOut.model_validate(await dry_run_batch(ctx, body, request_id))
        return JsonResponse(estimate.model_dump(mode="json", exclude_unset=True))  # an error item has no prices
    guard = idempotency.idempotency_guard(
        token_id=cached_token.token.pk, headers=request.headers, method="POST", path=request.path, body=data
    )
    async with guard:  # released if the batch fails as a whole: a retry with the key runs it again
        if guard.replay is not None:
            response = JsonResponse(guard.replay.body, status=guard.replay.status_code)
            response["Idempotent-Replayed"] = "true"
            return response
        rate = await rate_limit_hit(cached_token)
        payload = await run_batch(ctx, body, request_id)
        await guard.astore(status_code=200, body=payload)
    return rate_headers(JsonResponse(payload), rate)
