"""`GET /api/v1/swagger2.json`: the Power Automate connector's definition validates as Swagger 2.0 and describes
what the server really answers."""

import pytest
from django.test import Client
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from openapi_spec_validator.validation.validators import OpenAPIV2SpecValidator

from jobs.inputs import BatchIn
from jobs.schema import BatchItemOut, BatchOut, JobOut
from jobs.swagger2 import swagger2_document
from llm.webhook_calls import WebhookIn


@pytest.fixture
def document(db, settings):
    settings.ALLOWED_HOSTS = ["djllm.example.com"]
    response = Client().get("/api/v1/swagger2.json", HTTP_HOST="djllm.example.com")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    return response.json()


def test_validates_as_swagger_2(document):
    validate(document, cls=OpenAPIV2SpecValidator)
    assert document["swagger"] == "2.0"


def test_the_validator_does_reject_a_broken_definition(document):
    broken = {**document, "paths": {"/api/v1/batch": {"post": {"operationId": "x"}}}}  # no responses
    with pytest.raises(OpenAPIValidationError):
        validate(broken, cls=OpenAPIV2SpecValidator)


def test_host_scheme_and_api_key_security(document):
    assert (document["host"], document["schemes"], document["basePath"]) == ("djllm.example.com", ["http"], "/")
    assert document["securityDefinitions"] == {
        "api_key": {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Token",
            "description": "A djllm API token (python manage.py createtoken USERNAME).",
        }
    }
    assert document["security"] == [{"api_key": []}]


def test_operations_a_connector_needs(document):
    operations = {
        op["operationId"]: (method.upper(), path)
        for path, methods in document["paths"].items()
        for method, op in methods.items()
    }
    assert operations == {
        "ProcessText": ("POST", "/api/v1/webhook"),
        "ProcessBatch": ("POST", "/api/v1/batch"),
        "CreateJob": ("POST", "/api/v1/jobs"),
        "GetJob": ("GET", "/api/v1/jobs/{job_id}"),
        "GetJobResults": ("GET", "/api/v1/jobs/{job_id}/results"),
        "CancelJob": ("POST", "/api/v1/jobs/{job_id}/cancel"),
    }
    create = document["paths"]["/api/v1/jobs"]["post"]["responses"]
    assert set(create["202"]["headers"]) == {"Location", "Retry-After"}  # the polling pattern
    assert create["200"]["schema"] == {"$ref": "#/definitions/Job"}
    batch = document["paths"]["/api/v1/batch"]["post"]["parameters"]
    assert {"name": "Idempotency-Key", "in": "header"}.items() <= batch[1].items()


def test_definitions_match_what_the_server_answers(document):
    definitions = document["definitions"]
    assert set(definitions["BatchResponse"]["properties"]) == set(BatchOut.model_fields)
    assert set(definitions["ItemResult"]["properties"]) == set(BatchItemOut.model_fields)
    assert set(definitions["Job"]["properties"]) == set(JobOut.model_fields)
    # Every field the connector can send is one the server accepts (`template` is left out: an alias).
    assert set(definitions["BatchRequest"]["properties"]) <= set(BatchIn.model_fields)
    assert set(definitions["WebhookRequest"]["properties"]) <= set(WebhookIn.model_fields)


def test_https_behind_a_proxy(settings, db):
    settings.ALLOWED_HOSTS = ["djllm.example.com"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    response = Client().get("/api/v1/swagger2.json", HTTP_X_FORWARDED_PROTO="https", HTTP_HOST="djllm.example.com")
    assert response.json()["schemes"] == ["https"]
    assert swagger2_document(host="h", scheme="https")["schemes"] == ["https"]


def test_only_get(db):
    response = Client().post("/api/v1/swagger2.json")
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"


def test_derived_from_the_openapi_3_schema(document):
    """One description for both documents: the connector's fields and texts are the served schema's."""
    from common.openapi import IDEMPOTENCY_KEY, UsageOut
    from llm.schema import WebhookOut

    definitions = document["definitions"]
    assert set(definitions["WebhookResponse"]["properties"]) == set(WebhookOut.model_fields)
    assert set(definitions["Usage"]["properties"]) == set(UsageOut.model_fields)
    batch = document["paths"]["/api/v1/batch"]["post"]
    assert batch["parameters"][1]["description"] == IDEMPOTENCY_KEY["description"]
    # What 2.0 cannot say is said its way: null -> x-nullable, no `calendar_event` (served elsewhere), no stream.
    webhook = definitions["WebhookRequest"]["properties"]
    assert webhook["language"]["x-nullable"] is True and webhook["language"]["type"] == "string"
    assert "calendar_event" not in webhook["type"]["enum"] and "stream" not in webhook
    assert "anyOf" not in str(document) and "'null'" not in str(document)
