"""The plain (non-DRF) views describe themselves here: `@openapi_operation(...)` on a view records its path,
method, pydantic input and output models, examples and errors, and one drf-spectacular post-processing hook,
`add_registered_operations`, writes them into the served schema. The models are the ones the view validates its
input with and builds its answer from, so what the schema shows is what is sent."""

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from common.openapi import ERROR_MEANINGS, IDEMPOTENCY_KEY, component_ref, error_schema_name, json_content, sse

SECURITY = [{"bearerAuth": []}, {"apiTokenHeader": []}, {"apiKeyHeader": []}]


@dataclass(frozen=True)
class Body:
    """One documented answer: a JSON body from `model`, and/or an SSE stream whose events' data match `events`."""

    description: str
    model: type[BaseModel] | tuple[type[BaseModel], ...] | None = None  # a tuple: any one of them
    example: Any = None
    examples: dict[str, Any] = field(default_factory=dict)  # name -> value, when one example is not enough
    stream: str = ""  # what the stream's events are, when the operation can answer one
    events: tuple[type[BaseModel], ...] = ()
    stream_done: bool = False  # the stream ends with `data: [DONE]`
    headers: dict[str, str] = field(default_factory=dict)  # name -> description


@dataclass(frozen=True)
class Operation:
    path: str
    method: str
    operation_id: str
    tags: tuple[str, ...]
    summary: str
    description: str
    responses: dict[int, Body]
    errors: tuple[int, ...] = ()
    error_meanings: dict[int, str] = field(default_factory=dict)
    request: type[BaseModel] | None = None
    request_example: Any = None
    parameters: tuple[dict[str, Any], ...] = ()
    public: bool = False  # no token needed

    def render(self, components: dict) -> dict[str, Any]:
        error = {"$ref": f"#/components/schemas/{error_schema_name(self.path)}"}
        meanings = {**ERROR_MEANINGS, **self.error_meanings}
        responses = {str(status): self._response(body, components) for status, body in self.responses.items()}
        for status in self.errors:
            responses[str(status)] = {"description": meanings[status], "content": json_content(error)}
        operation: dict[str, Any] = {
            "operationId": self.operation_id,
            "tags": list(self.tags),
            "summary": self.summary,
            "description": self.description,
            "security": [] if self.public else SECURITY,
            "responses": responses,
        }
        if self.parameters:
            operation["parameters"] = list(self.parameters)
        if self.request is not None:
            content = json_content(component_ref(components, self.request), self.request_example)
            operation["requestBody"] = {"required": True, "content": content}
        return operation

    @staticmethod
    def _response(body: Body, components: dict) -> dict[str, Any]:
        response: dict[str, Any] = {"description": body.description, "content": {}}
        if body.model is not None:
            response["content"].update(json_content(_one_of(components, body.model), body.example))
            if body.examples:
                examples = {name: {"value": value} for name, value in body.examples.items()}
                response["content"]["application/json"]["examples"] = examples
        if body.stream:
            data = _one_of(components, body.events) if body.events else None
            response["content"].update(sse(body.stream, data, done=body.stream_done))
        if body.headers:
            response["headers"] = {
                name: {"description": text, "schema": {"type": "string"}} for name, text in body.headers.items()
            }
        return response


def _one_of(components: dict, models: type[BaseModel] | tuple[type[BaseModel], ...]) -> dict:
    refs = [component_ref(components, model) for model in (models if isinstance(models, tuple) else (models,))]
    return refs[0] if len(refs) == 1 else {"anyOf": refs}


OPERATIONS: dict[tuple[str, str], Operation] = {}

IDEMPOTENCY = IDEMPOTENCY_KEY  # the parameter as an operation lists it (the schema refers to one component)


def openapi_operation(**description: Any):
    """Document the decorated plain view (see `Operation` for the arguments); the view itself is unchanged."""
    operation = Operation(**description)
    OPERATIONS[(operation.path, operation.method.lower())] = operation

    def register(view):
        return view

    return register


def add_registered_operations(result, generator, request, public):
    components = result.setdefault("components", {}).setdefault("schemas", {})
    paths = result.setdefault("paths", {})
    for (path, method), operation in OPERATIONS.items():
        paths.setdefault(path, {})[method] = operation.render(components)
    return result
