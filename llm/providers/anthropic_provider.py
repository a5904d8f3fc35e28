"""Anthropic through `AsyncAnthropic`, translating djllm's OpenAI-shaped request both ways."""

import json
from collections.abc import AsyncIterator
from typing import Any

from anthropic import AsyncStream
from anthropic.types import Message as AnthropicMessage
from anthropic.types import RawMessageStreamEvent
from django.conf import settings

from llm.providers.base import ChatRequest, Chunk, Completion, Message, ProviderError, Usage
from llm.providers.clients import SDKProvider
from llm.providers.errors import from_sdk_error, redact

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "pause_turn": "stop",
    "refusal": "content_filter",
}
STRUCTURED_TOOL = "structured_output"


def usage_from_anthropic(input_tokens, output_tokens, cache_read, cache_write) -> Usage:
    """Anthropic's `input_tokens` exclude cache reads and writes; djllm's Usage counts all prompt tokens."""
    cache_read, cache_write, input_tokens = cache_read or 0, cache_write or 0, input_tokens or 0
    return Usage(
        input_tokens=input_tokens + cache_read + cache_write,
        output_tokens=output_tokens or 0,
        cached_input_tokens=cache_read,
        cache_write_tokens=cache_write,
    )


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [] if isinstance(part, dict))


def _content_blocks(content: Any) -> Any:
    if isinstance(content, str) or content is None:
        return content or ""
    blocks = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif kind == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            if url.startswith("data:"):
                media_type, _, data = url[5:].partition(";base64,")
                blocks.append({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}})
            else:
                blocks.append({"type": "image", "source": {"type": "url", "url": url}})
    return blocks


def _messages(messages: list[Message]) -> tuple[str | None, list[dict]]:
    system_parts, out = [], []
    for message in messages:
        if message.role in ("system", "developer"):
            system_parts.append(_text_of(message.content))
        elif message.role == "tool":
            block = {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": _text_of(message.content)}
            out.append({"role": "user", "content": [block]})
        elif message.role == "assistant" and message.tool_calls:
            blocks = [{"type": "text", "text": _text_of(message.content)}] if message.content else []
            for call in message.tool_calls:
                function = call.get("function", {})
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call.get("id"),
                        "name": function.get("name"),
                        "input": json.loads(function.get("arguments") or "{}"),
                    }
                )
            out.append({"role": "assistant", "content": blocks})
        else:
            out.append(
                {"role": "user" if message.role == "user" else "assistant", "content": _content_blocks(message.content)}
            )
    return ("\n\n".join(p for p in system_parts if p) or None), out


def _tool_choice(choice: Any) -> dict | None:
    if choice is None:
        return None
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "tool", "name": choice["function"]["name"]}
    return None


def params_for(request: ChatRequest) -> tuple[dict[str, Any], bool]:
    """Anthropic params, and whether structured output is emulated with a forced tool."""
    system, messages = _messages(request.messages)
    params: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "max_tokens": request.max_tokens or settings.ANTHROPIC_DEFAULT_MAX_TOKENS,
    }
    if system:
        params["system"] = system
    if request.temperature is not None:
        params["temperature"] = min(request.temperature, 1.0)  # Anthropic's range is 0..1
    if request.top_p is not None:
        params["top_p"] = request.top_p
    if request.stop:
        params["stop_sequences"] = request.stop
    structured = False
    fmt = request.response_format or {}
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        params["tools"] = [
            {
                "name": STRUCTURED_TOOL,
                "description": spec.get("description")
                or f"Answer with a JSON object matching the schema {spec.get('name', '')}.".strip(),
                "input_schema": spec.get("schema") or {"type": "object"},
            }
        ]
        params["tool_choice"] = {"type": "tool", "name": STRUCTURED_TOOL}
        structured = True
    elif request.tools:
        params["tools"] = [
            {
                "name": t["function"]["name"],
                "description": t["function"].get("description", ""),
                "input_schema": t["function"].get("parameters") or {"type": "object", "properties": {}},
            }
            for t in request.tools
            if t.get("type") == "function"
        ]
        choice = _tool_choice(request.tool_choice)
        if choice:
            params["tool_choice"] = choice
    return params, structured


class AnthropicProvider(SDKProvider):
    kind = "anthropic"

    async def complete(self, request: ChatRequest) -> Completion:
        params, structured = params_for(request)
        try:
            response = await self._post("/v1/messages", params, cast_to=AnthropicMessage)
        except Exception as exc:
            raise from_sdk_error(exc, self.name) from exc
        texts, tool_calls = [], []
        for block in response.content:
            if block.type == "text":
                texts.append(block.text)
            elif block.type == "tool_use":
                if structured and block.name == STRUCTURED_TOOL:
                    texts.append(json.dumps(block.input))
                else:
                    tool_calls.append(
                        {
                            "id": block.id,
                            "type": "function",
                            "function": {"name": block.name, "arguments": json.dumps(block.input)},
                        }
                    )
        u = response.usage
        finish = STOP_REASONS.get(response.stop_reason or "", response.stop_reason)
        if structured and finish == "tool_calls":
            finish = "stop"
        return Completion(
            text="".join(texts),
            model=response.model or request.model,
            finish_reason=finish,
            response_id=response.id,
            usage=usage_from_anthropic(
                u.input_tokens, u.output_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens
            ),
            tool_calls=tool_calls or None,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        params, structured = params_for(request)
        params["stream"] = True
        model, response_id = request.model, None
        counts = {"input": 0, "output": 0, "read": 0, "write": 0}
        tool_index: dict[int, int] = {}
        upstream = None
        try:
            upstream = await self._post(
                "/v1/messages", params, cast_to=AnthropicMessage, stream_cls=AsyncStream[RawMessageStreamEvent]
            )
            async for event in upstream:
                kind = event.type
                if kind == "message_start":
                    message = event.message
                    model, response_id = message.model or model, message.id
                    u = message.usage
                    counts.update(
                        input=u.input_tokens or 0,
                        output=u.output_tokens or 0,
                        read=u.cache_read_input_tokens or 0,
                        write=u.cache_creation_input_tokens or 0,
                    )
                    # Partial usage (input known, output so far) in case the stream is cut before message_delta.
                    yield Chunk(
                        usage=usage_from_anthropic(counts["input"], counts["output"], counts["read"], counts["write"]),
                        model=model,
                        response_id=response_id,
                    )
                elif kind == "content_block_start" and event.content_block.type == "tool_use" and not structured:
                    position = tool_index.setdefault(event.index, len(tool_index))
                    yield Chunk(
                        tool_calls=[
                            {
                                "index": position,
                                "id": event.content_block.id,
                                "type": "function",
                                "function": {"name": event.content_block.name, "arguments": ""},
                            }
                        ],
                        model=model,
                        response_id=response_id,
                    )
                elif kind == "content_block_delta":
                    delta = event.delta
                    if delta.type == "text_delta":
                        yield Chunk(text=delta.text, model=model, response_id=response_id)
                    elif delta.type == "input_json_delta":
                        if structured:
                            yield Chunk(text=delta.partial_json, model=model, response_id=response_id)
                        else:
                            yield Chunk(
                                tool_calls=[
                                    {
                                        "index": tool_index.get(event.index, 0),
                                        "function": {"arguments": delta.partial_json},
                                    }
                                ],
                                model=model,
                                response_id=response_id,
                            )
                elif kind == "message_delta":
                    u = event.usage
                    # message_delta counts are cumulative: they replace, never add to, what message_start said.
                    counts["output"] = u.output_tokens if u.output_tokens is not None else counts["output"]
                    for field, attr in (
                        ("input", "input_tokens"),
                        ("read", "cache_read_input_tokens"),
                        ("write", "cache_creation_input_tokens"),
                    ):
                        value = getattr(u, attr, None)
                        if value is not None:
                            counts[field] = value
                    finish = STOP_REASONS.get(event.delta.stop_reason or "", event.delta.stop_reason)
                    if structured and finish == "tool_calls":
                        finish = "stop"
                    yield Chunk(
                        finish_reason=finish,
                        usage=usage_from_anthropic(counts["input"], counts["output"], counts["read"], counts["write"]),
                        model=model,
                        response_id=response_id,
                    )
                elif kind == "error":
                    error = getattr(event, "error", None)
                    message = redact(f"{getattr(error, 'type', '')}: {getattr(error, 'message', '')}")
                    raise ProviderError(f"{self.name} stream error: {message}", code="upstream_server_error")
        except ProviderError:
            raise
        except Exception as exc:
            raise from_sdk_error(exc, self.name) from exc
        finally:
            if upstream is not None:
                # Closing the SDK stream closes its connection, so a client that hung up stops the upstream too.
                await upstream.close()
