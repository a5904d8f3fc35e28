"""Anthropic through `AsyncAnthropic`, translating djllm's OpenAI-shaped request both ways."""

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import anthropic
from anthropic import AsyncStream
from anthropic.types import Message as AnthropicMessage
from anthropic.types import RawMessageStreamEvent
from django.conf import settings

from common.errors import InvalidRequest
from common.validation import invalid_request
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


def _invalid(param: str, message: str) -> InvalidRequest:
    """A request Anthropic's format cannot express: the client's mistake, a 400 naming the field."""
    return invalid_request({param: [message]})


def _content_blocks(content: Any, param: str) -> Any:
    if isinstance(content, str) or content is None:
        return content or ""
    blocks = []
    for index, part in enumerate(content):
        if not isinstance(part, dict):
            raise _invalid(f"{param}[{index}]", "a content part must be an object.")
        kind = part.get("type")
        if kind == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif kind == "image_url":
            image = part.get("image_url") or {}
            url = image.get("url", "") if isinstance(image, dict) else ""
            if not isinstance(url, str) or not url:
                raise _invalid(f"{param}[{index}].image_url.url", "an image part needs a URL.")
            if url.startswith("data:"):
                media_type, _, data = url[5:].partition(";base64,")
                blocks.append({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}})
            else:
                blocks.append({"type": "image", "source": {"type": "url", "url": url}})
    return blocks


def _tool_use(call: Any, param: str) -> dict:
    """An OpenAI tool call of an earlier assistant turn as Anthropic's `tool_use` block (its input must be an
    object, sent as JSON text in OpenAI's `arguments`)."""
    if not isinstance(call, dict):
        raise _invalid(param, "a tool call must be an object.")
    function = call.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
        raise _invalid(f"{param}.function.name", "a tool call needs the function's name.")
    arguments = function.get("arguments") or "{}"
    try:
        tool_input = json.loads(arguments) if isinstance(arguments, str) else arguments
    except (ValueError, RecursionError):
        raise _invalid(f"{param}.function.arguments", "the arguments are not valid JSON.") from None
    if not isinstance(tool_input, dict):
        raise _invalid(f"{param}.function.arguments", "the arguments must be a JSON object.")
    return {"type": "tool_use", "id": call.get("id"), "name": function["name"], "input": tool_input}


def _messages(messages: list[Message]) -> tuple[str | None, list[dict]]:
    system_parts, out = [], []
    for position, message in enumerate(messages):
        param = f"messages[{position}]"
        if message.role in ("system", "developer"):
            system_parts.append(_text_of(message.content))
        elif message.role == "tool":
            block = {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": _text_of(message.content)}
            out.append({"role": "user", "content": [block]})
        elif message.role == "assistant" and message.tool_calls:
            blocks = [{"type": "text", "text": _text_of(message.content)}] if message.content else []
            for index, call in enumerate(message.tool_calls):
                blocks.append(_tool_use(call, f"{param}.tool_calls[{index}]"))
            out.append({"role": "assistant", "content": blocks})
        else:
            out.append(
                {
                    "role": "user" if message.role == "user" else "assistant",
                    "content": _content_blocks(message.content, f"{param}.content"),
                }
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
        function = choice.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise _invalid("tool_choice.function.name", "name the function the model must call.")
        return {"type": "tool", "name": function["name"]}
    return None


def _tools(tools: list[Any]) -> list[dict]:
    """OpenAI function tools as Anthropic tools; other tool types have no Anthropic equivalent and are left out."""
    out = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise _invalid(f"tools[{index}]", "a tool must be an object.")
        if tool.get("type") != "function":
            continue
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise _invalid(f"tools[{index}].function.name", "a function tool needs `function.name`.")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise _invalid(f"tools[{index}].function.parameters", "the parameters must be a JSON Schema object.")
        description = function.get("description")
        out.append(
            {
                "name": function["name"],
                "description": description if isinstance(description, str) else "",
                "input_schema": parameters or {"type": "object", "properties": {}},
            }
        )
    return out


def params_for(request: ChatRequest) -> tuple[dict[str, Any], bool]:
    """Anthropic params, and whether structured output is emulated with a forced tool."""
    if request.anthropic_native is not None:
        return {**request.anthropic_native, "model": request.model}, False
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
        if not isinstance(spec, dict):
            raise _invalid("response_format.json_schema", "must be an object with a `schema`.")
        if spec.get("schema") is not None and not isinstance(spec["schema"], dict):
            raise _invalid("response_format.json_schema.schema", "must be a JSON Schema object.")
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
        params["tools"] = _tools(request.tools)
        choice = _tool_choice(request.tool_choice)
        if choice:
            params["tool_choice"] = choice
    return params, structured


class AnthropicProvider(SDKProvider):
    name = "anthropic"
    label = "Anthropic"
    kind = "anthropic"
    sdk = anthropic
    api_key_setting = "ANTHROPIC_API_KEY"
    base_url_setting = "ANTHROPIC_BASE_URL"
    sdk_base_url = "https://api.anthropic.com"
    model_setting = "ANTHROPIC_MODEL"
    model_pattern = re.compile(r"^claude-")
    model_hint = "claude-*"
    default_max_tokens_setting = "ANTHROPIC_DEFAULT_MAX_TOKENS"  # Anthropic requires `max_tokens`

    @classmethod
    def new_client(cls, *, base_url, api_key, http_client, timeout):
        client = anthropic.AsyncAnthropic(
            api_key=api_key, auth_token="", base_url=base_url, max_retries=0, timeout=timeout, http_client=http_client
        )
        # Only the key given here is ever sent: never ANTHROPIC_AUTH_TOKEN from the environment, and with no key
        # (a route to a server of its own) no key header at all (see `_headers`).
        client.auth_token = None
        if not api_key:
            client.api_key = None
        return client

    def _headers(self) -> dict:
        if not self.api_key:
            # The SDK's client would not send a request without an auth header unless one is explicitly omitted.
            return {"X-Api-Key": anthropic.Omit()}
        return {}

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
        async with self._streaming(
            "/v1/messages", params, cast_to=AnthropicMessage, stream_cls=AsyncStream[RawMessageStreamEvent]
        ) as upstream:
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
