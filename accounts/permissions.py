from rest_framework.permissions import BasePermission

from accounts.authentication import require_scope
from accounts.token_cache import CachedToken


class HasTokenScope(BasePermission):
    """Requires `view.required_scope` on the token (when the view names one)."""

    def has_permission(self, request, view) -> bool:
        if not isinstance(request.auth, CachedToken):
            return False
        scope = getattr(view, "required_scope", None)
        if scope:
            require_scope(request.auth, scope)
        return True
