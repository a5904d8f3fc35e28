"""Reading a request in the plain (non-DRF) views: method check, JSON body, input validation with pydantic (fast,
and the same models document the endpoints in the OpenAPI schema), and the `Cache-Control: no-cache` opt-out."""

from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest
from pydantic import BaseModel, ValidationError

from common.errors import InvalidRequest, MethodNotAllowed, UnsupportedMediaType
from common.parsers import loads, request_too_large
from common.validation import from_pydantic


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


def no_cache_requested(request: HttpRequest) -> bool:
    return "no-cache" in request.headers.get("Cache-Control", "").lower()


def check_method(request: HttpRequest, *allowed: str) -> None:
    if request.method not in allowed:
        raise MethodNotAllowed(
            f"Method {request.method} is not allowed here; use {', '.join(allowed)}.",
            headers={"Allow": ", ".join(allowed)},
        )
