"""`POST /v1/messages` (Anthropic's Messages API) and `POST /v1/messages/count_tokens`: the request models the views
validate with, the output models they build their answers and stream events from, and the operations' descriptions
(`common.operations.openapi_operation`), so what the schema shows is what is sent."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from common.openapi import AnthropicError
from common.operations import Body
from llm.schema import LLM_ERRORS

DEFAULT_MODEL = "default"


class AnthropicMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]] = Field(
        description="A string, or content blocks: `text`, `image` (base64 or URL source), `document`, "
        "`tool_use` (assistant), `tool_result` (user)."
    )


class CountTokensIn(BaseModel):
    """Anthropic's Messages request without `max_tokens`; `model` is optional (`default`: the caller's preferred
    provider and model, else the server's)."""

    model_config = ConfigDict(extra="allow", strict=True)
    model: str = Field(
        default=DEFAULT_MODEL,
        min_length=1,
        max_length=200,
        description="Any routed model (claude-* pass through; gpt-*, o*, `local/`, aliases are translated). "
        "`default` (or absent): the caller's preferred provider and model, else the server's.",
    )
    messages: list[AnthropicMessageIn] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = Field(default=None, description="A string or `text` blocks.")
    tools: list[dict[str, Any]] | None = Field(default=None, description="`{name, description, input_schema}`.")
    tool_choice: dict[str, Any] | None = Field(
        default=None, description="`{type: auto | any | none}` or `{type: tool, name}`."
    )


class MessagesIn(CountTokensIn):
    """Anthropic's Messages request. `cache` is djllm's own switch for the response cache."""

    max_tokens: int = Field(ge=1)
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0, description="Sent to Claude models only (OpenAI has no top_k).")
    stop_sequences: list[str] | None = None
    metadata: dict[str, Any] | None = Field(default=None, description="`user_id` (OpenAI models: `user`).")
    stream: bool = False
    cache: bool | None = Field(default=None, description="djllm: force (true) or bypass (false) the response cache.")


class TextBlockOut(BaseModel):
    type: Literal["text"] = "text"
    text: str


class ToolUseBlockOut(BaseModel):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]


class MessageUsageOut(BaseModel):
    """Anthropic's convention: `input_tokens` excludes the prompt tokens read from or written to the cache."""

    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = Field(description="Prompt tokens written to the provider's cache.")
    cache_read_input_tokens: int = Field(description="Prompt tokens read from the provider's cache.")


class MessageOut(BaseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[TextBlockOut | ToolUseBlockOut]
    stop_reason: str | None = Field(description="`end_turn`, `max_tokens`, `stop_sequence`, `tool_use`, `refusal`.")
    stop_sequence: str | None = Field(default=None, description="Always null: which sequence matched is not relayed.")
    usage: MessageUsageOut


class MessageStartEvent(BaseModel):
    type: Literal["message_start"] = "message_start"
    message: MessageOut


class ContentBlockStartEvent(BaseModel):
    type: Literal["content_block_start"] = "content_block_start"
    index: int
    content_block: TextBlockOut | ToolUseBlockOut


class TextDeltaOut(BaseModel):
    type: Literal["text_delta"] = "text_delta"
    text: str


class InputJsonDeltaOut(BaseModel):
    type: Literal["input_json_delta"] = "input_json_delta"
    partial_json: str


class ContentBlockDeltaEvent(BaseModel):
    type: Literal["content_block_delta"] = "content_block_delta"
    index: int
    delta: TextDeltaOut | InputJsonDeltaOut


class ContentBlockStopEvent(BaseModel):
    type: Literal["content_block_stop"] = "content_block_stop"
    index: int


class MessageDeltaOut(BaseModel):
    stop_reason: str | None
    stop_sequence: str | None = None


class MessageDeltaEvent(BaseModel):
    """The stop reason and the whole usage (cumulative, input and cache counts included)."""

    type: Literal["message_delta"] = "message_delta"
    delta: MessageDeltaOut
    usage: MessageUsageOut


class MessageStopEvent(BaseModel):
    type: Literal["message_stop"] = "message_stop"


class PingEvent(BaseModel):
    type: Literal["ping"] = "ping"


class CountTokensOut(BaseModel):
    input_tokens: int


MESSAGES_EXAMPLE = {
    "model": "claude-haiku-4-5",
    "max_tokens": 256,
    "system": "Be brief.",
    "messages": [{"role": "user", "content": "Say hello."}],
}
MESSAGE_RESPONSE_EXAMPLE = {
    "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
    "type": "message",
    "role": "assistant",
    "model": "claude-haiku-4-5",
    "content": [{"type": "text", "text": "Hello!"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 14, "output_tokens": 4, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
}
ANTHROPIC_ERRORS = (*LLM_ERRORS, 404)
ANTHROPIC_ERROR_MEANINGS = {
    400: "Invalid input (`invalid_request_error`): a missing `max_tokens`, an unknown model, a content block the "
    "model cannot take.",
    401: "Missing, unknown, revoked or expired token (`authentication_error`).",
    402: "A budget is used up (`billing_error`).",
    403: "The token lacks the `llm` scope (`permission_error`).",
    429: "Too many requests, or the upstream rate limits (`rate_limit_error`; `Retry-After`).",
    502: "The upstream failed (`api_error`).",
    503: "A dependency is down (`overloaded_error`; `Retry-After`).",
    504: "The upstream did not answer in time (`api_error`).",
}

MESSAGES = {
    "path": "/v1/messages",
    "method": "post",
    "operation_id": "messages_create",
    "tags": ("anthropic-compatible",),
    "summary": "Create a message (Anthropic-compatible)",
    "description": (
        "Anthropic's Messages API for every routed model. Point an Anthropic SDK at `base_url=<host>` with a djllm "
        "token as `api_key` (sent as `x-api-key`) or `auth_token` (Bearer). Claude models get the request as sent "
        "(cache_control, top_k, metadata and other fields included); OpenAI and local models get it translated "
        "(system, text and image blocks, tools, tool_use and tool_result, stop sequences; `top_k` and thinking "
        "blocks have no equivalent and are left out) and their answer translated back (text and tool_use blocks, "
        "stop reasons, usage). `stream: true` answers Anthropic's Server-Sent Events (`message_start`, `ping`, "
        "`content_block_start`, `content_block_delta` with `text_delta` or `input_json_delta`, "
        "`content_block_stop`, `message_delta` with the stop reason and the whole usage, `message_stop`; `error` "
        "if the upstream fails mid-stream). Through the same gateway as `/v1/chat/completions`: rate limits, "
        "budgets, the response cache (`temperature: 0` or `cache: true`) and one usage record per request "
        "(endpoint `messages`). Errors are in Anthropic's shape. A `model` of `default` uses the caller's "
        "preferred provider and model."
    ),
    "request_example": MESSAGES_EXAMPLE,
    "responses": {
        200: Body(
            "The message (or an SSE stream of Anthropic's events).",
            model=MessageOut,
            example=MESSAGE_RESPONSE_EXAMPLE,
            stream="One of Anthropic's stream events as JSON, its `type` also in the `event:` line.",
            events=(
                MessageStartEvent,
                PingEvent,
                ContentBlockStartEvent,
                ContentBlockDeltaEvent,
                ContentBlockStopEvent,
                MessageDeltaEvent,
                MessageStopEvent,
                AnthropicError,
            ),
            headers={"X-Djllm-Cached": "`true` when answered from the response cache."},
        )
    },
    "errors": ANTHROPIC_ERRORS,
    "error_meanings": ANTHROPIC_ERROR_MEANINGS,
}
COUNT_TOKENS = {
    "path": "/v1/messages/count_tokens",
    "method": "post",
    "operation_id": "messages_count_tokens",
    "tags": ("anthropic-compatible",),
    "summary": "Count a message's input tokens (an upper bound)",
    "description": (
        "An estimate made by djllm, without calling the upstream, by the rule its budget reservations use: "
        "every UTF-8 byte of what would be sent (system, text, images and documents by their JSON, tools, tool "
        "calls and results) counts as one token, plus a few tokens of framing per message and per request. No "
        "tokenizer turns a byte into more than one token, so the real count is never higher (typically it is "
        "about a quarter of this for English text). Not billed, no usage record."
    ),
    "request_example": {k: v for k, v in MESSAGES_EXAMPLE.items() if k != "max_tokens"},
    "responses": {200: Body("The estimate.", model=CountTokensOut, example={"input_tokens": 38})},
    "errors": (400, 401, 403, 415),
    "error_meanings": ANTHROPIC_ERROR_MEANINGS,
}
