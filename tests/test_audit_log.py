"""The audit log: every token, login, calendar, budget, price and route action leaves exactly one row with its actor,
address and path (admin, account page, API, command), never a secret; the admin shows it read-only."""

import re
from decimal import Decimal

import pytest
from django.core import serializers
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from accounts import services
from accounts.models import APIToken
from calendars.models import GoogleCredential
from common.models import AuditEvent
from llm.models import ModelPrice, ModelRoute
from tests.gateway_fixtures import route_form

pytest_plugins = ["tests.fake_google"]

pytestmark = pytest.mark.django_db

IP = "203.0.113.5"
PASSWORD = "a-long-test-password-1"
TOKENS_ADMIN = "/admin/accounts/apitoken/"
AUDIT_ADMIN = "/admin/common/auditevent/"


@pytest.fixture
def root():
    return services.user_create(username="root", password=PASSWORD, is_superuser=True)


@pytest.fixture
def alice():
    return services.user_create(username="alice", password=PASSWORD)


def _logged_in(user) -> Client:
    client = Client(REMOTE_ADDR=IP)
    client.force_login(user)
    return client


@pytest.fixture
def admin_client(root):
    return _logged_in(root)


@pytest.fixture
def api(alice):
    """An API client for alice with the account scope, from IP."""
    _, plaintext = services.api_token_create(user=alice, name="manager", scopes=["account"])
    client = APIClient(REMOTE_ADDR=IP)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return client


def only_event(action: str, **filters) -> AuditEvent:
    """The one event of this action (more or none fails the test)."""
    [event] = AuditEvent.objects.filter(action=action, **filters)
    return event


def assert_by(event: AuditEvent, user, via: str, ip: str | None = IP) -> None:
    assert (event.actor_id, event.via, event.ip) == (user.pk if user else None, via, ip)
    assert event.actor_description == (user.username if user else "command")


def assert_no_secrets(*secrets: str) -> None:
    dumped = serializers.serialize("json", AuditEvent.objects.all())
    assert AuditEvent.objects.exists()
    for secret in secrets:
        assert secret and secret not in dumped


def assert_no_token_secrets(plaintexts: list[str]) -> None:
    digests = list(APIToken.objects.values_list("digest", flat=True))
    assert_no_secrets(*plaintexts, *digests)


# --- Tokens from the admin ------------------------------------------------------------------------


def test_admin_token_create_revoke_rotate_and_budget(admin_client, root, alice):
    response = admin_client.post(f"{TOKENS_ADMIN}add/", {"user": alice.pk, "name": "excel", "scopes": ["llm"]})
    assert response.status_code == 200
    token = APIToken.objects.get(user=alice, name="excel")
    created = only_event("token.created", target_id=str(token.pk))
    assert_by(created, root, "admin")
    assert (created.target_type, created.target_label) == ("accounts.apitoken", str(token))
    assert created.details["scopes"] == ["llm"] and created.details["user"] == alice.pk

    response = admin_client.post(
        f"{TOKENS_ADMIN}{token.pk}/change/",
        {"name": "excel", "scopes": ["llm"], "rate_limit": "", "monthly_budget_usd": "12.50"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    budget = only_event("token.budget_changed", target_id=str(token.pk))
    assert_by(budget, root, "admin")
    assert budget.details["changes"]["monthly_budget_usd"] == [None, "12.50"]

    response = admin_client.post(TOKENS_ADMIN, {"action": "rotate_tokens", "_selected_action": [token.pk]})
    assert response.status_code == 200
    new = APIToken.objects.get(rotated_from=token)
    rotated = only_event("token.rotated", target_id=str(token.pk))
    assert_by(rotated, root, "admin")
    assert rotated.details["new_token"] == new.pk
    assert not AuditEvent.objects.filter(action="token.created", target_id=str(new.pk)).exists()
    assert not AuditEvent.objects.filter(action="token.revoked", target_id=str(token.pk)).exists()

    admin_client.post(TOKENS_ADMIN, {"action": "revoke_tokens", "_selected_action": [new.pk]}, follow=True)
    assert_by(only_event("token.revoked", target_id=str(new.pk)), root, "admin")
    [plaintext] = set(re.findall(r"djl_[0-9a-f]{8}_[A-Za-z0-9_-]{40,}", response.content.decode()))
    assert plaintext.startswith(new.display_prefix)
    assert_no_token_secrets([plaintext])


# --- Tokens from the account page -----------------------------------------------------------------


def test_account_page_token_create_and_revoke(alice):
    client = _logged_in(alice)
    response = client.post("/account/tokens/create", {"name": "laptop", "scopes": ["llm"]})
    assert response.status_code == 200, response.content.decode()[:2000]
    token = APIToken.objects.get(user=alice, name="laptop")
    assert_by(only_event("token.created", target_id=str(token.pk)), alice, "account")
    plaintext = response.context["new_token"]
    response = client.post(f"/account/tokens/{token.pk}/revoke")
    assert response.status_code == 302
    assert_by(only_event("token.revoked", target_id=str(token.pk)), alice, "account")
    assert_no_token_secrets([plaintext])


# --- Tokens from the API --------------------------------------------------------------------------


def test_api_token_create_change_rotate_and_revoke(api, alice):
    created = api.post("/api/v1/tokens", {"name": "script", "scopes": ["account"]}, format="json")
    assert created.status_code == 201, created.content
    token_id = created.json()["id"]
    assert_by(only_event("token.created", target_id=str(token_id)), alice, "api")

    changed = api.patch(f"/api/v1/tokens/{token_id}", {"name": "script 2"}, format="json")
    assert changed.status_code == 200, changed.content
    event = only_event("token.changed", target_id=str(token_id))
    assert_by(event, alice, "api")
    assert event.details["changes"] == {"name": ["script", "script 2"]}

    rotated = api.post(f"/api/v1/tokens/{token_id}/rotate", {"grace_minutes": 5}, format="json")
    assert rotated.status_code == 201, rotated.content
    assert_by(only_event("token.rotated", target_id=str(token_id)), alice, "api")
    new_id = rotated.json()["id"]
    assert not AuditEvent.objects.filter(action="token.created", target_id=str(new_id)).exists()

    revoked = api.post(f"/api/v1/tokens/{new_id}/revoke")
    assert revoked.status_code == 200, revoked.content
    assert_by(only_event("token.revoked", target_id=str(new_id)), alice, "api")
    again = api.post(f"/api/v1/tokens/{new_id}/revoke")
    assert again.status_code == 200 and AuditEvent.objects.filter(action="token.revoked").count() == 1
    assert_no_token_secrets([created.json()["token"], rotated.json()["token"]])


def test_api_budget_change_of_preferences_is_one_event(alice):
    services.user_preferences_update(user=alice, monthly_budget_usd=Decimal("3"), timezone="Europe/Berlin")
    event = only_event("user.budget_changed", target_id=str(alice.pk))
    assert event.details["changes"]["monthly_budget_usd"] == [None, "3"]
    assert event.details["changes"]["timezone"] == ["UTC", "Europe/Berlin"]
    assert event.via == "system" and event.actor_id is None


# --- Tokens from the commands ---------------------------------------------------------------------


def test_commands_create_and_revoke(alice, capsys):
    call_command("createtoken", "alice", "--name", "cron")
    plaintext = capsys.readouterr().out.strip().splitlines()[-1]
    token = APIToken.objects.get(user=alice, name="cron")
    assert_by(only_event("token.created", target_id=str(token.pk)), None, "command", ip=None)
    call_command("revoketoken", token.display_prefix)
    assert_by(only_event("token.revoked", target_id=str(token.pk)), None, "command", ip=None)
    assert_no_token_secrets([plaintext])


# --- Logins ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "via"), [("/admin/login/", "admin"), ("/account/login/", "account")])
def test_login_success_and_failure(root, path, via):
    client = Client(REMOTE_ADDR=IP)
    response = client.post(path, {"username": "root", "password": "wrong-password"})
    assert response.status_code == 200
    failed = only_event("login.failed")
    assert (failed.actor_id, failed.actor_description, failed.via, failed.ip) == (None, "root", via, IP)
    response = client.post(path, {"username": "root", "password": PASSWORD})
    assert response.status_code == 302
    assert_by(only_event("login.succeeded"), root, via)
    assert_no_secrets(PASSWORD, "wrong-password")


# --- The admin ------------------------------------------------------------------------------------


def test_admin_lists_filters_and_refuses_writes(admin_client, alice):
    services.api_token_create(user=alice, name="one")
    call_command("createtoken", "alice", "--name", "two", stdout=open("/dev/null", "w"))  # noqa: SIM115
    page = admin_client.get(AUDIT_ADMIN)
    assert page.status_code == 200
    html = page.content.decode()
    assert "token.created" in html and "command" in html
    filtered = admin_client.get(AUDIT_ADMIN, {"via__exact": "command"})
    assert filtered.status_code == 200
    assert filtered.context["cl"].result_count == 1
    searched = admin_client.get(AUDIT_ADMIN, {"q": "two"})
    assert searched.context["cl"].result_count == 1
    by_action = admin_client.get(AUDIT_ADMIN, {"action__exact": "token.created"})
    assert by_action.context["cl"].result_count == 2
    assert "at__year=" in html and "column-ip" in html  # the date hierarchy, the address column

    event = AuditEvent.objects.first()
    assert admin_client.get(f"{AUDIT_ADMIN}add/").status_code == 403
    detail = admin_client.get(f"{AUDIT_ADMIN}{event.pk}/change/")
    assert detail.status_code == 200 and 'type="submit"' not in detail.content.decode().split('id="content"')[1]
    assert admin_client.post(f"{AUDIT_ADMIN}{event.pk}/change/", {"action": "x"}).status_code == 403
    assert admin_client.post(f"{AUDIT_ADMIN}{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk, action=event.action).exists()
    assert "delete_selected" not in html


# --- Prices and routes, from the admin and the API ------------------------------------------------

PRICE = {"provider": "openai", "model": "gpt-audit", "input_per_mtok": "0.40", "output_per_mtok": "1.60"}
ROUTE_KEY = "sk-route-key-for-audit-0123456789"


def test_admin_price_and_route_changes(admin_client, root):
    form = {**PRICE, "max_output_tokens": "4096", "effective_from": "2026-01-01"}
    assert admin_client.post("/admin/llm/modelprice/add/", form).status_code == 302
    price = ModelPrice.objects.get(model="gpt-audit")
    created = only_event("price.created", target_id=str(price.pk))
    assert_by(created, root, "admin")
    assert Decimal(created.details["values"]["input_per_mtok"]) == Decimal("0.4")
    response = admin_client.post(f"/admin/llm/modelprice/{price.pk}/change/", {**form, "input_per_mtok": "0.5"})
    assert response.status_code == 302
    changed = only_event("price.changed", target_id=str(price.pk))
    assert [Decimal(v) for v in changed.details["changes"].pop("input_per_mtok")] == [Decimal("0.4"), Decimal("0.5")]
    assert changed.details["changes"] == {}
    assert admin_client.post(f"/admin/llm/modelprice/{price.pk}/delete/", {"post": "yes"}).status_code == 302
    assert_by(only_event("price.deleted", target_id=str(price.pk)), root, "admin")

    assert admin_client.post("/admin/llm/modelroute/add/", route_form(api_key=ROUTE_KEY)).status_code == 302
    route = ModelRoute.objects.get(alias="fast")
    created = only_event("route.created", target_id=str(route.pk))
    assert_by(created, root, "admin")
    assert created.details["values"]["api_key"] is True
    response = admin_client.post(
        f"/admin/llm/modelroute/{route.pk}/change/", route_form(upstream_model="gpt-4o", api_key="sk-another-key-99")
    )
    assert response.status_code == 302
    changed = only_event("route.changed", target_id=str(route.pk))
    assert changed.details["changes"]["upstream_model"] == ["gpt-4o-mini", "gpt-4o"]
    assert changed.details["changes"]["api_key"] == "changed"
    assert admin_client.post(f"/admin/llm/modelroute/{route.pk}/delete/", {"post": "yes"}).status_code == 302
    assert_by(only_event("route.deleted", target_id=str(route.pk)), root, "admin")
    assert_no_secrets(ROUTE_KEY, "sk-another-key-99")


def test_api_price_and_route_changes(root):
    _, plaintext = services.api_token_create(user=root, name="ops", scopes=["llm", "admin"])
    api = APIClient(REMOTE_ADDR=IP)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    created = api.post("/api/v1/prices", PRICE, format="json")
    assert created.status_code == 201, created.content
    price_id = str(created.json()["id"])
    assert_by(only_event("price.created", target_id=price_id), root, "api")
    assert api.patch(f"/api/v1/prices/{price_id}", {"output_per_mtok": "2"}, format="json").status_code == 200
    assert Decimal(only_event("price.changed", target_id=price_id).details["changes"]["output_per_mtok"][1]) == 2
    assert api.delete(f"/api/v1/prices/{price_id}").status_code == 204
    assert_by(only_event("price.deleted", target_id=price_id), root, "api")

    body = {"alias": "fast", "provider": "openai", "upstream_model": "gpt-4o-mini", "api_key": ROUTE_KEY}
    created = api.post("/api/v1/routes", body, format="json")
    assert created.status_code == 201, created.content
    route_id = str(created.json()["id"])
    assert_by(only_event("route.created", target_id=route_id), root, "api")
    assert api.patch(f"/api/v1/routes/{route_id}", {"api_key": ""}, format="json").status_code == 200
    assert only_event("route.changed", target_id=route_id).details["changes"] == {"api_key": "changed"}
    assert api.delete(f"/api/v1/routes/{route_id}").status_code == 204
    assert_by(only_event("route.deleted", target_id=route_id), root, "api")
    assert_no_secrets(ROUTE_KEY, plaintext, APIToken.objects.get(name="ops").digest)


# --- Google Calendar: connected (the OAuth callback) and revoked (the account page, the API) --------------


def _google_secrets(fake_google, google_settings) -> list[str]:
    secrets = [google_settings.GOOGLE_TOKEN_ENCRYPTION_KEYS[0], google_settings.GOOGLE_CLIENT_SECRET]
    for grant in fake_google.grants:
        secrets += [grant.refresh_token, *grant.access_tokens]
    secrets += list(GoogleCredential.objects.values_list("refresh_token_encrypted", flat=True))
    return [s for s in secrets if s]


def test_calendar_connected_then_revoked_over_the_api(connected, fake_google, google_settings, user, auth_client):
    event = only_event("calendar.connected")
    assert_by(event, user, "account", ip="127.0.0.1")
    assert event.details["email"] == fake_google.account_email and event.details["reconnected"] is False
    secrets = _google_secrets(fake_google, google_settings)
    response = auth_client.post("/api/v1/calendar/revoke", REMOTE_ADDR=IP)
    assert response.status_code == 200 and response.json()["deleted"] is True
    revoked = only_event("calendar.revoked")
    assert_by(revoked, user, "api")
    assert (revoked.target_id, revoked.details["google_revoked"]) == (str(connected.pk), True)
    assert auth_client.post("/api/v1/calendar/revoke").json()["deleted"] is False
    assert AuditEvent.objects.filter(action="calendar.revoked").count() == 1
    assert_no_secrets(*secrets)


def test_calendar_revoked_from_the_account_page(connected, fake_google, google_settings, user):
    secrets = _google_secrets(fake_google, google_settings)
    client = _logged_in(user)
    response = client.post("/api/v1/calendar/revoke")
    assert response.status_code == 302 and response["Location"] == "/account/"
    assert_by(only_event("calendar.revoked"), user, "account")
    assert_no_secrets(*secrets)


def test_calendar_deleted_in_the_admin_is_revoked_at_google_and_audited(
    connected, fake_google, google_settings, admin_client, root, user
):
    secrets = _google_secrets(fake_google, google_settings)
    url = f"/admin/calendars/googlecredential/{connected.pk}/delete/"
    assert admin_client.post(url, {"post": "yes"}, REMOTE_ADDR=IP).status_code == 302
    assert not GoogleCredential.objects.filter(user=user).exists()
    assert fake_google.revoked, "the admin's delete left the grant alive at Google"
    revoked = only_event("calendar.revoked")
    assert_by(revoked, root, "admin")
    assert (revoked.target_id, revoked.details["google_revoked"]) == (str(connected.pk), True)
    assert_no_secrets(*secrets)


def test_admin_token_page_buttons_and_user_budget(admin_client, root, alice):
    token, _ = services.api_token_create(user=root, name="mine")
    assert admin_client.post(f"{TOKENS_ADMIN}{token.pk}/rotate/").status_code == 200
    assert_by(only_event("token.rotated", target_id=str(token.pk)), root, "admin")
    new = APIToken.objects.get(rotated_from=token)
    assert admin_client.post(f"{TOKENS_ADMIN}{new.pk}/revoke/").status_code == 302
    assert_by(only_event("token.revoked", target_id=str(new.pk)), root, "admin")

    # The user page as the admin fills it in, with only the preferences' monthly budget changed.
    page = admin_client.get(f"/admin/auth/user/{alice.pk}/change/")
    form = page.context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None and name != "password"}
    data.update({"username": "alice", "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00"})
    inline = page.context["inline_admin_formsets"][0].formset
    data.update({f"{inline.prefix}-{k}": v for k, v in inline.management_form.initial.items()})
    prefs = inline.forms[0]
    for name, field in prefs.fields.items():
        value = prefs.initial.get(name, field.initial)
        if value is None or value == "":
            continue
        data[f"{prefs.prefix}-{name}"] = value
    data[f"{prefs.prefix}-monthly_budget_usd"] = "25"
    data[f"{prefs.prefix}-user"] = alice.pk
    response = admin_client.post(f"/admin/auth/user/{alice.pk}/change/", data)
    assert response.status_code == 302, [f.errors for f in response.context["inline_admin_formsets"][0].formset]
    event = only_event("user.budget_changed", target_id=str(alice.pk))
    assert_by(event, root, "admin")
    assert Decimal(event.details["changes"]["monthly_budget_usd"][1]) == 25


def test_a_lockout_is_one_event_and_each_failed_try_another(root, settings):
    limit = settings.AXES_FAILURE_LIMIT
    client = Client(REMOTE_ADDR=IP)
    answers = [client.post("/account/login/", {"username": "root", "password": f"guess-{n}"}) for n in range(limit)]
    assert answers[-1].status_code == 429
    locked = only_event("login.locked_out")
    assert (locked.actor_description, locked.via, locked.ip) == ("root", "account", IP)
    assert AuditEvent.objects.filter(action="login.failed", ip=IP).count() == limit
    assert_no_secrets(*[f"guess-{n}" for n in range(limit)])
