"""`/api/v1/tokens`: a user's own tokens over the API, through DRF's client and over real HTTP (the `call` fixture
runs a test once with each)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from freezegun import freeze_time

from accounts import services
from accounts.forms import TokenCreateForm
from accounts.models import APIToken
from accounts.tokens import token_digest
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

TOKENS = "/api/v1/tokens"
FIELDS = {
    "id", "prefix", "name", "scopes", "status", "created_at", "last_used_at", "expires_at", "revoked_at",
    "rate_limit", "monthly_budget_usd", "rotated_from",
}  # fmt: skip


@pytest.fixture
def caller(user):
    """A token of `user` with the `account` scope: (APIToken, plaintext)."""
    return services.api_token_create(user=user, name="manager", scopes=["account"])


def _no_secrets(answer, *rows: APIToken) -> None:
    for row in rows:
        assert row.digest not in answer.text
    assert "digest" not in answer.text


def test_list_pages_the_callers_tokens_newest_first(call, user, caller):
    mine = [services.api_token_create(user=user, name=f"script {n}")[0] for n in range(4)]
    other, _ = services.api_token_create(user=UserFactory(), name="not yours")
    first = call("GET", f"{TOKENS}?limit=3", caller[1])
    assert first.status == 200, first.text
    ids = [item["id"] for item in first.body["results"]]
    assert ids == [mine[3].pk, mine[2].pk, mine[1].pk]
    assert set(first.body["results"][0]) == FIELDS
    assert first.body["previous"] is None and first.body["next"]
    second = call("GET", first.body["next"], caller[1])
    assert second.status == 200, second.text
    assert [item["id"] for item in second.body["results"]] == [mine[0].pk, caller[0].pk]
    assert second.body["next"] is None
    assert other.pk not in ids + [item["id"] for item in second.body["results"]]
    _no_secrets(first, *mine)
    _no_secrets(second, caller[0], other)
    assert first.body["results"][0]["prefix"] == f"djl_{mine[3].prefix}" and "token" not in first.body["results"][0]


def test_filters_by_status_and_name(call, user, caller):
    now = timezone.now()
    revoked = services.api_token_revoke(token=services.api_token_create(user=user, name="Old laptop")[0])
    rotating = services.api_token_revoke(
        token=services.api_token_create(user=user, name="CI")[0], at=now + timedelta(hours=1)
    )
    expired, _ = services.api_token_create(user=user, name="trial", expires_at=now + timedelta(seconds=1))
    APIToken.objects.filter(pk=expired.pk).update(expires_at=now - timedelta(days=1))
    active, _ = services.api_token_create(user=user, name="Excel laptop")

    def ids(query: str) -> list[int]:
        answer = call("GET", f"{TOKENS}?{query}", caller[1])
        assert answer.status == 200, answer.text
        return [item["id"] for item in answer.body["results"]]

    assert ids("status=revoked") == [revoked.pk]
    assert ids("status=rotating") == [rotating.pk]
    assert ids("status=expired") == [expired.pk]
    assert ids("status=active") == [active.pk, caller[0].pk]
    assert ids("name=LAPTOP") == [active.pk, revoked.pk]
    assert ids("status=active&name=laptop") == [active.pk]
    bad = call("GET", f"{TOKENS}?status=lost", caller[1])
    assert bad.status == 400 and bad.body["error"]["code"] == "invalid_request"
    assert "status" in bad.body["error"]["details"]


def test_create_shows_the_token_once(call, user, caller):
    created = call("POST", TOKENS, caller[1], {"name": "workbook", "scopes": ["llm"]})
    assert created.status == 201, created.text
    plaintext = created.body["token"]
    row = APIToken.objects.get(pk=created.body["id"])
    assert (row.user, row.name, row.scopes) == (user, "workbook", ["llm"])
    assert plaintext.startswith(f"djl_{row.prefix}_") and row.digest == token_digest(plaintext)
    assert set(created.body) == FIELDS | {"token"} and created.body["status"] == "active"
    _no_secrets(created, row)
    # It works, and it is never shown again.
    assert call("GET", "/api/v1/me", plaintext).status == 200
    for answer in (call("GET", f"{TOKENS}/{row.pk}", caller[1]), call("GET", TOKENS, caller[1])):
        assert (
            answer.status == 200 and plaintext not in answer.text and "token" not in answer.body.get("results", [{}])[0]
        )
    assert "token" not in call("GET", f"{TOKENS}/{row.pk}", caller[1]).body


def test_create_defaults_and_input_errors(user, caller, call):
    created = call("POST", TOKENS, caller[1], {})
    assert created.status == 201, created.text
    assert created.body["scopes"] == ["calendar", "llm"] and created.body["expires_at"] is None
    for body, field in [
        ({"scopes": ["root"]}, "scopes"),
        ({"rate_limit": "fast"}, "rate_limit"),
        ({"monthly_budget_usd": "-1"}, "monthly_budget_usd"),
        ({"expires_at": (timezone.now() - timedelta(days=1)).isoformat()}, "expires_at"),
        ({"name": 7}, "name"),
    ]:
        answer = call("POST", TOKENS, caller[1], body)
        assert answer.status == 400, (body, answer.text)
        assert answer.body["error"]["code"] == "invalid_request"
        assert [name.split(".")[0] for name in answer.body["error"]["details"]] == [field]
    empty = call("POST", TOKENS, caller[1], {"scopes": []})
    assert empty.status == 400 and "scope" in empty.body["error"]["message"]


def test_create_stays_within_what_the_admin_allows(call, user, caller):
    prefs = services.user_preferences_get(user=user)
    prefs.token_scopes_allowed = ["llm", "account"]
    prefs.token_rate_limit_max = "10/m"
    prefs.token_budget_max_usd = Decimal("5.00")
    prefs.save()
    for body, field in [
        ({"scopes": ["calendar"]}, "scopes"),
        ({"scopes": ["llm"], "rate_limit": "600/h"}, "rate_limit"),
        ({"scopes": ["llm"], "monthly_budget_usd": "5.01"}, "monthly_budget_usd"),
    ]:
        answer = call("POST", TOKENS, caller[1], body)
        assert answer.status == 403, (body, answer.text)
        assert answer.body["error"]["code"] == "token_limit_exceeded"
        assert answer.body["error"]["details"]["field"] == field
    assert APIToken.objects.filter(user=user).count() == 1
    capped = call("POST", TOKENS, caller[1], {"name": "capped"})
    assert capped.status == 201, capped.text
    assert (capped.body["scopes"], capped.body["rate_limit"], capped.body["monthly_budget_usd"]) == (
        ["llm"],
        "10/m",
        "5.00",
    )


def test_only_a_superuser_gives_a_token_the_admin_scope(call, user, caller):
    refused = call("POST", TOKENS, caller[1], {"scopes": ["llm", "admin"]})
    assert refused.status == 403 and refused.body["error"]["code"] == "token_limit_exceeded"
    assert "admin" not in refused.body["error"]["details"]["allowed"]
    # Not offered on the account page either, though the preferences allow every scope by default.
    assert "admin" in services.user_preferences_get(user=user).token_scopes_allowed
    assert "admin" not in dict(
        TokenCreateForm(preferences=services.user_preferences_get(user=user)).fields["scopes"].choices
    )
    root = UserFactory(username="root", is_superuser=True, is_staff=True)
    _, root_plaintext = services.api_token_create(user=root, scopes=["account"])
    granted = call("POST", TOKENS, root_plaintext, {"scopes": ["llm", "admin"]})
    assert granted.status == 201, granted.text
    assert granted.body["scopes"] == ["admin", "llm"]
    assert "admin" in dict(
        TokenCreateForm(preferences=services.user_preferences_get(user=root)).fields["scopes"].choices
    )


def test_every_operation_needs_the_account_scope(call, user):
    row, plaintext = services.api_token_create(user=user, scopes=["llm", "calendar"])
    for method, path, body in [
        ("GET", TOKENS, None),
        ("POST", TOKENS, {"name": "more"}),
        ("GET", f"{TOKENS}/{row.pk}", None),
        ("PATCH", f"{TOKENS}/{row.pk}", {"name": "renamed"}),
        ("POST", f"{TOKENS}/{row.pk}/revoke", None),
        ("POST", f"{TOKENS}/{row.pk}/rotate", {}),
    ]:
        answer = call(method, path, plaintext, body)
        assert answer.status == 403, (method, path, answer.text)
        assert answer.body["error"]["code"] == "insufficient_scope"
        assert answer.body["error"]["details"] == {"required_scope": "account"}
    row.refresh_from_db()
    assert (row.name, row.revoked_at, APIToken.objects.count()) == ("", None, 1)
    assert call("GET", TOKENS).status == 401


def test_another_users_token_is_not_found(call, caller):
    other, other_plaintext = services.api_token_create(user=UserFactory(), name="theirs", scopes=["llm"])
    for method, suffix, body in [
        ("GET", "", None),
        ("PATCH", "", {"name": "mine now"}),
        ("POST", "/revoke", None),
        ("POST", "/rotate", {"grace_minutes": 0}),
    ]:
        answer = call(method, f"{TOKENS}/{other.pk}{suffix}", caller[1], body)
        assert answer.status == 404, (method, suffix, answer.text)
        assert answer.body["error"]["code"] == "not_found"
        assert "theirs" not in answer.text
    other.refresh_from_db()
    assert (other.name, other.revoked_at) == ("theirs", None)
    assert APIToken.objects.filter(rotated_from=other).count() == 0
    assert call("GET", "/api/v1/me", other_plaintext).status == 200
    assert call("GET", f"{TOKENS}/999999", caller[1]).status == 404


def test_patch_changes_name_and_expiry_only(call, user, caller):
    row, _ = services.api_token_create(user=user, name="old", scopes=["llm"])
    expires = (timezone.now() + timedelta(days=30)).replace(microsecond=0)
    answer = call("PATCH", f"{TOKENS}/{row.pk}", caller[1], {"name": "new", "expires_at": expires.isoformat()})
    assert answer.status == 200, answer.text
    row.refresh_from_db()
    assert (row.name, row.expires_at) == ("new", expires) and answer.body["name"] == "new"
    cleared = call("PATCH", f"{TOKENS}/{row.pk}", caller[1], {"expires_at": None})
    assert cleared.status == 200 and cleared.body["expires_at"] is None
    widened = call("PATCH", f"{TOKENS}/{row.pk}", caller[1], {"scopes": ["llm", "account"], "rate_limit": "9999/s"})
    assert widened.status == 400, widened.text
    assert set(widened.body["error"]["details"]) == {"scopes", "rate_limit"}
    row.refresh_from_db()
    assert (row.scopes, row.rate_limit, row.name) == (["llm"], "", "new")
    services.api_token_revoke(token=row)
    frozen = call("PATCH", f"{TOKENS}/{row.pk}", caller[1], {"name": "again"})
    assert frozen.status == 409 and frozen.body["error"]["code"] == "token_revoked"
    assert call("PUT", f"{TOKENS}/{row.pk}", caller[1], {"name": "x"}).status == 405


def test_revoke_stops_the_token(call, user, caller):
    row, plaintext = services.api_token_create(user=user, name="leaked")
    assert call("GET", "/api/v1/me", plaintext).status == 200
    answer = call("POST", f"{TOKENS}/{row.pk}/revoke", caller[1])
    assert answer.status == 200, answer.text
    assert answer.body["status"] == "revoked" and answer.body["revoked_at"]
    refused = call("GET", "/api/v1/me", plaintext)
    assert refused.status == 401 and refused.body["error"]["code"] == "token_revoked"
    again = call("POST", f"{TOKENS}/{row.pk}/revoke", caller[1])
    assert again.status == 200 and again.body["revoked_at"] == answer.body["revoked_at"]
    rotate = call("POST", f"{TOKENS}/{row.pk}/rotate", caller[1], {})
    assert rotate.status == 400 and rotate.body["error"]["code"] == "token_revoked"


def test_rotate_keeps_the_old_token_for_the_grace_period(call, user, caller):
    row, old_plaintext = services.api_token_create(
        user=user, name="ci", scopes=["llm"], rate_limit="5/m", monthly_budget_usd=Decimal("3")
    )
    answer = call("POST", f"{TOKENS}/{row.pk}/rotate", caller[1], {"grace_minutes": 5})
    assert answer.status == 201, answer.text
    new_plaintext = answer.body["token"]
    new = APIToken.objects.get(pk=answer.body["id"])
    assert new.digest == token_digest(new_plaintext) and new_plaintext != old_plaintext
    assert (new.name, new.scopes, new.rate_limit, new.monthly_budget_usd) == ("ci", ["llm"], "5/m", Decimal("3.00"))
    assert answer.body["rotated_from"] == row.pk
    _no_secrets(answer, row, new)
    old = call("GET", f"{TOKENS}/{row.pk}", caller[1]).body
    assert old["status"] == "rotating" and "token" not in old
    assert call("GET", "/api/v1/me", old_plaintext).status == 200
    assert call("GET", "/api/v1/me", new_plaintext).status == 200
    with freeze_time(timezone.now() + timedelta(minutes=6)):
        refused = call("GET", "/api/v1/me", old_plaintext)
        assert refused.status == 401 and refused.body["error"]["code"] == "token_revoked"
        assert call("GET", "/api/v1/me", new_plaintext).status == 200


def test_rotate_without_grace_minutes_takes_the_setting(user, caller, settings, api_client):
    settings.TOKEN_ROTATION_GRACE_MINUTES = 7
    row, _ = services.api_token_create(user=user)
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {caller[1]}")
    before = timezone.now()
    assert api_client.post(f"{TOKENS}/{row.pk}/rotate").status_code == 201
    row.refresh_from_db()
    assert before + timedelta(minutes=7) <= row.revoked_at <= timezone.now() + timedelta(minutes=7)
    now_row, _ = services.api_token_create(user=user)
    answer = api_client.post(f"{TOKENS}/{now_row.pk}/rotate", {"grace_minutes": 0}, format="json")
    assert answer.status_code == 201
    assert APIToken.objects.get(pk=now_row.pk).status == "revoked"
    for grace in (-1, "5", 10**9):
        refused = api_client.post(f"{TOKENS}/{row.pk}/rotate", {"grace_minutes": grace}, format="json")
        assert refused.status_code == 400 and "grace_minutes" in refused.json()["error"]["details"]


def test_a_limit_it_cannot_read_is_a_400(call, caller):
    for limit in ("0", "501", "ten", "", "1.5", "null"):
        answer = call("GET", f"{TOKENS}?limit={limit}", caller[1])
        assert answer.status == 400, (limit, answer.text)
        assert "limit" in answer.body["error"]["details"]
    assert call("GET", f"{TOKENS}?limit=500", caller[1]).status == 200
    bad_cursor = call("GET", f"{TOKENS}?cursor=not-a-cursor", caller[1])
    assert bad_cursor.status == 404 and bad_cursor.body["error"]["code"] == "not_found"
