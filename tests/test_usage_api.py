"""`GET /api/v1/usage`: the caller's requests, tokens, cost and savings per day, model and token."""

import itertools
from decimal import Decimal

import pytest
from django.urls import get_resolver
from freezegun import freeze_time
from rest_framework.test import APIClient

from accounts import services as account_services
from llm.models import UsageStatus
from llm.providers.base import Usage
from llm.services import UsageDraft, usage_record_create
from tests.factories import UserFactory

URL = "/api/v1/usage"
_ids = itertools.count(1)


def record(
    clock,
    at,
    *,
    user,
    token=None,
    model="gpt-4o-mini",
    provider="openai",
    status=UsageStatus.OK,
    usage=None,
    cost=None,
    saved="0",
    requested=None,
):
    """One usage record written by the real service, as the gateway writes it, at time `at` of a frozen clock."""
    clock.move_to(at)
    return usage_record_create(
        draft=UsageDraft(
            request_id=f"req-{next(_ids)}",
            endpoint="chat",
            user_id=user.pk,
            token_id=token.pk if token else None,
            provider=provider,
            requested_model=requested if requested is not None else model,
            upstream_model=model,
            status=status,
            http_status=200 if status in (UsageStatus.OK, UsageStatus.CACHED) else 502,
            usage=usage,
            cost_usd=Decimal(cost) if cost is not None else None,
            saved_usd=Decimal(saved),
        )
    )


@pytest.fixture
def alice_data(user, token):
    """Alice (the caller) has two tokens; Bob has his own records on the same days, which must never show."""
    main_token = token[0]
    excel_token, _ = account_services.api_token_create(user=user, name="excel")
    bob = UserFactory(username="bob")
    bob_token, _ = account_services.api_token_create(user=bob, name="bob's")
    with freeze_time("2025-01-01") as clock:
        _add_records(clock, user, main_token, excel_token, bob, bob_token)
    return {"main": main_token, "excel": excel_token, "bob": bob}


def _add_records(clock, user, main_token, excel_token, bob, bob_token):
    def add(at, **kwargs):
        record(clock, at, **kwargs)

    add(
        "2025-03-03 10:00:00",
        user=user,
        token=main_token,
        usage=Usage(input_tokens=1000, output_tokens=200, cached_input_tokens=400, reasoning_tokens=50),
        cost="0.000123456789",
    )
    add(
        "2025-03-03 23:30:00",
        user=user,
        token=excel_token,
        model="claude-haiku-4-5",
        provider="anthropic",
        usage=Usage(input_tokens=3000, output_tokens=500, cached_input_tokens=2000, cache_write_tokens=500),
        cost="0.0105",
    )
    add(
        "2025-03-04 02:00:00",
        user=user,
        token=excel_token,
        status=UsageStatus.CACHED,
        usage=Usage(input_tokens=1000, output_tokens=200, cached_input_tokens=400),
        cost="0",
        saved="0.000123456789",
    )
    add("2025-03-05 08:00:00", user=user, token=main_token, status=UsageStatus.UPSTREAM_ERROR)
    add(  # a local model without a price: tokens, no cost
        "2025-03-05 09:00:00",
        user=user,
        token=main_token,
        model="llama3.1",
        provider="local",
        usage=Usage(input_tokens=70, output_tokens=30),
    )
    add(  # stopped before routing: no upstream model, the requested one names the group
        "2025-03-05 10:00:00",
        user=user,
        token=main_token,
        model="",
        provider="",
        requested="no-such-model",
        status=UsageStatus.CLIENT_ERROR,
    )
    add("2025-04-01 00:00:00", user=user, token=main_token, usage=Usage(input_tokens=9, output_tokens=9), cost="5")
    add("2025-02-28 23:59:59", user=user, token=main_token, usage=Usage(input_tokens=9, output_tokens=9), cost="5")
    # Bob, same days, same models: must not appear in Alice's summary.
    add("2025-03-03 11:00:00", user=bob, token=bob_token, usage=Usage(input_tokens=5, output_tokens=5), cost="7")
    add("2025-03-05 11:00:00", user=bob, token=bob_token, model="claude-haiku-4-5", provider="anthropic", cost="3")


def get(client, **params):
    response = client.get(URL, params)
    assert response.status_code == 200, response.content
    return response.json()


ZERO_COUNTS = dict(
    input_tokens=0,
    output_tokens=0,
    cached_input_tokens=0,
    cache_write_tokens=0,
    reasoning_tokens=0,
    cached=0,
    errors=0,
    unpriced=0,
    unpriced_requests=0,
)


def counts(**values):
    return {**ZERO_COUNTS, "saved_usd": "0", **values}


MARCH = {"from": "2025-03-01", "to": "2025-03-31"}


def test_per_day(auth_client, alice_data):
    body = get(auth_client, group_by="day", **MARCH)
    assert (body["from"], body["to"], body["group_by"], body["timezone"]) == ("2025-03-01", "2025-03-31", "day", "UTC")
    days = {group["key"]: group for group in body["groups"]}
    assert list(days) == ["2025-03-03", "2025-03-04", "2025-03-05"]
    # 0.000123456789 + 0.0105
    assert days["2025-03-03"] == {
        "key": "2025-03-03",
        "provider": None,
        "token_name": None,
        "requests": 2,
        **counts(
            input_tokens=4000,
            output_tokens=700,
            cached_input_tokens=2400,
            cache_write_tokens=500,
            reasoning_tokens=50,
            cost_usd="0.010623456789",
        ),
    }
    assert days["2025-03-04"] == {
        "key": "2025-03-04",
        "provider": None,
        "token_name": None,
        "requests": 1,
        **counts(
            input_tokens=1000,
            output_tokens=200,
            cached_input_tokens=400,
            cost_usd="0",
            saved_usd="0.000123456789",
            cached=1,
        ),
    }
    # upstream error + unpriced local model + client error: the unpriced one costs nothing and is counted
    assert days["2025-03-05"] == {
        "key": "2025-03-05",
        "provider": None,
        "token_name": None,
        "requests": 3,
        **counts(input_tokens=70, output_tokens=30, cost_usd="0", errors=2, unpriced=1),
    }
    assert body["totals"] == {
        "requests": 6,
        **counts(
            input_tokens=5070,
            output_tokens=930,
            cached_input_tokens=2800,
            cache_write_tokens=500,
            reasoning_tokens=50,
            cost_usd="0.010623456789",
            saved_usd="0.000123456789",
            cached=1,
            errors=2,
            unpriced=1,
        ),
    }


def test_per_model(auth_client, alice_data):
    body = get(auth_client, group_by="model", **MARCH)
    groups = {(group["provider"], group["key"]): group for group in body["groups"]}
    assert set(groups) == {
        ("anthropic", "claude-haiku-4-5"),
        ("openai", "gpt-4o-mini"),
        ("local", "llama3.1"),
        ("", "no-such-model"),
    }
    assert list(groups)[0] == ("anthropic", "claude-haiku-4-5")  # the costliest first
    haiku, mini = groups[("anthropic", "claude-haiku-4-5")], groups[("openai", "gpt-4o-mini")]
    assert (haiku["requests"], haiku["cost_usd"], haiku["input_tokens"], haiku["cache_write_tokens"]) == (
        1,
        "0.0105",
        3000,
        500,
    )
    # ok + cached hit + upstream error
    assert (mini["requests"], mini["cost_usd"], mini["saved_usd"], mini["cached"], mini["errors"]) == (
        3,
        "0.000123456789",
        "0.000123456789",
        1,
        1,
    )
    assert (mini["input_tokens"], mini["output_tokens"], mini["cached_input_tokens"]) == (2000, 400, 800)
    assert groups[("local", "llama3.1")]["unpriced"] == 1
    assert groups[("", "no-such-model")]["errors"] == 1
    assert body["totals"]["requests"] == 6 and body["totals"]["cost_usd"] == "0.010623456789"


def test_per_token(auth_client, alice_data):
    body = get(auth_client, group_by="token", **MARCH)
    groups = {group["key"]: group for group in body["groups"]}
    main, excel = alice_data["main"], alice_data["excel"]
    assert set(groups) == {main.display_prefix, excel.display_prefix}
    assert groups[excel.display_prefix]["token_name"] == "excel"
    assert groups[main.display_prefix]["token_name"] == "test"
    assert (groups[excel.display_prefix]["requests"], groups[excel.display_prefix]["cost_usd"]) == (2, "0.0105")
    assert groups[excel.display_prefix]["saved_usd"] == "0.000123456789"
    assert (groups[main.display_prefix]["requests"], groups[main.display_prefix]["cost_usd"]) == (4, "0.000123456789")
    assert groups[main.display_prefix]["errors"] == 2


def test_other_user_sees_only_their_own(alice_data):
    _, plaintext = account_services.api_token_create(user=alice_data["bob"], name="bob-2")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    body = get(client, group_by="model", **MARCH)
    assert {(g["provider"], g["key"]): (g["requests"], g["cost_usd"]) for g in body["groups"]} == {
        ("openai", "gpt-4o-mini"): (1, "7"),
        ("anthropic", "claude-haiku-4-5"): (1, "3"),
    }
    assert body["totals"]["cost_usd"] == "10"


def test_range_bounds_are_inclusive_days(auth_client, alice_data):
    body = get(auth_client, **{"from": "2025-03-04", "to": "2025-03-04"})
    assert [g["key"] for g in body["groups"]] == ["2025-03-04"]
    body = get(auth_client, **{"from": "2025-02-28", "to": "2025-04-01"})
    assert [g["key"] for g in body["groups"]] == ["2025-02-28", "2025-03-03", "2025-03-04", "2025-03-05", "2025-04-01"]
    assert body["totals"]["cost_usd"] == "10.010623456789"


def test_days_follow_the_users_timezone(auth_client, alice_data, user):
    account_services.user_preferences_update(user=user, timezone="America/New_York")
    body = get(auth_client, **MARCH)
    assert body["timezone"] == "America/New_York"
    # 03-03 23:30 UTC and 03-04 02:00 UTC are both on 03-03 in New York (UTC-5); 04-01 00:00 UTC is 20:00 on
    # 03-31 there (UTC-4 after the switch to summer time); 02-28 23:59:59 UTC stays on Feb 28.
    days = {g["key"]: g["requests"] for g in body["groups"]}
    assert days == {"2025-03-03": 3, "2025-03-05": 3, "2025-03-31": 1}
    assert body["totals"]["requests"] == 7 and body["totals"]["cost_usd"] == "5.010623456789"


def test_default_range_is_the_current_month(auth_client, alice_data):
    get_resolver().url_patterns  # import the URLconf (pydantic models among it) before the clock is frozen
    with freeze_time("2025-03-20 12:00:00"):
        body = get(auth_client)
    assert (body["from"], body["to"], body["group_by"]) == ("2025-03-01", "2025-03-31", "day")
    assert body["totals"]["requests"] == 6
    with freeze_time("2025-04-10 12:00:00"):
        body = get(auth_client, group_by="model")
    assert (body["from"], body["to"]) == ("2025-04-01", "2025-04-30")
    assert body["totals"]["requests"] == 1 and body["totals"]["cost_usd"] == "5"
    # Only `from`: up to the end of the current month. Only `to`: from the first day of its month.
    with freeze_time("2025-04-10 12:00:00"):
        assert (get(auth_client, **{"from": "2025-03-05"})["to"]) == "2025-04-30"
    assert get(auth_client, to="2025-03-04")["from"] == "2025-03-01"


def test_empty_range(auth_client, alice_data):
    body = get(auth_client, **{"from": "2024-01-01", "to": "2024-01-31"})
    assert body["groups"] == []
    assert body["totals"] == {"requests": 0, **counts(cost_usd="0")}


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"from": "2025-13-01"}, "from", "Date has wrong format"),
        ({"to": "03/05/2025"}, "to", "Date has wrong format"),
        ({"group_by": "week"}, "group_by", '"week" is not a valid choice'),
        ({"from": "2025-03-10", "to": "2025-03-01"}, "from", "is after `to`"),
    ],
)
def test_bad_parameters_are_400(auth_client, alice_data, params, field, message):
    response = auth_client.get(URL, params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert f"`{field}`" in error["message"] and message in error["message"]
    assert field in error["details"]
    assert error["request_id"] == response["X-Request-ID"]


def test_needs_a_token(alice_data):
    response = APIClient().get(URL)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_missing"
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer djl_nope_nope")
    response = client.get(URL)
    assert response.status_code == 401 and response.json()["error"]["code"] == "token_invalid"


def test_needs_the_llm_scope(user, make_token):
    _, plaintext = make_token(user=user, scopes=["calendar"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    response = client.get(URL)
    assert response.status_code == 403 and response.json()["error"]["code"] == "insufficient_scope"


def test_one_query_for_the_summary(auth_client, alice_data, user, django_assert_max_num_queries):
    """The summary is one aggregate query whatever the number of rows (plus the token lookup): on the daily rollups
    for UTC days, on the raw records for days in another timezone (they do not line up with the rollups' days)."""
    for table, other, tz in (
        ("llm_usagedaily", "llm_usagerecord", "UTC"),
        ("llm_usagerecord", "llm_usagedaily", "Europe/Paris"),
    ):
        account_services.user_preferences_update(user=user, timezone=tz)
        for group_by in ("day", "model", "token"):
            with django_assert_max_num_queries(4) as captured:
                get(auth_client, group_by=group_by, **MARCH)
            summary = [q["sql"] for q in captured.captured_queries if table in q["sql"]]
            assert len(summary) == 1
            assert "GROUP BY" in summary[0]
            assert not [q for q in captured.captured_queries if other in q["sql"]]
