"""`GET /api/v1/swagger2.json`: a Swagger 2.0 definition for a Power Automate / Logic Apps custom connector (they
take only Swagger 2.0): the webhook, the batch API and jobs, with the `X-API-Token` header as an apiKey.

Hand-built rather than converted from the OpenAPI 3.1 document: 2.0 has no `anyOf` or null type, and a connector
wants flat, typed fields with `x-ms-summary` titles. Jobs use the asynchronous polling pattern connectors follow
by default: 202 + `Location` + `Retry-After`, polled until a 200. See docs/power-automate.md.
"""

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from common.errors import AppError
from common.request_input import check_method
from common.responses import api_error_response
from llm.webhook_calls import SOURCES, TYPES

_TYPES = [t for t in TYPES if t != "calendar_event"]


def _s(type_: str, summary: str, description: str = "", **extra) -> dict[str, Any]:
    field = {"type": type_, "x-ms-summary": summary, **extra}
    if description:
        field["description"] = description
    return field


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/definitions/{name}"}


def _options() -> dict[str, Any]:
    return {
        "type": _s("string", "Type", "What to do with each text.", enum=_TYPES, default="custom"),
        "source": _s("string", "Source", "Where the texts come from.", enum=list(SOURCES), default="excel"),
        "language": _s("string", "Language", "Output language; default: your preferences."),
        "model": _s("string", "Model", "e.g. gpt-4o-mini, claude-haiku-4-5, or an alias."),
        "system": _s(
            "string", "Instruction", "Replaces the template's instruction.", **{"x-ms-visibility": "advanced"}
        ),
        "cache": _s(
            "boolean", "Use cache", "Default: cached when temperature is 0.", **{"x-ms-visibility": "advanced"}
        ),
    }


def _definitions() -> dict[str, Any]:
    nullable = {"x-nullable": True}
    parameters = {
        "type": "object",
        "x-ms-summary": "Parameters",
        "properties": {
            "temperature": _s("number", "Temperature", "0 makes recalculation free (cached).", minimum=0, maximum=2),
            "max_tokens": _s("integer", "Max tokens", minimum=1),
            "top_p": _s("number", "Top p", minimum=0, maximum=1, **{"x-ms-visibility": "advanced"}),
        },
    }
    usage = {
        "type": "object",
        "properties": {
            name: {"type": "integer"}
            for name in (
                "input_tokens",
                "output_tokens",
                "cached_input_tokens",
                "cache_write_tokens",
                "reasoning_tokens",
                "total_tokens",
            )
        },
    }
    item_error = {
        "type": "object",
        "properties": {"code": _s("string", "Error code"), "message": _s("string", "Error message")},
        **nullable,
    }
    batch_request = {
        "type": "object",
        "required": ["items"],
        "properties": {
            **_options(),
            "parameters": parameters,
            "items": {
                "type": "array",
                "x-ms-summary": "Items",
                "description": "At most BATCH_MAX_ITEMS (default 200) per batch, JOB_MAX_ITEMS (50,000) per job.",
                "items": _ref("Item"),
            },
        },
    }
    totals = {
        "type": "object",
        "properties": {
            "items": {"type": "integer"},
            "ok": {"type": "integer"},
            "errors": {"type": "integer"},
            "cached": {"type": "integer"},
            "cost_usd": _s("string", "Cost (USD)", **nullable),
        },
    }
    return {
        "WebhookRequest": {
            "type": "object",
            "required": ["prompt"],
            "properties": {
                "prompt": _s("string", "Text", "The text to work on."),
                **_options(),
                "temperature": parameters["properties"]["temperature"],
                "max_tokens": parameters["properties"]["max_tokens"],
            },
        },
        "WebhookResponse": {
            "type": "object",
            "properties": {
                "result": _s("string", "Result"),
                "request_id": _s("string", "Request ID"),
                "provider": _s("string", "Provider"),
                "model": _s("string", "Model"),
                "usage": usage,
                "usage_estimated": {"type": "boolean"},
                "cost_usd": _s("string", "Cost (USD)", "Decimal string; null when the model has no price.", **nullable),
                "cached": _s("boolean", "Cached"),
                "latency_ms": {"type": "integer"},
            },
        },
        "Item": {
            "type": "object",
            "required": ["prompt"],
            "properties": {
                "id": _s("string", "Item ID", "Echoed in the result; default: the item's index."),
                "prompt": _s("string", "Text"),
                "model": _s("string", "Model", "Overrides the batch's model.", **{"x-ms-visibility": "advanced"}),
            },
        },
        "BatchRequest": batch_request,
        "ItemError": item_error,
        "ItemResult": {
            "type": "object",
            "properties": {
                "id": _s("string", "Item ID", "As sent (a number when a number was sent)."),
                "status": _s("string", "Status", "ok or error (jobs: also pending, running, cancelled)."),
                "result": _s("string", "Result", **nullable),
                "error": _ref("ItemError"),
                "cached": _s("boolean", "Cached"),
                "cost_usd": _s("string", "Cost (USD)", **nullable),
            },
        },
        "Totals": totals,
        "BatchResponse": {
            "type": "object",
            "properties": {
                "batch_id": _s("string", "Batch ID"),
                "request_id": _s("string", "Request ID"),
                "results": {"type": "array", "x-ms-summary": "Results", "items": _ref("ItemResult")},
                "totals": _ref("Totals"),
            },
        },
        "Job": {
            "type": "object",
            "properties": {
                "id": _s("string", "Job ID"),
                "status": _s("string", "Status", enum=["queued", "running", "done", "cancelled", "failed"]),
                "total": _s("integer", "Total rows"),
                "done": _s("integer", "Rows done", "Finished rows, failed ones included."),
                "failed": _s("integer", "Rows failed"),
                "cancelled": _s("integer", "Rows cancelled"),
                "pending": _s("integer", "Rows pending"),
                "running": _s("integer", "Rows running"),
                "cached": _s("integer", "Rows from cache"),
                "cost_usd": _s("string", "Cost so far (USD)"),
                "eta_seconds": _s("number", "ETA (seconds)", **nullable),
                "batch_id": _s("string", "Batch ID"),
                "source": _s("string", "Source", enum=["json", "xlsx", "csv"]),
                "error": _ref("ItemError"),
                "created_at": _s("string", "Created", format="date-time"),
                "started_at": _s("string", "Started", format="date-time", **nullable),
                "finished_at": _s("string", "Finished", format="date-time", **nullable),
                "links": {
                    "type": "object",
                    "properties": {
                        "self": {"type": "string"},
                        "results": {"type": "string"},
                        "cancel": {"type": "string"},
                    },
                },
            },
        },
        "JobResults": {
            "type": "object",
            "properties": {
                "id": _s("string", "Job ID"),
                "status": _s("string", "Status"),
                "batch_id": _s("string", "Batch ID"),
                "results": {"type": "array", "x-ms-summary": "Results", "items": _ref("ItemResult")},
                "totals": _ref("Totals"),
            },
        },
        "Error": {
            "type": "object",
            "properties": {
                "error": {
                    "type": "object",
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "details": {"type": "object"},
                        "request_id": {"type": "string"},
                    },
                }
            },
        },
    }


_ERRORS = {"default": {"description": "djllm error", "schema": _ref("Error")}}
_IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "type": "string",
    "required": False,
    "x-ms-summary": "Idempotency key",
    "x-ms-visibility": "advanced",
    "description": "A retry with the same key gets the first answer back and is not billed again.",
}
_JOB_ID = {
    "name": "job_id",
    "in": "path",
    "type": "string",
    "format": "uuid",
    "required": True,
    "x-ms-summary": "Job ID",
}
_POLL_HEADERS = {
    "Location": {"type": "string", "description": "The job's URL, polled until it answers 200."},
    "Retry-After": {"type": "integer", "description": "Seconds to wait before polling."},
}


def _paths() -> dict[str, Any]:
    job_responses = {
        "200": {"description": "The job is finished (done, cancelled or failed).", "schema": _ref("Job")},
        "202": {"description": "Queued or running: poll Location.", "schema": _ref("Job"), "headers": _POLL_HEADERS},
        **_ERRORS,
    }
    return {
        "/api/v1/webhook": {
            "post": {
                "operationId": "ProcessText",
                "summary": "Process a text",
                "description": "Summary, keywords, sentiment, entities, translation or a custom instruction.",
                "parameters": [{"name": "body", "in": "body", "required": True, "schema": _ref("WebhookRequest")}],
                "responses": {"200": {"description": "The result.", "schema": _ref("WebhookResponse")}, **_ERRORS},
            }
        },
        "/api/v1/batch": {
            "post": {
                "operationId": "ProcessBatch",
                "summary": "Process many texts",
                "description": "Up to 200 texts at once; one result per item, in order. A failed item does not fail "
                "the batch.",
                "parameters": [
                    {"name": "body", "in": "body", "required": True, "schema": _ref("BatchRequest")},
                    _IDEMPOTENCY,
                ],
                "responses": {"200": {"description": "Results.", "schema": _ref("BatchResponse")}, **_ERRORS},
            }
        },
        "/api/v1/jobs": {
            "post": {
                "operationId": "CreateJob",
                "summary": "Process a large list in the background",
                "description": "Up to 50,000 texts. Answers 202 with Location; Power Automate polls it until the job "
                "is finished (the action's asynchronous pattern), then use Get job results.",
                "parameters": [
                    {"name": "body", "in": "body", "required": True, "schema": _ref("BatchRequest")},
                    _IDEMPOTENCY,
                ],
                "responses": job_responses,
            }
        },
        "/api/v1/jobs/{job_id}": {
            "get": {
                "operationId": "GetJob",
                "summary": "Get job progress",
                "description": "Total, done, failed, cost so far and ETA. 202 while running, 200 when finished.",
                "parameters": [_JOB_ID],
                "responses": job_responses,
            }
        },
        "/api/v1/jobs/{job_id}/results": {
            "get": {
                "operationId": "GetJobResults",
                "summary": "Get job results",
                "description": "Every row in input order.",
                "parameters": [
                    _JOB_ID,
                    {
                        "name": "format",
                        "in": "query",
                        "type": "string",
                        "enum": ["json"],
                        "default": "json",
                        "required": False,
                        "x-ms-visibility": "internal",
                    },
                ],
                "responses": {"200": {"description": "Results.", "schema": _ref("JobResults")}, **_ERRORS},
            }
        },
        "/api/v1/jobs/{job_id}/cancel": {
            "post": {
                "operationId": "CancelJob",
                "summary": "Cancel a job",
                "description": "Rows not started are cancelled; rows in flight finish.",
                "parameters": [_JOB_ID],
                "responses": {"200": {"description": "The cancelled job.", "schema": _ref("Job")}, **_ERRORS},
            }
        },
    }


def swagger2_document(*, host: str, scheme: str) -> dict[str, Any]:
    return {
        "swagger": "2.0",
        "info": {
            "title": "djllm",
            "version": "1.0",
            "description": "Self-hosted LLM API: process texts one at a time, in batches, or as background jobs.",
        },
        "host": host,
        "basePath": "/",
        "schemes": [scheme],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "securityDefinitions": {
            "api_key": {
                "type": "apiKey",
                "in": "header",
                "name": "X-API-Token",
                "description": "A djllm API token (python manage.py createtoken USERNAME).",
            }
        },
        "security": [{"api_key": []}],
        "paths": _paths(),
        "definitions": _definitions(),
    }


def swagger2(request: HttpRequest) -> HttpResponse:
    """Public, like /api/schema/: a connector imports it by URL before it has a token."""
    try:
        check_method(request, "GET", "HEAD")
    except AppError as error:
        return api_error_response(error)
    return JsonResponse(swagger2_document(host=request.get_host(), scheme=request.scheme))
