"""`X-API-Version`: one version (config/version.py, pyproject.toml's) on every response, whichever stack answers it:
a DRF endpoint, an error, and the lean ASGI handler of the fast paths served over real HTTP."""

import tomllib
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from config.version import VERSION

BASE_DIR = Path(__file__).resolve().parent.parent


def test_the_version_is_the_package_version_and_a_semantic_one():
    project = tomllib.loads((BASE_DIR / "pyproject.toml").read_text())["project"]
    assert project["version"] == VERSION == settings.API_VERSION
    major, minor, patch = VERSION.split(".")
    assert all(part.isdigit() for part in (major, minor, patch))


def test_a_drf_endpoint_sends_the_version(auth_client):
    response = auth_client.get("/api/v1/me")
    assert response.status_code == 200
    assert response["X-API-Version"] == VERSION


def test_an_error_response_sends_the_version(api_client):
    response = api_client.get("/api/v1/me")  # no token
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_missing"
    assert response["X-API-Version"] == VERSION


def test_a_browser_script_may_read_it_cross_origin(client):
    response = client.get("/api/v1/health", HTTP_ORIGIN="https://excel.officeapps.example")
    assert response["X-API-Version"] == VERSION
    exposed = {h.strip().lower() for h in response["Access-Control-Expose-Headers"].split(",")}
    assert "x-api-version" in exposed


def test_a_not_found_outside_the_api_sends_the_version_too(client):
    assert client.get("/no-such-page/")["X-API-Version"] == VERSION


@pytest.mark.django_db(transaction=True)
def test_the_fast_path_sends_the_version_under_asgi(live_djllm, token):
    health = httpx.get(f"{live_djllm.url}/api/v1/health", timeout=10)
    assert health.status_code == 200
    assert health.headers["X-API-Version"] == VERSION
    # Refused by the lean handler before the body is read (no token): still answered with the header.
    refused = httpx.post(f"{live_djllm.url}/v1/chat/completions", json={"messages": []}, timeout=10)
    assert refused.status_code == 401
    assert refused.headers["X-API-Version"] == VERSION
    # An authenticated fast-path answer.
    models = httpx.get(f"{live_djllm.url}/v1/models", headers={"Authorization": f"Bearer {token[1]}"}, timeout=10)
    assert models.status_code == 200
    assert models.headers["X-API-Version"] == VERSION
