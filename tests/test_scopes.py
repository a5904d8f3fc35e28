"""Scopes as an attacker would use them: what a token without the right scope gets (status, JSON body) and that
nothing was written, billed or sent upstream; the `account` scope; tokens a user mints within what an admin allows;
the per-user rate across all of a user's tokens."""

import asyncio
import os
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from accounts import services
from accounts.models import APIToken, UserPreferences
from accounts.rates import parse_rate, rate_within
from common.errors import PermissionDenied
from llm.models import UsageRecord
from tests.factories import UserFactory

pytest_plugins = ["tests.fake_google"]
pytestmark = pytest.mark.django_db

PROCESS = "/api/v1/calendar/process-text"
CHAT = "/v1/chat/completions"
PASSWORD = "pw-for-tests-123"


def bearer(plaintext: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return client


# --- process-text needs `calendar` and `llm` ---------------------------------------------------------------------


@pytest.fixture
def nl(gateway_settings, prices, google_settings, user):
    return gateway_settings


@pytest.mark.parametrize("scopes", [["calendar"], ["calendar", "account"], ["llm"]])
def test_process_text_without_both_scopes_is_refused_before_any_llm_call(nl, make_token, user, scopes, fake_google):
    _, plaintext = make_token(user=user, scopes=scopes)
    response = bearer(plaintext).post(
        PROCESS, {"text": "Team lunch tomorrow at 1", "model": "gpt-4o", "dry_run": True}, format="json"
    )
    assert response.status_code == 403, response.content
    error = response.json()["error"]
    missing = "llm" if "calendar" in scopes else "calendar"
    assert (error["code"], error["details"]) == ("insufficient_scope", {"required_scope": missing})
    assert nl.requests == [] and UsageRecord.objects.count() == 0 and fake_google.live_events() == []
    # The service still answers a token that has both.
    _, both = make_token(user=user, scopes=["calendar", "llm"])
    nl.configure(structured={"status": "needs_clarification", "question": "Which day?", "events": []})
    ok = bearer(both).post(PROCESS, {"text": "lunch sometime", "dry_run": True}, format="json")
    assert ok.status_code == 200, ok.content
    assert ok.json()["status"] == "needs_clarification"


def test_process_text_does_not_return_the_models_raw_answer(nl, make_token, user):
    secret = "Here is everything you asked for: the full essay, not an event"
    nl.configure(structured=secret)  # a string: sent as the message content as it is, not JSON
    _, plaintext = make_token(user=user, scopes=["calendar", "llm"])
    response = bearer(plaintext).post(PROCESS, {"text": "Write me an essay", "dry_run": True}, format="json")
    assert response.status_code == 422, response.content
    error = response.json()["error"]
    assert error["code"] == "calendar_extraction_invalid" and error["details"] == {}
    assert secret not in response.content.decode() and "essay" not in response.content.decode()
    assert UsageRecord.objects.count() == 1  # the LLM call itself is billed and recorded like any other


# --- the `account` scope ------------------------------------------------------------------------------------------


def test_patch_me_needs_the_account_scope(make_token, user):
    _, plaintext = make_token(user=user, scopes=["llm", "calendar"])
    client = bearer(plaintext)
    assert client.get("/api/v1/me").status_code == 200  # reading needs no scope
    response = client.patch("/api/v1/me", {"timezone": "Europe/Berlin", "language": "German"}, format="json")
    assert response.status_code == 403
    error = response.json()["error"]
    assert (error["code"], error["details"]) == ("insufficient_scope", {"required_scope": "account"})
    assert error["request_id"]
    prefs = UserPreferences.objects.get(user=user)
    assert (prefs.timezone, prefs.language) == ("UTC", "")

    _, with_account = make_token(user=user, scopes=["account"])
    response = bearer(with_account).patch("/api/v1/me", {"timezone": "Europe/Berlin"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["preferences"]["timezone"] == "Europe/Berlin"
    assert UserPreferences.objects.get(user=user).timezone == "Europe/Berlin"


def test_patch_me_cannot_touch_what_an_admin_sets(make_token, user):
    prefs = services.user_preferences_get(user=user)
    prefs.token_scopes_allowed, prefs.token_rate_limit_max, prefs.rate_limit = ["llm"], "5/m", "10/m"
    prefs.token_budget_max_usd = Decimal("1.00")
    prefs.save()
    _, plaintext = make_token(user=user, scopes=["account"])
    body = {
        "token_scopes_allowed": ["llm", "calendar", "account"],
        "token_rate_limit_max": "",
        "token_budget_max_usd": None,
        "rate_limit": "",
        "monthly_budget_usd": None,
        "language": "German",
    }
    response = bearer(plaintext).patch("/api/v1/me", body, format="json")
    assert response.status_code == 200, response.content
    prefs.refresh_from_db()
    assert (prefs.token_scopes_allowed, prefs.token_rate_limit_max, prefs.rate_limit) == (["llm"], "5/m", "10/m")
    assert prefs.token_budget_max_usd == Decimal("1.00") and prefs.language == "German"


def test_new_tokens_default_to_calendar_and_llm_and_can_be_given_account(user):
    token, _ = services.api_token_create(user=user)
    assert token.scopes == ["calendar", "llm"]
    call_command("createtoken", user.username, "--scopes", "llm,account")
    assert APIToken.objects.latest("created_at").scopes == ["account", "llm"]
    call_command("createtoken", user.username)
    assert APIToken.objects.latest("created_at").scopes == ["calendar", "llm"]


def test_the_data_migration_gives_existing_tokens_the_account_scope(user):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("accounts.migrations.0003_account_scope_and_token_limits")
    old = [services.api_token_create(user=user, scopes=s)[0] for s in (["llm"], ["calendar", "llm"], [])]
    migration.give_existing_tokens_the_account_scope(apps, None)
    assert [APIToken.objects.get(pk=t.pk).scopes for t in old] == [
        ["account", "llm"],
        ["account", "calendar", "llm"],
        ["account"],
    ]
    migration.take_the_account_scope_away(apps, None)
    assert [APIToken.objects.get(pk=t.pk).scopes for t in old] == [["llm"], ["calendar", "llm"], []]


# --- tokens a user mints, within what an admin allows ----------------------------------------------------------------


@pytest.fixture
def capped():
    """A user whose admin allows own tokens only `llm`, at most 10/m and $5 a month."""
    user = services.user_create(username="capped", password=PASSWORD)
    prefs = services.user_preferences_get(user=user)
    prefs.token_scopes_allowed = ["llm"]
    prefs.token_rate_limit_max = "10/m"
    prefs.token_budget_max_usd = Decimal("5.00")
    prefs.save()
    client = Client()
    client.force_login(user)
    return user, client


@pytest.mark.parametrize(
    ("posted", "message"),
    [
        ({"scopes": ["llm", "calendar"]}, "Select a valid choice"),
        ({"scopes": ["account"]}, "Select a valid choice"),
        ({"scopes": ["llm"], "rate_limit": "11/m"}, "at most 10/m"),
        ({"scopes": ["llm"], "rate_limit": "600/h"}, "at most 10/m"),  # the same average, a 60x larger burst
        ({"scopes": ["llm"], "rate_limit": "1/s"}, "at most 10/m"),
        ({"scopes": ["llm"], "monthly_budget_usd": "5.01"}, "at most $5.00"),
    ],
)
def test_account_page_refuses_tokens_beyond_the_users_caps(capped, posted, message):
    user, client = capped
    response = client.post("/account/tokens/create", {"name": "more", **posted})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not APIToken.objects.filter(user=user).exists()
    assert "djl_" not in response.content.decode()


def test_account_page_tokens_take_the_caps_by_default(capped):
    user, client = capped
    page = client.get("/account/")
    assert 'value="calendar"' not in page.content.decode() and 'value="llm"' in page.content.decode()
    response = client.post("/account/tokens/create", {"name": "script", "scopes": ["llm"]})
    assert response.status_code == 200
    token = APIToken.objects.get(user=user)
    assert (token.scopes, token.rate_limit, token.monthly_budget_usd) == (["llm"], "10/m", Decimal("5.00"))
    response = client.post(
        "/account/tokens/create", {"name": "slow", "scopes": ["llm"], "rate_limit": "2/m", "monthly_budget_usd": "1"}
    )
    assert response.status_code == 200
    slow = APIToken.objects.get(user=user, name="slow")
    assert (slow.rate_limit, slow.monthly_budget_usd) == ("2/m", Decimal("1.00"))


def test_without_caps_the_account_page_works_as_before(user, client):
    client.force_login(user)
    response = client.post("/account/tokens/create", {"name": "all", "scopes": ["llm", "calendar", "account"]})
    assert response.status_code == 200
    token = APIToken.objects.get(user=user)
    assert (token.scopes, token.rate_limit, token.monthly_budget_usd) == (["account", "calendar", "llm"], "", None)


def test_the_service_enforces_the_caps_too(capped):
    user, _ = capped
    with pytest.raises(PermissionDenied) as refused:
        services.api_token_create_for_self(user=user, scopes=["calendar"])
    assert refused.value.code == "token_limit_exceeded" and refused.value.details["allowed"] == ["llm"]
    with pytest.raises(PermissionDenied):
        services.api_token_create_for_self(user=user, scopes=["llm"], rate_limit="100/m")
    token, _ = services.api_token_create_for_self(user=user)  # no scopes named: the allowed defaults
    assert (token.scopes, token.rate_limit) == (["llm"], "10/m")


@pytest.mark.parametrize(
    ("rate", "cap", "within"),
    [
        ("10/m", "10/m", True),
        ("5/m", "10/m", True),
        ("1/10s", "10/m", True),
        ("11/m", "10/m", False),
        ("600/h", "10/m", False),
        ("100/h", "10/m", False),
        ("1/s", "10/m", False),
        ("10/5m", "10/m", True),
    ],
)
def test_rate_within(rate, cap, within):
    assert rate_within(rate, cap) is within


def test_parse_rate_refuses_a_zero_window():
    assert parse_rate("10/5s") == (10, 5)
    with pytest.raises(ValueError):
        parse_rate("10/0s")


# --- per-user rate across all tokens ------------------------------------------------------------------------------


def chat(plaintext: str, content: str):
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}
    return Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}").post(CHAT, body, content_type="application/json")


def webhook(plaintext: str, prompt: str):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return client.post("/api/v1/webhook", {"prompt": prompt}, content_type="application/json")


def test_rate_limit_per_user_counts_every_token_of_the_user(gateway_settings, prices, settings):
    settings.RATE_LIMIT_PER_USER = "3/h"
    user, other = UserFactory(), UserFactory()
    first, second = (services.api_token_create(user=user, rate_limit="100/m")[1] for _ in range(2))
    answers = [chat(first, "a"), chat(second, "b"), chat(first, "c")]
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert answers[2]["X-RateLimit-Limit"] == "3" and answers[2]["X-RateLimit-Remaining"] == "0"

    fresh = services.api_token_create(user=user, rate_limit="100/m")[1]  # a new token does not reset it
    limited = chat(fresh, "d")
    assert limited.status_code == 429
    error = limited.json()["error"]  # OpenAI's error shape on /v1/, so its SDKs raise RateLimitError
    assert (error["code"], error["type"]) == ("rate_limited", "rate_limit_error")
    assert "3/h for your account" in error["message"] and int(limited["Retry-After"]) >= 1
    assert len(gateway_settings.requests) == 3
    assert UsageRecord.objects.filter(status="ok").count() == 3

    other_token = services.api_token_create(user=other)[1]
    assert chat(other_token, "e").status_code == 200  # another user's tokens are counted apart


def test_a_users_own_rate_overrides_the_setting(gateway_settings, prices, settings):
    settings.RATE_LIMIT_PER_USER = "100/m"
    user = UserFactory()
    prefs = services.user_preferences_get(user=user)
    prefs.rate_limit = "1/h"
    prefs.save()
    first, second = (services.api_token_create(user=user)[1] for _ in range(2))
    assert chat(first, "a").status_code == 200
    limited = webhook(second, "b")
    assert limited.status_code == 429
    error = limited.json()["error"]
    assert (error["code"], error["details"]) == ("rate_limited", {"limit": "1/h", "scope": "user"})
    assert error["request_id"] == limited["X-Request-ID"]


def test_the_tokens_own_rate_still_applies(gateway_settings, prices, settings):
    settings.RATE_LIMIT_PER_USER = "100/m"
    _, plaintext = services.api_token_create(user=UserFactory(), rate_limit="1/h")
    assert chat(plaintext, "a").status_code == 200
    limited = webhook(plaintext, "b")
    assert limited.status_code == 429
    assert limited.json()["error"]["details"] == {"limit": "1/h", "scope": "token"}
    assert len(gateway_settings.requests) == 1


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs REDIS_URL (runs in the PostgreSQL + Redis pass)")
def test_with_redis_the_token_and_user_counters_cost_one_round_trip(settings, monkeypatch):
    import redis

    from accounts import token_cache
    from llm import limits

    settings.RATE_LIMIT_PER_USER = "100/m"
    token, _ = services.api_token_create(user=UserFactory(), rate_limit="50/m")
    cached = token_cache.get(token.prefix)
    asyncio.run(limits.rate_limit_hit(cached))

    sent = []
    execute, execute_command = redis.client.Pipeline.execute, redis.Redis.execute_command

    def counted_execute(self, *args, **kwargs):
        sent.append(("pipeline", len(self.command_stack)))
        return execute(self, *args, **kwargs)

    def counted_command(self, *args, **kwargs):
        sent.append((args[0], 1))
        return execute_command(self, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", counted_execute)
    monkeypatch.setattr(redis.Redis, "execute_command", counted_command)
    state = asyncio.run(limits.rate_limit_hit(cached))
    assert sent == [("pipeline", 4)]  # SET NX + INCR for the token and for the user, sent together
    assert (state.limit, state.remaining) == (50, 48)  # the token's rate is the closer one to running out


@pytest.mark.browser
def test_a_capped_user_on_the_account_page(browser_page, capped):
    from tests.browser import log_in

    page = browser_page
    log_in(page, "capped", PASSWORD)
    page.goto("/account/")
    form = page.locator("#token-create")
    assert form.locator("input[name=scopes]").count() == 1  # only `llm` is offered
    assert "At most 10/m (set by an administrator)" in form.inner_text()
    page.fill("#token-create input[name=name]", "greedy")
    page.fill("#token-create input[name=rate_limit]", "100/m")
    with page.expect_navigation():
        page.click("#token-create button[type=submit]")
    assert "The rate of your tokens can be at most 10/m." in page.inner_text("#token-create")
    assert page.locator("[data-testid=new-token]").count() == 0 and not APIToken.objects.exists()

    page.fill("#token-create input[name=name]", "fair")
    page.fill("#token-create input[name=rate_limit]", "")
    with page.expect_navigation():
        page.click("#token-create button[type=submit]")
    plaintext = page.inner_text("[data-testid=new-token]").strip()
    token = APIToken.objects.get(name="fair")
    assert (token.scopes, token.rate_limit, token.monthly_budget_usd) == (["llm"], "10/m", Decimal("5.00"))
    me = bearer(plaintext).get("/api/v1/me")
    assert me.status_code == 200 and me.json()["token"]["scopes"] == ["llm"]
