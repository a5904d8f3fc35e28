"""The one provider interface. Providers *return* usage; only the service *records* it."""

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0  # all prompt tokens, cached ones included (OpenAI's `prompt_tokens` convention)
    output_tokens: int = 0
    cached_input_tokens: int = 0  # of input_tokens, read from the provider's prompt cache
    cache_write_tokens: int = 0  # of input_tokens, written to the provider's prompt cache
    reasoning_tokens: int = 0  # of output_tokens

    @property
    def uncached_input_tokens(self) -> int:
        return max(self.input_tokens - self.cached_input_tokens - self.cache_write_tokens, 0)


@dataclass(frozen=True)
class Message:
    role: str  # system | user | assistant | tool
    content: Any  # str, or a list of OpenAI content parts
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[dict] | None = None


@dataclass(frozen=True)
class ChatRequest:
    model: str  # the upstream model name
    messages: list[Message]
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    response_format: dict | None = None  # OpenAI shape: {"type": "json_schema", "json_schema": {...}} or json_object
    tools: list[dict] | None = None  # OpenAI shape
    tool_choice: Any = None
    extra: dict[str, Any] = field(default_factory=dict)  # other OpenAI params passed through (seed, user, ...)
    # `POST /v1/messages`: the Anthropic request as the client sent it (without model and stream). An Anthropic
    # route sends it as it is (cache_control, top_k, metadata, thinking...); other providers use the translation
    # in the fields above.
    anthropic_native: dict[str, Any] | None = None
    # `POST /v1/responses`: the Responses request for an upstream that serves OpenAI's Responses API (its whole
    # input rebuilt, never `previous_response_id`, `store` false), without model and stream. Other upstreams use
    # the chat translation in the fields above.
    responses_native: dict[str, Any] | None = None


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    finish_reason: str | None
    response_id: str | None
    usage: Usage | None  # None when the upstream gave no count
    tool_calls: list[dict] | None = None  # OpenAI shape
    refusal: str | None = None  # OpenAI's `message.refusal`: the model declined, in its own words
    # A streamed answer of an upstream Responses API: every event it sent, as sent, so the response cache replays
    # the same stream (see `Chunk.event`). None otherwise.
    events: list[dict] | None = None


@dataclass(frozen=True)
class Chunk:
    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None  # set on the chunk that carries the (cumulative) usage
    model: str | None = None
    response_id: str | None = None
    tool_calls: list[dict] | None = None  # OpenAI delta shape
    refusal: str = ""  # a piece of OpenAI's `delta.refusal`
    # `POST /v1/responses` on an upstream that serves the Responses API: the upstream's event as it came (decoded
    # JSON), relayed to the client in its order and shape; the fields above are what djllm reads from it.
    event: dict | None = None


def tool_calls_from_deltas(deltas: list[dict]) -> list[dict] | None:
    """Whole tool calls (OpenAI message shape) from streamed deltas: the first delta of a call carries its index, id
    and name, later ones more of its arguments. Raises ValueError for deltas that cannot be put together (no index,
    or a call without id or name), so a caller can refuse to keep a half-understood answer."""
    calls: dict[int, dict] = {}
    for delta in deltas:
        index = delta.get("index")
        if not isinstance(index, int):
            raise ValueError("a tool-call delta without an index")
        call = calls.setdefault(index, {"id": None, "type": "function", "function": {"name": None, "arguments": ""}})
        function = delta.get("function") or {}
        if delta.get("id"):
            call["id"] = delta["id"]
        if delta.get("type"):
            call["type"] = delta["type"]
        if function.get("name"):
            call["function"]["name"] = function["name"]
        call["function"]["arguments"] += function.get("arguments") or ""
    for call in calls.values():
        if not call["id"] or not call["function"]["name"]:
            raise ValueError("a tool call without an id or a name")
    return [calls[index] for index in sorted(calls)] or None


class Provider(Protocol):
    name: str

    async def complete(self, request: ChatRequest) -> Completion: ...

    def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]: ...


class ProviderError(Exception):
    """An upstream failure, already classified. `retryable` drives djllm's own retry loop."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "upstream_error",
        retryable: bool = False,
        retry_after: float | None = None,
        upstream_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.upstream_type = (
            upstream_type  # the upstream's own error type (e.g. `invalid_request_error`), if it sent one
        )
        self.message = message
        self.status = status
        self.code = code
        self.retryable = retryable
        self.retry_after = retry_after
