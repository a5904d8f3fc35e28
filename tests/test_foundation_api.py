"""The `/api/` contract: the error shape for every failure, the request id, health, and `make run`'s bootstrap.

Failures the real endpoints cannot produce on demand (a crash, a throttle, a plain Django view raising) come from
small views mounted in front of the project's own URLs by this module's `urlpatterns` (`pytest.mark.urls`).
"""

import re
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.http import Http404
from django.test import Client, override_settings
from django.urls import path
from rest_framework import exceptions as drf
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.response import Response
from rest_framework.test import APIClient
from rest_framework.views import APIView

from accounts.apis import MeApi
from accounts.models import APIToken
from config import urls as project_urls

# --- Views that fail on purpose, mounted under /api/v1/_test/ -------------------------------------------------


class _Open(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]


class CrashApi(_Open):
    def get(self, request):
        raise RuntimeError("kaboom: internal detail that must not reach the client")


class ThrottledApi(_Open):
    def get(self, request):
        raise drf.Throttled(wait=5)


class LlmScopeMeApi(MeApi):
    required_scope = "llm"


class StaffOnlyApi(APIView):
    permission_classes = [IsAdminUser]

    def get(self, request):
        return Response({"ok": True})


def plain_crash(request):
    raise RuntimeError("kaboom in a plain Django view")


def plain_not_found(request):
    raise Http404("nothing here")


urlpatterns = [
    path("api/v1/_test/crash", CrashApi.as_view()),
    path("api/v1/_test/throttled", ThrottledApi.as_view()),
    path("api/v1/_test/llm-me", LlmScopeMeApi.as_view()),
    path("api/v1/_test/staff", StaffOnlyApi.as_view()),
    path("api/v1/_test/plain-crash", plain_crash),
    path("api/v1/_test/plain-404", plain_not_found),
    *project_urls.urlpatterns,
]
handler404 = project_urls.handler404
handler500 = project_urls.handler500

with_test_views = pytest.mark.urls(__name__)


def assert_error(response, status: int, code: str) -> dict:
    """The documented shape, exactly: {"error": {"code", "message", "details", "request_id"}}."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    assert error["request_id"] == response["X-Request-ID"]
    return error


# --- 400 ---------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_400_validation_errors_go_under_details(auth_client):
    response = auth_client.patch(
        "/api/v1/me", {"timezone": "Mars/Olympus", "default_provider": "skynet"}, format="json"
    )
    error = assert_error(response, 400, "invalid_request")
    assert set(error["details"]) == {"timezone", "default_provider"}
    assert "IANA" in error["details"]["timezone"][0]
    assert isinstance(error["details"]["default_provider"], list)


@pytest.mark.django_db
def test_400_malformed_json(auth_client):
    response = auth_client.generic("PATCH", "/api/v1/me", "{not json", content_type="application/json")
    assert_error(response, 400, "invalid_json")


# --- 401 / 403 -----------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_401_without_token_is_json_not_a_redirect(api_client):
    response = api_client.get("/api/v1/me")
    error = assert_error(response, 401, "token_missing")
    assert "Bearer" in error["message"]
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "Location" not in response


@with_test_views
@pytest.mark.django_db
def test_403_missing_scope(api_client, make_token):
    _, plaintext = make_token(scopes=["calendar"])
    response = api_client.get("/api/v1/_test/llm-me", HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    error = assert_error(response, 403, "insufficient_scope")
    assert error["details"] == {"required_scope": "llm"}


@with_test_views
@pytest.mark.django_db
def test_403_permission_denied(auth_client):
    response = auth_client.get("/api/v1/_test/staff")
    assert_error(response, 403, "permission_denied")


# --- 404 -----------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [False, True], ids=["debug-off", "debug-on"])
def test_404_unknown_api_path(api_client, debug):
    with override_settings(DEBUG=debug):
        response = api_client.get("/api/v1/no-such-endpoint")
    error = assert_error(response, 404, "not_found")
    assert "/api/v1/no-such-endpoint" in error["message"]


@pytest.mark.django_db
def test_404_unknown_openai_path_answers_in_openai_shape(api_client):
    response = api_client.get("/v1/no-such-endpoint")
    assert response.status_code == 404
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert response.json()["error"]["code"] == "not_found"


@with_test_views
@pytest.mark.django_db
def test_404_raised_by_a_plain_view_under_api(api_client):
    assert_error(api_client.get("/api/v1/_test/plain-404"), 404, "not_found")


@pytest.mark.django_db
def test_404_outside_the_api_stays_html(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")


# --- 405 / 415 / 429 -----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_405_wrong_method(api_client):
    response = api_client.post("/api/v1/health", {}, format="json")
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response["Allow"]


@pytest.mark.django_db
def test_415_unsupported_media_type(auth_client):
    response = auth_client.generic(
        "PATCH", "/api/v1/me", "timezone=UTC", content_type="application/x-www-form-urlencoded"
    )
    assert_error(response, 415, "unsupported_media_type")


@with_test_views
@pytest.mark.django_db
def test_429_throttled_carries_retry_after(api_client):
    response = api_client.get("/api/v1/_test/throttled")
    assert_error(response, 429, "rate_limited")
    assert response["Retry-After"] == "6"


# --- 500 -----------------------------------------------------------------------------------------------------------


@with_test_views
@pytest.mark.django_db
def test_500_inside_a_drf_view_is_json_without_traceback(api_client, caplog):
    response = api_client.get("/api/v1/_test/crash", HTTP_X_REQUEST_ID="crash-1")
    error = assert_error(response, 500, "internal_error")
    assert error["request_id"] == "crash-1"
    assert error["details"] == {}
    text = response.content.decode()
    assert "kaboom" not in text and "Traceback" not in text and "RuntimeError" not in text
    # ... while the operator's log has the whole story.
    logged = [r for r in caplog.records if r.exc_info and "kaboom" in str(r.exc_info[1])]
    assert logged, "the crash was not logged with its traceback"


@with_test_views
@pytest.mark.django_db
def test_500_in_a_plain_view_under_api_uses_the_api_handler():
    client = Client(raise_request_exception=False)
    response = client.get("/api/v1/_test/plain-crash")
    error = assert_error(response, 500, "internal_error")
    assert "kaboom" not in error["message"] and "Traceback" not in response.content.decode()


# --- Request id ----------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_client_request_id_is_echoed_in_header_and_body(api_client):
    response = api_client.get("/api/v1/me", HTTP_X_REQUEST_ID="excel-run-42.a:b")
    assert response["X-Request-ID"] == "excel-run-42.a:b"
    assert response.json()["error"]["request_id"] == "excel-run-42.a:b"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "sent", [None, "has spaces in it", "x" * 129, "<script>"], ids=["none", "spaces", "long", "html"]
)
def test_request_id_is_generated_when_missing_or_malformed(api_client, sent):
    headers = {"HTTP_X_REQUEST_ID": sent} if sent is not None else {}
    first = api_client.get("/api/v1/me", **headers)
    second = api_client.get("/api/v1/me", **headers)
    generated = first["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert first.json()["error"]["request_id"] == generated
    assert second["X-Request-ID"] != generated


@pytest.mark.django_db
def test_request_id_on_success_and_on_pages(client, auth_client):
    assert auth_client.get("/api/v1/me", HTTP_X_REQUEST_ID="ok-1")["X-Request-ID"] == "ok-1"
    assert re.fullmatch(r"[0-9a-f]{32}", client.get("/account/login/")["X-Request-ID"])


# --- Health --------------------------------------------------------------------------------------------------------


def test_liveness_touches_no_database(api_client):
    # No django_db mark: any query here would fail with "Database access not allowed".
    response = api_client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_liveness_needs_no_auth_and_makes_no_query(api_client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = api_client.get("/api/v1/health", HTTP_AUTHORIZATION="Bearer djl_nonsense")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readiness_ok(api_client):
    response = api_client.get("/api/v1/health/ready")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "cache": "ok"},
        "counters": {"rate_limiter_cache_errors": 0},
    }


@pytest.mark.django_db
def test_readiness_503_names_a_broken_cache(api_client, settings):
    settings.RATE_LIMIT_FAIL_OPEN = False  # the cache is then needed to serve requests
    broken = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }
    with override_settings(CACHES=broken):
        response = api_client.get("/api/v1/health/ready")
    error = assert_error(response, 503, "not_ready")
    assert "cache" in error["message"] and "database" not in error["message"]
    assert error["details"]["database"] == "ok"
    assert error["details"]["cache"] == "unavailable"  # the driver's text goes to the log, not to the public probe
    assert "127.0.0.1" not in response.content.decode()


# --- `make run`'s bootstrap ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_bootstrap_prints_a_working_password_and_token_once():
    out = StringIO()
    call_command("bootstrap", stdout=out)
    text = out.getvalue()
    password = re.search(r"password (\S+)", text).group(1)
    plaintext = re.search(r"API token:\s+(djl_\S+)", text).group(1)

    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff and admin.check_password(password)
    client = APIClient()
    me = client.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    assert me.status_code == 200, me.content
    assert me.json()["user"]["username"] == "admin"
    assert Client().login(username="admin", password=password)

    again = StringIO()
    call_command("bootstrap", stdout=again)
    assert "skipping" in again.getvalue()
    assert "djl_" not in again.getvalue() and password not in again.getvalue()
    assert get_user_model().objects.count() == 1
    assert APIToken.objects.count() == 1
