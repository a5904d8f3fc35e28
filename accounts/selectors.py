import zoneinfo

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.models import ALL_SCOPES, STAFF_SCOPES, SUPERUSER_SCOPES, APIToken, UserPreferences
from accounts.token_cache import CachedToken
from accounts.tokens import TOKEN_MARKER, split_prefix


def api_tokens_for_user(*, user) -> QuerySet[APIToken]:
    return APIToken.objects.filter(user=user).order_by("-created_at")


# What `APIToken.status` says, as a filter: revoked (stopped), rotating (stops at `revoked_at`), expired, active.
TOKEN_STATUSES = ("active", "rotating", "expired", "revoked")


def api_tokens_with_status(*, queryset: QuerySet[APIToken], status: str) -> QuerySet[APIToken]:
    now = timezone.now()
    conditions = {
        "revoked": Q(revoked_at__lte=now),
        "rotating": Q(revoked_at__gt=now),
        "expired": Q(revoked_at__isnull=True, expires_at__lte=now),
        "active": Q(revoked_at__isnull=True) & (Q(expires_at__isnull=True) | Q(expires_at__gt=now)),
    }
    return queryset.filter(conditions[status])


def api_token_by_plaintext_or_prefix(*, value: str) -> APIToken | None:
    """For `revoketoken`: accept a whole token, `djl_<prefix>`, or the bare prefix."""
    prefix = split_prefix(value) or value.removeprefix(f"{TOKEN_MARKER}_").rstrip("_").split("_")[0]
    return APIToken.objects.filter(prefix=prefix).first()


def token_timezone(cached_token: CachedToken) -> zoneinfo.ZoneInfo:
    """The timezone of the token's user (their preferences), in which their days are counted."""
    preferences = cached_token.preferences
    return zoneinfo.ZoneInfo(preferences.timezone if preferences else settings.DEFAULT_TIMEZONE)


def token_scopes_grantable(*, user, preferences: UserPreferences) -> list[str]:
    """The scopes a user may give tokens of their own (the account page, the API): those an administrator allows
    them on their preferences, less the superuser-only ones for anyone else and the staff-only ones for non-staff."""
    allowed = set(preferences.token_scopes_allowed or [])
    if not user.is_superuser:
        allowed -= set(SUPERUSER_SCOPES)
    if not user.is_staff:
        allowed -= set(STAFF_SCOPES)
    return [scope for scope in ALL_SCOPES if scope in allowed]
