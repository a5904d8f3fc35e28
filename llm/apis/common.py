"""What the async LLM views share: body parsing, token auth, and input validation with pydantic (fast, and the same
models document the endpoints in the OpenAPI schema)."""

import json
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest
from pydantic import BaseModel, ValidationError

from accounts.authentication import aauthenticate_plaintext, require_scope, token_from_headers
from accounts.token_cache import CachedToken
from common.errors import InvalidRequest, MethodNotAllowed, UnsupportedMediaType
from common.parsers import loads, request_too_large
from common.validation import from_pydantic


async def authenticate(request: HttpRequest, scope: str = "llm") -> CachedToken:
    # Under ASGI the lean handler has authenticated the request from its headers before reading the body.
    cached = getattr(request, "djllm_token", None) or await aauthenticate_plaintext(token_from_headers(request.headers))
    require_scope(cached, scope)
    return cached


def parse_json(request: HttpRequest) -> Any:
    content_type = request.content_type or ""
    if content_type != "application/json":
        raise UnsupportedMediaType(f"Send JSON with `Content-Type: application/json` (got {content_type or 'none'}).")
    try:
        raw = request.body
    except RequestDataTooBig:
        raise request_too_large("DATA_UPLOAD_MAX_MEMORY_SIZE", int(request.META.get("CONTENT_LENGTH") or 0)) from None
    return loads(raw)


def validate(model: type[BaseModel], data: Any, *, strict: bool | None = None) -> BaseModel:
    """`strict=False` for form fields, which are all text; JSON bodies keep the model's own (strict) types."""
    if not isinstance(data, dict):
        raise InvalidRequest("The body must be a JSON object.")
    try:
        return model.model_validate(data, strict=strict)
    except ValidationError as exc:
        raise from_pydantic(exc) from None


def prompt_chars(value: Any) -> int:
    """How much of a request the limit counts: text as its characters; anything else the upstream is sent (tools,
    tool calls, images and other non-text parts, schemas) as the characters of its JSON."""
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(
            len(part["text"])
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
            else prompt_chars(part)
            for part in value
        )
    return len(json.dumps(value, ensure_ascii=False, default=str))


def check_prompt_length(total_chars: int) -> None:
    limit = settings.MAX_PROMPT_LENGTH
    if total_chars > limit:
        raise InvalidRequest(
            f"The prompt is {total_chars} characters; the limit is MAX_PROMPT_LENGTH={limit}.",
            code="prompt_too_long",
            details={"max_prompt_length": limit, "length": total_chars},
            param="messages",
        )


def no_cache_requested(request: HttpRequest) -> bool:
    return "no-cache" in request.headers.get("Cache-Control", "").lower()


def check_method(request: HttpRequest, *allowed: str) -> None:
    if request.method not in allowed:
        raise MethodNotAllowed(
            f"Method {request.method} is not allowed here; use {', '.join(allowed)}.",
            headers={"Allow": ", ".join(allowed)},
        )


def money(value) -> str | None:
    """A Decimal amount as a plain decimal string without trailing zeros (None stays None: no price known)."""
    return None if value is None else format(value.normalize(), "f")


def sse(data: str) -> bytes:
    return f"data: {data}\n\n".encode()
