"""CORS: open (`*`, no credentials) on `/api/` and `/v1/` for browser clients like Office Scripts; never on the
admin or the account page; `ALLOWED_ORIGINS` narrows the origins (checked in a fresh process, since the settings
read the environment once at import)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

BASE_DIR = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.django_db


def preflight(client, path, origin="https://excel.officeapps.example", headers="authorization, x-api-token"):
    return client.options(
        path,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS=headers,
    )


def header_list(response, name) -> set[str]:
    return {item.strip().lower() for item in response.get(name, "").split(",") if item.strip()}


@pytest.mark.parametrize("path", ["/api/v1/me", "/v1/chat/completions", "/api/v1/health"])
@pytest.mark.parametrize("origin", ["https://excel.officeapps.example", "null", "http://localhost:3000"])
def test_preflight_from_any_origin_is_open_without_credentials(client, path, origin):
    response = preflight(client, path, origin=origin)
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response
    assert {"POST", "GET"} <= {m.strip() for m in response["Access-Control-Allow-Methods"].split(",")}
    allowed = header_list(response, "Access-Control-Allow-Headers")
    assert {"authorization", "x-api-token", "content-type", "idempotency-key", "x-request-id"} <= allowed


def test_actual_response_exposes_rate_limit_and_request_id_headers(client):
    response = client.get("/api/v1/health", HTTP_ORIGIN="https://excel.officeapps.example")
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response
    exposed = header_list(response, "Access-Control-Expose-Headers")
    assert {"retry-after", "x-request-id", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} <= exposed


def test_error_responses_are_readable_cross_origin_too(client):
    # A browser only lets the script read a 401 body if the 401 carries the CORS header.
    response = client.get("/api/v1/me", HTTP_ORIGIN="https://excel.officeapps.example")
    assert response.status_code == 401
    assert response["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("path", ["/admin/", "/admin/login/", "/account/", "/account/login/"])
def test_admin_and_account_page_are_never_cors_open(path):
    client = Client()
    response = preflight(client, path)
    assert "Access-Control-Allow-Origin" not in response
    assert "Access-Control-Allow-Headers" not in response
    response = client.get(path, HTTP_ORIGIN="https://evil.example")
    assert "Access-Control-Allow-Origin" not in response


_PROBE = """
import json, django
django.setup()
from django.test import Client
c = Client()
out = {}
for origin in ("https://a.example", "https://b.example"):
    pre = c.options("/api/v1/me", HTTP_ORIGIN=origin, HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
                    HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization")
    get = c.get("/api/v1/health", HTTP_ORIGIN=origin)
    out[origin] = {"preflight": pre.headers.get("Access-Control-Allow-Origin"),
                   "credentials": pre.headers.get("Access-Control-Allow-Credentials"),
                   "get": get.headers.get("Access-Control-Allow-Origin")}
admin = c.options("/admin/login/", HTTP_ORIGIN="https://a.example", HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET")
out["admin"] = admin.headers.get("Access-Control-Allow-Origin")
print(json.dumps(out))
"""


def _probe(allowed_origins: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(DJANGO_SETTINGS_MODULE="config.settings.test", ALLOWED_ORIGINS=allowed_origins)
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_allowed_origins_narrows_to_the_listed_origin():
    seen = _probe("https://a.example")
    assert seen["https://a.example"] == {
        "preflight": "https://a.example",
        "credentials": None,
        "get": "https://a.example",
    }
    assert seen["https://b.example"] == {"preflight": None, "credentials": None, "get": None}
    assert seen["admin"] is None


def test_allowed_origins_star_or_blank_means_everyone():
    for value in ("*", ""):
        seen = _probe(value)
        assert seen["https://b.example"]["preflight"] == "*"
        assert seen["https://b.example"]["credentials"] is None
