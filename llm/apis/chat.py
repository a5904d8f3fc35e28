"""`POST /v1/chat/completions` and `GET /v1/models`: OpenAI-compatible, so unmodified OpenAI SDKs just work."""

import json
import time
import uuid
from contextlib import aclosing
from typing import Any, Literal

from django.http import HttpRequest, HttpResponse
from pydantic import BaseModel, ConfigDict, Field

from common.errors import InvalidRequest
from common.operations import openapi_operation
from common.request_id import current_request_id
from common.responses import json_response, openai_error_body
from llm import pipeline, schema
from llm.apis import streaming
from llm.apis.common import check_prompt_length, no_cache_requested, prompt_chars, sse
from llm.endpoints import fast_endpoint, response_headers
from llm.providers import ChatRequest, Message, Usage
from llm.schema import (
    ChatCompletionChunkOut,
    ChatCompletionOut,
    ChatMessageOut,
    ChatUsageOut,
    ChoiceOut,
    ChunkChoiceOut,
    ChunkDeltaOut,
    ModelListOut,
    ModelOut,
)
from llm.selectors import amodel_catalog

PASSTHROUGH = (
    "seed",
    "user",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "parallel_tool_calls",
    "reasoning_effort",
    "metadata",
    "service_tier",
)


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChatCompletionIn(BaseModel):
    """OpenAI's chat completion request. `cache` is djllm's own switch for the response cache."""

    model_config = ConfigDict(extra="allow", strict=True)
    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessageIn] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    n: int | None = Field(default=None, ge=1, le=1, description="Only 1 is supported.")
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    cache: bool | None = Field(default=None, description="djllm: force (true) or bypass (false) the response cache.")


def chat_usage(usage: Usage) -> ChatUsageOut:
    return ChatUsageOut(
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        total_tokens=usage.input_tokens + usage.output_tokens,
        prompt_tokens_details={"cached_tokens": usage.cached_input_tokens},
        completion_tokens_details={"reasoning_tokens": usage.reasoning_tokens},
    )


def _chat_request(body: ChatCompletionIn) -> ChatRequest:
    extra = {name: value for name, value in (body.model_extra or {}).items() if name in PASSTHROUGH}
    stop = [body.stop] if isinstance(body.stop, str) else body.stop
    return ChatRequest(
        model="",
        messages=[
            Message(
                role=m.role,
                content=m.content if m.content is not None else "",
                name=m.name,
                tool_call_id=m.tool_call_id,
                tool_calls=m.tool_calls,
            )
            for m in body.messages
        ],
        temperature=body.temperature,
        top_p=body.top_p,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        stop=stop,
        response_format=body.response_format,
        tools=body.tools,
        tool_choice=body.tool_choice,
        extra=extra,
    )


def _prompt_chars(body: ChatCompletionIn) -> int:
    """Everything the upstream is sent as input: every message (system ones too), their non-text parts and tool
    calls, the tools, the tool choice and the response format's schema."""
    total = sum(prompt_chars(m.content) + prompt_chars(m.tool_calls) for m in body.messages)
    return total + prompt_chars(body.tools) + prompt_chars(body.tool_choice) + prompt_chars(body.response_format)


@openapi_operation(request=ChatCompletionIn, **schema.CHAT_COMPLETIONS)
@fast_endpoint(body=ChatCompletionIn, errors="openai")
async def chat_completions(request: HttpRequest, cached_token, body: ChatCompletionIn) -> HttpResponse:
    check_prompt_length(_prompt_chars(body))
    call = pipeline.GatewayCall(
        cached=cached_token,
        endpoint="chat.completions",
        request_id=current_request_id(),
        chat=_chat_request(body),
        requested_model=body.model,
        cache_flag=body.cache,
        no_cache_header=no_cache_requested(request),
    )
    if body.stream:
        session = await streaming.open_stream(request, call)
        include_usage = bool((body.stream_options or {}).get("include_usage"))
        response = streaming.event_stream_response(request, _sse_chunks(session, body.model, include_usage))
        return response_headers(response, session.rate, cached=session.cached)
    result = await pipeline.complete(call)
    completion = result.completion
    payload = ChatCompletionOut(
        id=completion.response_id or f"chatcmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=completion.model,
        choices=[
            ChoiceOut(
                message=ChatMessageOut(
                    content=completion.text, refusal=completion.refusal, tool_calls=completion.tool_calls or None
                ),
                finish_reason=completion.finish_reason,
            )
        ],
        usage=chat_usage(result.usage),
    )
    return response_headers(json_response(payload), result.rate, cached=result.cached, cost=result.cost_usd)


async def _sse_chunks(session: pipeline.StreamSession, requested_model: str, include_usage: bool):
    chunk_id, created, sent_role = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), False

    def frame(choices: list[ChunkChoiceOut], model=None, usage: ChatUsageOut | None = None) -> bytes:
        chunk = ChatCompletionChunkOut(
            id=chunk_id, created=created, model=model or requested_model, choices=choices, usage=usage
        )
        return sse(chunk.model_dump_json())

    model = None
    async with aclosing(session.chunks()) as chunks:
        async for chunk in chunks:
            model = chunk.model or model
            role, sent_role = None if sent_role else "assistant", True
            if role or chunk.text or chunk.refusal or chunk.tool_calls or chunk.finish_reason:
                delta = ChunkDeltaOut(
                    role=role,
                    content=chunk.text or None,
                    refusal=chunk.refusal or None,
                    tool_calls=chunk.tool_calls or None,
                )
                yield frame([ChunkChoiceOut(delta=delta, finish_reason=chunk.finish_reason)], model)
    if session.error is not None:
        yield sse(json.dumps(openai_error_body(session.error)))
        return
    if include_usage and session.usage is not None:
        yield frame([], model, usage=chat_usage(session.usage))
    yield b"data: [DONE]\n\n"


@openapi_operation(**schema.MODELS)
@fast_endpoint(methods=("GET",), errors="openai")
async def models(request: HttpRequest, cached_token) -> HttpResponse:
    data = [ModelOut(id=model.id, created=0, owned_by=model.provider) for model in await amodel_catalog()]
    return json_response(ModelListOut(data=data))


__all__ = ["ChatCompletionIn", "InvalidRequest", "chat_completions", "models"]
