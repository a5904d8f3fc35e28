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


def usage_from_responses(usage: dict | None) -> Usage | None:
    """Usage from a Responses API `usage` object (its input tokens include the cached ones, as chat's do)."""
    if not usage:
        return None
    return Usage(
        input_tokens=usage.get("input_tokens") or 0,
        output_tokens=usage.get("output_tokens") or 0,
        cached_input_tokens=(usage.get("input_tokens_details") or {}).get("cached_tokens") or 0,
        reasoning_tokens=(usage.get("output_tokens_details") or {}).get("reasoning_tokens") or 0,
    )


def _responses_finish(response: dict, tool_calls: bool) -> str:
    if response.get("status") == "incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason")
        return "content_filter" if reason == "content_filter" else "length"
    return "tool_calls" if tool_calls else "stop"


def _responses_bad(name: str, what: str) -> ProviderError:
    return ProviderError(f"{name} sent {what} djllm could not read.", code="upstream_bad_response")


def completion_from_responses(response: Any, model: str, name: str) -> Completion:
    """A Responses API answer as a completion: its `output_text` parts, refusals and `function_call` items."""
    if not isinstance(response, dict) or not isinstance(response.get("output"), list):
        raise _responses_bad(name, "a response without output")
    texts, refusals, calls = [], [], []
    for item in response["output"]:
        if not isinstance(item, dict):
            raise _responses_bad(name, "an output item")
        if item.get("type") == "message":
            for part in item.get("content") or ():
                if isinstance(part, dict) and part.get("type") == "output_text":
                    texts.append(str(part.get("text") or ""))
                elif isinstance(part, dict) and part.get("type") == "refusal":
                    refusals.append(str(part.get("refusal") or ""))
        elif item.get("type") == "function_call":
            function = {"name": item.get("name") or "", "arguments": item.get("arguments") or ""}
            calls.append({"id": item.get("call_id") or item.get("id"), "type": "function", "function": function})
    return Completion(
        text="".join(texts),
        model=response.get("model") or model,
        finish_reason=_responses_finish(response, bool(calls)),
        response_id=response.get("id"),
        usage=usage_from_responses(response.get("usage")),
        tool_calls=calls or None,
        refusal="".join(refusals) or None,
    )


def _upstream_failure(name: str, event: dict) -> ProviderError:
    error = event.get("error") or (event.get("response") or {}).get("error") or event
    message = error.get("message") if isinstance(error, dict) else None
    upstream_type = error.get("code") if isinstance(error, dict) else None
    return ProviderError(
        f"{name} failed mid-stream: {message or 'no message'}", code="upstream_error", upstream_type=upstream_type
    )


class _ResponsesChunks:
    """Responses stream events as chunks, one per event, each carrying the event as it came (`Chunk.event`, relayed
    to the client) and what djllm reads from it: text and refusal deltas, each function call opened (its call id
    and name) then its arguments, and the finish with the usage last."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: dict[int, int] = {}  # output index -> tool-call index

    def chunk(self, event: dict) -> Chunk:
        kind = event.get("type")
        if kind == "response.output_text.delta":
            return Chunk(text=str(event.get("delta") or ""), event=event)
        if kind == "response.refusal.delta":
            return Chunk(refusal=str(event.get("delta") or ""), event=event)
        if kind == "response.output_item.added" and (event.get("item") or {}).get("type") == "function_call":
            item = event["item"]
            index = self.calls.setdefault(event.get("output_index", len(self.calls)), len(self.calls))
            function = {"name": item.get("name") or "", "arguments": item.get("arguments") or ""}
            call = {"index": index, "id": item.get("call_id") or item.get("id"), "type": "function"}
            return Chunk(tool_calls=[{**call, "function": function}], event=event)
        if kind == "response.function_call_arguments.delta":
            index = self.calls.get(event.get("output_index"))
            if index is None:
                raise _responses_bad(self.name, "arguments for a function call it never opened")
            delta = {"index": index, "function": {"arguments": str(event.get("delta") or "")}}
            return Chunk(tool_calls=[delta], event=event)
        if kind in ("response.completed", "response.incomplete"):
            response = event.get("response") or {}
            return Chunk(
                finish_reason=_responses_finish(response, bool(self.calls)),
                usage=usage_from_responses(response.get("usage")),
                model=response.get("model"),
                response_id=response.get("id"),
                event=event,
            )
        return Chunk(event=event)  # created, in_progress, reasoning, the `.done` events...: relayed as they are


async def _responses_stream(reader: _ResponsesChunks, events: AsyncIterator) -> AsyncIterator[Chunk]:
    """Every event as a chunk. A failure the upstream reports in-band (`error`, `response.failed`) is relayed
    first and raised after: at once for `response.failed` (the stream's last word), at the end for `error` (a
    `response.failed` may still follow it)."""
    failure = None
    async for event in events:
        if not isinstance(event, dict):
            raise _responses_bad(reader.name, "a stream event")
        yield reader.chunk(event)
        kind = event.get("type")
        if kind == "response.failed":
            raise _upstream_failure(reader.name, event)
        if kind == "error" and failure is None:
            failure = _upstream_failure(reader.name, event)
    if failure is not None:
        raise failure


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
    responses_api = True  # serves OpenAI's Responses API: `/v1/responses` requests are sent there as they are

    @classmethod
    def new_client(cls, *, base_url, api_key, http_client, timeout):
        # OpenAI-compatible servers often need no key, but the SDK insists on one (and would read OPENAI_API_KEY from
        # the environment if given None).
        return openai.AsyncOpenAI(
            api_key=api_key or "not-needed", base_url=base_url, max_retries=0, timeout=timeout, http_client=http_client
        )

    def _responses_params(self, request: ChatRequest) -> dict[str, Any] | None:
        if request.responses_native is None or not self.serves_responses:
            return None
        return {**request.responses_native, "model": request.model}

    async def complete(self, request: ChatRequest) -> Completion:
        native = self._responses_params(request)
        if native is not None:
            try:
                response = await self._post("/responses", native, cast_to=object)
            except Exception as exc:
                raise from_sdk_error(exc, self.name) from exc
            return completion_from_responses(response, request.model, self.name)
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
        native = self._responses_params(request)
        if native is not None:
            params = {**native, "stream": True}
            async with self._streaming("/responses", params, cast_to=object, stream_cls=AsyncStream[object]) as events:
                async for chunk in _responses_stream(_ResponsesChunks(self.name), events):
                    yield chunk
            return
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
