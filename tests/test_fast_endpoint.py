"""The fast path's one view skeleton (`llm.endpoints.fast_endpoint`): what a decorated view sees, and the errors it
answers before and after the view runs, in the endpoint's own shape."""

import json

import pytest
from asgiref.sync import async_to_sync
from django.http import JsonResponse
from django.test import RequestFactory
from pydantic import BaseModel, ConfigDict, Field

from common.errors import Conflict, InvalidRequest
from llm.endpoints import fast_endpoint

pytestmark = pytest.mark.django_db


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    text: str = Field(min_length=1)
    count: int = 1


def too_many(data) -> None:
    if isinstance(data, dict) and data.get("count", 0) > 3:
        raise InvalidRequest("Too many.", code="too_many_items", param="count")


seen = {}


@fast_endpoint(methods=("POST", "PUT"), body=NoteIn, check=too_many, with_data=True)
async def note(request, token, body, data):
    seen.update(token=token, body=body, data=data)
    if body.text == "conflict":
        raise Conflict("Already there.")
    return JsonResponse({"text": body.text})


@fast_endpoint(methods=("GET",), scope="calendar", errors="openai")
async def listing(request, token):
    return JsonResponse({"user": token.token.user.username})


def call(view, method="post", body=None, token=None, content_type="application/json"):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    factory = getattr(RequestFactory(), method)
    if body is None:
        request = factory("/x", **headers)
    else:
        request = factory("/x", json.dumps(body), content_type=content_type, **headers)
    response = async_to_sync(view)(request)
    return response.status_code, json.loads(response.content), response


def test_the_view_gets_the_token_the_model_and_the_data_as_sent(token):
    status, payload, _ = call(note, body={"text": "hi"}, token=token[1])
    assert (status, payload) == (200, {"text": "hi"})
    assert seen["token"].token.pk == token[0].pk
    assert seen["body"] == NoteIn(text="hi", count=1) and seen["data"] == {"text": "hi"}
    assert getattr(note, "csrf_exempt", False) is True  # token-authenticated: no CSRF check


def test_errors_before_the_view_in_djllm_shape(token, make_token):
    status, payload, response = call(note, method="get", token=token[1])
    assert (status, payload["error"]["code"], response["Allow"]) == (405, "method_not_allowed", "POST, PUT")
    assert call(note, body={"text": "hi"})[1]["error"]["code"] == "token_missing"
    assert call(note, body={"text": "hi"}, token=token[1], content_type="text/plain")[0] == 415
    status, payload, _ = call(note, body={"text": ""}, token=token[1])
    assert (status, payload["error"]["message"]) == (400, "Invalid `text`: String should have at least 1 character")
    assert set(payload["error"]) == {"code", "message", "details", "request_id"}
    # `check` runs on the data before the model validates it.
    assert call(note, body={"text": "", "count": 9}, token=token[1])[1]["error"]["code"] == "too_many_items"
    _, calendar_only = make_token(user=token[0].user, scopes=["calendar"])
    status, payload, _ = call(note, body={"text": "hi"}, token=calendar_only)
    assert (status, payload["error"]["code"]) == (403, "insufficient_scope")


def test_an_error_the_view_raises_is_answered_in_the_endpoint_shape(token):
    status, payload, _ = call(note, body={"text": "conflict"}, token=token[1])
    assert (status, payload["error"]["code"], payload["error"]["message"]) == (409, "conflict", "Already there.")


def test_openai_shape_scope_and_no_body(token, make_token):
    status, payload, _ = call(listing, method="get", token=token[1])
    assert (status, payload) == (200, {"user": token[0].user.username})
    _, llm_only = make_token(user=token[0].user, scopes=["llm"])
    status, payload, _ = call(listing, method="get", token=llm_only)
    assert status == 403 and set(payload["error"]) == {"message", "type", "param", "code"}
    assert (payload["error"]["code"], payload["error"]["type"]) == ("insufficient_scope", "permission_error")
