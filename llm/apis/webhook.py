"""`POST /api/v1/webhook`: the Flask-era contract `{prompt, type, source, language}`, now with usage and cost."""

import json
from contextlib import aclosing

from django.http import HttpRequest, HttpResponse

from common.operations import openapi_operation
from common.request_id import current_request_id
from common.responses import api_error_body, json_response
from llm import pipeline, schema
from llm.apis import streaming
from llm.apis.common import money, no_cache_requested, sse
from llm.conversation_calls import aconversation_or_404, store_exchange, stored_stream, with_history
from llm.endpoints import fast_endpoint, rate_headers
from llm.providers import Usage
from llm.schema import WebhookDelta, WebhookDone, WebhookEventOut, WebhookOut
from llm.webhook_calls import TYPE_HANDLERS, WebhookIn, build_call, require_prompt, usage_model


def result_payload(result: pipeline.GatewayResult, request_id: str) -> WebhookOut:
    return WebhookOut(
        result=result.completion.text,
        request_id=request_id,
        provider=result.route.provider,
        model=result.completion.model or result.route.model,
        usage=usage_model(result.usage),
        usage_estimated=result.usage_estimated,
        cost_usd=money(result.cost_usd),
        cached=result.cached,
        latency_ms=result.latency_ms,
    )


@openapi_operation(request=WebhookIn, **schema.WEBHOOK)
@fast_endpoint(body=WebhookIn)
async def webhook(request: HttpRequest, cached_token, body: WebhookIn) -> HttpResponse:
    request_id = current_request_id()
    handler = TYPE_HANDLERS.get(body.type)
    if handler is not None:
        require_prompt(body)
        return json_response(WebhookEventOut.model_validate(await handler(cached_token, body, request_id)))
    conversation = None
    if body.conversation_id is not None:
        conversation = await aconversation_or_404(cached_token, body.conversation_id)
    call = await build_call(
        cached_token, body, request_id=request_id, endpoint="webhook", no_cache=no_cache_requested(request)
    )
    if conversation is not None:
        await with_history(call, conversation)
    if body.stream:
        session = await streaming.open_stream(request, call)
        events = _events(session, request_id)
        if conversation is not None:
            events = stored_stream(events, session, conversation.pk, body.prompt)
        return rate_headers(streaming.event_stream_response(request, events), session.rate)
    result = await pipeline.complete(call)
    if conversation is not None:
        model = result.completion.model or result.route.model
        await store_exchange(conversation.pk, body.prompt, result.completion.text, model, result.usage, result.cost_usd)
    return rate_headers(json_response(result_payload(result, request_id)), result.rate)


async def _events(session: pipeline.StreamSession, request_id: str):
    """SSE: `{"delta": "..."}` events, then one `{"done": true, ...}` with usage and cost (or `{"error": ...}`)."""
    async with aclosing(session.chunks()) as chunks:
        async for chunk in chunks:
            if chunk.text:
                yield sse(WebhookDelta(delta=chunk.text).model_dump_json())
    if session.error is not None:
        yield sse(json.dumps(api_error_body(session.error)))
        return
    done = WebhookDone(
        result="".join(session.text),
        request_id=request_id,
        provider=session.route.provider,
        model=session.upstream_model,
        usage=usage_model(session.usage or Usage()),
        usage_estimated=session.usage_estimated,
        cost_usd=money(session.cost_usd),
        cached=session.cached,
    )
    yield sse(done.model_dump_json())
