"""OpenAI and any OpenAI-compatible server (Ollama, vLLM, LM Studio, OpenRouter) through `AsyncOpenAI`."""

import re
from collections.abc import AsyncIterator
from typing import Any

import openai
from openai import AsyncStream

from llm.providers.base import ChatRequest, Chunk, Completion, Message, ProviderError, Usage
from llm.providers.clients import SDKProvider
from llm.providers.errors import from_sdk_error


def _without_none(value):
    """A streamed tool-call delta without its null fields, as the SDK's `model_dump(exclude_none=True)` gave it."""
    if isinstance(value, dict):
        return {key: _without_none(item) for key, item in value.items() if item is not None}
    return value


def usage_from_openai(usage: dict | None) -> Usage | None:
    """Usage from the `usage` object of a completion or of the last streamed chunk (decoded JSON)."""
    if not usage:
        return None
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=usage.get("prompt_tokens") or 0,
        output_tokens=usage.get("completion_tokens") or 0,
        cached_input_tokens=prompt_details.get("cached_tokens") or 0,
        reasoning_tokens=completion_details.get("reasoning_tokens") or 0,
    )


def _message_dict(message: Message) -> dict[str, Any]:
    data: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.name:
        data["name"] = message.name
    if message.tool_call_id:
        data["tool_call_id"] = message.tool_call_id
    if message.tool_calls:
        data["tool_calls"] = message.tool_calls
    return data


def _params(request: ChatRequest) -> dict[str, Any]:
    params: dict[str, Any] = {"model": request.model, "messages": [_message_dict(m) for m in request.messages]}
    for name in ("temperature", "top_p", "max_tokens", "stop", "response_format", "tools", "tool_choice"):
        value = getattr(request, name)
        if value is not None:
            params[name] = value
    params.update(request.extra)
    return params


class OpenAIProvider(SDKProvider):
    name = "openai"
    label = "OpenAI"
    kind = "openai"
    sdk = openai
    api_key_setting = "OPENAI_API_KEY"
    base_url_setting = "OPENAI_BASE_URL"
    sdk_base_url = "https://api.openai.com/v1"
    model_setting = "OPENAI_MODEL"
    model_pattern = re.compile(r"^(gpt-|chatgpt-|o\d(?:$|-)|text-|davinci|babbage|ft:gpt)")
    model_hint = "gpt-*/o*"

    @classmethod
    def new_client(cls, *, base_url, api_key, http_client, timeout):
        # OpenAI-compatible servers often need no key, but the SDK insists on one (and would read OPENAI_API_KEY from
        # the environment if given None).
        return openai.AsyncOpenAI(
            api_key=api_key or "not-needed", base_url=base_url, max_retries=0, timeout=timeout, http_client=http_client
        )

    async def complete(self, request: ChatRequest) -> Completion:
        try:
            # cast_to=object: the SDK checks the status and maps errors as usual, then hands over the decoded JSON
            # instead of building its typed model (measured: ~6 % of a request's CPU here).
            response = await self._post("/chat/completions", _params(request), cast_to=object)
        except Exception as exc:
            raise from_sdk_error(exc, self.name) from exc
        choices = response.get("choices") if isinstance(response, dict) else None
        if not choices or not isinstance(choices[0], dict):
            raise ProviderError(f"{self.name} sent a response without choices.", code="upstream_bad_response")
        choice = choices[0]
        message = choice.get("message") or {}
        if not isinstance(message, dict):
            raise ProviderError(f"{self.name} sent a choice without a message.", code="upstream_bad_response")
        return Completion(
            text=message.get("content") or "",
            model=response.get("model") or request.model,
            finish_reason=choice.get("finish_reason"),
            response_id=response.get("id"),
            usage=usage_from_openai(response.get("usage")),
            tool_calls=message.get("tool_calls") or None,
            refusal=message.get("refusal") or None,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        params = _params(request)
        params["stream"] = True
        # Ask for usage ourselves: without it a streamed request cannot be billed exactly.
        params["stream_options"] = {**(params.get("stream_options") or {}), "include_usage": True}
        # AsyncStream[object]: the SDK's SSE reader and its error events as usual, each event as decoded JSON rather
        # than a typed chunk (building those was ~19 % of a streamed request's CPU here).
        async with self._streaming(
            "/chat/completions", params, cast_to=object, stream_cls=AsyncStream[object]
        ) as upstream:
            async for event in upstream:
                if not isinstance(event, dict):
                    raise ProviderError(
                        f"{self.name} sent a stream event djllm could not read.", code="upstream_bad_response"
                    )
                usage = usage_from_openai(event.get("usage"))
                choices = event.get("choices")
                if not choices:
                    if usage is not None:
                        yield Chunk(usage=usage, model=event.get("model"), response_id=event.get("id"))
                    continue
                choice = choices[0]
                delta = choice.get("delta") or {}
                tool_calls = delta.get("tool_calls")
                yield Chunk(
                    text=delta.get("content") or "",
                    finish_reason=choice.get("finish_reason"),
                    usage=usage,
                    model=event.get("model"),
                    response_id=event.get("id"),
                    tool_calls=[_without_none(call) for call in tool_calls] if tool_calls else None,
                    refusal=delta.get("refusal") or "",
                )
