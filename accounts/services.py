"""Writes for accounts: API tokens and preferences."""

from datetime import datetime, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import selectors, token_cache
from accounts.models import ALL_SCOPES, DEFAULT_SCOPES, APIToken, UserPreferences
from accounts.rates import parse_rate, rate_within
from accounts.tokens import generate_token, token_digest
from common.audit import Actor, audit_event_record
from common.errors import Conflict, InvalidRequest, PermissionDenied

User = get_user_model()


def _validate_scopes(scopes: list[str]) -> list[str]:
    unknown = sorted(set(scopes) - set(ALL_SCOPES))
    if unknown:
        raise InvalidRequest(f"Unknown scopes: {', '.join(unknown)}.", details={"scopes": ALL_SCOPES})
    return sorted(set(scopes))


def _token_settings(token: APIToken) -> dict:
    """What the audit log keeps about a token: its settings, never its plaintext or digest."""
    return {
        "user": token.user_id,
        "name": token.name,
        "scopes": list(token.scopes),
        "expires_at": token.expires_at,
        "rate_limit": token.rate_limit,
        "monthly_budget_usd": token.monthly_budget_usd,
    }


def api_token_create(
    *,
    user,
    name: str = "",
    scopes: list[str] | None = None,
    expires_at: datetime | None = None,
    rate_limit: str = "",
    monthly_budget_usd: Decimal | None = None,
    by: Actor | None = None,
) -> tuple[APIToken, str]:
    """Create a token; the plaintext is returned here once and never again. No scopes named: `DEFAULT_SCOPES`."""
    scopes = _validate_scopes(list(DEFAULT_SCOPES) if scopes is None else scopes)
    with transaction.atomic():
        token, plaintext = _api_token_insert(
            user=user,
            name=name,
            scopes=scopes,
            expires_at=expires_at,
            rate_limit=rate_limit,
            monthly_budget_usd=monthly_budget_usd,
        )
        audit_event_record(by=by, action="token.created", target=token, details=_token_settings(token))
    return token, plaintext


def _api_token_insert(*, user, scopes: list[str], rotated_from: APIToken | None = None, **fields):
    for _ in range(5):  # an 8-hex prefix collision is rare; try again with a fresh one
        plaintext, prefix = generate_token()
        try:
            with transaction.atomic():
                token = APIToken.objects.create(
                    user=user,
                    prefix=prefix,
                    digest=token_digest(plaintext),
                    scopes=scopes,
                    rotated_from=rotated_from,
                    **fields,
                )
            return token, plaintext
        except IntegrityError:
            continue
    raise RuntimeError("Could not allocate a unique token prefix.")


def _token_limit_exceeded(field: str, message: str, allowed) -> PermissionDenied:
    return PermissionDenied(message, code="token_limit_exceeded", details={"field": field, "allowed": allowed})


def api_token_create_for_self(
    *,
    user,
    name: str = "",
    scopes: list[str] | None = None,
    expires_at: datetime | None = None,
    rate_limit: str = "",
    monthly_budget_usd: Decimal | None = None,
    by: Actor | None = None,
) -> tuple[APIToken, str]:
    """A token a user creates for themselves (the account page, the API): within what an administrator allows
    that user on their preferences, so per-token limits set by an administrator are not undone by a new token.
    A rate or budget left blank takes the cap; asking for more raises 403 `token_limit_exceeded`."""
    preferences = user_preferences_get(user=user)
    allowed = selectors.token_scopes_grantable(user=user, preferences=preferences)
    if scopes is None:
        scopes = [s for s in DEFAULT_SCOPES if s in allowed]
    scopes = _validate_scopes(scopes)
    refused = sorted(set(scopes) - set(allowed))
    if refused:
        raise _token_limit_exceeded(
            "scopes", f"You may not create tokens with the scopes: {', '.join(refused)}.", allowed
        )
    if not scopes:
        raise InvalidRequest("A token needs at least one scope.", details={"scopes": allowed})
    rate_cap = preferences.token_rate_limit_max
    if rate_limit:
        try:
            parse_rate(rate_limit)
        except ValueError as error:
            raise InvalidRequest(str(error), details={"rate_limit": [str(error)]}) from None
        if rate_cap and not rate_within(rate_limit, rate_cap):
            raise _token_limit_exceeded("rate_limit", f"The rate of your tokens can be at most {rate_cap}.", rate_cap)
    else:
        rate_limit = rate_cap
    budget_cap = preferences.token_budget_max_usd
    if monthly_budget_usd is None:
        monthly_budget_usd = budget_cap
    elif monthly_budget_usd < 0:
        raise InvalidRequest("A budget cannot be negative.", details={"monthly_budget_usd": ["At least 0."]})
    elif budget_cap is not None and monthly_budget_usd > budget_cap:
        raise _token_limit_exceeded(
            "monthly_budget_usd", f"The monthly budget of your tokens can be at most ${budget_cap}.", str(budget_cap)
        )
    return api_token_create(
        user=user,
        name=name,
        scopes=scopes,
        expires_at=expires_at,
        rate_limit=rate_limit,
        monthly_budget_usd=monthly_budget_usd,
        by=by,
    )


TOKEN_EDITABLE_FIELDS = ("name", "scopes", "expires_at", "rate_limit", "monthly_budget_usd")


def api_token_update(*, token: APIToken, by: Actor | None = None, **fields) -> APIToken:
    """Change a token's settings. Its user is fixed at creation: moving a token to another user would let whoever
    holds it act as that user."""
    if "user" in fields or "user_id" in fields:
        new_user = fields.pop("user", None)
        new_user_id = fields.pop("user_id", getattr(new_user, "pk", None))
        if new_user_id != token.user_id:
            raise PermissionDenied("A token's user cannot be changed.", code="token_user_immutable")
    unknown = sorted(set(fields) - set(TOKEN_EDITABLE_FIELDS))
    if unknown:
        raise InvalidRequest(f"Not editable: {', '.join(unknown)}.")
    stored = APIToken.objects.filter(pk=token.pk).first()  # as stored: the admin's form has set the new values
    if stored is not None and stored.user_id != token.user_id:
        raise PermissionDenied("A token's user cannot be changed.", code="token_user_immutable")
    if "scopes" in fields:
        fields["scopes"] = _validate_scopes(list(fields["scopes"]))
    before = _token_settings(stored or token)
    for name, value in fields.items():
        setattr(token, name, value)
    if fields:
        token.full_clean(exclude=["user", "rotated_from"])
        with transaction.atomic():
            token.save(update_fields=list(fields))
            _audit_changes(by=by, noun="token", target=token, before=before, after=_token_settings(token))
    token_cache.forget(token.prefix)
    return token


BUDGET_FIELDS = ("monthly_budget_usd", "token_budget_max_usd")


def _audit_changes(*, by: Actor | None, noun: str, target, before: dict, after: dict) -> None:
    """One event for a settings change: `<noun>.budget_changed` when a budget is among the changes."""
    changes = {name: [before[name], after[name]] for name in after if before.get(name) != after[name]}
    if not changes:
        return
    action = f"{noun}.budget_changed" if set(changes) & set(BUDGET_FIELDS) else f"{noun}.changed"
    audit_event_record(by=by, action=action, target=target, details={"changes": changes})


def api_token_update_for_self(*, token: APIToken, by: Actor | None = None, **fields) -> APIToken:
    """What a user may change on a token of their own: its name and expiry. Scopes and limits stay as created
    (within what an administrator allows); a revoked token is read-only."""
    unknown = sorted(set(fields) - {"name", "expires_at"})
    if unknown:
        raise InvalidRequest(f"Not editable: {', '.join(unknown)}.")
    if token.is_revoked:
        raise Conflict("A revoked token cannot be changed.", code="token_revoked")
    return api_token_update(token=token, by=by, **fields)


def _revoke_at(token: APIToken, at: datetime) -> bool:
    changed = token.revoked_at is None or token.revoked_at > at
    if changed:
        token.revoked_at = at
        token.save(update_fields=["revoked_at"])
    token_cache.forget(token.prefix)
    return changed


def api_token_revoke(*, token: APIToken, at: datetime | None = None, by: Actor | None = None) -> APIToken:
    """Revoke now (or at `at`). Revoking twice keeps the first time (and logs nothing the second time)."""
    with transaction.atomic():
        if _revoke_at(token, at or timezone.now()):
            audit_event_record(by=by, action="token.revoked", target=token, details={"revoked_at": token.revoked_at})
    return token


def api_token_rotate(*, token: APIToken, grace_minutes: int = 0, by: Actor | None = None) -> tuple[APIToken, str]:
    """Issue a new token with the same settings; the old one works for `grace_minutes` more."""
    if token.is_revoked:
        raise InvalidRequest("A revoked token cannot be rotated.", code="token_revoked")
    with transaction.atomic():
        new_token, plaintext = _api_token_insert(
            user=token.user,
            name=token.name,
            scopes=list(token.scopes),
            expires_at=token.expires_at,
            rate_limit=token.rate_limit,
            monthly_budget_usd=token.monthly_budget_usd,
            rotated_from=token,
        )
        _revoke_at(token, timezone.now() + timedelta(minutes=max(grace_minutes, 0)))
        audit_event_record(
            by=by,
            action="token.rotated",
            target=token,
            details={"new_token": new_token.pk, "new_prefix": new_token.display_prefix, "revoked_at": token.revoked_at},
        )
    return new_token, plaintext


def api_token_mark_used(*, token_id: int, now: datetime | None = None) -> None:
    """Stamp `last_used_at`, at most once a minute per token (the caller throttles per process too)."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=60)
    APIToken.objects.filter(pk=token_id).exclude(last_used_at__gt=cutoff).update(last_used_at=now)


def user_preferences_get(*, user) -> UserPreferences:
    preferences, _ = UserPreferences.objects.get_or_create(user=user)
    return preferences


def _preferences_settings(preferences: UserPreferences) -> dict:
    return {f.attname: getattr(preferences, f.attname) for f in preferences._meta.concrete_fields if f.name != "id"}


def user_preferences_settings(*, user) -> dict:
    """The stored preferences of `user` (empty when none are stored yet)."""
    preferences = UserPreferences.objects.filter(user=user).first()
    return _preferences_settings(preferences) if preferences is not None else {}


def user_preferences_change_record(*, user, before: dict, by: Actor | None = None) -> None:
    """After the admin's inline saved `user`'s preferences: one audit event with what changed, if anything."""
    after = user_preferences_settings(user=user)
    _audit_changes(by=by, noun="user", target=user, before=before, after=after)


def user_preferences_update(*, user, by: Actor | None = None, **fields) -> UserPreferences:
    preferences = user_preferences_get(user=user)
    before = _preferences_settings(preferences)
    for name, value in fields.items():
        setattr(preferences, name, value)
    preferences.full_clean()
    with transaction.atomic():
        preferences.save()
        _audit_changes(by=by, noun="user", target=user, before=before, after=_preferences_settings(preferences))
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
