"""The API contract every endpoint shares, described once: the error bodies (djllm's and OpenAI's), what each error
status means, `error_responses(*codes)` for an operation's errors, the usage object, the `Idempotency-Key` header,
the shared examples, and the last post-processing hook, which adds to each operation every error status the shared
layers can answer that it does not describe yet (a body that is not JSON, a missing token, a throttle, a request
too large, the database down), so that what a client can receive is documented and checked (schemathesis runs
against this schema, and every JSON answer the test suite receives is validated against it)."""

from typing import Any, Literal

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema_field
from pydantic import BaseModel, Field
from rest_framework import serializers

from common import idempotency_keys
from common.responses import ANTHROPIC_PATHS

REF = "#/components/schemas/{model}"


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable (e.g. `rate_limited`).")
    message: str = Field(description="What happened and what to do, for a person.")
    details: dict[str, Any] = Field(description="Per field or per limit; `{}` when there is nothing more to say.")
    request_id: str


class Error(BaseModel):
    """djllm's error body, on every `/api/` endpoint."""

    error: ErrorDetail


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIError(BaseModel):
    """OpenAI's error body, on `/v1/` (so OpenAI SDKs raise their usual exceptions)."""

    error: OpenAIErrorDetail


class AnthropicErrorDetail(BaseModel):
    type: str = Field(
        description="`invalid_request_error` (400 and other 4xx), `authentication_error` (401), `billing_error` "
        "(402), `permission_error` (403), `not_found_error` (404), `request_too_large` (413), `rate_limit_error` "
        "(429), `api_error` (500 and other 5xx), `overloaded_error` (503)."
    )
    message: str


class AnthropicError(BaseModel):
    """Anthropic's error body, on `/v1/messages` (so Anthropic SDKs raise their usual exceptions)."""

    type: Literal["error"] = "error"
    error: AnthropicErrorDetail


class UsageOut(BaseModel):
    """The tokens of one request, as djllm answers them (the webhook, its stream, the calendar extraction)."""

    input_tokens: int = Field(description="All prompt tokens, cached ones included.")
    output_tokens: int
    cached_input_tokens: int = Field(description="Prompt tokens read from the provider's cache.")
    cache_write_tokens: int = Field(description="Prompt tokens written to the provider's cache.")
    reasoning_tokens: int = Field(description="Of the output tokens.")
    total_tokens: int


@extend_schema_field({"$ref": REF.format(model="UsageOut")})
class UsageField(serializers.DictField):
    """The usage object in a DRF serializer: documented as `UsageOut`."""


def error_schema_name(path: str) -> str:
    """`/v1/messages` speaks Anthropic's dialect, the rest of `/v1/` OpenAI's; everything else speaks djllm's."""
    if path.startswith(ANTHROPIC_PATHS):
        return "AnthropicError"
    return "OpenAIError" if path.startswith("/v1/") else "Error"


# Status -> what it means on any endpoint. An operation passes its own wording where it means more.
ERROR_MEANINGS = {
    400: "Malformed or invalid input (`invalid_request`, `details` names the fields).",
    401: "Missing, unknown, revoked or expired token (`token_missing`, `token_invalid`, ...).",
    402: "A budget is used up (`budget_exceeded`).",
    403: "The token lacks a scope this operation needs (`insufficient_scope`).",
    404: "Not found (`not_found`).",
    405: "Method not allowed (`method_not_allowed`; `Allow` names the methods).",
    409: "Conflict (`conflict`), e.g. an `Idempotency-Key` reused with another body (`idempotency_key_reused`).",
    413: "The body is larger than the server accepts (`request_too_large`; `details` has the limit).",
    415: "The body is not in a media type this operation takes (`unsupported_media_type`).",
    422: "The model's answer could not be used (`details` says why).",
    429: "Too many requests (`rate_limited`; `Retry-After`).",
    500: "An unexpected failure (`internal_error`); the request id names it in the logs.",
    502: "The upstream failed or answered something unusable (`upstream_error`, `upstream_bad_response`, ...).",
    503: "A dependency is down (`database_unavailable`, `rate_limiter_unavailable`; `Retry-After`).",
    504: "The upstream did not answer in time (`upstream_timeout`).",
}
# Added by the hook below: any operation can answer these; 401/403 only where it needs a token, 413/415 only where
# it takes a body.
COMMON_ERRORS = (400, 404, 405, 429, 500, 503)
AUTH_ERRORS = (401, 403)
BODY_ERRORS = (413, 415)


def error_responses(*codes: int, meanings: dict[int, str] | None = None, openai: bool = False) -> dict:
    """The `responses` entries of an operation's errors, for `extend_schema`: each with the error body (djllm's,
    or OpenAI's with `openai=True`) and what the status means (`meanings` overrides the shared wording)."""
    schema = {"$ref": REF.format(model="OpenAIError" if openai else "Error")}
    meanings = {**ERROR_MEANINGS, **(meanings or {})}
    return {code: OpenApiResponse(schema, description=meanings[code]) for code in codes}


def error_example(name: str, status: int, code: str, message: str, details: dict | None = None) -> OpenApiExample:
    return OpenApiExample(
        name,
        status_codes=[str(status)],
        response_only=True,
        value={"error": {"code": code, "message": message, "details": details or {}, "request_id": "3f2a9c0e"}},
    )


USAGE_EXAMPLE = {
    "input_tokens": 52,
    "output_tokens": 2,
    "cached_input_tokens": 0,
    "cache_write_tokens": 0,
    "reasoning_tokens": 0,
    "total_tokens": 54,
}

# The `Idempotency-Key` header, described once: the schema carries it as one parameter component that every
# operation taking it refers to (the hook below replaces each operation's copy with the reference).
IDEMPOTENCY_KEY = {
    "name": idempotency_keys.HEADER,
    "in": "header",
    "required": False,
    "schema": {"type": "string", "maxLength": 255},
    "description": (
        "Makes a retry safe: a retry with the same key (same token) and body gets the first answer back and is not "
        "done or billed again (for IDEMPOTENCY_KEY_TTL, default 24 h). The same key with another body: 409 "
        "(`idempotency_key_reused`); the same key while its first request still runs: 409 "
        "(`idempotency_key_in_use`). 1 to 255 printable ASCII characters without spaces, or 400 "
        "(`invalid_idempotency_key`); empty is no key."
    ),
}
IDEMPOTENCY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_KEY["name"], str, OpenApiParameter.HEADER, required=False, description=IDEMPOTENCY_KEY["description"]
)
IDEMPOTENCY_REF = {"$ref": "#/components/parameters/IdempotencyKey"}


def component_ref(components: dict, model: type[BaseModel]) -> dict:
    """Add a pydantic model (and the models it uses) to the schema's components; a reference to it."""
    schema = model.model_json_schema(ref_template=REF)
    for name, sub in schema.pop("$defs", {}).items():
        components.setdefault(name, sub)
    components[model.__name__] = schema
    return {"$ref": REF.format(model=model.__name__)}


def json_content(schema: dict, example: Any | None = None) -> dict:
    body: dict[str, Any] = {"schema": schema}
    if example is not None:
        body["example"] = example
    return {"application/json": body}


def sse(data_description: str, data_schema: dict | None = None, *, done: bool = False) -> dict:
    """A `text/event-stream` response body, described per event (how schemathesis and OpenAPI 3.2's `itemSchema`
    read it): each event has a `data` field holding JSON text (matching `data_schema`), or `[DONE]` where the
    stream ends that way (`done=True`)."""
    data: dict[str, Any] = {"type": "string", "contentMediaType": "application/json"}
    if data_schema is not None:
        data["contentSchema"] = data_schema
    if done:
        data = {"if": {"const": "[DONE]"}, "else": data}
    data["description"] = data_description
    return {
        "text/event-stream": {
            "schema": {
                "type": "object",
                "required": ["data"],
                "properties": {"data": data, "event": {"type": "string"}, "id": {"type": "string"}},
            }
        }
    }


# Sent on every response by common.middleware.RequestIDMiddleware.
API_VERSION_HEADER = {
    "description": "djllm's version (semantic versioning; CHANGELOG.md says what each version changed). "
    "`/api/v1` and `/v1` change compatibly within a major version.",
    "schema": {"type": "string", "example": "0.1.0"},
}


def _needs_token(operation: dict[str, Any]) -> bool:
    security = operation.get("security")
    return security is None or any(requirement for requirement in security)


def add_error_responses(result, generator, request, public):
    components = result.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    component_ref(schemas, Error)
    component_ref(schemas, OpenAIError)
    component_ref(schemas, AnthropicError)
    component_ref(schemas, UsageOut)
    components.setdefault("parameters", {})["IdempotencyKey"] = IDEMPOTENCY_KEY
    components.setdefault("headers", {})["APIVersion"] = API_VERSION_HEADER
    for path, operations in result.get("paths", {}).items():
        content = {"application/json": {"schema": {"$ref": REF.format(model=error_schema_name(path))}}}
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch", "delete") or not isinstance(operation, dict):
                continue
            statuses = COMMON_ERRORS + (AUTH_ERRORS if _needs_token(operation) else ())
            statuses += BODY_ERRORS if "requestBody" in operation else ()
            responses = operation.setdefault("responses", {})
            for status in statuses:
                responses.setdefault(str(status), {"description": ERROR_MEANINGS[status], "content": content})
            for status, response in responses.items():
                if not isinstance(response, dict) or "$ref" in response:
                    continue
                # An error described only in words still has a body: the error shape of its path.
                if status[:1] in ("4", "5") and not response.get("content"):
                    response["content"] = content
                response.setdefault("headers", {})["X-API-Version"] = {"$ref": "#/components/headers/APIVersion"}
            if "parameters" in operation:
                operation["parameters"] = [
                    IDEMPOTENCY_REF if parameter.get("name") == IDEMPOTENCY_KEY["name"] else parameter
                    for parameter in operation["parameters"]
                ]
    return result
