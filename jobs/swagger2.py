"""`GET /api/v1/swagger2.json`: a Swagger 2.0 definition for a Power Automate / Logic Apps custom connector (they
take only Swagger 2.0): the webhook, the batch API and jobs, with the `X-API-Token` header as an apiKey.

Derived from the served OpenAPI 3.1 schema, so the connector sees the same fields, descriptions and limits as
every other client. 2.0 has no `anyOf` or null type: a nullable field becomes the field with `x-nullable`, a field
of several types a text field, and each field's title its `x-ms-summary`. What is the connector's own: its
operation ids, the definitions' names, which fields are advanced, and the asynchronous polling pattern connectors
follow by default for jobs (202 + `Location` + `Retry-After`, polled until a 200). See docs/power-automate.md.
"""

from functools import cache
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from common.errors import AppError
from common.request_input import check_method
from common.responses import api_error_response

# (operation id, method, path) of each operation a connector offers.
OPERATIONS = (
    ("ProcessText", "post", "/api/v1/webhook"),
    ("ProcessBatch", "post", "/api/v1/batch"),
    ("CreateJob", "post", "/api/v1/jobs"),
    ("GetJob", "get", "/api/v1/jobs/{job_id}"),
    ("GetJobResults", "get", "/api/v1/jobs/{job_id}/results"),
    ("CancelJob", "post", "/api/v1/jobs/{job_id}/cancel"),
)
# The OpenAPI 3 component -> its name in the connector (names its users and flows already know).
NAMES = {
    "WebhookIn": "WebhookRequest",
    "WebhookOut": "WebhookResponse",
    "BatchIn": "BatchRequest",
    "BatchOut": "BatchResponse",
    "BatchItemOut": "ItemResult",
    "BatchTotals": "Totals",
    "ItemIn": "Item",
    "JobInRequest": "JobRequest",
    "JobOut": "Job",
    "JobResultsOut": "JobResults",
    "JobItemOut": "JobItemResult",
    "UsageOut": "Usage",
}
# Fields shown under "advanced" in the connector's forms.
ADVANCED = {"system", "cache", "top_p", "stop", "provider", "template"}
# What a connector cannot use: an answer it cannot read (SSE), a type served elsewhere.
LEFT_OUT_FIELDS = {"stream"}
LEFT_OUT_VALUES = {"calendar_event"}
POLL_HEADERS = {
    "Location": {"type": "string", "description": "The job's URL, polled until it answers 200."},
    "Retry-After": {"type": "integer", "description": "Seconds to wait before polling."},
}
KEPT = ("type", "format", "description", "default", "minimum", "maximum", "minLength", "maxLength", "required")


class _Converter:
    """OpenAPI 3.1 schema objects -> Swagger 2.0 ones, collecting the definitions they refer to."""

    def __init__(self, openapi: dict[str, Any]) -> None:
        self.components = openapi["components"]
        self.definitions: dict[str, Any] = {}

    def ref(self, ref: str) -> dict[str, Any]:
        name = ref.rsplit("/", 1)[-1]
        target = self.components["schemas"][name]
        if target.get("type") != "object":  # an enum or a scalar: inline
            return self.schema(target)
        v2_name = NAMES.get(name, name)
        if v2_name not in self.definitions:
            self.definitions[v2_name] = {}  # taken before converting, so a model that refers to itself ends
            self.definitions[v2_name] = self.schema(target)
        return {"$ref": f"#/definitions/{v2_name}"}

    def schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in schema:
            return self.ref(schema["$ref"])
        nullable = False
        options = schema.get("anyOf") or schema.get("oneOf") or schema.get("allOf")
        if options:
            kept = [option for option in options if option.get("type") != "null"]
            nullable = len(kept) < len(options)
            base = self.schema(kept[0]) if len(kept) == 1 else {"type": "string"}
            if "$ref" in base:
                return base  # 2.0 ignores anything beside a reference
            out = {**base, **{key: schema[key] for key in KEPT if key in schema and key != "type"}}
        else:
            out = {key: schema[key] for key in KEPT if key in schema}
            types = schema.get("type")
            if isinstance(types, list):
                nullable = "null" in types
                out["type"] = next((t for t in types if t != "null"), "string")
        if out.get("default", "") is None:
            del out["default"]  # 2.0 has no null
        if "enum" in schema:
            out["enum"] = [value for value in schema["enum"] if value not in LEFT_OUT_VALUES and value is not None]
        if "title" in schema and out.get("type") != "object":  # an object's title is its class name
            out["x-ms-summary"] = schema["title"]
        if "items" in schema:
            out["items"] = self.schema(schema["items"])
        if "properties" in schema:
            out["properties"] = {
                name: self.field(name, field)
                for name, field in schema["properties"].items()
                if name not in LEFT_OUT_FIELDS
            }
        if isinstance(schema.get("additionalProperties"), dict):
            out["additionalProperties"] = self.schema(schema["additionalProperties"])
        if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
            out["additionalProperties"] = {}  # a free-form object
        if nullable:
            out["x-nullable"] = True
        return out

    def field(self, name: str, schema: dict[str, Any]) -> dict[str, Any]:
        out = self.schema(schema)
        if name in ADVANCED and "$ref" not in out:
            out["x-ms-visibility"] = "advanced"
        return out

    def parameter(self, parameter: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in parameter:
            parameter = self.components["parameters"][parameter["$ref"].rsplit("/", 1)[-1]]
        out = {key: parameter[key] for key in ("name", "in", "required", "description") if key in parameter}
        out.update(self.schema(parameter.get("schema", {"type": "string"})))
        out["required"] = parameter.get("required", False) or parameter["in"] == "path"
        out.setdefault("x-ms-summary", parameter["name"].replace("_", " ").replace("-", " ").capitalize())
        if parameter["in"] == "header":
            out["x-ms-visibility"] = "advanced"
        return out


def _json_schema(content: dict[str, Any] | None) -> dict[str, Any] | None:
    media = (content or {}).get("application/json")
    return media.get("schema") if media else None


def _operation(converter: _Converter, operation_id: str, method: str, path: str, source: dict) -> dict[str, Any]:
    parameters = [
        converter.parameter(parameter)
        for parameter in source.get("parameters", [])
        if parameter.get("name") != "format"
    ]
    if path.endswith("/results"):  # JSON only: a connector reads rows, not files
        parameters.append(
            {
                "name": "format",
                "in": "query",
                "type": "string",
                "enum": ["json"],
                "default": "json",
                "required": False,
                "x-ms-visibility": "internal",
            }
        )
    body = _json_schema(source.get("requestBody", {}).get("content"))
    if body is not None:
        parameters.insert(0, {"name": "body", "in": "body", "required": True, "schema": converter.schema(body)})
    responses: dict[str, Any] = {}
    for status, response in source["responses"].items():
        schema = _json_schema(response.get("content"))
        if not status.startswith("2") or schema is None:
            continue
        if "anyOf" in schema:  # the webhook: the plain answer (the calendar one is for `calendar_event`)
            schema = schema["anyOf"][0]
        responses[status] = {"description": response["description"], "schema": converter.schema(schema)}
        if status == "202":
            responses[status]["headers"] = POLL_HEADERS
    if "202" in responses and "200" not in responses:
        # Power Automate polls `Location` until a 200, whose body is then the action's output.
        responses["200"] = {"description": "The job is finished.", "schema": responses["202"]["schema"]}
    responses["default"] = {
        "description": "djllm error",
        "schema": converter.schema({"$ref": "#/components/schemas/Error"}),
    }
    out = {"operationId": operation_id, "summary": source.get("summary", ""), "responses": responses}
    if source.get("description"):
        out["description"] = source["description"]
    if parameters:
        out["parameters"] = parameters
    return out


@cache
def _openapi() -> dict[str, Any]:
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(request=None, public=True)


def swagger2_document(*, host: str, scheme: str) -> dict[str, Any]:
    openapi = _openapi()
    converter = _Converter(openapi)
    paths: dict[str, Any] = {}
    for operation_id, method, path in OPERATIONS:
        source = openapi["paths"][path][method]
        paths.setdefault(path, {})[method] = _operation(converter, operation_id, method, path, source)
    return {
        "swagger": "2.0",
        "info": {
            "title": "djllm",
            "version": openapi["info"]["version"],
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
        "paths": paths,
        "definitions": converter.definitions,
    }


def swagger2(request: HttpRequest) -> HttpResponse:
    """Public, like /api/schema/: a connector imports it by URL before it has a token."""
    try:
        check_method(request, "GET", "HEAD")
    except AppError as error:
        return api_error_response(error)
    return JsonResponse(swagger2_document(host=request.get_host(), scheme=request.scheme))
