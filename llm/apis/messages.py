"""`POST /v1/messages` and `POST /v1/messages/count_tokens`: Anthropic-compatible, so unmodified Anthropic SDKs
just work. The translation both ways is `llm/anthropic_messages.py`; the gateway is the one of
`/v1/chat/completions`."""

from typing import Any

from django.http import HttpRequest, HttpResponse

from common.operations import openapi_operation
from common.request_id import current_request_id
from common.responses import json_response
from llm import anthropic_messages, messages_schema, pipeline
from llm.apis import streaming
from llm.apis.common import check_prompt_length, no_cache_requested, prompt_chars
from llm.endpoints import fast_endpoint, response_headers
from llm.messages_schema import CountTokensIn, CountTokensOut, MessagesIn
from llm.pricing import input_token_bound


def _prompt_chars(body: CountTokensIn) -> int:
    """What the prompt limit counts, as on chat completions: the system prompt, every block, the tools."""
    total = prompt_chars(body.system) + prompt_chars(body.tools) + prompt_chars(body.tool_choice)
    return total + sum(prompt_chars(m.content) for m in body.messages)


@openapi_operation(request=MessagesIn, **messages_schema.MESSAGES)
@fast_endpoint(body=MessagesIn, errors="anthropic", with_data=True)
async def messages(request: HttpRequest, cached_token, body: MessagesIn, data: dict[str, Any]) -> HttpResponse:
    check_prompt_length(_prompt_chars(body))
    call = pipeline.GatewayCall(
        cached=cached_token,
        endpoint="messages",
        request_id=current_request_id(),
        chat=anthropic_messages.chat_request(body, data),
        requested_model=anthropic_messages.requested_model(body.model),
        cache_flag=body.cache,
        no_cache_header=no_cache_requested(request),
    )
    if body.stream:
        session = await streaming.open_stream(request, call)
        events = anthropic_messages.stream_events(session, body.model)
        return response_headers(streaming.event_stream_response(request, events), session.rate, cached=session.cached)
    result = await pipeline.complete(call)
    payload = anthropic_messages.message(result.completion, result.usage)
    return response_headers(json_response(payload), result.rate, cached=result.cached, cost=result.cost_usd)


@openapi_operation(request=CountTokensIn, **messages_schema.COUNT_TOKENS)
@fast_endpoint(body=CountTokensIn, errors="anthropic", with_data=True)
async def count_tokens(request: HttpRequest, cached_token, body: CountTokensIn, data: dict[str, Any]) -> HttpResponse:
    # The bound budget reservations hold (llm/pricing.py), over the translated request: never below the real count.
    estimate = input_token_bound(anthropic_messages.chat_request(body, data))
    return json_response(CountTokensOut(input_tokens=estimate))
