"""The output models of the async LLM endpoints (plain async Django views: the hot path skips DRF). The views build
their answers from these models and document themselves with them (`common.operations.openapi_operation`), so what
the schema shows is what is sent. Also the endpoints' descriptions and examples."""

from typing import Any

from pydantic import BaseModel, Field

from common.openapi import USAGE_EXAMPLE, Error, OpenAIError, UsageOut
from common.operations import Body

# `exclude_if`: a field OpenAI's answers leave out when it has nothing to say (rather than sending null).
OMIT_NONE = {"default": None, "exclude_if": lambda value: value is None}


class WebhookOut(BaseModel):
    result: str
    request_id: str
    provider: str
    model: str
    usage: UsageOut
    usage_estimated: bool = Field(description="The upstream reported no usage; the tokens are counted by djllm.")
    cost_usd: str | None = Field(description="Decimal string; null when the model has no price.")
    cached: bool
    latency_ms: int


class WebhookEventOut(BaseModel):
    """`type: calendar_event`: the events extracted from the text (and created, unless there was a question)."""

    result: dict[str, Any] = Field(description="`{status, question, events, timezone}`, as process-text answers.")
    request_id: str
    provider: str
    model: str
    usage: UsageOut
    cost_usd: str | None
    cached: bool


class WebhookDelta(BaseModel):
    """A piece of the result, as the upstream sends it."""

    delta: str


class WebhookDone(BaseModel):
    """The stream's last event: the fields of the plain answer."""

    done: bool = True
    result: str
    request_id: str
    provider: str
    model: str
    usage: UsageOut
    usage_estimated: bool
    cost_usd: str | None
    cached: bool


class ChatMessageOut(BaseModel):
    role: str = "assistant"
    content: str | None
    refusal: str | None = Field(description="The model's refusal, when it refused.")
    tool_calls: list[dict[str, Any]] | None = Field(**OMIT_NONE, description="Present when the model called tools.")


class ChoiceOut(BaseModel):
    index: int = 0
    message: ChatMessageOut
    finish_reason: str | None
    logprobs: dict[str, Any] | None = Field(default=None, description="Always null: log probabilities are not relayed.")


class ChatUsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: dict[str, int] = Field(description="`cached_tokens`.")
    completion_tokens_details: dict[str, int] = Field(description="`reasoning_tokens`.")


class ChatCompletionOut(BaseModel):
    id: str
    object: str = "chat.completion"
    created: int
    model: str
    choices: list[ChoiceOut]
    usage: ChatUsageOut
    system_fingerprint: str | None = Field(default=None, description="Always null.")


class ChunkDeltaOut(BaseModel):
    """What this chunk adds; the first chunk carries the role."""

    role: str | None = Field(**OMIT_NONE)
    content: str | None = Field(**OMIT_NONE)
    refusal: str | None = Field(**OMIT_NONE)
    tool_calls: list[dict[str, Any]] | None = Field(**OMIT_NONE)


class ChunkChoiceOut(BaseModel):
    index: int = 0
    delta: ChunkDeltaOut
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = Field(default=None, description="Always null.")


class ChatCompletionChunkOut(BaseModel):
    """One event of a streamed completion; with `stream_options.include_usage`, a last one with no choices and the
    usage."""

    id: str
    object: str = "chat.completion.chunk"
    created: int
    model: str
    system_fingerprint: str | None = Field(default=None, description="Always null.")
    choices: list[ChunkChoiceOut]
    usage: ChatUsageOut | None = Field(**OMIT_NONE)


class ModelOut(BaseModel):
    id: str
    object: str = "model"
    created: int
    owned_by: str


class ModelListOut(BaseModel):
    object: str = "list"
    data: list[ModelOut]


CHAT_EXAMPLE = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}],
    "temperature": 0,
}
CHAT_RESPONSE_EXAMPLE = {
    "id": "chatcmpl-123",
    "object": "chat.completion",
    "created": 1764201600,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello!", "refusal": None},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ],
    "usage": {
        "prompt_tokens": 14,
        "completion_tokens": 2,
        "total_tokens": 16,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
    "system_fingerprint": None,
}
WEBHOOK_EXAMPLE = {
    "prompt": "The delivery was late and the box was damaged.",
    "type": "sentiment",
    "source": "excel",
    "language": "English",
}
WEBHOOK_RESPONSE_EXAMPLE = {
    "result": "negative",
    "request_id": "3f2a9c0e",
    "provider": "openai",
    "model": "gpt-4o-mini-2024-07-18",
    "usage": USAGE_EXAMPLE,
    "usage_estimated": False,
    "cost_usd": "0.0000090",
    "cached": False,
    "latency_ms": 412,
}
LLM_ERRORS = (400, 401, 402, 403, 415, 429, 502, 503, 504)

CHAT_COMPLETIONS = {
    "path": "/v1/chat/completions",
    "method": "post",
    "operation_id": "chat_completions_create",
    "tags": ("openai-compatible",),
    "summary": "Chat completion (OpenAI-compatible)",
    "description": (
        "OpenAI's chat completions API for every routed model (gpt-*, o*, claude-*, `openai/`, `anthropic/`, "
        "`local/` prefixes, admin aliases). Point any OpenAI SDK at `base_url=<host>/v1` with a djllm token. "
        "`stream: true` answers Server-Sent Events ending in `data: [DONE]`; `stream_options.include_usage` "
        "adds the usage chunk. `temperature: 0` or `cache: true` answers identical requests from the response "
        "cache at no cost; `cache: false` or `Cache-Control: no-cache` bypasses it."
    ),
    "request_example": CHAT_EXAMPLE,
    "responses": {
        200: Body(
            "The completion (or an SSE stream of chunks).",
            model=ChatCompletionOut,
            example=CHAT_RESPONSE_EXAMPLE,
            stream="A `chat.completion.chunk` object as JSON; an OpenAI-shaped error object if the upstream fails "
            "mid-stream; `[DONE]` last.",
            events=(ChatCompletionChunkOut, OpenAIError),
            stream_done=True,
        )
    },
    "errors": LLM_ERRORS,
}
MODELS = {
    "path": "/v1/models",
    "method": "get",
    "operation_id": "models_list",
    "tags": ("openai-compatible",),
    "summary": "Routable models",
    "description": (
        "Every model a client can send: the aliases an administrator defined, every model priced today at a provider "
        "this server can reach (by the name that routes to it), and each such provider's default model. Prices: "
        "`GET /api/v1/models`."
    ),
    "responses": {
        200: Body(
            "Models.",
            model=ModelListOut,
            example={
                "object": "list",
                "data": [{"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "openai"}],
            },
        )
    },
    "errors": (401,),
}
WEBHOOK = {
    "path": "/api/v1/webhook",
    "method": "post",
    "operation_id": "webhook_process",
    "tags": ("llm",),
    "summary": "Process a text (the Flask-era webhook)",
    "description": (
        "Runs the prompt template for `type` (summary, keywords, sentiment, entities, translation, custom) "
        "tailored to `source`, in `language`, and answers the result with exact usage and cost. "
        '`MAX_PROMPT_LENGTH` limits `prompt`. `stream: true` answers SSE: `{"delta": ...}` events, then one '
        '`{"done": true, ...}` event with usage and cost. `type: calendar_event` answers the extracted events. '
        "`conversation_id` continues one of your conversations (its history, trimmed to the model's context "
        "window, goes before the prompt, and the exchange is stored in it; another user's is a 404)."
    ),
    "request_example": WEBHOOK_EXAMPLE,
    "responses": {
        200: Body(
            "The result (or, with `stream: true`, an SSE stream).",
            model=(WebhookOut, WebhookEventOut),
            example=WEBHOOK_RESPONSE_EXAMPLE,
            stream='`{"delta": "..."}` for each piece of the result; last `{"done": true, ...}` with the fields of '
            'the plain answer, or `{"error": {...}}` if the upstream fails mid-stream.',
            events=(WebhookDelta, WebhookDone, Error),
        )
    },
    "errors": (*LLM_ERRORS, 404, 409, 422),
    "error_meanings": {
        409: "`type: calendar_event` only: connect (or reconnect) Google Calendar first (`calendar_not_connected`, "
        "`calendar_reconnect_required`).",
        422: "`type: calendar_event` only: the model's answer was not a valid event (`calendar_extraction_invalid`; "
        "`details` names what was wrong).",
    },
}
