"""OpenAI's Responses API over the gateway: its input items as djllm's (chat-shaped) `ChatRequest`, and djllm's
answers (a `Completion`, or a stream's `Chunk`s) as output items, a response object and the Responses stream events.

Every provider gets the translation (Claude models through the Anthropic provider's own translation of the chat
request). The conversation is kept in Responses items: a stored response keeps the items it answered (its earlier
turns included) and its output items, so `previous_response_id` rebuilds the whole input statelessly.
"""

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from pydantic import BaseModel

from common.parsers import dumps
from common.validation import invalid_request
from llm.providers import ChatRequest, Completion, Message, Usage
from llm.responses_schema import (
    ContentPartAddedEvent,
    ContentPartDoneEvent,
    ErrorEvent,
    FunctionCallArgumentsDeltaEvent,
    FunctionCallArgumentsDoneEvent,
    FunctionCallOut,
    IncompleteDetailsOut,
    InputTokensDetailsOut,
    OutputItemAddedEvent,
    OutputItemDoneEvent,
    OutputMessageOut,
    OutputTextDeltaEvent,
    OutputTextDoneEvent,
    OutputTextOut,
    OutputTokensDetailsOut,
    RefusalDeltaEvent,
    RefusalDoneEvent,
    RefusalOut,
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseErrorOut,
    ResponseFailedEvent,
    ResponseIncompleteEvent,
    ResponseInProgressEvent,
    ResponseOut,
    ResponsesIn,
    ResponseUsageOut,
)

ROLES = ("user", "assistant", "system", "developer")
# Not sent to an upstream Responses API: routing and djllm's own switches, and what djllm keeps itself (the
# conversation is sent whole, nothing is stored upstream).
NOT_SENT = ("model", "stream", "cache", "previous_response_id", "store", "metadata", "input")
SKIPPED_ITEMS = ("reasoning",)  # the model's own reasoning: nothing to send a chat upstream


def _invalid(param: str, message: str):
    return invalid_request({param: [message]})


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def input_items(body: ResponsesIn) -> list[dict[str, Any]]:
    """This request's input as items (a string is one user message)."""
    if isinstance(body.input, str):
        return [{"type": "message", "role": "user", "content": body.input}]
    return body.input


def _content_part(part: Any, param: str) -> dict:
    if not isinstance(part, dict):
        raise _invalid(param, "a content part is an object with a `type`.")
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        if not isinstance(part.get("text"), str):
            raise _invalid(f"{param}.text", "a text part needs its `text`.")
        return {"type": "text", "text": part["text"]}
    if kind == "refusal":
        return {"type": "text", "text": str(part.get("refusal", ""))}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise _invalid(f"{param}.image_url", "an image part needs an `image_url` (a URL or a data URL).")
        image = {"url": url}
        if part.get("detail") in ("low", "high", "auto"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file" and isinstance(part.get("file_data"), str):
        return {"type": "file", "file": {"filename": part.get("filename") or "file", "file_data": part["file_data"]}}
    raise _invalid(f"{param}.type", "expected an `input_text`, `input_image` or `output_text` part.")


def _content(content: Any, param: str) -> Any:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _invalid(param, "a message's content is a string or a list of parts.")
    parts = [_content_part(part, f"{param}.{index}") for index, part in enumerate(content)]
    if all(part["type"] == "text" for part in parts):
        return "".join(part["text"] for part in parts)  # plain text: what every upstream understands
    return parts


def _arguments(item: dict, param: str) -> str:
    arguments = item.get("arguments", "")
    if not isinstance(arguments, str):
        raise _invalid(f"{param}.arguments", "a function call's arguments are a JSON string.")
    return arguments


def _output_text(output: Any, param: str) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return "".join(_content_part(part, f"{param}.{i}").get("text", "") for i, part in enumerate(output))
    raise _invalid(param, "a function call's output is a string or a list of text parts.")


def messages_from_items(items: list[dict[str, Any]], param: str = "input") -> list[Message]:
    """Responses items as chat messages: a function call joins the assistant message just before it (chat APIs
    want an assistant turn's calls in that turn), a function call's output becomes a `tool` message."""
    messages: list[Message] = []
    for index, item in enumerate(items):
        where = f"{param}.{index}"
        if not isinstance(item, dict):
            raise _invalid(where, "an input item is an object.")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ROLES:
                raise _invalid(f"{where}.role", "expected `user`, `assistant`, `system` or `developer`.")
            messages.append(Message(role=role, content=_content(item.get("content"), f"{where}.content")))
        elif kind == "function_call":
            if not isinstance(item.get("call_id"), str) or not isinstance(item.get("name"), str):
                raise _invalid(where, "a function call needs its `call_id` and `name`.")
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": _arguments(item, where)},
            }
            last = messages[-1] if messages else None
            if last is not None and last.role == "assistant":
                content = last.content if last.content else None
                messages[-1] = Message(role="assistant", content=content, tool_calls=[*(last.tool_calls or []), call])
            else:
                messages.append(Message(role="assistant", content=None, tool_calls=[call]))
        elif kind == "function_call_output":
            if not isinstance(item.get("call_id"), str):
                raise _invalid(f"{where}.call_id", "a function call's output needs the `call_id` it answers.")
            output = _output_text(item.get("output", ""), f"{where}.output")
            messages.append(Message(role="tool", content=output, tool_call_id=item["call_id"]))
        elif kind not in SKIPPED_ITEMS:
            raise _invalid(f"{where}.type", "expected a `message`, `function_call` or `function_call_output` item.")
    return messages


def _tools(tools: list[dict[str, Any]] | None) -> list[dict] | None:
    if not tools:
        return None
    out = []
    for index, tool in enumerate(tools):
        if tool.get("type") != "function":
            raise _invalid(f"tools.{index}.type", "only `function` tools are supported.")
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise _invalid(f"tools.{index}.name", "a function tool needs a `name`.")
        function: dict[str, Any] = {"name": tool["name"], "parameters": tool.get("parameters") or {"type": "object"}}
        for key in ("description", "strict"):
            if tool.get(key) is not None:
                function[key] = tool[key]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any) -> Any:
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise _invalid("tool_choice", "expected `auto`, `none`, `required` or `{type: function, name}`.")


def _response_format(text: dict[str, Any] | None) -> dict | None:
    fmt = (text or {}).get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
        raise _invalid("text.format.type", "expected `text`, `json_object` or `json_schema`.")
    if fmt["type"] == "text":
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    if not isinstance(fmt.get("schema"), dict) or not isinstance(fmt.get("name"), str):
        raise _invalid("text.format", "a `json_schema` format needs its `name` and `schema`.")
    spec = {key: fmt[key] for key in ("name", "schema", "strict", "description") if fmt.get(key) is not None}
    return {"type": "json_schema", "json_schema": spec}


def chat_request(body: ResponsesIn, history: list[dict[str, Any]]) -> ChatRequest:
    """The request for the gateway: the instructions, then the stored conversation (`history`, items), then this
    request's input, translated for every provider, and as a stateless Responses request (`responses_native`) for
    an upstream that serves the Responses API."""
    messages = [Message(role="system", content=body.instructions)] if body.instructions else []
    messages.extend(messages_from_items(history, "previous_response_id"))
    messages.extend(messages_from_items(input_items(body)))
    if not messages:
        raise _invalid("input", "send at least one input item.")
    tools = _tools(body.tools)
    extra: dict[str, Any] = {}
    if body.user:
        extra["user"] = body.user
    if tools and body.parallel_tool_calls is not None:
        extra["parallel_tool_calls"] = body.parallel_tool_calls
    native = {name: value for name, value in body.model_dump(exclude_none=True).items() if name not in NOT_SENT}
    return ChatRequest(
        model="",
        messages=messages,
        temperature=body.temperature,
        top_p=body.top_p,
        max_tokens=body.max_output_tokens,
        response_format=_response_format(body.text),
        tools=tools,
        tool_choice=_tool_choice(body.tool_choice) if tools else None,
        extra=extra,
        responses_native={**native, "input": [*history, *input_items(body)], "store": False},
    )


def response_usage(usage: Usage) -> ResponseUsageOut:
    return ResponseUsageOut(
        input_tokens=usage.input_tokens,
        input_tokens_details=InputTokensDetailsOut(cached_tokens=usage.cached_input_tokens),
        output_tokens=usage.output_tokens,
        output_tokens_details=OutputTokensDetailsOut(reasoning_tokens=usage.reasoning_tokens),
        total_tokens=usage.input_tokens + usage.output_tokens,
    )


def _incomplete(finish_reason: str | None) -> IncompleteDetailsOut | None:
    if finish_reason == "length":
        return IncompleteDetailsOut(reason="max_output_tokens")
    if finish_reason == "content_filter":
        return IncompleteDetailsOut(reason="content_filter")
    return None


def function_call_item(call: dict, status: str = "completed") -> FunctionCallOut:
    function = call.get("function") or {}
    return FunctionCallOut(
        id=new_id("fc"),
        call_id=call.get("id") or new_id("call"),
        name=function.get("name") or "",
        arguments=function.get("arguments") or "",
        status=status,
    )


def output_items(completion: Completion) -> list[OutputMessageOut | FunctionCallOut]:
    items: list[OutputMessageOut | FunctionCallOut] = []
    status = "incomplete" if completion.finish_reason == "length" else "completed"
    parts: list[OutputTextOut | RefusalOut] = []
    if completion.text:
        parts.append(OutputTextOut(text=completion.text))
    if completion.refusal:
        parts.append(RefusalOut(refusal=completion.refusal))
    if parts:
        items.append(OutputMessageOut(id=new_id("msg"), status=status, content=parts))
    items.extend(function_call_item(call) for call in completion.tool_calls or [])
    return items


class Shell:
    """What a response object repeats of its request."""

    def __init__(self, body: ResponsesIn, response_id: str) -> None:
        self.body, self.id, self.created_at = body, response_id, int(time.time())

    def response(self, *, model: str, status: str, output: list, usage: Usage | None = None, **more) -> ResponseOut:
        body = self.body
        return ResponseOut(
            id=self.id,
            created_at=self.created_at,
            status=status,
            instructions=body.instructions,
            max_output_tokens=body.max_output_tokens,
            model=model,
            output=output,
            parallel_tool_calls=True if body.parallel_tool_calls is None else body.parallel_tool_calls,
            previous_response_id=body.previous_response_id,
            store=body.store,
            temperature=body.temperature,
            top_p=body.top_p,
            text=body.text or {"format": {"type": "text"}},
            tool_choice=body.tool_choice if body.tool_choice is not None else "auto",
            tools=body.tools or [],
            metadata=body.metadata or {},
            user=body.user,
            usage=response_usage(usage) if usage is not None else None,
            **more,
        )

    def completed(self, completion: Completion, usage: Usage) -> ResponseOut:
        return self.finished(completion.model, output_items(completion), completion.finish_reason, usage)

    def finished(self, model: str, output: list, finish_reason: str | None, usage: Usage) -> ResponseOut:
        incomplete = _incomplete(finish_reason)
        status = "incomplete" if incomplete else "completed"
        return self.response(model=model, status=status, output=output, usage=usage, incomplete_details=incomplete)


class _Events:
    """Numbers the events and frames them as OpenAI does: the type in `event:`, the object in `data:`."""

    def __init__(self) -> None:
        self.sequence = 0

    def __call__(self, payload: BaseModel) -> bytes:
        payload.sequence_number, self.sequence = self.sequence, self.sequence + 1
        return f"event: {payload.type}\ndata: {payload.model_dump_json()}\n\n".encode()


class _Output:
    """The output items of a streamed answer, one open at a time: a message (its text, then its refusal part) or a
    function call per tool call."""

    def __init__(self, event: _Events) -> None:
        self.event = event
        self.items: list[OutputMessageOut | FunctionCallOut] = []
        self.open: OutputMessageOut | FunctionCallOut | None = None
        self.part: OutputTextOut | RefusalOut | None = None
        self.calls: dict[int, FunctionCallOut] = {}  # the chat tool-call index -> its item

    def _add(self, item) -> list[bytes]:
        frames = self.close()
        self.open = item
        self.items.append(item)
        return [*frames, self.event(OutputItemAddedEvent(output_index=len(self.items) - 1, item=item))]

    def _index(self) -> int:
        return len(self.items) - 1

    def _close_part(self) -> list[bytes]:
        if self.part is None or not isinstance(self.open, OutputMessageOut):
            return []
        item, part, index = self.open, self.part, len(self.open.content) - 1
        self.part = None
        where = {"item_id": item.id, "output_index": self._index(), "content_index": index}
        if isinstance(part, OutputTextOut):
            done = self.event(OutputTextDoneEvent(text=part.text, **where))
        else:
            done = self.event(RefusalDoneEvent(refusal=part.refusal, **where))
        return [done, self.event(ContentPartDoneEvent(part=part, **where))]

    def close(self, status: str = "completed") -> list[bytes]:
        if self.open is None:
            return []
        frames = self._close_part()
        item, self.open = self.open, None
        item.status = status
        if isinstance(item, FunctionCallOut):
            frames.append(
                self.event(
                    FunctionCallArgumentsDoneEvent(
                        item_id=item.id, output_index=self.items.index(item), name=item.name, arguments=item.arguments
                    )
                )
            )
        frames.append(self.event(OutputItemDoneEvent(output_index=self.items.index(item), item=item)))
        return frames

    def text(self, delta: str, refusal: bool) -> list[bytes]:
        frames = []
        if not isinstance(self.open, OutputMessageOut):
            frames = self._add(OutputMessageOut(id=new_id("msg"), status="in_progress", content=[]))
        item = self.open
        kind = RefusalOut if refusal else OutputTextOut
        if not isinstance(self.part, kind):
            frames.extend(self._close_part())
            self.part = RefusalOut(refusal="") if refusal else OutputTextOut(text="")
            item.content.append(self.part)
            where = {"item_id": item.id, "output_index": self._index(), "content_index": len(item.content) - 1}
            frames.append(self.event(ContentPartAddedEvent(part=self.part.model_copy(), **where)))
        where = {"item_id": item.id, "output_index": self._index(), "content_index": len(item.content) - 1}
        if refusal:
            self.part.refusal += delta
            frames.append(self.event(RefusalDeltaEvent(delta=delta, **where)))
        else:
            self.part.text += delta
            frames.append(self.event(OutputTextDeltaEvent(delta=delta, **where)))
        return frames

    def tool(self, call: dict) -> list[bytes]:
        frames, position = [], call.get("index", 0)
        function = call.get("function") or {}
        if position not in self.calls:
            item = function_call_item({**call, "function": {**function, "arguments": ""}}, status="in_progress")
            frames = self._add(item)
            self.calls[position] = item
        item = self.calls[position]
        if function.get("arguments"):
            item.arguments += function["arguments"]
            index = self.items.index(item)
            delta = FunctionCallArgumentsDeltaEvent(item_id=item.id, output_index=index, delta=function["arguments"])
            frames.append(self.event(delta))
        return frames


async def stream_events(session, shell: Shell, model: str, on_done=None) -> AsyncIterator[bytes]:
    """A gateway stream (`pipeline.StreamSession`) as the Responses events, each chunk relayed as it arrives.
    `on_done(response)` is awaited with the final response object (to store it) before the last event."""
    event = _Events()
    output, finish = _Output(event), None
    started = shell.response(model=model, status="in_progress", output=[])
    yield event(ResponseCreatedEvent(response=started))
    yield event(ResponseInProgressEvent(response=started.model_copy()))
    async with aclosing(session.chunks()) as chunks:
        async for chunk in chunks:
            model = chunk.model or model
            for frame in output.text(chunk.text, refusal=False) if chunk.text else ():
                yield frame
            for frame in output.text(chunk.refusal, refusal=True) if chunk.refusal else ():
                yield frame
            for call in chunk.tool_calls or ():
                for frame in output.tool(call):
                    yield frame
            finish = chunk.finish_reason or finish
    if session.error is not None:
        for frame in output.close("incomplete"):
            yield frame
        error = session.error
        yield event(ErrorEvent(code=error.code, message=error.message))
        failed = shell.response(
            model=model,
            status="failed",
            output=output.items,
            usage=session.usage,
            error=ResponseErrorOut(code=error.code, message=error.message),
        )
        yield event(ResponseFailedEvent(response=failed))
        return
    for frame in output.close("incomplete" if finish == "length" else "completed"):
        yield frame
    final = shell.finished(model, output.items, finish, session.usage or Usage())
    if on_done is not None:
        await on_done(final)
    last = ResponseIncompleteEvent if final.status == "incomplete" else ResponseCompletedEvent
    yield event(last(response=final))


FINAL_EVENTS = ("response.completed", "response.incomplete")


def _frame(event: dict[str, Any]) -> bytes:
    return b"event: " + str(event.get("type")).encode() + b"\ndata: " + dumps(event) + b"\n\n"


def relayed_response(response: dict[str, Any], shell: Shell) -> dict[str, Any]:
    """An upstream's response object as this request's: djllm's id (the one `GET /v1/responses/{id}` and
    `previous_response_id` know), and what djllm keeps itself rather than the upstream, which was called statelessly
    (`store` false, no `previous_response_id`, no `metadata`): the client's values of those."""
    body = shell.body
    return {
        **response,
        "id": shell.id,
        "store": body.store,
        "previous_response_id": body.previous_response_id,
        "metadata": body.metadata or {},
    }


def _relayed_failure(last: dict[str, Any] | None, shell: Shell, session, model: str, output: list) -> dict[str, Any]:
    """The `response.failed` djllm closes a broken relayed stream with: the last response object the upstream
    sent (or djllm's own), failed, with the output items it finished and the error."""
    error = session.error
    if last is None:
        last = json.loads(shell.response(model=model, status="in_progress", output=[]).model_dump_json())
    usage = json.loads(response_usage(session.usage).model_dump_json()) if session.usage is not None else None
    failure = {"code": error.code, "message": error.message}
    return {**last, "status": "failed", "error": failure, "output": output, "usage": usage}


async def relay_events(session, shell: Shell, model: str, on_done=None) -> AsyncIterator[bytes]:
    """An upstream Responses stream relayed event by event, in its order and shape, each as it arrives
    (`session.relayed`). Only what is djllm's changes: the response object in the `response.*` events is this
    request's (`relayed_response`). `on_done(response)` is awaited with the final response object (a dict, to
    store it) before the event that carries it. An upstream failure is relayed as the upstream sent it (its
    `error`, its `response.failed`); a stream that breaks off, or ends on an `error` alone, is closed by djllm as
    a translated stream is: an `error` (unless the upstream sent one), then `response.failed`, numbered on from the
    upstream's last event."""
    last_response: dict[str, Any] | None = None
    done_items: dict[int, Any] = {}
    sequence, errored, failed = -1, False, False
    async with aclosing(session.chunks()) as chunks:
        async for chunk in chunks:
            event = chunk.event
            if event is None:  # not a relayed stream's chunk (cannot happen: one stream is one kind)
                continue
            kind = event.get("type")
            if isinstance(event.get("response"), dict):
                event = {**event, "response": relayed_response(event["response"], shell)}
                last_response = event["response"]
                if kind in FINAL_EVENTS and on_done is not None:
                    await on_done(last_response)
            if kind == "response.output_item.done" and isinstance(event.get("output_index"), int):
                done_items[event["output_index"]] = event.get("item")
            if isinstance(event.get("sequence_number"), int):
                sequence = event["sequence_number"]
            errored, failed = errored or kind == "error", failed or kind == "response.failed"
            yield _frame(event)
    if session.error is None or failed:
        return
    error = session.error
    if not errored:
        sequence += 1
        yield _frame(ErrorEvent(sequence_number=sequence, code=error.code, message=error.message).model_dump())
    output = [done_items[index] for index in sorted(done_items)]
    response = _relayed_failure(last_response, shell, session, session.upstream_model or model, output)
    yield _frame({"type": "response.failed", "sequence_number": sequence + 1, "response": response})


def stored_items(output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A response's output items as the input items that continue it."""
    return [item for item in output if item.get("type") in ("message", "function_call")]


def dumped(items: list[BaseModel]) -> list[dict[str, Any]]:
    return [json.loads(item.model_dump_json()) for item in items]
