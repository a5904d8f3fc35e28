"""The token and user admin pages: spend against the budget, links to the usage records, and the revoke and
rotate buttons with their confirmation pages."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from accounts import services
from accounts.models import APIToken
from accounts.tokens import token_digest
from llm.models import SpendCounter

pytestmark = pytest.mark.django_db

TOKENS = "/admin/accounts/apitoken/"


@pytest.fixture
def bob():
    return services.user_create(username="bob")


@pytest.fixture
def token(bob):
    token, _ = services.api_token_create(user=bob, name="laptop", monthly_budget_usd=Decimal("2"))
    month = timezone.now().date().replace(day=1)
    SpendCounter.objects.create(
        scope="token", key=token.pk, month=month, spent_usd=Decimal("0.5"), reserved_usd=Decimal("0.25")
    )
    return token


def test_token_page_shows_spend_against_budget_and_links_its_records(admin_client, token):
    html = admin_client.get(f"{TOKENS}{token.pk}/change/").content.decode()
    assert "$0.50 spent, $0.25 reserved of $2.00 (37.5%)" in html
    assert 'class="budget-spent" style="width:25.0%' in html and 'class="budget-reserved" style="width:12.5%' in html
    assert f'href="/admin/llm/usagerecord/?token__id__exact={token.pk}"' in html
    assert f'href="{TOKENS}{token.pk}/revoke/"' in html and f'href="{TOKENS}{token.pk}/rotate/"' in html


def test_revoke_asks_first_then_revokes(admin_client, token):
    response = admin_client.get(f"{TOKENS}{token.pk}/revoke/")
    assert response.status_code == 200 and "Yes, revoke it" in response.content.decode()
    assert not APIToken.objects.get(pk=token.pk).is_revoked  # the confirmation page changes nothing

    response = admin_client.post(f"{TOKENS}{token.pk}/revoke/")
    assert response.status_code == 302 and response["Location"] == f"{TOKENS}{token.pk}/change/"
    assert APIToken.objects.get(pk=token.pk).is_revoked
    html = admin_client.get(response["Location"]).content.decode()
    assert "revoked." in html and f"{TOKENS}{token.pk}/revoke/" not in html  # no buttons on a revoked token
    assert admin_client.post(f"{TOKENS}{token.pk}/revoke/").status_code == 403


def test_rotate_asks_first_then_shows_the_new_token_once(admin_client, token):
    response = admin_client.get(f"{TOKENS}{token.pk}/rotate/")
    assert response.status_code == 200 and "Yes, rotate it" in response.content.decode()
    assert APIToken.objects.filter(user=token.user).count() == 1

    response = admin_client.post(f"{TOKENS}{token.pk}/rotate/")
    assert response.status_code == 200
    new = APIToken.objects.exclude(pk=token.pk).get(user=token.user)
    plaintext = response.content.decode().split('<code class="new-token">')[1].split("<")[0]
    assert new.digest == token_digest(plaintext) and new.name == "laptop"
    assert APIToken.objects.get(pk=token.pk).is_revoked
    assert plaintext not in admin_client.get(f"{TOKENS}{new.pk}/change/").content.decode()


def test_staff_rotate_only_their_own_tokens(token):
    staff = services.user_create(username="staff", password="staff-pw-for-tests-1")
    staff.is_staff = True
    staff.save()
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_apitoken", "change_apitoken"]))
    client = Client()
    client.force_login(staff)
    assert client.get(f"{TOKENS}{token.pk}/rotate/").status_code == 403
    assert client.post(f"{TOKENS}{token.pk}/rotate/").status_code == 403
    assert APIToken.objects.filter(user=token.user).count() == 1
    assert client.get(f"{TOKENS}{token.pk}/revoke/").status_code == 200


def test_user_page_shows_tokens_spend_and_budget(admin_client, token, bob):
    services.user_preferences_update(user=bob, monthly_budget_usd=Decimal("10"))
    SpendCounter.objects.create(scope="user", key=bob.pk, month=timezone.now().date().replace(day=1), spent_usd="1")
    html = admin_client.get(f"/admin/auth/user/{bob.pk}/change/").content.decode()
    assert f'<a href="{TOKENS}{token.pk}/change/">{token.display_prefix}…</a> laptop (active)' in html
    assert "$1.00 spent, $0 reserved of $10.00 (10.0%)" in html
    assert f'href="/admin/llm/usagerecord/?user__id__exact={bob.pk}"' in html
