"""Writes for accounts: API tokens and preferences."""

from datetime import datetime, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import token_cache
from accounts.models import ALL_SCOPES, APIToken, UserPreferences
from accounts.tokens import generate_token, token_digest
from common.errors import InvalidRequest

User = get_user_model()


def _validate_scopes(scopes: list[str]) -> list[str]:
    unknown = sorted(set(scopes) - set(ALL_SCOPES))
    if unknown:
        raise InvalidRequest(f"Unknown scopes: {', '.join(unknown)}.", details={"scopes": ALL_SCOPES})
    return sorted(set(scopes))


def api_token_create(
    *,
    user,
    name: str = "",
    scopes: list[str] | None = None,
    expires_at: datetime | None = None,
    rate_limit: str = "",
    monthly_budget_usd: Decimal | None = None,
    rotated_from: APIToken | None = None,
) -> tuple[APIToken, str]:
    """Create a token; the plaintext is returned here once and never again."""
    scopes = _validate_scopes(list(ALL_SCOPES) if scopes is None else scopes)
    for _ in range(5):  # an 8-hex prefix collision is rare; try again with a fresh one
        plaintext, prefix = generate_token()
        try:
            with transaction.atomic():
                token = APIToken.objects.create(
                    user=user,
                    name=name,
                    prefix=prefix,
                    digest=token_digest(plaintext),
                    scopes=scopes,
                    expires_at=expires_at,
                    rate_limit=rate_limit,
                    monthly_budget_usd=monthly_budget_usd,
                    rotated_from=rotated_from,
                )
            return token, plaintext
        except IntegrityError:
            continue
    raise RuntimeError("Could not allocate a unique token prefix.")


def api_token_revoke(*, token: APIToken, at: datetime | None = None) -> APIToken:
    """Revoke now (or at `at`, for a rotation's grace period). Revoking twice keeps the first time."""
    at = at or timezone.now()
    if token.revoked_at is None or token.revoked_at > at:
        token.revoked_at = at
        token.save(update_fields=["revoked_at"])
    token_cache.forget(token.prefix)
    return token


def api_token_rotate(*, token: APIToken, grace_minutes: int = 0) -> tuple[APIToken, str]:
    """Issue a new token with the same settings; the old one works for `grace_minutes` more."""
    if token.is_revoked:
        raise InvalidRequest("A revoked token cannot be rotated.", code="token_revoked")
    with transaction.atomic():
        new_token, plaintext = api_token_create(
            user=token.user,
            name=token.name,
            scopes=list(token.scopes),
            expires_at=token.expires_at,
            rate_limit=token.rate_limit,
            monthly_budget_usd=token.monthly_budget_usd,
            rotated_from=token,
        )
        api_token_revoke(token=token, at=timezone.now() + timedelta(minutes=max(grace_minutes, 0)))
    return new_token, plaintext


def api_token_mark_used(*, token_id: int, now: datetime | None = None) -> None:
    """Stamp `last_used_at`, at most once a minute per token (the caller throttles per process too)."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=60)
    APIToken.objects.filter(pk=token_id).exclude(last_used_at__gt=cutoff).update(last_used_at=now)


def user_preferences_get(*, user) -> UserPreferences:
    preferences, _ = UserPreferences.objects.get_or_create(user=user)
    return preferences


def user_preferences_update(*, user, **fields) -> UserPreferences:
    preferences = user_preferences_get(user=user)
    for name, value in fields.items():
        setattr(preferences, name, value)
    preferences.full_clean()
    preferences.save()
    token_cache.forget_user(user.pk)
    return preferences


def user_create(*, username: str, email: str = "", password: str | None = None, is_superuser: bool = False):
    if is_superuser:
        user = User.objects.create_superuser(username=username, email=email, password=password)
    else:
        user = User.objects.create_user(username=username, email=email, password=password)
    UserPreferences.objects.get_or_create(user=user)
    return user


def api_token_changed(*, token: APIToken) -> None:
    """After an admin edit: this process forgets its cached copy (others refresh within their interval)."""
    token_cache.forget(token.prefix)
