from rest_framework.permissions import BasePermission

from accounts.authentication import require_scope
from accounts.token_cache import CachedToken


class CalendarTokenOrSession(BasePermission):
    """An API token with the `calendar` scope, or a person logged in with a Django session (the account page)."""

    def has_permission(self, request, view) -> bool:
        if isinstance(request.auth, CachedToken):
            require_scope(request.auth, "calendar")
            return True
        return bool(request.user is not None and request.user.is_authenticated)


def is_session_request(request) -> bool:
    return not isinstance(request.auth, CachedToken)
