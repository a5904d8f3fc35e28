"""`POST /api/v1/webhook`: the Flask-era contract `{prompt, type, source, language}`, now with usage and cost."""

import json
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from typing import Any, Literal

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from pydantic import BaseModel, ConfigDict, Field

from common.errors import AppError, InvalidRequest
from common.request_id import current_request_id
from common.responses import api_error_body, api_error_response
from llm import pipeline
from llm.apis import streaming
from llm.apis.common import (
    authenticate,
    check_method,
    check_prompt_length,
    money,
    no_cache_requested,
    parse_json,
    sse,
    validate,
)
from llm.providers import ChatRequest, Message, Usage
from llm.templates_store import arender

TYPES = ("summary", "keywords", "sentiment", "entities", "translation", "custom", "calendar_event")
SOURCES = ("excel", "email", "meeting", "chat", "document", "other")


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    prompt: str = Field(min_length=1, description="The text to work on.")
    type: Literal[TYPES] = Field(default="custom", description="What to do with the text.")  # type: ignore[valid-type]
    source: Literal[SOURCES] = Field(default="other", description="Where the text comes from.")  # type: ignore[valid-type]
    language: str | None = Field(default=None, max_length=50, description="Output language; default: preferences.")
    provider: Literal["openai", "anthropic", "local"] | None = None
    model: str | None = Field(default=None, max_length=200)
    system: str | None = Field(default=None, description="Replaces the template's instruction.")
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: list[str] | None = None
    stream: bool = False
    cache: bool | None = None


def usage_out(usage: Usage) -> dict[str, int]:
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cached_input_tokens": usage.cached_input_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


# Types handled by another app instead of a prompt template (registered in that app's AppConfig.ready()), e.g.
# `calendar_event` by the calendars app: async handler(cached_token, body, request_id) -> the JSON payload.
TYPE_HANDLERS: dict[str, Callable[[Any, "WebhookIn", str], Awaitable[dict[str, Any]]]] = {}


def register_type_handler(type_name: str, handler) -> None:
    TYPE_HANDLERS[type_name] = handler


async def build_call(
    cached_token, body: WebhookIn, *, request_id: str, endpoint: str, no_cache: bool = False, batch_id: str = ""
) -> pipeline.GatewayCall:
    """Shared by the webhook and the batch API: the template turns type/source/language into messages."""
    if body.type == "calendar_event":
        raise InvalidRequest(
            "type `calendar_event` is served by POST /api/v1/webhook (one text at a time) and "
            "/api/v1/calendar/process-text, not here."
            if "calendar_event" in TYPE_HANDLERS
            else "type `calendar_event` is not available: the calendar integration is not installed.",
            code="type_not_available",
            param="type",
        )
    check_prompt_length(len(body.prompt) + len(body.system or ""))  # `system` replaces the template's instruction
    language = body.language or (cached_token.preferences.language if cached_token.preferences else "")
    rendered = await arender(
        type=body.type, source=body.source, prompt=body.prompt, language=language, system_override=body.system
    )
    messages = ([Message(role="system", content=rendered.system)] if rendered.system else []) + [
        Message(role="user", content=rendered.user)
    ]
    return pipeline.GatewayCall(
        cached=cached_token,
        endpoint=endpoint,
        request_id=request_id,
        chat=ChatRequest(
            model="",
            messages=messages,
            temperature=body.temperature,
            top_p=body.top_p,
            max_tokens=body.max_tokens,
            stop=body.stop,
        ),
        requested_model=body.model,
        provider_hint=body.provider,
        cache_flag=body.cache,
        no_cache_header=no_cache,
        type=body.type,
        source=body.source,
        batch_id=batch_id,
    )


def result_payload(result: pipeline.GatewayResult, request_id: str) -> dict[str, Any]:
    return {
        "result": result.completion.text,
        "request_id": request_id,
        "provider": result.route.provider,
        "model": result.completion.model or result.route.model,
        "usage": usage_out(result.usage),
        "usage_estimated": result.usage_estimated,
        "cost_usd": money(result.cost_usd),
        "cached": result.cached,
        "latency_ms": result.latency_ms,
    }


@csrf_exempt
async def webhook(request: HttpRequest) -> HttpResponse:
    request_id = current_request_id()
    try:
        check_method(request, "POST")
        cached_token = await authenticate(request)
        body = validate(WebhookIn, parse_json(request))
        handler = TYPE_HANDLERS.get(body.type)
        if handler is not None:
            return JsonResponse(await handler(cached_token, body, request_id))
        call = await build_call(
            cached_token, body, request_id=request_id, endpoint="webhook", no_cache=no_cache_requested(request)
        )
        if body.stream:
            session = await streaming.open_stream(request, call)
            response = streaming.event_stream_response(request, _events(session, request_id))
            for name, value in session.rate.headers().items() if session.rate else ():
                response[name] = value
            return response
        result = await pipeline.complete(call)
    except AppError as error:
        return api_error_response(error)
    response = JsonResponse(result_payload(result, request_id))
    for name, value in result.rate.headers().items() if result.rate else ():
        response[name] = value
    return response


async def _events(session: pipeline.StreamSession, request_id: str):
    """SSE: `{"delta": "..."}` events, then one `{"done": true, ...}` with usage and cost (or `{"error": ...}`)."""
    async with aclosing(session.chunks()) as chunks:
        async for chunk in chunks:
            if chunk.text:
                yield sse(json.dumps({"delta": chunk.text}))
    if session.error is not None:
        yield sse(json.dumps(api_error_body(session.error)))
        return
    yield sse(
        json.dumps(
            {
                "done": True,
                "result": "".join(session.text),
                "request_id": request_id,
                "provider": session.route.provider,
                "model": session.upstream_model,
                "usage": usage_out(session.usage or Usage()),
                "usage_estimated": session.usage_estimated,
                "cost_usd": money(session.cost_usd),
                "cached": session.cached,
            }
        )
    )
