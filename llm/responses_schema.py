"""`POST /v1/responses`, `GET` and `DELETE /v1/responses/{id}` (OpenAI's Responses API): the request model the view
validates with, the output models its answers and stream events are built from, and the operations' descriptions
(`common.operations.openapi_operation`), so what the schema shows is what is sent."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, WithJsonSchema

from common.openapi import OpenAIError
from common.operations import Body
from llm.schema import LLM_ERRORS


class ResponsesIn(BaseModel):
    """OpenAI's Responses request. `cache` is djllm's own switch for the response cache."""

    model_config = ConfigDict(extra="allow", strict=True)
    model: str = Field(min_length=1, max_length=200)
    input: str | list[dict[str, Any]] = Field(
        description="A string (one user message), or input items: messages (`role` user, assistant, system or "
        "developer; content a string or `input_text`, `input_image`, `output_text` parts), `function_call` and "
        "`function_call_output` items."
    )
    instructions: str | None = Field(default=None, description="A system message put first; not carried over.")
    previous_response_id: str | None = Field(
        default=None, max_length=64, description="Continue a stored response of yours: its whole conversation is sent."
    )
    store: bool = Field(default=True, description="Keep the response for `GET` and `previous_response_id`.")
    tools: list[dict[str, Any]] | None = Field(
        default=None, description="Function tools: `{type: function, name, description, parameters, strict}`."
    )
    tool_choice: str | dict[str, Any] | None = Field(
        default=None, description="`auto`, `none`, `required` or `{type: function, name}`."
    )
    text: dict[str, Any] | None = Field(
        default=None, description="`{format: {type: text | json_object | json_schema, name, schema, strict}}`."
    )
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    parallel_tool_calls: bool | None = None
    metadata: dict[str, str] | None = Field(default=None, description="Kept with the response, not sent upstream.")
    user: str | None = None
    stream: bool = False
    cache: bool | None = Field(default=None, description="djllm: force (true) or bypass (false) the response cache.")


class OutputTextOut(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[dict[str, Any]] = Field(default_factory=list)


class RefusalOut(BaseModel):
    type: Literal["refusal"] = "refusal"
    refusal: str


class OutputMessageOut(BaseModel):
    type: Literal["message"] = "message"
    id: str
    status: Literal["in_progress", "completed", "incomplete"]
    role: Literal["assistant"] = "assistant"
    content: list[OutputTextOut | RefusalOut]


class FunctionCallOut(BaseModel):
    type: Literal["function_call"] = "function_call"
    id: str
    call_id: str
    name: str
    arguments: str
    status: Literal["in_progress", "completed", "incomplete"]


class OtherOutputItemOut(BaseModel):
    """Any other output item of an upstream that serves the Responses API (`reasoning`, `web_search_call`...),
    as it sent it."""

    model_config = ConfigDict(extra="allow")
    type: Annotated[str, WithJsonSchema({"type": "string", "not": {"enum": ["message", "function_call"]}})]
    id: str | None = None


def _item_kind(item: Any) -> str:
    kind = item.get("type") if isinstance(item, dict) else getattr(item, "type", None)
    return kind if kind in ("message", "function_call") else "other"


OutputItemOut = Annotated[
    Annotated[OutputMessageOut, Tag("message")]
    | Annotated[FunctionCallOut, Tag("function_call")]
    | Annotated[OtherOutputItemOut, Tag("other")],
    Discriminator(_item_kind),
]


class InputTokensDetailsOut(BaseModel):
    cached_tokens: int = Field(description="Of the input tokens, read from the provider's cache.")


class OutputTokensDetailsOut(BaseModel):
    reasoning_tokens: int


class ResponseUsageOut(BaseModel):
    """OpenAI's convention: `input_tokens` includes the cached (and cache-written) prompt tokens."""

    input_tokens: int
    input_tokens_details: InputTokensDetailsOut
    output_tokens: int
    output_tokens_details: OutputTokensDetailsOut
    total_tokens: int


class ResponseErrorOut(BaseModel):
    code: str
    message: str


class IncompleteDetailsOut(BaseModel):
    reason: Literal["max_output_tokens", "content_filter"]


class ResponseOut(BaseModel):
    """djllm's response object; a relayed upstream's keeps its other fields (`reasoning`, `truncation`...)."""

    model_config = ConfigDict(extra="allow")
    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: Literal["queued", "in_progress", "completed", "incomplete", "failed", "cancelled"]
    error: ResponseErrorOut | None = None
    incomplete_details: IncompleteDetailsOut | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    model: str
    output: list[OutputItemOut]
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    store: bool = True
    temperature: float | None = None
    top_p: float | None = None
    text: dict[str, Any] = Field(default_factory=lambda: {"format": {"type": "text"}})
    tool_choice: str | dict[str, Any] = "auto"
    tools: list[dict[str, Any]] = Field(default_factory=list)
    metadata: dict[str, str] = Field(default_factory=dict)
    user: str | None = None
    usage: ResponseUsageOut | None = None


class ResponseDeletedOut(BaseModel):
    id: str
    object: Literal["response.deleted"] = "response.deleted"
    deleted: Literal[True] = True


# Stream events: each carries its `type` (also in the SSE `event:` line) and its `sequence_number`.
class _Event(BaseModel):
    sequence_number: int = 0


class ResponseCreatedEvent(_Event):
    type: Literal["response.created"] = "response.created"
    response: ResponseOut


class ResponseInProgressEvent(_Event):
    type: Literal["response.in_progress"] = "response.in_progress"
    response: ResponseOut


class OutputItemAddedEvent(_Event):
    type: Literal["response.output_item.added"] = "response.output_item.added"
    output_index: int
    item: OutputItemOut


class OutputItemDoneEvent(_Event):
    type: Literal["response.output_item.done"] = "response.output_item.done"
    output_index: int
    item: OutputItemOut


class ContentPartAddedEvent(_Event):
    type: Literal["response.content_part.added"] = "response.content_part.added"
    item_id: str
    output_index: int
    content_index: int
    part: OutputTextOut | RefusalOut


class ContentPartDoneEvent(_Event):
    type: Literal["response.content_part.done"] = "response.content_part.done"
    item_id: str
    output_index: int
    content_index: int
    part: OutputTextOut | RefusalOut


class OutputTextDeltaEvent(_Event):
    type: Literal["response.output_text.delta"] = "response.output_text.delta"
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[dict[str, Any]] = Field(default_factory=list)


class OutputTextDoneEvent(_Event):
    type: Literal["response.output_text.done"] = "response.output_text.done"
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[dict[str, Any]] = Field(default_factory=list)


class RefusalDeltaEvent(_Event):
    type: Literal["response.refusal.delta"] = "response.refusal.delta"
    item_id: str
    output_index: int
    content_index: int
    delta: str


class RefusalDoneEvent(_Event):
    type: Literal["response.refusal.done"] = "response.refusal.done"
    item_id: str
    output_index: int
    content_index: int
    refusal: str


class FunctionCallArgumentsDeltaEvent(_Event):
    type: Literal["response.function_call_arguments.delta"] = "response.function_call_arguments.delta"
    item_id: str
    output_index: int
    delta: str


class FunctionCallArgumentsDoneEvent(_Event):
    type: Literal["response.function_call_arguments.done"] = "response.function_call_arguments.done"
    item_id: str
    output_index: int
    name: str
    arguments: str


class ResponseCompletedEvent(_Event):
    type: Literal["response.completed"] = "response.completed"
    response: ResponseOut


class ResponseIncompleteEvent(_Event):
    type: Literal["response.incomplete"] = "response.incomplete"
    response: ResponseOut


class ResponseFailedEvent(_Event):
    type: Literal["response.failed"] = "response.failed"
    response: ResponseOut


class ErrorEvent(_Event):
    type: Literal["error"] = "error"
    code: str | None
    message: str
    param: str | None = None


_KNOWN_EVENTS = (
    ResponseCreatedEvent,
    ResponseInProgressEvent,
    OutputItemAddedEvent,
    ContentPartAddedEvent,
    OutputTextDeltaEvent,
    OutputTextDoneEvent,
    RefusalDeltaEvent,
    RefusalDoneEvent,
    ContentPartDoneEvent,
    FunctionCallArgumentsDeltaEvent,
    FunctionCallArgumentsDoneEvent,
    OutputItemDoneEvent,
    ResponseCompletedEvent,
    ResponseIncompleteEvent,
    ResponseFailedEvent,
    ErrorEvent,
)
_KNOWN_EVENT_TYPES = [event.model_fields["type"].default for event in _KNOWN_EVENTS]


class OtherEvent(_Event):
    """Any other event of an upstream that serves the Responses API (reasoning summaries, `response.queued`, web
    search...), relayed as it sent it."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(json_schema_extra={"not": {"enum": _KNOWN_EVENT_TYPES}})


STREAM_EVENTS = (*_KNOWN_EVENTS, OtherEvent)

RESPONSES_EXAMPLE = {"model": "gpt-4o-mini", "instructions": "Be brief.", "input": "Say hello."}
RESPONSE_EXAMPLE = {
    "id": "resp_6f1c0d2e9a8b4c7d8e9f0a1b2c3d4e5f",
    "object": "response",
    "created_at": 1764556800,
    "status": "completed",
    "error": None,
    "incomplete_details": None,
    "instructions": "Be brief.",
    "max_output_tokens": None,
    "model": "gpt-4o-mini",
    "output": [
        {
            "type": "message",
            "id": "msg_0a1b2c3d4e5f60718293a4b5c6d7e8f9",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Hello!", "annotations": []}],
        }
    ],
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "store": True,
    "temperature": None,
    "top_p": None,
    "text": {"format": {"type": "text"}},
    "tool_choice": "auto",
    "tools": [],
    "metadata": {},
    "user": None,
    "usage": {
        "input_tokens": 14,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 17,
    },
}
ID_PARAMETER = {
    "name": "response_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The `id` of one of your stored responses.",
}

RESPONSES = {
    "path": "/v1/responses",
    "method": "post",
    "operation_id": "responses_create",
    "tags": ("openai-compatible",),
    "summary": "Create a response (OpenAI's Responses API)",
    "description": (
        "OpenAI's Responses API for every routed model: point any OpenAI SDK at `base_url=<host>/v1` with a djllm "
        "token and call `client.responses.create(...)`. OpenAI models are sent to the upstream's own Responses "
        "endpoint (statelessly: the whole conversation, `store` false, other Responses fields as sent), and so are "
        "local models whose route has `responses_api` on (the server's own `/v1/responses`); Claude models and "
        "other local models through the chat gateway, translated: the input items, instructions, function tools, "
        "tool choice, `text.format` (JSON schema), `max_output_tokens`, `temperature` and `top_p`. Every answer "
        "comes back as output items (`message` with `output_text`, `function_call`). Other tool types "
        "(web search, file search...) and `item_reference` items are refused (400). `store` (default true) "
        "keeps the response for you: `previous_response_id` continues any of your stored responses (the upstream "
        "gets the whole conversation again, statelessly). `stream: true` answers the Responses stream events "
        "(`response.created`, `response.in_progress`, `response.output_item.added`, "
        "`response.content_part.added`, `response.output_text.delta`/`.done`, "
        "`response.function_call_arguments.delta`/`.done`, `response.output_item.done`, `response.completed` "
        "or `response.incomplete`; `error` then `response.failed` if the upstream fails mid-stream), each with "
        "its `sequence_number`, relayed as the upstream's chunks arrive. On a route to an upstream Responses "
        "endpoint every event the upstream sends (reasoning summaries and other output items included) is relayed "
        "as it comes, in its order, shape and numbering; only the response object in the `response.*` events is "
        "djllm's (its `id`, and the `store`, `previous_response_id` and `metadata` you sent). An upstream's own "
        "`error` or `response.failed` is relayed as sent; a stream that breaks off, or ends on an `error` alone, "
        "ends with djllm's `error` (unless the upstream sent one) then `response.failed`. Through the same "
        "gateway as "
        "`/v1/chat/completions`: rate limits, budgets, the response cache and one usage record per request "
        "(endpoint `responses`)."
    ),
    "request_example": RESPONSES_EXAMPLE,
    "responses": {
        200: Body(
            "The response (or an SSE stream of the Responses events).",
            model=ResponseOut,
            example=RESPONSE_EXAMPLE,
            stream="One Responses stream event as JSON, its `type` also in the `event:` line.",
            events=STREAM_EVENTS,
            headers={"X-Djllm-Cached": "`true` when answered from the response cache."},
        )
    },
    "errors": (*LLM_ERRORS, 404),
    "error_meanings": {404: "`previous_response_id` names no stored response of yours (`not_found`)."},
}
RESPONSE_GET = {
    "path": "/v1/responses/{response_id}",
    "method": "get",
    "operation_id": "responses_retrieve",
    "tags": ("openai-compatible",),
    "summary": "A stored response",
    "description": "One of your stored responses (`store` true), as it was answered. Another user's is a 404.",
    "parameters": (ID_PARAMETER,),
    "responses": {200: Body("The response.", model=ResponseOut, example=RESPONSE_EXAMPLE)},
    "errors": (401, 403, 404),
    "error_meanings": {404: "No stored response of yours has this id."},
}
RESPONSE_DELETE = {
    **RESPONSE_GET,
    "method": "delete",
    "operation_id": "responses_delete",
    "summary": "Delete a stored response",
    "description": "Deletes one of your stored responses; a later `previous_response_id` naming it is a 404. "
    "Responses that continued it keep their own conversation.",
    "responses": {
        200: Body(
            "Deleted.",
            model=ResponseDeletedOut,
            example={"id": RESPONSE_EXAMPLE["id"], "object": "response.deleted", "deleted": True},
        )
    },
}

__all__ = ["OpenAIError"]
