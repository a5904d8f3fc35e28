"""Render an `AppError` in djllm's `/api/` shape or in OpenAI's shape for `/v1/`."""

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


def _with_headers(response: JsonResponse, error: AppError) -> JsonResponse:
    for name, value in error.headers.items():
        response[name] = value
    return response


def api_error_response(error: AppError) -> JsonResponse:
    return _with_headers(JsonResponse(api_error_body(error), status=error.status), error)


def openai_error_response(error: AppError) -> JsonResponse:
    return _with_headers(JsonResponse(openai_error_body(error), status=error.status), error)


def error_response_for_path(path: str, error: AppError) -> JsonResponse:
    """`/v1/` speaks OpenAI's dialect; everything else under the API speaks djllm's."""
    if path.startswith("/v1/"):
        return openai_error_response(error)
    return api_error_response(error)


def json_response(body: BaseModel, status: int = 200) -> HttpResponse:
    """An answer built from its output model: pydantic serializes it straight to JSON bytes (one pass, no dict)."""
    return HttpResponse(body.model_dump_json(), status=status, content_type="application/json")
