"""The hot path: token -> rate limit -> route -> budget -> cache -> provider (retries, fallback) -> usage record.

Where a budget applies, the request's maximum cost is reserved before the upstream call and settled to its real
cost (the rest released) by the transaction that writes its usage record (llm/budgets.py); without one, no
database work is added.

Every request that got past authentication leaves exactly one UsageRecord, whatever happens: success, cache hit,
a refusal (rate limit, budget, bad model), an upstream failure, or a client hanging up (mid-stream, or while a
non-streamed call is under way: that call finishes in the background and is billed as `cancelled`, see complete()).
"""

import asyncio
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from accounts.token_cache import CachedToken
from common.aio import outlive_caller, shielded
from common.db_thread import run_in_db_thread, sqlite_write_turn
from common.errors import AppError, BudgetExceeded, RateLimited, UpstreamError
from common.shutdown import draining
from llm import response_cache
from llm.budgets import budget_reserve
from llm.limits import RateState, month_start, rate_limit_hit
from llm.metrics import usage_observe
from llm.models import UsageRecord, UsageStatus
from llm.pricing import Price, aprice_for, cost_of, fallback_price
from llm.providers import ChatRequest, Chunk, Completion, ProviderError, Usage, provider_for
from llm.providers.base import tool_calls_from_deltas
from llm.providers.errors import MAX_UPSTREAM_MESSAGE, redact
from llm.recorder import write_usage_record
from llm.routing import Route, aresolve
from llm.services import UsageDraft, usage_record_create

logger = logging.getLogger(__name__)


@dataclass
class GatewayCall:
    cached: CachedToken
    endpoint: str
    request_id: str
    chat: ChatRequest  # `model` is filled in by routing
    requested_model: str | None = None
    provider_hint: str | None = None
    cache_flag: bool | None = None
    no_cache_header: bool = False
    type: str = ""
    source: str = ""
    batch_id: str = ""
    template_version_id: int | None = None  # the prompt template version the messages were built from
    # Batch and job items: the batch/job request was counted once against RATE_LIMIT (see docs/jobs.md); budgets,
    # cache and usage records still apply to every item.
    skip_rate_limit: bool = False
    # complete() only: called with the new UsageRecord and the completion (None on failure) inside the record's
    # transaction, so a job item stores its result atomically with its bill (a killed worker never bills twice).
    # It must not raise: that would roll the record back.
    on_record: Callable[[UsageRecord, Completion | None], None] | None = None
    # complete() only: called with the task that goes on in the background when the caller is cancelled (a batch
    # holds its item's concurrency slot until that task ends).
    on_left_behind: Callable[[asyncio.Task], None] | None = None
    # complete() only: rounds of waiting out an upstream that still rate limits after the retries (batch and job
    # items, which have no client waiting on each one). All of them stay inside the request's one usage record.
    rate_limit_rounds: int = 0
    # complete() only: an answer this rejects is not kept in the response cache (a batch's `labels`: an answer that
    # is not one of them would otherwise come back from the cache on every recalculation).
    cache_if: Callable[[Completion], bool] | None = None
    conversation_id: int | None = None  # the usage record links to this conversation


@dataclass
class GatewayResult:
    completion: Completion
    route: Route
    usage: Usage
    cached: bool
    cost_usd: Decimal | None
    latency_ms: int
    rate: RateState | None
    usage_estimated: bool = False


def estimate_tokens(text: str) -> int:
    """A rough count (~4 characters a token) for when the upstream reported none."""
    return math.ceil(len(text) / 4) if text else 0


def _prompt_text(request: ChatRequest) -> str:
    parts = []
    for message in request.messages:
        content = message.content
        parts.append(content if isinstance(content, str) else str(content))
    return "\n".join(parts)


def _upstream_error(error: ProviderError) -> AppError:
    """What the caller learns of an upstream failure: its status, its error type and a short message with anything
    key-like removed (see `llm.providers.errors`), never the upstream's body as it came."""
    message = redact(error.message, limit=MAX_UPSTREAM_MESSAGE + 100)
    details = {}
    if error.status is not None:
        details["upstream_status"] = error.status
    if error.upstream_type:
        details["upstream_type"] = error.upstream_type
    if error.code == "upstream_rate_limited":
        headers = {"Retry-After": str(math.ceil(error.retry_after))} if error.retry_after else {}
        return RateLimited(
            f"The upstream provider is rate limiting: {message}", code=error.code, headers=headers, details=details
        )
    if error.code == "upstream_bad_request":
        return AppError(message, code=error.code, status=400, details=details)
    status = 504 if error.code == "upstream_timeout" else 502
    return UpstreamError(message, code=error.code, status=status, details=details)


def _retry_delay(attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return min(max(retry_after, 0.0), settings.LLM_RETRY_MAX_DELAY)
    backoff = settings.LLM_RETRY_BASE_DELAY * (2 ** (attempt - 1))
    return min(backoff * random.uniform(0.5, 1.5), settings.LLM_RETRY_MAX_DELAY)


@dataclass
class _Flight:
    """A non-streamed call's state shared by its caller and the task doing the work (see complete())."""

    client_gone: bool = False


def _no_new_attempt(flight: _Flight | None) -> bool:
    """After the client left, or once the worker is shutting down, the attempt in flight is the last: a retry or
    a fallback would be billed for an answer nobody reads (or would outlast the graceful shutdown)."""
    return draining() or (flight is not None and flight.client_gone)


async def _with_retries(operation: Callable[[], Awaitable], flight: _Flight | None = None):
    attempts = max(settings.LLM_RETRY_ATTEMPTS, 1)
    for attempt in range(1, attempts + 1):
        try:
            return await operation()
        except ProviderError as error:
            if not error.retryable or attempt >= attempts or _no_new_attempt(flight):
                raise
            delay = _retry_delay(attempt, error.retry_after)
            logger.warning("Upstream %s (attempt %d/%d); retrying in %.2fs", error.code, attempt, attempts, delay)
            await asyncio.sleep(delay)
            if _no_new_attempt(flight):  # the client left, or the worker began shutting down, during the wait
                raise
    raise AssertionError("unreachable")


@sensitive_variables("current", "provider", "route")
async def _over_routes(route: Route, request: ChatRequest, operation, draft: UsageDraft, flight: _Flight | None = None):
    """Retries on each route, then its fallback. A non-retryable error (a bad request) is not retried anywhere, and
    nothing is tried again once the client has gone or the worker is draining. Every call sent upstream is counted
    in `draft.attempts`."""

    def attempt(provider, routed):
        draft.attempts += 1
        return operation(provider, routed)

    current, last_error = route, None
    while current is not None:
        provider = provider_for(
            current.provider, base_url=current.base_url, api_key=current.api_key, responses_api=current.responses_api
        )
        routed = replace(request, model=current.model)
        try:
            return current, await _with_retries(lambda p=provider, r=routed: attempt(p, r), flight)
        except ProviderError as error:
            if not error.retryable or _no_new_attempt(flight):
                raise
            last_error = error
            if current.fallback is not None:
                logger.warning(
                    "Route %s failed (%s); falling back to %s",
                    current.requested,
                    error.code,
                    current.fallback.requested,
                )
            current = current.fallback
    raise last_error


def _rate_limit_wait(error: ProviderError, round_: int) -> float:
    wait = error.retry_after if error.retry_after is not None else 2.0**round_ * random.uniform(0.5, 1.5)
    return min(max(wait, 0.0), settings.BATCH_RATE_LIMIT_MAX_WAIT)


async def _with_rate_limit_rounds(rounds: int, attempt: Callable[[], Awaitable], request_id: str, flight: _Flight):
    """`attempt()` again while the upstream keeps rate limiting, after a wait (its Retry-After, capped by
    BATCH_RATE_LIMIT_MAX_WAIT), up to `rounds` more times; not once the client has gone or the worker is draining."""
    for round_ in range(rounds + 1):
        try:
            return await attempt()
        except ProviderError as error:
            if error.code != "upstream_rate_limited" or round_ >= rounds or _no_new_attempt(flight):
                raise
            wait = _rate_limit_wait(error, round_)
            logger.warning("Item %s still rate limited (%s); waiting %.1fs", request_id, error.code, wait)
            await asyncio.sleep(wait)
            if _no_new_attempt(flight):
                raise
    raise AssertionError("unreachable")


def _draft(call: GatewayCall, *, stream: bool) -> UsageDraft:
    return UsageDraft(
        request_id=call.request_id,
        endpoint=call.endpoint,
        user_id=call.cached.token.user_id,
        token_id=call.cached.token.pk,
        requested_model=call.requested_model or "",
        type=call.type,
        source=call.source,
        batch_id=call.batch_id,
        template_version_id=call.template_version_id,
        stream=stream,
        conversation_id=call.conversation_id,
    )


def _fail(draft: UsageDraft, error: AppError) -> None:
    if isinstance(error, RateLimited) and not error.code.startswith("upstream"):
        draft.status = UsageStatus.RATE_LIMITED
    elif isinstance(error, BudgetExceeded):
        draft.status = UsageStatus.BUDGET_EXCEEDED
    elif error.code.startswith("upstream"):
        draft.status = UsageStatus.UPSTREAM_ERROR
    else:
        draft.status = UsageStatus.CLIENT_ERROR
    draft.http_status = error.status
    draft.error_code, draft.error_message = error.code, error.message


DISCONNECTED = "The client disconnected before the answer was complete."


def _cancelled(draft: UsageDraft) -> None:
    draft.status, draft.http_status, draft.error_code = UsageStatus.CANCELLED, 499, "client_disconnected"
    draft.error_message = DISCONNECTED


def _estimate_aborted(draft: UsageDraft, request: ChatRequest, price: "Price | None") -> None:
    """An upstream call cut off after it was sent (our timeout, a dropped connection, an unreadable answer) may be
    billed: count the prompt, estimated, and no output (none was received)."""
    draft.usage = Usage(input_tokens=estimate_tokens(_prompt_text(request)))
    draft.usage_estimated, draft.cost_usd = True, _cost(draft.usage, price)


def _elapsed_ms(start: float) -> int:
    return int((time.perf_counter() - start) * 1000)


async def record(draft: UsageDraft, call: GatewayCall | None = None, completion: Completion | None = None) -> None:
    try:
        usage_observe(draft)
    except Exception:  # a metric never costs a request its record
        logger.exception("Metrics: request %s not counted", draft.request_id)
    hook = call.on_record if call is not None else None
    if hook is None:
        await shielded(write_usage_record(draft))
    else:
        await shielded(run_in_db_thread(_record_with_hook, draft, hook, completion))


def _record_with_hook(draft: UsageDraft, hook, completion: Completion | None) -> None:
    with sqlite_write_turn(), transaction.atomic():
        hook(usage_record_create(draft=draft), completion)


@dataclass
class _Prepared:
    route: Route
    request: ChatRequest
    rate: RateState | None
    cache_key: str | None
    price: Price | None


async def _prepare(call: GatewayCall, draft: UsageDraft) -> _Prepared:
    rate = None if call.skip_rate_limit else await rate_limit_hit(call.cached)
    route = await aresolve(call.requested_model, provider=call.provider_hint, preferences=call.cached.preferences)
    draft.provider, draft.upstream_model = route.provider, route.model
    draft.requested_model = draft.requested_model or route.requested
    request = replace(call.chat, model=route.model)
    price = await _route_price(route, draft)
    # Budgets: the request's maximum cost is reserved now and settled with its usage record (llm/budgets.py).
    draft.reservation = await budget_reserve(
        call.cached, month=month_start(timezone.now().date()), route=route, request=request, price=price
    )
    key = cache_key_for(call, route, request)
    return _Prepared(route=route, request=request, rate=rate, cache_key=key, price=price)


async def record_refusal(call: GatewayCall, error: AppError) -> None:
    """A request a view refuses before it reaches complete()/open_stream() (a conversation too long for the model's
    context window) still leaves its one usage record."""
    draft = _draft(call, stream=False)
    draft.requested_model = call.requested_model or ""
    _fail(draft, error)
    await record(draft)


def cache_key_for(call: GatewayCall, route: Route, request: ChatRequest) -> str | None:
    """The response cache's key for `request` sent over `route`, or None when the call does not use the cache
    (shared with the batch's dry run, so what it calls cached is what the real run answers from the cache)."""
    if not response_cache.wanted(
        cache_flag=call.cache_flag, temperature=request.temperature, no_cache_header=call.no_cache_header
    ):
        return None
    return response_cache.key_for(
        provider=route.provider,
        base_url=route.base_url,
        api_key=route.api_key,
        user_id=call.cached.token.user_id,
        request=request,
    )


async def _route_price(route: Route, draft: UsageDraft) -> Price | None:
    """The route's price; without a ModelPrice row the record says `priced` false and the UNPRICED_* fallback price
    (if set) applies."""
    price = await aprice_for(route.provider, route.model)
    draft.priced = price is not None
    return price or fallback_price()


def _cost(usage: Usage, price: Price | None) -> Decimal | None:
    return cost_of(usage, price) if price is not None else None


async def complete(call: GatewayCall) -> GatewayResult:
    """One non-streamed call, recorded. The work runs as its own task: if the caller is cancelled (under ASGI the
    view is cancelled when the client hangs up), the upstream call in flight is not. It finishes in the background
    (at most REQUEST_TIMEOUT more, then it is aborted) and is recorded as `cancelled` with the usage the upstream
    reported, or an estimate if it was aborted. No retry or fallback starts after that; a call whose client left
    before it reached the upstream is not sent at all."""
    flight = _Flight()

    def caller_cancelled(task: asyncio.Task) -> None:
        flight.client_gone = True
        deadline = asyncio.get_running_loop().call_later(settings.REQUEST_TIMEOUT, task.cancel)
        task.add_done_callback(lambda _: deadline.cancel())
        if call.on_left_behind is not None:
            call.on_left_behind(task)

    return await outlive_caller(_complete(call, flight), caller_cancelled)


async def _complete(call: GatewayCall, flight: _Flight) -> GatewayResult:
    start = time.perf_counter()
    draft = _draft(call, stream=False)
    prepared, sent, recording = None, False, False
    try:
        prepared = await _prepare(call, draft)
        if prepared.cache_key:
            hit = await response_cache.get(prepared.cache_key)
            if hit is not None:
                usage = hit.usage or Usage()
                draft.status, draft.usage, draft.cost_usd = UsageStatus.CACHED, usage, Decimal("0")
                draft.saved_usd = _cost(usage, prepared.price) or Decimal("0")
                draft.latency_ms = _elapsed_ms(start)
                if flight.client_gone:
                    _cancelled(draft)
                recording = True
                await record(draft, call, hit)
                return GatewayResult(hit, prepared.route, usage, True, Decimal("0"), draft.latency_ms, prepared.rate)
        if flight.client_gone:
            raise asyncio.CancelledError  # nothing was sent: nothing is (recorded below, at no cost)
        upstream_start = time.perf_counter()
        sent = True
        route, completion = await _with_rate_limit_rounds(
            call.rate_limit_rounds,
            lambda: _over_routes(
                prepared.route, prepared.request, lambda provider, request: provider.complete(request), draft, flight
            ),
            call.request_id,
            flight,
        )
        draft.upstream_latency_ms = _elapsed_ms(upstream_start)
        draft.provider, draft.upstream_model = route.provider, completion.model or route.model
        usage, estimated = completion.usage, False
        if usage is None:
            usage = Usage(
                input_tokens=estimate_tokens(_prompt_text(prepared.request)),
                output_tokens=estimate_tokens(completion.text),
            )
            estimated = True
        price = prepared.price if route is prepared.route else await _route_price(route, draft)
        draft.usage, draft.usage_estimated, draft.cost_usd = usage, estimated, _cost(usage, price)
        # A fallback's answer is not the requested route's; an answer the caller rejects is not kept either.
        if prepared.cache_key and route is prepared.route and (call.cache_if is None or call.cache_if(completion)):
            await response_cache.put(prepared.cache_key, completion)
        draft.latency_ms = _elapsed_ms(start)
        if flight.client_gone:
            _cancelled(draft)  # billed with its real usage; nobody got the answer
        recording = True
        await record(draft, call, completion)
        return GatewayResult(
            completion, route, usage, False, draft.cost_usd, draft.latency_ms, prepared.rate, usage_estimated=estimated
        )
    except ProviderError as error:
        app_error = _upstream_error(error)
        _fail(draft, app_error)
        if flight.client_gone:
            _cancelled(draft)
            if error.status is None:  # no answer from upstream (timeout, connection lost): it may still bill
                _estimate_aborted(draft, prepared.request, prepared.price)
        draft.latency_ms = _elapsed_ms(start)
        await record(draft, call)
        raise app_error from error
    except AppError as error:
        _fail(draft, error)
        draft.latency_ms = _elapsed_ms(start)
        await record(draft, call)
        raise
    except asyncio.CancelledError:
        # Aborted REQUEST_TIMEOUT after the client left, or the event loop is closing; or (raised above) the client
        # left before anything was sent.
        if not recording:
            _cancelled(draft)
            if sent and draft.usage is None:
                _estimate_aborted(draft, prepared.request, prepared.price)
            draft.latency_ms = _elapsed_ms(start)
            await record(draft, call)
        raise
    except Exception:
        # A bug, or an answer nothing above could read: the request still leaves its one record (which settles its
        # reservation), marked as djllm's own failure; the caller gets the 500 as before.
        if not recording:
            draft.status, draft.http_status, draft.error_code = UsageStatus.UPSTREAM_ERROR, 500, "internal_error"
            draft.error_message = "An internal error occurred."
            if sent and draft.usage is None and prepared is not None:
                _estimate_aborted(draft, prepared.request, prepared.price)
            draft.latency_ms = _elapsed_ms(start)
            await record(draft, call)
        raise


# A Responses stream's opening events: sent before the model's first token, so not its time to first token.
_LIFECYCLE_EVENTS = frozenset({"response.created", "response.in_progress", "response.queued"})


def _lifecycle(chunk: Chunk) -> bool:
    return chunk.event is not None and chunk.event.get("type") in _LIFECYCLE_EVENTS


async def _replayed(events: list[dict]) -> AsyncIterator[Chunk]:
    for event in events:
        yield Chunk(event=event)


@dataclass
class StreamSession:
    """A stream whose checks passed and whose first chunk has arrived. Iterate `chunks()` exactly once; the usage
    record is written when it ends, however it ends."""

    route: Route
    rate: RateState | None
    cached: bool
    _draft: UsageDraft
    _start: float
    _first: Chunk
    _rest: AsyncIterator[Chunk] | None
    _prompt: str
    _price: Price | None
    _cache_key: str | None
    error: AppError | None = None
    usage: Usage | None = None
    cost_usd: Decimal | None = None
    text: list[str] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)  # a relayed Responses stream's events, for the cache

    @property
    def relayed(self) -> bool:
        """The upstream's own Responses events, to relay as they come (`Chunk.event`), rather than chunks to
        build events from."""
        return self._first.event is not None

    @property
    def upstream_model(self) -> str:
        return self._draft.upstream_model

    @property
    def usage_estimated(self) -> bool:
        return self._draft.usage_estimated

    async def chunks(self) -> AsyncIterator[Chunk]:
        draft = self._draft
        usage, finish, completed, model, response_id = None, None, False, None, None
        tool_parts: list[dict] = []
        refusal: list[str] = []
        try:
            chunk = self._first
            while True:
                if draft.time_to_first_token_ms is None and not _lifecycle(chunk):
                    draft.time_to_first_token_ms = _elapsed_ms(self._start)
                if chunk.event is not None and not self.cached:
                    self.events.append(chunk.event)
                if chunk.usage is not None:
                    usage = chunk.usage
                if chunk.finish_reason:
                    finish = chunk.finish_reason
                model, response_id = chunk.model or model, chunk.response_id or response_id
                if chunk.tool_calls:
                    tool_parts.extend(chunk.tool_calls)
                if chunk.refusal:
                    refusal.append(chunk.refusal)
                if chunk.text:
                    self.text.append(chunk.text)
                yield chunk
                if self._rest is None:
                    break
                try:
                    chunk = await self._rest.__anext__()
                except StopAsyncIteration:
                    break
            completed = True
        except ProviderError as error:
            self.error = _upstream_error(error)
            _fail(draft, self.error)
            draft.http_status = 200  # the 200 and the first bytes were already sent
        except (asyncio.CancelledError, GeneratorExit):
            _cancelled(draft)
            raise
        finally:
            if draft.time_to_first_token_ms is None:
                draft.time_to_first_token_ms = _elapsed_ms(self._start)
            if self._rest is not None:
                await self._rest.aclose()
            await self._finish(usage, completed, finish, model, response_id, tool_parts, "".join(refusal))

    async def _cache(self, text, model, finish, response_id, usage, tool_parts, refusal) -> None:
        """Keep the whole answer, tool calls included, or nothing: a hit must give the client what the stream did."""
        try:
            tool_calls = tool_calls_from_deltas(tool_parts) if tool_parts else None
        except ValueError:
            logger.warning("Streamed tool calls could not be put together; the answer is not cached")
            return
        completion = Completion(
            text=text,
            model=model or self.route.model,
            finish_reason=finish,
            response_id=response_id,
            usage=usage,
            tool_calls=tool_calls,
            refusal=refusal or None,
            events=self.events if self.relayed else None,
        )
        await response_cache.put(self._cache_key, completion)

    async def _finish(self, usage, completed, finish, model, response_id, tool_parts, refusal) -> None:
        draft = self._draft
        text = "".join(self.text)
        if self.cached:
            pass  # status, cost 0 and saved_usd were set when the hit was found
        elif usage is None or not completed:
            # Cut short, or no count from upstream: keep what the upstream reported (Anthropic's input tokens
            # arrive first), estimate the rest from the text actually streamed.
            reported = usage or Usage()
            usage = Usage(
                input_tokens=reported.input_tokens or estimate_tokens(self._prompt),
                output_tokens=max(reported.output_tokens, estimate_tokens(text)),
                cached_input_tokens=reported.cached_input_tokens,
                cache_write_tokens=reported.cache_write_tokens,
                reasoning_tokens=reported.reasoning_tokens,
            )
            draft.usage_estimated = True
        if not self.cached:
            draft.cost_usd = _cost(usage, self._price)
            if completed and self._cache_key and not draft.usage_estimated:
                await self._cache(text, model, finish, response_id, usage, tool_parts, refusal)
        draft.usage = usage
        draft.upstream_model = model or draft.upstream_model
        draft.latency_ms = _elapsed_ms(self._start)
        self.usage, self.cost_usd = usage, draft.cost_usd
        await record(draft)


async def open_stream(call: GatewayCall) -> StreamSession:
    """Run the checks and open the upstream stream (retrying until its first chunk). Errors before the first
    chunk raise AppError, recorded, so the view can still answer with a proper status code."""
    start = time.perf_counter()
    draft = _draft(call, stream=True)
    prepared, sent = None, False
    try:
        prepared = await _prepare(call, draft)
        common = {
            "rate": prepared.rate,
            "_draft": draft,
            "_start": start,
            "_prompt": _prompt_text(prepared.request),
            "_price": prepared.price,
            "_cache_key": prepared.cache_key,
        }
        if prepared.cache_key:
            hit = await response_cache.get(prepared.cache_key)
            if hit is not None:
                usage = hit.usage or Usage()
                draft.status, draft.cost_usd = UsageStatus.CACHED, Decimal("0")
                draft.saved_usd = _cost(usage, prepared.price) or Decimal("0")
                first = Chunk(
                    text=hit.text,
                    finish_reason=hit.finish_reason,
                    usage=usage,
                    model=hit.model,
                    response_id=hit.response_id,
                    # Replayed as one delta: streamed tool calls carry their position.
                    tool_calls=[{"index": i, **c} for i, c in enumerate(hit.tool_calls)] if hit.tool_calls else None,
                    refusal=hit.refusal or "",
                    event=hit.events[0] if hit.events else None,
                )
                # A relayed Responses stream is replayed event by event, as the client that filled the cache got it.
                rest = _replayed(hit.events[1:]) if hit.events else None
                return StreamSession(route=prepared.route, cached=True, _first=first, _rest=rest, **common)

        async def open_upstream(provider, request):
            iterator = aiter(provider.stream(request))
            try:
                return iterator, await anext(iterator)
            except StopAsyncIteration:
                return None, Chunk()
            except BaseException:
                await iterator.aclose()
                raise

        upstream_start = time.perf_counter()
        sent = True
        route, (rest, first) = await _over_routes(prepared.route, prepared.request, open_upstream, draft)
        draft.upstream_latency_ms = _elapsed_ms(upstream_start)
        draft.provider, draft.upstream_model = route.provider, route.model
        if route is not prepared.route:
            common["_price"] = await _route_price(route, draft)
            common["_cache_key"] = None  # a fallback's answer is not the requested route's: not cached under its key
        return StreamSession(route=route, cached=False, _first=first, _rest=rest, **common)
    except ProviderError as error:
        app_error = _upstream_error(error)
        _fail(draft, app_error)
        draft.latency_ms = _elapsed_ms(start)
        await record(draft)
        raise app_error from error
    except AppError as error:
        _fail(draft, error)
        draft.latency_ms = _elapsed_ms(start)
        await record(draft)
        raise
    except asyncio.CancelledError:  # the client hung up before the first chunk: the stream was never relayed
        _cancelled(draft)
        if sent:
            _estimate_aborted(draft, prepared.request, prepared.price)
        draft.latency_ms = _elapsed_ms(start)
        await record(draft)
        raise


__all__ = ["GatewayCall", "GatewayResult", "StreamSession", "aclosing", "complete", "open_stream"]
