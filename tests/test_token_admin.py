"""Token actions in the admin leave the admin's own history (LogEntry), and a token's user is fixed at creation."""

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.test import Client

from accounts import services
from accounts.models import APIToken
from common.errors import PermissionDenied
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/accounts/apitoken/"


@pytest.fixture
def bob():
    return services.user_create(username="bob", password="bob-pw-for-tests-1")


@pytest.fixture
def root():
    return services.user_create(username="root", password="root-pw-for-tests-1", is_superuser=True)


@pytest.fixture
def admin_client(root):
    client = Client()
    client.force_login(root)
    return client


def history(token) -> list[tuple[int, str, int]]:
    entries = LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(APIToken), object_id=str(token.pk)
    ).order_by("pk")
    return [(e.action_flag, e.get_change_message(), e.user_id) for e in entries]


def test_creating_a_token_in_the_admin_is_logged(admin_client, root, bob):
    response = admin_client.post(
        f"{CHANGELIST}add/", {"user": bob.pk, "name": "excel", "scopes": ["llm"], "rate_limit": "30/m"}
    )
    assert response.status_code == 200 and "shown only this once" in response.content.decode()
    token = APIToken.objects.get(user=bob)
    [(flag, _, user_id)] = history(token)
    assert (flag, user_id) == (ADDITION, root.pk)
    assert LogEntry.objects.get(object_id=str(token.pk)).object_repr == str(token)
    assert token.prefix in str(token)


def test_revoke_action_is_logged_per_token(admin_client, root, bob):
    tokens = [services.api_token_create(user=bob, name=n)[0] for n in ("one", "two")]
    response = admin_client.post(
        CHANGELIST, {"action": "revoke_tokens", "_selected_action": [t.pk for t in tokens]}, follow=True
    )
    assert response.status_code == 200 and "Revoked 2 token(s)." in response.content.decode()
    for token in tokens:
        assert APIToken.objects.get(pk=token.pk).is_revoked
        assert history(token) == [(CHANGE, "Revoked.", root.pk)]


def test_rotate_action_logs_the_old_and_the_new_token(admin_client, root, bob):
    old, _ = services.api_token_create(user=bob, name="excel", scopes=["llm"])
    response = admin_client.post(CHANGELIST, {"action": "rotate_tokens", "_selected_action": [old.pk]})
    assert response.status_code == 200
    new = APIToken.objects.get(rotated_from=old)
    assert history(old) == [(CHANGE, f"Rotated: revoked, replaced by {new.display_prefix}….", root.pk)]
    assert history(new) == [(ADDITION, f"Created by rotating {old.display_prefix}….", root.pk)]


def test_a_change_is_logged_and_the_user_cannot_be_reassigned(bob):
    # Staff with every token right, but not a superuser: the user field is shown read-only and a posted one ignored.
    staff = UserFactory(username="staff", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label="accounts"))
    client = Client()
    client.force_login(staff)
    token, plaintext = services.api_token_create(user=bob, name="excel", scopes=["llm"])
    page = client.get(f"{CHANGELIST}{token.pk}/change/").content.decode()
    assert 'name="user"' not in page and "bob" in page

    response = client.post(
        f"{CHANGELIST}{token.pk}/change/", {"user": staff.pk, "name": "renamed", "scopes": ["llm", "calendar"]}
    )
    assert response.status_code == 302
    token.refresh_from_db()
    assert (token.user, token.name, token.scopes) == (bob, "renamed", ["calendar", "llm"])
    [(flag, message, user_id)] = history(token)
    assert (flag, message, user_id) == (CHANGE, "Changed Name and scopes.", staff.pk)
    # The token still authenticates as bob, not as the staff member who edited it.
    me = Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}").get("/api/v1/me")
    assert me.status_code == 200 and me.json()["user"]["username"] == "bob"


def test_the_service_refuses_to_move_a_token_to_another_user(bob):
    token, _ = services.api_token_create(user=bob, name="excel")
    other = UserFactory()
    with pytest.raises(PermissionDenied) as refused:
        services.api_token_update(token=token, user=other, name="mine now")
    assert refused.value.code == "token_user_immutable"
    # Changing it in memory and saving through the service is refused as well.
    token.user = other
    with pytest.raises(PermissionDenied):
        services.api_token_update(token=token, name="mine now")
    stored = APIToken.objects.get(pk=token.pk)
    assert (stored.user_id, stored.name) == (bob.pk, "excel")


def test_preferences_inline_offers_the_token_caps(admin_client, bob):
    page = admin_client.get(f"/admin/auth/user/{bob.pk}/change/").content.decode()
    for name in ("token_scopes_allowed", "token_rate_limit_max", "token_budget_max_usd", "rate_limit"):
        assert f"preferences-0-{name}" in page


def test_staff_without_superuser_make_and_rotate_tokens_only_for_themselves(bob):
    """A token made (or rotated) for someone else is shown to its maker once: it would let staff act as that user."""
    staff = UserFactory(username="staff", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label="accounts"))
    client = Client()
    client.force_login(staff)
    form = client.get(f"{CHANGELIST}add/").content.decode()
    assert f'value="{staff.pk}"' in form and f'value="{bob.pk}"' not in form

    refused = client.post(f"{CHANGELIST}add/", {"user": bob.pk, "name": "mine now", "scopes": ["llm"]})
    assert refused.status_code == 200 and "Select a valid choice" in refused.content.decode()
    assert not APIToken.objects.filter(user=bob).exists()

    bobs, _ = services.api_token_create(user=bob, name="excel")
    own, _ = services.api_token_create(user=staff, name="own")
    response = client.post(CHANGELIST, {"action": "rotate_tokens", "_selected_action": [bobs.pk, own.pk]})
    page = response.content.decode()
    assert "shown only this once" in page and page.count("djl_") == 1  # one new plaintext: the staff's own
    bobs.refresh_from_db()
    own.refresh_from_db()
    assert bobs.revoked_at is None and own.revoked_at is not None
    assert APIToken.objects.filter(user=bob).count() == 1
    assert "Not rotated: 1 token(s) of other users (only a superuser can)." in page
