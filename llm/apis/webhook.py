"""`POST /api/v1/webhook`: the Flask-era contract `{prompt, type, source, language}`, now with usage and cost."""

import json
from contextlib import aclosing
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from common.errors import AppError
from common.request_id import current_request_id
from common.responses import api_error_body, api_error_response
from llm import pipeline
from llm.apis import streaming
from llm.apis.common import authenticate, check_method, money, no_cache_requested, parse_json, sse, validate
from llm.providers import Usage
from llm.webhook_calls import TYPE_HANDLERS, WebhookIn, build_call, usage_out


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
