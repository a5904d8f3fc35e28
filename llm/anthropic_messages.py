"""Anthropic's Messages API over the gateway: its request as djllm's (OpenAI-shaped) `ChatRequest`, and djllm's
answers (a `Completion`, or a stream's `Chunk`s) as Anthropic's message and stream events.

The request keeps what the client sent (`ChatRequest.anthropic_native`): an Anthropic route sends that as it is,
so Claude models get every field (cache_control, top_k, metadata, thinking...). The translation is what other
providers get: system, text, image and document blocks, tool_use and tool_result, tools and tool_choice, stop
sequences. Blocks without an OpenAI equivalent are left for the upstream to judge (it answers a 400 naming them),
except the model's own thinking, which is left out.
"""

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from pydantic import BaseModel

from common.responses import anthropic_error_body
from common.validation import invalid_request
from llm.messages_schema import (
    DEFAULT_MODEL,
    AnthropicMessageIn,
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    ContentBlockStopEvent,
    CountTokensIn,
    InputJsonDeltaOut,
    MessageDeltaEvent,
    MessageDeltaOut,
    MessageOut,
    MessageStartEvent,
    MessageStopEvent,
    MessageUsageOut,
    PingEvent,
    TextBlockOut,
    TextDeltaOut,
    ToolUseBlockOut,
)
from llm.providers import ChatRequest, Completion, Message, Usage

# djllm's (OpenAI's) finish reasons as Anthropic's stop reasons.
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
NOT_SENT = ("model", "stream", "cache")  # routing and djllm's own switches, not part of the upstream request
SKIPPED_BLOCKS = ("thinking", "redacted_thinking")


def requested_model(model: str) -> str | None:
    """None routes by the caller's preferences (then the server's default), as a request without a model does."""
    return None if model == DEFAULT_MODEL else model


def _invalid(param: str, message: str):
    return invalid_request({param: [message]})


def _text(blocks: Any, param: str) -> str:
    """The text of a string or of `text` blocks (the system prompt, a tool result)."""
    if isinstance(blocks, str):
        return blocks
    texts = []
    for index, block in enumerate(blocks or []):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise _invalid(f"{param}.{index}", "expected a `text` block.")
        texts.append(block["text"])
    return "\n\n".join(texts)


def _image_part(block: dict, param: str) -> dict:
    source = block.get("source")
    if not isinstance(source, dict):
        raise _invalid(f"{param}.source", "an image needs a `source`.")
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type', '')};base64,{source.get('data', '')}"
    elif source.get("type") == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise _invalid(f"{param}.source.type", "expected `base64` or `url`.")
    return {"type": "image_url", "image_url": {"url": url}}


def _document_part(block: dict) -> dict:
    source = block.get("source") if isinstance(block.get("source"), dict) else {}
    if source.get("type") == "text" and isinstance(source.get("data"), str):
        return {"type": "text", "text": source["data"]}
    if source.get("type") == "base64":
        data = f"data:{source.get('media_type', '')};base64,{source.get('data', '')}"
        return {"type": "file", "file": {"filename": block.get("title") or "document", "file_data": data}}
    return block  # no OpenAI equivalent (a URL, a content source): the upstream says so


def _user_part(block: dict, param: str) -> dict | None:
    kind = block.get("type")
    if kind == "text":
        if not isinstance(block.get("text"), str):
            raise _invalid(f"{param}.text", "a text block needs its `text`.")
        return {"type": "text", "text": block["text"]}
    if kind == "image":
        return _image_part(block, param)
    if kind == "document":
        return _document_part(block)
    if kind in SKIPPED_BLOCKS:
        return None
    return block


def _user_content(parts: list[dict]) -> Any:
    if all(part.get("type") == "text" for part in parts):
        return "\n\n".join(part["text"] for part in parts)  # plain text: what every local server understands
    return parts


def _tool_result(block: dict, param: str) -> tuple[Message, list[dict]]:
    """A tool result as OpenAI's `tool` message, and the images it carried (OpenAI's tool messages take text only:
    they follow as the user's)."""
    if not isinstance(block.get("tool_use_id"), str):
        raise _invalid(f"{param}.tool_use_id", "a tool result needs the `tool_use_id` it answers.")
    content = block.get("content")
    if content is not None and not isinstance(content, str | list):
        raise _invalid(f"{param}.content", "a tool result's content is a string or a list of blocks.")
    texts, images = [], []
    for index, part in enumerate([] if content is None else [content] if isinstance(content, str) else content):
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and part.get("type") == "text":
            texts.append(str(part.get("text", "")))
        elif isinstance(part, dict) and part.get("type") == "image":
            images.append(_image_part(part, f"{param}.content.{index}"))
        else:
            raise _invalid(f"{param}.content.{index}", "a tool result holds `text` and `image` blocks.")
    text = "\n\n".join(texts)
    if block.get("is_error"):
        text = f"Error: {text}"
    return Message(role="tool", content=text, tool_call_id=block["tool_use_id"]), images


def _user_messages(content: list[dict[str, Any]], param: str) -> list[Message]:
    """Tool results first (OpenAI wants them right after the assistant's tool calls), then the rest as one user
    message."""
    tools, parts = [], []
    for index, block in enumerate(content):
        block_param = f"{param}.{index}"
        if block.get("type") == "tool_result":
            message, images = _tool_result(block, block_param)
            tools.append(message)
            parts.extend(images)
        else:
            part = _user_part(block, block_param)
            if part is not None:
                parts.append(part)
    return tools + ([Message(role="user", content=_user_content(parts))] if parts else [])


def _tool_call(block: dict, param: str) -> dict:
    if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
        raise _invalid(param, "a tool_use block needs its `id` and `name`.")
    arguments = json.dumps(block.get("input") if isinstance(block.get("input"), dict) else {})
    return {"id": block["id"], "type": "function", "function": {"name": block["name"], "arguments": arguments}}


def _assistant_message(content: list[dict[str, Any]], param: str) -> Message:
    texts, calls = [], []
    for index, block in enumerate(content):
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "tool_use":
            calls.append(_tool_call(block, f"{param}.{index}"))
        elif kind not in SKIPPED_BLOCKS:
            raise _invalid(f"{param}.{index}.type", "an assistant turn holds `text`, `tool_use` and thinking blocks.")
    text = "".join(texts)
    return Message(role="assistant", content=text if text or not calls else None, tool_calls=calls or None)


def _messages(message: AnthropicMessageIn, param: str) -> list[Message]:
    if isinstance(message.content, str):
        return [Message(role=message.role, content=message.content)]
    for index, block in enumerate(message.content):
        if not isinstance(block.get("type"), str):
            raise _invalid(f"{param}.{index}.type", "every content block needs a `type`.")
    if message.role == "assistant":
        return [_assistant_message(message.content, param)]
    return _user_messages(message.content, param)


def _tools(tools: list[dict[str, Any]] | None) -> list[dict] | None:
    if not tools:
        return None
    out = []
    for index, tool in enumerate(tools):
        if tool.get("type") not in (None, "custom"):
            out.append(tool)  # a server tool: no OpenAI equivalent, the upstream says so
            continue
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise _invalid(f"tools.{index}.name", "a tool needs a `name`.")
        function = {"name": tool["name"], "parameters": tool.get("input_schema") or {"type": "object"}}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: dict[str, Any] | None) -> Any:
    if choice is None:
        return None
    kind = choice.get("type")
    if kind in ("auto", "none"):
        return kind
    if kind == "any":
        return "required"
    if kind == "tool" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise _invalid("tool_choice", "expected `{type: auto | any | none}` or `{type: tool, name}`.")


def chat_request(body: CountTokensIn, data: dict[str, Any]) -> ChatRequest:
    """The request for the gateway: translated for every provider, and as sent (`anthropic_native`) for
    Anthropic's. `body` is the validated request, `data` the JSON as sent."""
    messages = []
    if body.system:
        messages.append(Message(role="system", content=_text(body.system, "system")))
    for index, message in enumerate(body.messages):
        messages.extend(_messages(message, f"messages.{index}.content"))
    tools = _tools(body.tools)
    extra: dict[str, Any] = {}
    user_id = (getattr(body, "metadata", None) or {}).get("user_id")
    if isinstance(user_id, str) and user_id:
        extra["user"] = user_id
    if tools and (body.tool_choice or {}).get("disable_parallel_tool_use"):
        extra["parallel_tool_calls"] = False
    return ChatRequest(
        model="",
        messages=messages,
        temperature=getattr(body, "temperature", None),
        top_p=getattr(body, "top_p", None),
        max_tokens=getattr(body, "max_tokens", None),
        stop=getattr(body, "stop_sequences", None) or None,
        tools=tools,
        tool_choice=_tool_choice(body.tool_choice) if tools else None,
        extra=extra,
        anthropic_native={name: value for name, value in data.items() if name not in NOT_SENT},
    )


def message_usage(usage: Usage) -> MessageUsageOut:
    """djllm's usage in Anthropic's convention (its `input_tokens` leave out cache reads and writes)."""
    return MessageUsageOut(
        input_tokens=usage.uncached_input_tokens,
        output_tokens=usage.output_tokens,
        cache_creation_input_tokens=usage.cache_write_tokens,
        cache_read_input_tokens=usage.cached_input_tokens,
    )


def stop_reason(finish_reason: str | None) -> str:
    return STOP_REASONS.get(finish_reason or "stop", finish_reason or "end_turn")


def _tool_input(arguments: Any) -> dict:
    try:
        value = json.loads(arguments) if isinstance(arguments, str) else arguments
    except ValueError:
        return {"arguments": arguments}  # what the model wrote, kept rather than lost
    return value if isinstance(value, dict) else {"value": value}


def message_id(response_id: str | None) -> str:
    return response_id if response_id and response_id.startswith("msg_") else f"msg_{uuid.uuid4().hex}"


def message(completion: Completion, usage: Usage) -> MessageOut:
    content: list[TextBlockOut | ToolUseBlockOut] = []
    text = completion.text or completion.refusal or ""
    if text:
        content.append(TextBlockOut(text=text))
    for call in completion.tool_calls or []:
        function = call.get("function") or {}
        content.append(
            ToolUseBlockOut(
                id=call.get("id") or f"toolu_{uuid.uuid4().hex}",
                name=function.get("name", ""),
                input=_tool_input(function.get("arguments") or "{}"),
            )
        )
    finish = "content_filter" if completion.refusal and not completion.text else completion.finish_reason
    return MessageOut(
        id=message_id(completion.response_id),
        model=completion.model,
        content=content,
        stop_reason=stop_reason(finish),
        usage=message_usage(usage),
    )


def event(payload: BaseModel) -> bytes:
    """One server-sent event as Anthropic frames them: the type in `event:`, the object in `data:`."""
    return f"event: {payload.type}\ndata: {payload.model_dump_json()}\n\n".encode()


class _Blocks:
    """The content blocks of a streamed answer: one open at a time, text and tool calls each in their own."""

    def __init__(self) -> None:
        self.count = 0
        self.open: int | None = None
        self.text: int | None = None
        self.tools: dict[int, int] = {}  # OpenAI's tool-call index -> block index

    def _start(self, block: TextBlockOut | ToolUseBlockOut) -> list[bytes]:
        frames = self.close()
        self.open, self.count = self.count, self.count + 1
        return [*frames, event(ContentBlockStartEvent(index=self.open, content_block=block))]

    def close(self) -> list[bytes]:
        if self.open is None:
            return []
        index, self.open, self.text = self.open, None, None
        return [event(ContentBlockStopEvent(index=index))]

    def text_delta(self, text: str) -> list[bytes]:
        frames = []
        if self.text is None or self.open != self.text:
            frames = self._start(TextBlockOut(text=""))
            self.text = self.open
        return [*frames, event(ContentBlockDeltaEvent(index=self.open, delta=TextDeltaOut(text=text)))]

    def tool_delta(self, call: dict) -> list[bytes]:
        frames, position = [], call.get("index", 0)
        function = call.get("function") or {}
        if position not in self.tools:
            block = ToolUseBlockOut(
                id=call.get("id") or f"toolu_{uuid.uuid4().hex}", name=function.get("name") or "", input={}
            )
            frames = self._start(block)
            self.tools[position] = self.open
        if function.get("arguments"):
            delta = InputJsonDeltaOut(partial_json=function["arguments"])
            frames.append(event(ContentBlockDeltaEvent(index=self.tools[position], delta=delta)))
        return frames


async def stream_events(session, model: str) -> AsyncIterator[bytes]:
    """A gateway stream (`pipeline.StreamSession`) as Anthropic's events, each chunk relayed as it arrives."""
    blocks, started, finish, refused = _Blocks(), False, None, False
    async with aclosing(session.chunks()) as chunks:
        async for chunk in chunks:
            if not started:
                started = True
                start = MessageOut(
                    id=message_id(chunk.response_id),
                    model=chunk.model or model,
                    content=[],
                    stop_reason=None,
                    usage=message_usage(chunk.usage or Usage()),
                )
                yield event(MessageStartEvent(message=start))
                yield event(PingEvent())
            for frame in blocks.text_delta(chunk.text or chunk.refusal) if chunk.text or chunk.refusal else ():
                yield frame
            refused = refused or bool(chunk.refusal)
            for call in chunk.tool_calls or ():
                for frame in blocks.tool_delta(call):
                    yield frame
            finish = chunk.finish_reason or finish
    for frame in blocks.close():
        yield frame
    if session.error is not None:
        yield f"event: error\ndata: {json.dumps(anthropic_error_body(session.error))}\n\n".encode()
        return
    reason = stop_reason("content_filter" if refused else finish)
    yield event(
        MessageDeltaEvent(delta=MessageDeltaOut(stop_reason=reason), usage=message_usage(session.usage or Usage()))
    )
    yield event(MessageStopEvent())
