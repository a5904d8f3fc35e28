"""Running one batch or job item through the gateway: the webhook's templates, the pipeline (rate limit skipped:
the batch or job was counted once; rounds of backoff when the upstream keeps rate limiting after the pipeline's own
retries). An item's failure is its outcome, never an exception."""

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction

from accounts.token_cache import CachedToken
from common.aio import shielded
from common.errors import AppError, InvalidRequest
from jobs.inputs import BatchOptions, label_of, webhook_body
from llm import pipeline
from llm.models import UsageRecord, UsageStatus
from llm.providers import Completion
from llm.services import UsageDraft, usage_record_create
from llm.templates_store import aget_template
from llm.webhook_calls import build_call

logger = logging.getLogger(__name__)

RecordHook = Callable[[UsageRecord, Completion | None], None]


@dataclass(frozen=True)
class ItemOutcome:
    ok: bool
    result: str | None = None
    error_code: str = ""
    error_message: str = ""
    cached: bool = False
    cost_usd: Decimal | None = None

    @classmethod
    def failed(cls, error: AppError) -> "ItemOutcome":
        return cls(ok=False, error_code=error.code, error_message=error.message)


@dataclass(frozen=True)
class ItemContext:
    """What the items of one batch or job share."""

    cached_token: CachedToken
    options: BatchOptions
    endpoint: str  # "batch" or "job"
    batch_id: str
    no_cache: bool = False


async def check_options(
    cached_token: CachedToken,
    options: BatchOptions,
    *,
    request_id: str,
    endpoint: str,
    rows_have_variables: bool = True,
) -> None:
    """Problems of the request itself (a type that is not available here) fail the request, not every row: the
    webhook's own checks, run once on a stand-in row; a named template is looked up (its variables are the rows').
    Without `rows_have_variables` (a document: its rows are chunks of text), the template's variables are all in
    `options` and are checked here too, a missing or unknown one a 400 naming it."""
    if options.user_template is not None and rows_have_variables:
        await aget_template(user_id=cached_token.token.user_id, ref=options.user_template)
        return
    await build_call(cached_token, webhook_body(options, prompt="probe"), request_id=request_id, endpoint=endpoint)


def _refusal_draft(ctx: ItemContext, request_id: str, error: AppError) -> UsageDraft:
    token = ctx.cached_token.token
    return UsageDraft(
        request_id=request_id,
        endpoint=ctx.endpoint,
        user_id=token.user_id,
        token_id=token.pk,
        requested_model=ctx.options.model or "",
        type=ctx.options.kind,
        source=ctx.options.source,
        batch_id=ctx.batch_id,
        status=UsageStatus.CLIENT_ERROR,
        http_status=error.status,
        error_code=error.code,
    )


async def record_unsent(ctx: ItemContext, *, request_id: str, model: str | None) -> None:
    """A batch item cancelled with its batch before it reached the upstream: nothing was sent, nothing is billed,
    and it still leaves its one record (`cancelled`, no tokens, no cost), so a batch's records match its items."""
    token = ctx.cached_token.token
    draft = UsageDraft(
        request_id=request_id,
        endpoint=ctx.endpoint,
        user_id=token.user_id,
        token_id=token.pk,
        requested_model=model or ctx.options.model or "",
        type=ctx.options.kind,
        source=ctx.options.source,
        batch_id=ctx.batch_id,
        status=UsageStatus.CANCELLED,
        http_status=499,
        error_code="client_disconnected",
    )
    await pipeline.record(draft)


def _write_refusal(draft: UsageDraft, hook: RecordHook | None) -> None:
    with transaction.atomic():
        record = usage_record_create(draft=draft)
        if hook is not None:
            hook(record, None)


async def item_call(
    ctx: ItemContext, *, prompt: str, model: str | None, request_id: str, variables: dict[str, str] | None = None
) -> pipeline.GatewayCall:
    """The gateway call for one item (the webhook's template and checks); an item refused before the gateway (an
    empty cell, a prompt over MAX_PROMPT_LENGTH) raises its AppError. Shared by the real run and the dry run."""
    if not prompt.strip() and ctx.options.user_template is None:  # a named template may need no prompt
        raise InvalidRequest("The prompt is empty.", code="empty_prompt", param="prompt")
    call = await build_call(
        ctx.cached_token,
        webhook_body(ctx.options, prompt=prompt, model=model, variables=variables),
        request_id=request_id,
        endpoint=ctx.endpoint,
        no_cache=ctx.no_cache,
        batch_id=ctx.batch_id,
    )
    response_format = ctx.options.parameters.response_format
    if response_format is not None:  # not a webhook field: added to the chat request the template built
        call = replace(call, chat=replace(call.chat, response_format=response_format))
    return call


async def run_item(
    ctx: ItemContext,
    *,
    prompt: str,
    model: str | None,
    request_id: str,
    variables: dict[str, str] | None = None,
    on_record: RecordHook | None = None,
    record_if_cancelled: bool = False,
    on_left_behind: Callable[[asyncio.Task], None] | None = None,
) -> ItemOutcome:
    """One item, start to finish. Every item leaves a usage record with the batch id, refusals included. Cancelled
    (a batch whose client hung up), an item already sent finishes in the background and is recorded `cancelled`
    by the pipeline (`on_left_behind` gets its task); with `record_if_cancelled`, one not yet sent is recorded here
    (record_unsent)."""
    try:
        return await _run_item(
            ctx,
            prompt=prompt,
            model=model,
            request_id=request_id,
            variables=variables,
            on_record=on_record,
            record_if_cancelled=record_if_cancelled,
            on_left_behind=on_left_behind,
        )
    except Exception:  # a bug in one row must not fail the others
        logger.exception("Item %s failed unexpectedly", request_id)
        return ItemOutcome(ok=False, error_code="internal_error", error_message="An internal error occurred.")


async def _run_item(
    ctx: ItemContext,
    *,
    prompt: str,
    model: str | None,
    request_id: str,
    variables: dict[str, str] | None,
    on_record: RecordHook | None,
    record_if_cancelled: bool,
    on_left_behind: Callable[[asyncio.Task], None] | None,
) -> ItemOutcome:
    try:
        call = await item_call(ctx, prompt=prompt, model=model, request_id=request_id, variables=variables)
    except AppError as error:  # refused before the gateway (empty cell, over MAX_PROMPT_LENGTH): recorded here
        await shielded(sync_to_async(_write_refusal)(_refusal_draft(ctx, request_id, error), on_record))
        return ItemOutcome.failed(error)
    except asyncio.CancelledError:
        if record_if_cancelled:
            await record_unsent(ctx, request_id=request_id, model=model)
        raise
    # The upstream's rate limit is waited out inside the one call (BATCH_RATE_LIMIT_RETRIES rounds), so the item
    # keeps exactly one usage record however many attempts it took.
    labels = ctx.options.labels
    call = replace(
        call,
        cache_if=(lambda completion: label_of(completion.text, labels) is not None) if labels else None,
        skip_rate_limit=True,
        on_record=on_record,
        on_left_behind=on_left_behind,
        rate_limit_rounds=max(settings.BATCH_RATE_LIMIT_RETRIES, 0),
    )
    try:
        result = await pipeline.complete(call)
    except AppError as error:
        return ItemOutcome.failed(error)
    text = result.completion.text
    if labels:
        text = label_of(text, labels)
        if text is None:  # billed (the record says so), but not an answer: the item's error, and not cached
            return ItemOutcome(
                ok=False,
                error_code="answer_not_in_labels",
                error_message=f"The answer {result.completion.text[:100]!r} is not one of the labels.",
                cached=result.cached,
                cost_usd=result.cost_usd,
            )
    return ItemOutcome(ok=True, result=text, cached=result.cached, cost_usd=result.cost_usd)
