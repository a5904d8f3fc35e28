"""Natural language -> calendar events: one LLM call through the gateway pipeline (so usage and cost are recorded
like any other request), structured output by JSON schema, then the calendar service maps and creates the events.

Used by `POST /api/v1/calendar/process-text` and by the webhook's `type: calendar_event`.
"""

import json
from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo

from asgiref.sync import async_to_sync, sync_to_async
from django.utils import timezone

from accounts.token_cache import CachedToken
from calendars.errors import CalendarExtractionInvalid
from calendars.schemas import EVENT_EXTRACTION_SCHEMA, EVENT_EXTRACTION_SCHEMA_NAME, extraction_instructions
from calendars.services import ExtractionResult, calendar_events_from_extraction, calendar_timezone_resolve
from common.sync_threads import own_sync_thread
from llm import pipeline
from llm.providers import ChatRequest, Message, Usage

RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": EVENT_EXTRACTION_SCHEMA_NAME, "schema": EVENT_EXTRACTION_SCHEMA, "strict": True},
}


@dataclass(frozen=True)
class TextProcessed:
    result: ExtractionResult
    usage: Usage
    cost_usd: Decimal | None
    provider: str
    model: str


async def acalendar_text_process(
    *,
    cached_token: CachedToken,
    text: str,
    request_id: str,
    endpoint: str,
    timezone_name: str | None = None,
    calendar_id: str = "primary",
    dry_run: bool = False,
    idempotency_key: str | None = None,
    model: str | None = None,
    source: str = "",
) -> TextProcessed:
    user = cached_token.token.user
    tz_name = await sync_to_async(calendar_timezone_resolve)(user=user, requested=timezone_name)
    now = timezone.now().astimezone(ZoneInfo(tz_name))
    call = pipeline.GatewayCall(
        cached=cached_token,
        endpoint=endpoint,
        request_id=request_id,
        chat=ChatRequest(
            model="",
            messages=[
                Message(role="system", content=extraction_instructions(now=now, timezone_name=tz_name)),
                Message(role="user", content=text),
            ],
            temperature=0,
            response_format=RESPONSE_FORMAT,
        ),
        requested_model=model,
        cache_flag=False,  # "next Tuesday" means another day tomorrow: never answer from the response cache
        type="calendar_event",
        source=source,
    )
    result = await pipeline.complete(call)
    try:
        extraction = json.loads(result.completion.text)
    except ValueError:
        # The answer itself is not returned: this endpoint is for events, not a way around the `llm` scope's limits.
        raise CalendarExtractionInvalid("The model did not answer with JSON.") from None
    processed = await sync_to_async(calendar_events_from_extraction)(
        user=user,
        extraction=extraction,
        timezone_name=tz_name,
        calendar_id=calendar_id,
        dry_run=dry_run,
        idempotency_key=idempotency_key,
    )
    return TextProcessed(
        result=processed,
        usage=result.usage,
        cost_usd=result.cost_usd,
        provider=result.route.provider,
        model=result.completion.model or result.route.model,
    )


def calendar_text_process(**kwargs) -> TextProcessed:
    """The same, for sync callers (DRF views)."""
    return async_to_sync(acalendar_text_process)(**kwargs)


async def webhook_calendar_event(cached_token: CachedToken, body, request_id: str) -> dict:
    """The webhook's `type: calendar_event` (registered in CalendarsConfig.ready): the prompt is the text."""
    from accounts.authentication import require_scope
    from calendars.config import google_config_get
    from common.formatting import money
    from llm.prompt_limits import check_prompt_length
    from llm.webhook_calls import usage_out

    require_scope(cached_token, "calendar")
    check_prompt_length(len(body.prompt))
    # The webhook is served by the lean API stack, whose sync calls share one thread: Google's client must not
    # run there (a hung Google call would hold up every other request's sync work, health checks included).
    async with own_sync_thread():
        await sync_to_async(google_config_get)()
        processed = await acalendar_text_process(
            cached_token=cached_token,
            text=body.prompt,
            request_id=request_id,
            endpoint="webhook",
            model=body.model,
            source=body.source,
        )
    return {
        "result": processed.result.to_dict(),
        "request_id": request_id,
        "provider": processed.provider,
        "model": processed.model,
        "usage": usage_out(processed.usage),
        "cost_usd": money(processed.cost_usd),
        "cached": False,
    }
