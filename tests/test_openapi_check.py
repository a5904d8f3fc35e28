"""The suite-wide check (tests/openapi_check.py) does fail a test whose answer the schema does not describe."""

import httpx
import pytest
from django.test import Client
from rest_framework.response import Response

from common.apis import HealthApi
from tests.openapi_check import SchemaMismatch, checker


def test_a_wrong_body_from_a_view_fails_the_request(db, monkeypatch):
    monkeypatch.setattr(HealthApi, "get", lambda self, request: Response({"status": 3}))
    with pytest.raises(
        SchemaMismatch, match=r"(?s)GET /api/v1/health -> 200: the body does not match.*`status`: 3 is not of type"
    ):
        Client().get("/api/v1/health")


def test_an_undocumented_status_fails(db, monkeypatch):
    monkeypatch.setattr(HealthApi, "get", lambda self, request: Response({"status": "ok"}, status=418))
    with pytest.raises(SchemaMismatch, match="status 418 is not documented"):
        Client().get("/api/v1/health")


def test_a_wrong_body_over_real_http_fails_the_request(live_djllm, monkeypatch):
    """The `httpx` clients of live-server tests (the openai SDK's too) are checked as well."""
    monkeypatch.setattr(HealthApi, "get", lambda self, request: Response({"status": 3}))
    with pytest.raises(SchemaMismatch, match="GET /api/v1/health -> 200: the body does not match"):
        httpx.get(f"{live_djllm.url}/api/v1/health")


def test_a_right_answer_passes(db):
    assert Client().get("/api/v1/health").json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("path", "status", "body", "problem"),
    [
        ("/v1/models", 200, b'{"object": "list", "data": [{"id": 1}]}', "data.0"),
        ("/v1/models", 401, b'{"error": {"code": "x", "message": "m", "details": {}, "request_id": "r"}}', "type"),
        ("/api/v1/webhook", 400, b'{"error": {"message": "m", "type": "t", "param": null, "code": null}}', "code"),
        ("/api/v1/nowhere", 404, b'{"detail": "Not found."}', "error"),
        ("/api/v1/health", 200, b"not json", "not JSON"),
    ],
)
def test_mismatches_it_reports(path, status, body, problem):
    method = "POST" if path == "/api/v1/webhook" else "GET"
    with pytest.raises(SchemaMismatch, match=problem):
        checker().check(method, path, status, "application/json", body)


@pytest.mark.parametrize(
    "path", ["/admin/login/", "/account/", "/excel/manifest.xml", "/api/schema/", "/api/v1/swagger2.json"]
)
def test_what_it_leaves_out_on_purpose(path):
    checker().check("GET", path, 200, "application/json", b'{"anything": "goes"}')


def test_path_templates_match_their_paths():
    assert checker().template("/api/v1/jobs/8d7f2c1e-4b3a-4f5e-9a8b-7c6d5e4f3a2b/results") == (
        "/api/v1/jobs/{job_id}/results"
    )
    assert checker().template("/api/v1/jobs/x/y/results") is None


def test_options_answers_are_left_out_on_purpose():
    checker().check("OPTIONS", "/api/v1/jobs", 200, "application/json", b'{"name": "Job"}')
    with pytest.raises(SchemaMismatch):
        checker().check("GET", "/api/v1/jobs", 200, "application/json", b'{"name": "Job"}')
