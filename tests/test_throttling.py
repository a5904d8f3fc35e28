"""Throttling outside the LLM calls, as an attacker would hit it: password guessing on the login pages, a token
hammering the DRF endpoints, a loop starting the Google consent flow. Each answers 429 with Retry-After, writes
nothing it should not, and the service goes on answering everyone else."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.test import Client
from django.utils import timezone
from redis.exceptions import ConnectionError as RedisConnectionError
from rest_framework.test import APIClient

from accounts import services
from accounts.models import ALL_SCOPES, UserPreferences
from accounts.throttling import TokenRateThrottle
from calendars.models import OAuthState

pytest_plugins = ["tests.fake_google"]
pytestmark = pytest.mark.django_db

PASSWORD = "erin-pw-for-tests-1"


@pytest.fixture
def erin():
    return services.user_create(username="erin", password=PASSWORD, is_superuser=True)


@pytest.fixture
def login_limit(settings):
    settings.AXES_FAILURE_LIMIT = 3
    return 3


def log_in(client: Client, path: str, password: str, **extra):
    return client.post(path, {"username": "erin", "password": password}, **extra)


# --- login pages -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/account/login/", "/admin/login/"])
def test_password_guessing_is_locked_out_with_429(erin, login_limit, path):
    guesser = Client(REMOTE_ADDR="203.0.113.7")
    answers = [log_in(guesser, path, f"guess-{n}") for n in range(login_limit)]
    assert [a.status_code for a in answers] == [200] * (login_limit - 1) + [429]
    locked = answers[-1]
    assert locked["Retry-After"] == "900" and "Too many failed logins" in locked.content.decode()

    # Locked out: even the right password is refused now, and no session is made.
    right = log_in(guesser, path, PASSWORD)
    assert right.status_code == 429 and "sessionid" not in right.cookies
    assert guesser.get("/account/").status_code == 302  # still anonymous: sent to the login page
    assert AccessAttempt.objects.get(username="erin").failures_since_start >= login_limit

    # The same account from another address, and another account from this one, are not affected.
    elsewhere = Client(REMOTE_ADDR="198.51.100.9")
    assert log_in(elsewhere, path, PASSWORD).status_code == 302
    services.user_create(username="frank", password=PASSWORD, is_superuser=True)
    other = guesser.post(path, {"username": "frank", "password": PASSWORD})
    assert other.status_code == 302


def test_a_json_client_gets_the_api_error_shape(erin, login_limit):
    guesser = Client(REMOTE_ADDR="203.0.113.8")
    for n in range(login_limit - 1):
        log_in(guesser, "/account/login/", f"guess-{n}")
    locked = log_in(guesser, "/account/login/", "guess-last", HTTP_ACCEPT="application/json")
    assert locked.status_code == 429 and locked["Retry-After"] == "900"
    error = locked.json()["error"]
    assert error["code"] == "login_rate_limited" and "15 minutes" in error["message"] and error["request_id"]


def test_a_successful_login_clears_the_count(erin, login_limit):
    client = Client(REMOTE_ADDR="203.0.113.9")
    for n in range(login_limit - 1):
        assert log_in(client, "/account/login/", f"typo-{n}").status_code == 200
    assert log_in(client, "/account/login/", PASSWORD).status_code == 302
    client.logout()
    for n in range(login_limit - 1):
        assert log_in(client, "/account/login/", f"typo-again-{n}").status_code == 200
    assert log_in(client, "/account/login/", PASSWORD).status_code == 302


# --- DRF endpoints, per token --------------------------------------------------------------------------------------


@pytest.fixture
def rates(settings):
    def _set(**rates):
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {"api": None, "calendar": None, **rates},
        }

    return _set


def bearer(plaintext: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return client


def test_drf_endpoints_are_throttled_per_token(rates, user, make_token):
    rates(api="3/m")
    _, plaintext = make_token(user=user, scopes=list(ALL_SCOPES))
    client = bearer(plaintext)
    assert [client.get("/api/v1/me").status_code for _ in range(3)] == [200, 200, 200]

    throttled = client.patch("/api/v1/me", {"timezone": "Europe/Berlin"}, format="json")
    assert throttled.status_code == 429
    error = throttled.json()["error"]
    assert error["code"] == "rate_limited" and error["request_id"] == throttled["X-Request-ID"]
    assert 1 <= int(throttled["Retry-After"]) <= 61
    assert UserPreferences.objects.get(user=user).timezone == "UTC"  # nothing written

    _, another = make_token(user=user)  # counted per token
    assert bearer(another).get("/api/v1/me").status_code == 200


def test_calendar_endpoints_have_their_own_tighter_rate(rates, google_settings, fake_google, user, make_token):
    rates(api="100/m", calendar="2/m")
    _, plaintext = make_token(user=user, scopes=["calendar", "llm"])
    client = bearer(plaintext)
    assert [client.get("/api/v1/calendar/auth").status_code for _ in range(2)] == [200, 200]
    throttled = client.get("/api/v1/calendar/auth")
    assert throttled.status_code == 429 and throttled.json()["error"]["code"] == "rate_limited"
    assert OAuthState.objects.filter(user=user).count() == 2
    assert client.get("/api/v1/me").status_code == 200  # the general rate is not used up


class _DownCache:
    def get(self, *args, **kwargs):
        raise RedisConnectionError("Connection refused")

    set = get


@pytest.mark.parametrize(("fail_open", "status"), [(True, 200), (False, 503)])
def test_throttles_follow_the_cache_outage_policy(rates, settings, monkeypatch, token, fail_open, status):
    rates(api="1/m")
    settings.RATE_LIMIT_FAIL_OPEN = fail_open
    monkeypatch.setattr(TokenRateThrottle, "cache", _DownCache())
    answers = [bearer(token[1]).get("/api/v1/me") for _ in range(2)]
    assert [a.status_code for a in answers] == [status, status]
    if not fail_open:
        assert answers[0].json()["error"]["code"] == "rate_limiter_unavailable" and answers[0]["Retry-After"]


# --- OAuth state rows ---------------------------------------------------------------------------------------------


def test_pending_consent_links_per_user_are_capped(rates, settings, google_settings, fake_google, user, make_token):
    rates()
    settings.GOOGLE_OAUTH_MAX_PENDING_STATES = 3
    _, plaintext = make_token(user=user, scopes=["calendar"])
    client = bearer(plaintext)
    assert [client.get("/api/v1/calendar/auth").status_code for _ in range(3)] == [200, 200, 200]

    refused = client.get("/api/v1/calendar/auth")
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "rate_limited" and error["details"] == {"limit": 3, "pending": 3}
    assert 500 <= int(refused["Retry-After"]) <= 601  # until the oldest link expires (10 minutes)
    assert OAuthState.objects.filter(user=user).count() == 3  # no row written

    # Someone else is not affected; and once a link has expired the user can start again.
    _, other = make_token(scopes=["calendar"])
    assert bearer(other).get("/api/v1/calendar/auth").status_code == 200
    oldest = OAuthState.objects.filter(user=user).order_by("created_at").first()
    OAuthState.objects.filter(pk=oldest.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert client.get("/api/v1/calendar/auth").status_code == 200


def test_the_account_page_button_says_why(rates, settings, google_settings, fake_google, user):
    rates()
    settings.GOOGLE_OAUTH_MAX_PENDING_STATES = 1
    client = Client()
    client.force_login(user)
    assert client.get("/api/v1/calendar/auth").status_code == 302
    refused = client.get("/api/v1/calendar/auth", follow=True)
    assert "unused Google sign-in links" in refused.content.decode()
    assert OAuthState.objects.filter(user=user).count() == 1


def test_the_schema_documents_the_new_answers():
    schema = Client().get("/api/schema/?format=json").json()["paths"]
    assert {"401", "403", "429"} <= set(schema["/api/v1/me"]["patch"]["responses"])
    assert "429" in schema["/api/v1/me"]["get"]["responses"]
    assert "429" in schema["/api/v1/usage"]["get"]["responses"]
    for path, method in (("/api/v1/calendar/auth", "get"), ("/api/v1/calendar/status", "get")):
        assert "429" in schema[path][method]["responses"]
