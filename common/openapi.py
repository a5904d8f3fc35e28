"""OpenAPI pieces shared by every endpoint: the error body, and the error statuses any operation can answer.

The operations describe their own success and their own error meanings; this last post-processing hook adds, for
each operation, every error status the shared layers can answer that the operation does not describe yet (a body
that is not JSON, a missing token, a throttle, a request too large, the database down), and the error body to any
error an operation describes only in words, so that what a client can receive is documented and checked
(schemathesis runs against this schema in the test suite)."""

from typing import Any

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details", "request_id"],
            "properties": {
                "code": {"type": "string", "description": "Stable, machine-readable (e.g. `rate_limited`)."},
                "message": {"type": "string", "description": "What happened and what to do, for a person."},
                "details": {"type": "object", "additionalProperties": True},
                "request_id": {"type": "string"},
            },
        }
    },
}
OPENAI_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}

# Status -> what it means on any endpoint. 401/403 only where the operation needs a token; 413/415 only where it
# takes a body.
COMMON_ERRORS = {
    "400": "Malformed or invalid input (`invalid_request`, `details` names the fields).",
    "404": "Not found (`not_found`).",
    "405": "Method not allowed (`method_not_allowed`; `Allow` names the methods).",
    "429": "Too many requests (`rate_limited`; `Retry-After`).",
    "503": "A dependency is down (`database_unavailable`, `rate_limiter_unavailable`; `Retry-After`).",
}
AUTH_ERRORS = {
    "401": "Missing, unknown, revoked or expired token (`token_missing`, `token_invalid`, ...).",
    "403": "The token lacks a scope this operation needs (`insufficient_scope`).",
}
BODY_ERRORS = {
    "413": "The body is larger than the server accepts (`request_too_large`; `details` has the limit).",
    "415": "The body is not in a media type this operation takes (`unsupported_media_type`).",
}


def sse(data_description: str, data_schema: dict | None = None) -> dict:
    """A `text/event-stream` response body, described per event (how schemathesis and OpenAPI 3.2's `itemSchema`
    read it): each event has a `data` field holding JSON text, or `[DONE]` where the stream ends that way."""
    data: dict[str, Any] = {"type": "string", "description": data_description, "contentMediaType": "application/json"}
    if data_schema is not None:
        data["contentSchema"] = data_schema
    return {
        "text/event-stream": {
            "schema": {
                "type": "object",
                "required": ["data"],
                "properties": {"data": data, "event": {"type": "string"}, "id": {"type": "string"}},
            }
        }
    }


def _needs_token(operation: dict[str, Any]) -> bool:
    security = operation.get("security")
    return security is None or any(requirement for requirement in security)


def add_error_responses(result, generator, request, public):
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Error", ERROR_SCHEMA)
    schemas.setdefault("OpenAIError", OPENAI_ERROR_SCHEMA)
    for path, operations in result.get("paths", {}).items():
        name = "OpenAIError" if path.startswith("/v1/") else "Error"
        content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch", "delete") or not isinstance(operation, dict):
                continue
            statuses = dict(COMMON_ERRORS)
            if _needs_token(operation):
                statuses.update(AUTH_ERRORS)
            if "requestBody" in operation:
                statuses.update(BODY_ERRORS)
            responses = operation.setdefault("responses", {})
            for status, description in statuses.items():
                responses.setdefault(status, {"description": description, "content": content})
            for status, response in responses.items():
                # An error described only in words still has a body: the error shape of its path.
                if status[:1] in ("4", "5") and isinstance(response, dict) and not response.get("content"):
                    response["content"] = content
    return result
