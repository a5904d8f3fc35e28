"""Every JSON answer the test suite receives is checked against the served OpenAPI schema, so the schema cannot drift
from what the endpoints send: Django's test `Client` and `AsyncClient`, DRF's `APIClient`, and `httpx` clients
talking to a `live_djllm` server. An answer that does not match fails the test that received it, with the
operation, the status and what was wrong.

The check follows the request to its operation (path template + method), then the status, then the content type,
then the body's schema. Deliberately left out, each for its reason:
"""

import json
import re
from functools import cache
from typing import Any

import pytest

# Paths whose answers are not API operations, and why they are not checked.
SKIPPED = {
    "/admin/": "the admin: HTML pages (and its own autocomplete JSON), not part of the API",
    "/account/": "the account pages: HTML for people",
    "/excel/": "the Excel add-in's static files and manifest",
    "/api/schema/": "the OpenAPI document itself (validated by `make schema-check`)",
    "/api/docs/": "Swagger UI (HTML)",
    "/api/redoc/": "ReDoc (HTML)",
    "/api/v1/swagger2.json": "the Swagger 2.0 document for connectors (validated in test_swagger2)",
}
# Methods whose answers the schema does not describe, and why.
SKIPPED_METHODS = {
    "OPTIONS": "DRF's metadata about a view (and CORS preflights), which OpenAPI has no operation for",
}
API_PREFIXES = ("/api/", "/v1/")


class SchemaMismatch(AssertionError):
    """An answer the schema does not describe."""


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


class ResponseChecker:
    def __init__(self, spec: dict[str, Any]) -> None:
        from jsonschema import Draft202012Validator
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT202012

        self.spec = spec
        self._validator_class = Draft202012Validator
        self._registry = Registry().with_resource("urn:djllm:openapi", Resource(spec, DRAFT202012))
        self._paths = [
            (re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"), template)
            for template in spec["paths"]
        ]
        self._validators: dict[tuple, Any] = {}

    def template(self, path: str) -> str | None:
        for pattern, template in self._paths:
            if pattern.match(path):
                return template
        return None

    def _validator(self, pointer: str):
        validator = self._validators.get(pointer)
        if validator is None:
            schema = {"$ref": f"urn:djllm:openapi#{pointer}"}
            validator = self._validators[pointer] = self._validator_class(schema, registry=self._registry)
        return validator

    def check(self, method: str, path: str, status: int, content_type: str, body: bytes) -> None:
        """Raise `SchemaMismatch` when the answer is not what the schema describes; return quietly when it is, or
        when the answer is not one this check covers (see SKIPPED; bodies that are not JSON)."""
        if not path.startswith(API_PREFIXES) or any(path.startswith(prefix) for prefix in SKIPPED):
            return
        if not _is_json(content_type) or method.upper() in SKIPPED_METHODS:
            return
        method = method.lower()
        where = f"{method.upper()} {path} -> {status}"
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise SchemaMismatch(f"{where}: the body is not JSON ({exc})") from None
        template = self.template(path)
        operation = self.spec["paths"].get(template, {}).get(method) if template else None
        if operation is None:
            # Not an operation: the catch-all's 404, a method a path does not take, a view only a test installs.
            # Each answers an error, in the error shape of its path (the shared error handlers).
            if status < 400:
                raise SchemaMismatch(f"{where}: not a documented operation, yet not an error")
            name = "OpenAIError" if path.startswith("/v1/") else "Error"
            pointer = f"/components/schemas/{name}"
        else:
            response = operation["responses"].get(str(status)) or operation["responses"].get("default")
            if response is None:
                documented = ", ".join(sorted(operation["responses"]))
                raise SchemaMismatch(f"{where}: status {status} is not documented (documented: {documented})")
            media = next((m for m in response.get("content", {}) if _is_json(m)), None)
            if media is None:
                raise SchemaMismatch(f"{where}: answers JSON, which the schema does not document for this status")
            escaped = template.replace("~", "~0").replace("/", "~1")
            media_escaped = media.replace("~", "~0").replace("/", "~1")
            pointer = f"/paths/{escaped}/{method}/responses/{status}/content/{media_escaped}/schema"
            if str(status) not in operation["responses"]:
                pointer = pointer.replace(f"/responses/{status}/", "/responses/default/")
        errors = sorted(self._validator(pointer).iter_errors(data), key=lambda e: list(e.absolute_path))
        if errors:
            lines = [f"- at `{'.'.join(map(str, e.absolute_path)) or '(body)'}`: {e.message[:300]}" for e in errors[:5]]
            raise SchemaMismatch(f"{where}: the body does not match the schema\n" + "\n".join(lines))


@cache
def served_schema() -> dict[str, Any]:
    """The schema `/api/schema/` serves, generated once for the session."""
    from drf_spectacular.generators import SchemaGenerator

    return json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True), default=str))


@cache
def checker() -> ResponseChecker:
    return ResponseChecker(served_schema())


__doc__ += "".join(f"\n- `{prefix}`: {reason}." for prefix, reason in SKIPPED.items())
__doc__ += "".join(f"\n- `{method}` requests: {reason}." for method, reason in SKIPPED_METHODS.items())
__doc__ += (
    "\n- Bodies that are not JSON (event streams, CSV, workbooks, HTML): the schema's SSE events are checked by\n"
)
__doc__ += "  schemathesis (test_schema_conformance).\n"


# --- Where the answers are caught --------------------------------------------------------------------------------


def _check_django(response) -> None:
    request = getattr(response, "request", None) or {}
    if getattr(response, "streaming", False) or not isinstance(request, dict):
        return
    path = request.get("PATH_INFO") or request.get("path") or ""
    method = request.get("REQUEST_METHOD") or request.get("method") or ""
    checker().check(method, path, response.status_code, response.get("Content-Type", ""), response.content)


LIVE_SERVERS: set[str] = set()  # "127.0.0.1:port" of the live_djllm servers running now


def _check_httpx(response) -> None:
    request = response.request
    if f"{request.url.host}:{request.url.port}" not in LIVE_SERVERS or not response.is_stream_consumed:
        return
    try:
        content = response.content
    except Exception:  # a streamed body the caller reads itself
        return
    checker().check(
        request.method, request.url.path, response.status_code, response.headers.get("content-type", ""), content
    )


@pytest.fixture(scope="session", autouse=True)
def _check_answers_against_the_schema():
    import httpx
    from django.test import client

    checker()  # the schema as the code declares it, before any test patches a view
    patch = pytest.MonkeyPatch()
    original_request = client.Client.request
    original_async_request = client.AsyncClient.request
    original_send = httpx.Client.send
    original_async_send = httpx.AsyncClient.send

    def request(self, **kwargs):
        response = original_request(self, **kwargs)
        _check_django(response)
        return response

    async def async_request(self, **kwargs):
        response = await original_async_request(self, **kwargs)
        _check_django(response)
        return response

    def send(self, request, **kwargs):
        response = original_send(self, request, **kwargs)
        _check_httpx(response)
        return response

    async def async_send(self, request, **kwargs):
        response = await original_async_send(self, request, **kwargs)
        _check_httpx(response)
        return response

    patch.setattr(client.Client, "request", request)
    patch.setattr(client.AsyncClient, "request", async_request)
    patch.setattr(httpx.Client, "send", send)
    patch.setattr(httpx.AsyncClient, "send", async_send)
    yield
    patch.undo()
