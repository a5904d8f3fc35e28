"""OpenAPI for the async LLM endpoints. They are plain async Django views (the hot path skips DRF), validated by
pydantic models; this drf-spectacular post-processing hook documents them from those same models."""

from typing import Any

from pydantic import BaseModel, Field

from common.openapi import sse
from llm.apis.chat import ChatCompletionIn
from llm.webhook_calls import WebhookIn

REF = "#/components/schemas/{model}"


class UsageOut(BaseModel):
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    total_tokens: int


class WebhookOut(BaseModel):
    result: str
    request_id: str
    provider: str
    model: str
    usage: UsageOut
    usage_estimated: bool
    cost_usd: str | None = Field(description="Decimal string; null when the model has no price.")
    cached: bool
    latency_ms: int


class ChatMessageOut(BaseModel):
    role: str
    content: str | None
    tool_calls: list[dict[str, Any]] | None = None


class ChoiceOut(BaseModel):
    index: int
    message: ChatMessageOut
    finish_reason: str | None


class ChatUsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: dict[str, int]
    completion_tokens_details: dict[str, int]


class ChatCompletionOut(BaseModel):
    id: str
    object: str = "chat.completion"
    created: int
    model: str
    choices: list[ChoiceOut]
    usage: ChatUsageOut


class ModelOut(BaseModel):
    id: str
    object: str = "model"
    created: int
    owned_by: str


class ModelListOut(BaseModel):
    object: str = "list"
    data: list[ModelOut]


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIError(BaseModel):
    error: OpenAIErrorDetail


def _register(components: dict, model: type[BaseModel]) -> dict:
    schema = model.model_json_schema(ref_template=REF)
    for name, sub in schema.pop("$defs", {}).items():
        components.setdefault(name, sub)
    components[model.__name__] = schema
    return {"$ref": REF.format(model=model.__name__)}


def _json(schema: dict, example: Any | None = None) -> dict:
    body: dict[str, Any] = {"schema": schema}
    if example is not None:
        body["example"] = example
    return {"application/json": body}


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
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "finish_reason": "stop"}],
    "usage": {
        "prompt_tokens": 14,
        "completion_tokens": 2,
        "total_tokens": 16,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
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
    "usage": {
        "input_tokens": 52,
        "output_tokens": 2,
        "cached_input_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "total_tokens": 54,
    },
    "usage_estimated": False,
    "cost_usd": "0.0000090",
    "cached": False,
    "latency_ms": 412,
}


def add_llm_paths(result, generator, request, public):
    components = result.setdefault("components", {}).setdefault("schemas", {})
    security = [{"bearerAuth": []}, {"apiTokenHeader": []}]
    openai_error = {
        "description": "OpenAI-shaped error (so SDKs raise their usual exceptions).",
        "content": _json(_register(components, OpenAIError)),
    }
    api_error = {
        "description": "djllm error: {error: {code, message, details, request_id}}.",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
    errors = {str(code): openai_error for code in (400, 401, 402, 403, 415, 429, 502, 503, 504)}
    paths = result.setdefault("paths", {})
    paths["/v1/chat/completions"] = {
        "post": {
            "operationId": "chat_completions_create",
            "tags": ["openai-compatible"],
            "summary": "Chat completion (OpenAI-compatible)",
            "description": (
                "OpenAI's chat completions API for every routed model (gpt-*, o*, claude-*, `openai/`, `anthropic/`, "
                "`local/` prefixes, admin aliases). Point any OpenAI SDK at `base_url=<host>/v1` with a djllm token. "
                "`stream: true` answers Server-Sent Events ending in `data: [DONE]`; `stream_options.include_usage` "
                "adds the usage chunk. `temperature: 0` or `cache: true` answers identical requests from the response "
                "cache at no cost; `cache: false` or `Cache-Control: no-cache` bypasses it."
            ),
            "security": security,
            "requestBody": {"required": True, "content": _json(_register(components, ChatCompletionIn), CHAT_EXAMPLE)},
            "responses": {
                "200": {
                    "description": "The completion (or an SSE stream of chunks).",
                    "content": {
                        **_json(_register(components, ChatCompletionOut), CHAT_RESPONSE_EXAMPLE),
                        **sse(
                            "A `chat.completion.chunk` object as JSON; an OpenAI-shaped error object if the upstream "
                            "fails mid-stream; `[DONE]` last."
                        ),
                    },
                },
                **errors,
            },
        }
    }
    paths["/v1/models"] = {
        "get": {
            "operationId": "models_list",
            "tags": ["openai-compatible"],
            "summary": "Routable models",
            "description": "The admin-defined aliases and each configured provider's default model.",
            "security": security,
            "responses": {
                "200": {
                    "description": "Models.",
                    "content": _json(
                        _register(components, ModelListOut),
                        {
                            "object": "list",
                            "data": [{"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "openai"}],
                        },
                    ),
                },
                "401": openai_error,
            },
        }
    }
    paths["/api/v1/webhook"] = {
        "post": {
            "operationId": "webhook_process",
            "tags": ["llm"],
            "summary": "Process a text (the Flask-era webhook)",
            "description": (
                "Runs the prompt template for `type` (summary, keywords, sentiment, entities, translation, custom) "
                "tailored to `source`, in `language`, and answers the result with exact usage and cost. "
                '`MAX_PROMPT_LENGTH` limits `prompt`. `stream: true` answers SSE: `{"delta": ...}` events, then one '
                '`{"done": true, ...}` event with usage and cost.'
            ),
            "security": security,
            "requestBody": {"required": True, "content": _json(_register(components, WebhookIn), WEBHOOK_EXAMPLE)},
            "responses": {
                "200": {
                    "description": "The result (or, with `stream: true`, an SSE stream).",
                    "content": {
                        **_json(_register(components, WebhookOut), WEBHOOK_RESPONSE_EXAMPLE),
                        **sse(
                            '`{"delta": "..."}` for each piece of the result; last `{"done": true, ...}` with the '
                            'fields of the plain answer, or `{"error": {...}}` if the upstream fails mid-stream.'
                        ),
                    },
                },
                **{str(code): api_error for code in (400, 401, 402, 403, 415, 429, 502, 503, 504)},
                "409": {
                    "description": "`type: calendar_event` only: connect (or reconnect) Google Calendar first "
                    "(`calendar_not_connected`, `calendar_reconnect_required`).",
                    "content": api_error["content"],
                },
                "422": {
                    "description": "`type: calendar_event` only: the model's answer was not a valid event "
                    "(`calendar_extraction_invalid`; `details` names what was wrong).",
                    "content": api_error["content"],
                },
            },
        }
    }
    return result
