"""`POST /api/v1/conversations/{id}/messages`: a user message sent with the conversation's history (trimmed to the
model's context window) through the gateway, the answer stored with it (llm/conversation_calls.py). A plain async
view on the fast path, not DRF."""

import json
from contextlib import aclosing
from datetime import datetime
from typing import Literal

from django.http import HttpRequest
from pydantic import BaseModel, ConfigDict, Field

from common.openapi import USAGE_EXAMPLE, Error, UsageOut
from common.operations import Body, openapi_operation
from common.request_id import current_request_id
from common.responses import api_error_body, json_response
from llm import pipeline
from llm.apis import streaming
from llm.apis.common import money, no_cache_requested, sse
from llm.conversation_calls import aconversation_or_404, message_text, store_exchange, store_session, with_history
from llm.endpoints import fast_endpoint, rate_headers
from llm.providers import ChatRequest, Message, Usage
from llm.schema import LLM_ERRORS, WebhookDelta
from llm.webhook_calls import usage_model

PATH = "/api/v1/conversations/{id}/messages"


class ConversationMessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    content: str = Field(
        min_length=1,
        description="The user's message (sent and stored as `$prompt` in the template's user text, for a "
        "conversation started from a template).",
    )
    model: str | None = Field(
        default=None, max_length=200, description="Default: the conversation's model, else your default model."
    )
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    cache: bool | None = None


class ConversationMessageOut(BaseModel):
    id: int
    role: Literal["user", "assistant"]
    content: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: str | None = Field(description="Decimal string, USD (assistant messages); null: not priced.")
    complete: bool = Field(description="False: the stream was cut short and the text is what arrived.")
    created_at: datetime


class ConversationReplyOut(BaseModel):
    conversation_id: int
    request_id: str
    message: ConversationMessageOut = Field(description="The stored answer.")
    provider: str
    model: str
    usage: UsageOut
    usage_estimated: bool
    cost_usd: str | None = Field(description="Decimal string; null when the model has no price.")
    cached: bool
    dropped_messages: int = Field(
        description="Older messages left out to fit the model's context window (summarised ones included, for a "
        "conversation with `summarize_dropped`)."
    )


class ConversationReplyDone(ConversationReplyOut):
    """The stream's last event: the fields of the plain answer."""

    done: bool = True


_EXAMPLE_MESSAGE = {
    "id": 12,
    "role": "assistant",
    "content": "Paris.",
    "model": "gpt-4o-mini-2024-07-18",
    "input_tokens": 30,
    "output_tokens": 2,
    "cost_usd": "0.0000057",
    "complete": True,
    "created_at": "2026-11-30T10:00:00Z",
}
CONVERSATION_MESSAGES = {
    "path": PATH,
    "method": "post",
    "operation_id": "conversations_messages_create",
    "tags": ("conversations",),
    "summary": "Send a message in a conversation",
    "description": (
        "Sends the conversation's system prompt, its history and `content` to the model and stores both messages "
        "with the answer. History that outgrows the model's context window is trimmed: the system prompt and the "
        "newest turns are kept (`dropped_messages` says how many older ones were left out; with `summarize_dropped` "
        "they are summarised by one more call, its own usage record of type `summary`). One usage record, "
        'linked to the conversation. `stream: true` answers SSE: `{"delta": ...}` events, then one '
        '`{"done": true, ...}` event with the stored message, usage and cost (or an error event). Another user\'s '
        "conversation is not found."
    ),
    "parameters": (
        {
            "name": "id",
            "in": "path",
            "required": True,
            "schema": {"type": "integer", "minimum": 0, "maximum": 10**18 - 1},
            "description": "Conversation.",
        },
    ),
    "request_example": {"content": "And its capital?"},
    "responses": {
        200: Body(
            "The answer (or an SSE stream of deltas).",
            model=ConversationReplyOut,
            example={
                "conversation_id": 3,
                "request_id": "3f2a9c0e",
                "message": _EXAMPLE_MESSAGE,
                "provider": "openai",
                "model": "gpt-4o-mini-2024-07-18",
                "usage": USAGE_EXAMPLE,
                "usage_estimated": False,
                "cost_usd": "0.0000057",
                "cached": False,
                "dropped_messages": 0,
            },
            stream='`{"delta": ...}` events, then one `{"done": true, ...}` event; an error object if the '
            "upstream fails mid-stream.",
            events=(WebhookDelta, ConversationReplyDone, Error),
        )
    },
    "errors": (*LLM_ERRORS, 404),
}


def _message_out(message) -> ConversationMessageOut:
    return ConversationMessageOut(
        id=message.pk,
        role=message.role,
        content=message.content,
        model=message.model,
        input_tokens=message.input_tokens,
        output_tokens=message.output_tokens,
        cost_usd=money(message.cost_usd),
        complete=message.complete,
        created_at=message.created_at,
    )


@openapi_operation(request=ConversationMessageIn, **CONVERSATION_MESSAGES)
@fast_endpoint(body=ConversationMessageIn)
async def conversation_messages(request: HttpRequest, cached_token, body: ConversationMessageIn, pk: str):
    pk = int(pk)
    request_id = current_request_id()
    conversation = await aconversation_or_404(cached_token, pk)
    content = message_text(conversation, body.content)
    call = pipeline.GatewayCall(
        cached=cached_token,
        endpoint="conversation",
        request_id=request_id,
        chat=ChatRequest(
            model="",
            messages=[Message(role="user", content=content)],
            temperature=body.temperature,
            max_tokens=body.max_tokens,
        ),
        requested_model=body.model,
        cache_flag=body.cache,
        no_cache_header=no_cache_requested(request),
    )
    dropped = await with_history(call, conversation)
    if body.stream:
        session = await streaming.open_stream(request, call)
        events = _events(session, conversation.pk, content, request_id, dropped)
        return rate_headers(streaming.event_stream_response(request, events), session.rate)
    result = await pipeline.complete(call)
    model = result.completion.model or result.route.model
    answered = await store_exchange(pk, content, result.completion.text, model, result.usage, result.cost_usd)
    payload = ConversationReplyOut(
        conversation_id=pk,
        request_id=request_id,
        message=_message_out(answered),
        provider=result.route.provider,
        model=model,
        usage=usage_model(result.usage),
        usage_estimated=result.usage_estimated,
        cost_usd=money(result.cost_usd),
        cached=result.cached,
        dropped_messages=dropped,
    )
    return rate_headers(json_response(payload), result.rate)


async def _events(session: pipeline.StreamSession, conversation_id: int, content: str, request_id: str, dropped: int):
    stored = False
    try:
        async with aclosing(session.chunks()) as chunks:
            async for chunk in chunks:
                if chunk.text:
                    yield sse(WebhookDelta(delta=chunk.text).model_dump_json())
        stored = True
        answered = await store_session(session, conversation_id, content, session.error is None)
        if session.error is not None:
            yield sse(json.dumps(api_error_body(session.error)))
            return
        done = ConversationReplyDone(
            conversation_id=conversation_id,
            request_id=request_id,
            message=_message_out(answered),
            provider=session.route.provider,
            model=session.upstream_model,
            usage=usage_model(session.usage or Usage()),
            usage_estimated=session.usage_estimated,
            cost_usd=money(session.cost_usd),
            cached=session.cached,
            dropped_messages=dropped,
        )
        yield sse(done.model_dump_json())
    finally:
        if not stored:  # the client hung up: keep what arrived
            await store_session(session, conversation_id, content, False)


__all__ = ["conversation_messages"]
