from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from freezegun import freeze_time

from accounts import services
from accounts.models import ALL_SCOPES, APIToken
from accounts.tokens import token_digest

pytestmark = pytest.mark.django_db


def _me(client, **headers):
    return client.get("/api/v1/me", **headers)


def test_row_holds_digest_not_plaintext(token):
    row, plaintext = token
    stored = APIToken.objects.filter(pk=row.pk).values().get()
    assert plaintext.startswith(f"djl_{row.prefix}_")
    assert len(plaintext.split("_", 2)[2]) >= 43  # 32 random bytes, url-safe base64
    assert stored["digest"] == token_digest(plaintext)
    assert all(plaintext not in str(value) for value in stored.values())


def test_bearer_and_x_api_token_both_authenticate(api_client, token, user):
    _, plaintext = token
    for headers in ({"HTTP_AUTHORIZATION": f"Bearer {plaintext}"}, {"HTTP_X_API_TOKEN": plaintext}):
        response = _me(api_client, **headers)
        assert response.status_code == 200, response.content
        assert response.json()["user"]["username"] == user.username
        assert sorted(response.json()["token"]["scopes"]) == sorted(ALL_SCOPES)


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda row, p: (None, None), "token_missing"),
        (lambda row, p: (None, p[:-3] + "xyz"), "token_invalid"),
        (lambda row, p: (None, "not-a-token"), "token_invalid"),
        (lambda row, p: (services.api_token_revoke(token=row), p), "token_revoked"),
        (lambda row, p: (APIToken.objects.filter(pk=row.pk).update(expires_at=timezone.now()), p), "token_expired"),
        (
            lambda row, p: (row.user.__class__.objects.filter(pk=row.user_id).update(is_active=False), p),
            "token_invalid",
        ),
    ],
    ids=["missing", "wrong-secret", "malformed", "revoked", "expired", "inactive-user"],
)
def test_each_401_code(api_client, token, mutate, code):
    row, plaintext = token
    _, sent = mutate(row, plaintext)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {sent}"} if sent else {}
    response = _me(api_client, **headers)
    assert response.status_code == 401
    body = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["request_id"] == response["X-Request-ID"]
    assert "Location" not in response


def test_missing_scope_is_403(make_token, user):
    from rest_framework.test import APIRequestFactory

    from accounts.apis import MeApi

    class LlmOnly(MeApi):
        required_scope = "llm"

    _, plaintext = make_token(user=user, scopes=["calendar"])
    request = APIRequestFactory().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    response = LlmOnly.as_view()(request)
    assert response.status_code == 403
    assert response.data["error"]["code"] == "insufficient_scope"
    assert response.data["error"]["details"] == {"required_scope": "llm"}


def test_rotation_keeps_old_token_for_grace_period(api_client, token):
    old, old_plaintext = token
    new, new_plaintext = services.api_token_rotate(token=old, grace_minutes=5)
    assert new.scopes == old.scopes and new.name == old.name and new.rotated_from_id == old.pk
    assert _me(api_client, HTTP_AUTHORIZATION=f"Bearer {old_plaintext}").status_code == 200
    assert _me(api_client, HTTP_AUTHORIZATION=f"Bearer {new_plaintext}").status_code == 200
    with freeze_time(timezone.now() + timedelta(minutes=6)):
        from accounts import token_cache

        token_cache.clear()
        response = _me(api_client, HTTP_AUTHORIZATION=f"Bearer {old_plaintext}")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "token_revoked"
        assert _me(api_client, HTTP_AUTHORIZATION=f"Bearer {new_plaintext}").status_code == 200


def test_rotation_without_grace_revokes_at_once(api_client, token):
    old, old_plaintext = token
    services.api_token_rotate(token=old)
    assert _me(api_client, HTTP_AUTHORIZATION=f"Bearer {old_plaintext}").json()["error"]["code"] == "token_revoked"


def test_last_used_written_at_most_once_a_minute(api_client, token):
    row, plaintext = token
    _me(api_client, HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    first = APIToken.objects.get(pk=row.pk).last_used_at
    assert first is not None
    _me(api_client, HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    assert APIToken.objects.get(pk=row.pk).last_used_at == first


def test_createtoken_prints_token_alone_on_last_line(capsys):
    call_command("createtoken", "carol", "--create-user", "--name", "cli", "--scopes", "llm", "--expires-days", "3")
    last = capsys.readouterr().out.strip().splitlines()[-1]
    row = APIToken.objects.get(prefix=last.split("_")[1])
    assert last.startswith("djl_") and " " not in last
    assert row.user.username == "carol" and row.scopes == ["llm"] and row.name == "cli"
    assert row.expires_at > timezone.now() + timedelta(days=2)


def test_createtoken_errors():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--create-user"):
        call_command("createtoken", "nobody")
    with pytest.raises(CommandError, match="Unknown scopes: root"):
        call_command("createtoken", "dave", "--create-user", "--scopes", "llm,root")


def test_revoketoken_by_prefix_and_by_token(token, capsys):
    row, plaintext = token
    call_command("revoketoken", f"djl_{row.prefix}")
    assert APIToken.objects.get(pk=row.pk).is_revoked
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="already revoked"):
        call_command("revoketoken", plaintext)


def test_me_patch_validates_timezone_and_saves(auth_client, user):
    bad = auth_client.patch("/api/v1/me", {"timezone": "Mars/Olympus"}, format="json")
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_request"
    assert "timezone" in bad.json()["error"]["details"]
    ok = auth_client.patch("/api/v1/me", {"timezone": "Europe/Berlin", "language": "German"}, format="json")
    assert ok.status_code == 200
    assert ok.json()["preferences"]["timezone"] == "Europe/Berlin"
    user.preferences.refresh_from_db()
    assert (user.preferences.timezone, user.preferences.language) == ("Europe/Berlin", "German")


@pytest.mark.django_db(transaction=True)
async def test_concurrent_lookups_of_a_stale_token_share_one_query(token, monkeypatch):
    """When a token's cached entry goes stale under load, the requests that arrive together read it once."""
    import asyncio

    from accounts import token_cache

    row, plaintext = token
    token_cache.clear()
    loads: list[str] = []
    original = token_cache._load

    def counted(prefix):
        loads.append(prefix)
        return original(prefix)

    monkeypatch.setattr(token_cache, "_load", counted)
    results = await asyncio.gather(*(token_cache.aget(row.prefix) for _ in range(50)))
    assert loads == [row.prefix]
    assert {result.token.pk for result in results} == {row.pk}
    # A stale entry is read again, once.
    token_cache.clear()
    await asyncio.gather(*(token_cache.aget(row.prefix) for _ in range(10)))
    assert loads == [row.prefix, row.prefix]
    # An unknown prefix is remembered as unknown, after one read.
    assert await asyncio.gather(*(token_cache.aget("00000000") for _ in range(5))) == [None] * 5
    assert loads[2:] == ["00000000"]
