"""What the async LLM views share: body parsing, token auth, and input validation with pydantic (fast, and the same
models document the endpoints in the OpenAPI schema)."""

import json
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from pydantic import BaseModel, ValidationError

from accounts.authentication import aauthenticate_plaintext, require_scope, token_from_headers
from accounts.token_cache import CachedToken
from common.errors import AppError, InvalidRequest


class UnsupportedMediaType(AppError):
    status, code = 415, "unsupported_media_type"


async def authenticate(request: HttpRequest, scope: str = "llm") -> CachedToken:
    cached = await aauthenticate_plaintext(token_from_headers(request.headers))
    require_scope(cached, scope)
    return cached


def parse_json(request: HttpRequest) -> Any:
    content_type = request.content_type or ""
    if content_type != "application/json":
        raise UnsupportedMediaType(f"Send JSON with `Content-Type: application/json` (got {content_type or 'none'}).")
    try:
        return json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"The body is not valid JSON: {exc}.", code="invalid_json") from None


def validate(model: type[BaseModel], data: Any, *, strict: bool | None = None) -> BaseModel:
    """`strict=False` for form fields, which are all text; JSON bodies keep the model's own (strict) types."""
    if not isinstance(data, dict):
        raise InvalidRequest("The body must be a JSON object.")
    try:
        return model.model_validate(data, strict=strict)
    except ValidationError as exc:
        details: dict[str, list[str]] = {}
        for error in exc.errors(include_url=False):
            field = ".".join(str(part) for part in error["loc"]) or "non_field_errors"
            details.setdefault(field, []).append(error["msg"])
        first = next(iter(details))
        raise InvalidRequest(f"Invalid `{first}`: {details[first][0]}", details=details, param=first) from None


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


class MethodNotAllowed(AppError):
    status, code = 405, "method_not_allowed"


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
