"""One validation-error formatter: a body the fast path's pydantic model refuses, a field a DRF serializer refuses,
and a Django `ValidationError` raised in a service (a model's `full_clean`) all answer the same 400
`invalid_request`: "Invalid `field`: message", `details` per field path, and `param` (OpenAI's shape) naming it."""

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticValidationError
from rest_framework import serializers

from accounts import services as account_services
from common import validation
from llm.models import UsageRecord

pytestmark = pytest.mark.django_db

ERROR_KEYS = {"code", "message", "details", "request_id"}


@pytest.fixture
def client(token, gateway_settings, prices):
    return Client(HTTP_AUTHORIZATION=f"Bearer {token[1]}")


def invalid(response) -> dict:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert set(error) == ERROR_KEYS and error["code"] == "invalid_request", error
    assert error["request_id"] == response["X-Request-ID"]
    return error


def test_fast_path_drf_and_django_errors_look_the_same(client, token, fake_upstream, monkeypatch):
    fast = invalid(client.post("/api/v1/webhook", {"prompt": "x", "type": "poem"}, content_type="application/json"))
    assert fast["message"].startswith("Invalid `type`: Input should be 'summary'")
    assert list(fast["details"]) == ["type"] and fast["details"]["type"][0] in fast["message"]

    drf = invalid(client.patch("/api/v1/me", {"language": "x" * 51}, content_type="application/json"))
    assert drf["message"] == "Invalid `language`: Ensure this field has no more than 50 characters."
    assert drf["details"] == {"language": ["Ensure this field has no more than 50 characters."]}

    real_update = account_services.user_preferences_update

    def full_clean_in_the_service(*, user, **fields):
        # A value only the model's own validation refuses: the service's full_clean raises Django's
        # ValidationError, not DRF's.
        return real_update(user=user, **fields, timezone="Mars/Base")

    monkeypatch.setattr(account_services, "user_preferences_update", full_clean_in_the_service)
    django = invalid(client.patch("/api/v1/me", {"language": "German"}, content_type="application/json"))
    assert list(django["details"]) == ["timezone"]
    assert django["message"] == f"Invalid `timezone`: {django['details']['timezone'][0]}"
    assert "IANA" in django["message"]
    assert fake_upstream.requests == [] and not UsageRecord.objects.exists()
    assert account_services.user_preferences_get(user=token[0].user).language == ""  # nothing was saved


def test_openai_dialect_names_the_nested_field(client, fake_upstream):
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}, {"role": "robot"}]}
    response = client.post("/v1/chat/completions", body, content_type="application/json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_request", "messages.1.role")
    assert error["message"].startswith("Invalid `messages.1.role`: Input should be 'system'")


def test_a_nested_drf_error_is_one_path_per_field(client, settings):
    """DRF nests list items and child serializers; the details list each failing leaf by its path."""

    class Item(serializers.Serializer):
        email = serializers.EmailField()

    class Body(serializers.Serializer):
        items = Item(many=True)
        tags = serializers.ListField(child=serializers.IntegerField())

    serializer = Body(data={"items": [{"email": "a@example.com"}, {"email": "nope"}], "tags": [1, "x"]})
    assert not serializer.is_valid()
    error = validation.from_drf(serializer.errors)
    assert error.status == 400 and error.code == "invalid_request"
    assert error.details == {
        "items.1.email": ["Enter a valid email address."],
        "tags.1": ["A valid integer is required."],
    }
    assert (error.param, error.message) == ("items.1.email", "Invalid `items.1.email`: Enter a valid email address.")


def test_errors_of_no_field_keep_their_own_text():
    class Body(BaseModel):
        model_config = ConfigDict(strict=True)
        count: int = Field(ge=1)

        @model_validator(mode="after")
        def _never(self):
            raise ValueError("Give count or until, not both.")

    with pytest.raises(PydanticValidationError) as caught:
        Body(count=2)
    error = validation.from_pydantic(caught.value)
    assert error.message == "Give count or until, not both." and error.param is None
    assert error.details == {"non_field_errors": ["Give count or until, not both."]}

    django = validation.from_django(ValidationError("The range is empty."))
    assert (django.message, django.details, django.param) == (
        "The range is empty.",
        {"non_field_errors": ["The range is empty."]},
        None,
    )
    both = validation.from_django(ValidationError({"__all__": ["Pick one."], "end": ["Too early."]}))
    assert both.details == {"non_field_errors": ["Pick one."], "end": ["Too early."]}


def test_pydantic_paths_with_brackets_for_list_items():
    class Event(BaseModel):
        start: str

    class Extraction(BaseModel):
        events: list[Event]

    with pytest.raises(PydanticValidationError) as caught:
        Extraction.model_validate({"events": [{"start": "x"}, {"start": 3}]})
    assert validation.pydantic_details(caught.value, brackets=True) == {
        "events[1].start": ["Input should be a valid string"]
    }
