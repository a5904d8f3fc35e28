import zoneinfo

from django.conf import settings
from django.db.models import QuerySet

from accounts.models import APIToken
from accounts.token_cache import CachedToken
from accounts.tokens import TOKEN_MARKER, split_prefix


def api_tokens_for_user(*, user) -> QuerySet[APIToken]:
    return APIToken.objects.filter(user=user).order_by("-created_at")


def api_token_by_plaintext_or_prefix(*, value: str) -> APIToken | None:
    """For `revoketoken`: accept a whole token, `djl_<prefix>`, or the bare prefix."""
    prefix = split_prefix(value) or value.removeprefix(f"{TOKEN_MARKER}_").rstrip("_").split("_")[0]
    return APIToken.objects.filter(prefix=prefix).first()


def token_timezone(cached_token: CachedToken) -> zoneinfo.ZoneInfo:
    """The timezone of the token's user (their preferences), in which their days are counted."""
    preferences = cached_token.preferences
    return zoneinfo.ZoneInfo(preferences.timezone if preferences else settings.DEFAULT_TIMEZONE)
