"""Render an `AppError` in djllm's `/api/` shape, in OpenAI's shape for `/v1/`, or in Anthropic's for `/v1/messages`."""

from django.http import HttpResponse, JsonResponse
from pydantic import BaseModel

from common.errors import AppError
from common.request_id import current_request_id


def api_error_body(error: AppError) -> dict:
    return {
        "error": {
            "code": error.code,
            "message": error.message,
            "details": error.details,
            "request_id": current_request_id(),
        }
    }


def openai_error_body(error: AppError) -> dict:
    return {"error": {"message": error.message, "type": error.openai_type, "param": error.param, "code": error.code}}


# Anthropic's error types by HTTP status, so its SDKs raise their own classes (they choose by status, and show the
# type); any other 4xx is an `invalid_request_error`, any other 5xx an `api_error`.
ANTHROPIC_ERROR_TYPES = {
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}
ANTHROPIC_PATHS = ("/v1/messages",)


def anthropic_error_type(status: int) -> str:
    return ANTHROPIC_ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


def anthropic_error_body(error: AppError) -> dict:
    """An upstream's own Anthropic error type is kept (an `overloaded_error` in a stream stays one)."""
    kind = error.details.get("upstream_type")
    if kind not in ANTHROPIC_ERROR_TYPES.values() and kind not in ("invalid_request_error", "api_error"):
        kind = anthropic_error_type(error.status)
    return {"type": "error", "error": {"type": kind, "message": error.message}}


def _with_headers(response: JsonResponse, error: AppError) -> JsonResponse:
    for name, value in error.headers.items():
        response[name] = value
    return response


def api_error_response(error: AppError) -> JsonResponse:
    return _with_headers(JsonResponse(api_error_body(error), status=error.status), error)


def openai_error_response(error: AppError) -> JsonResponse:
    return _with_headers(JsonResponse(openai_error_body(error), status=error.status), error)


def anthropic_error_response(error: AppError) -> JsonResponse:
    return _with_headers(JsonResponse(anthropic_error_body(error), status=error.status), error)


def error_response_for_path(path: str, error: AppError) -> JsonResponse:
    """`/v1/messages` speaks Anthropic's dialect, the rest of `/v1/` OpenAI's; everything else djllm's."""
    if path.startswith(ANTHROPIC_PATHS):
        return anthropic_error_response(error)
    if path.startswith("/v1/"):
        return openai_error_response(error)
    return api_error_response(error)


def json_response(body: BaseModel, status: int = 200) -> HttpResponse:
    """An answer built from its output model: pydantic serializes it straight to JSON bytes (one pass, no dict)."""
    return HttpResponse(body.model_dump_json(), status=status, content_type="application/json")
