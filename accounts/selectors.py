from django.db.models import QuerySet

from accounts.models import APIToken
from accounts.tokens import TOKEN_MARKER, split_prefix


def api_tokens_for_user(*, user) -> QuerySet[APIToken]:
    return APIToken.objects.filter(user=user).order_by("-created_at")


def api_token_by_plaintext_or_prefix(*, value: str) -> APIToken | None:
    """For `revoketoken`: accept a whole token, `djl_<prefix>`, or the bare prefix."""
    prefix = split_prefix(value) or value.removeprefix(f"{TOKEN_MARKER}_").rstrip("_").split("_")[0]
    return APIToken.objects.filter(prefix=prefix).first()
