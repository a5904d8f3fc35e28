from rest_framework.permissions import SAFE_METHODS, BasePermission

from accounts.authentication import require_scope
from accounts.token_cache import CachedToken
from common.errors import PermissionDenied


def _as_tuple(scopes) -> tuple[str, ...]:
    if not scopes:
        return ()
    return (scopes,) if isinstance(scopes, str) else tuple(scopes)


class HasTokenScope(BasePermission):
    """Requires every scope in `view.required_scope` (one name or several) on the token, and for writes (any method
    but GET, HEAD, OPTIONS) every scope in `view.write_scope` as well."""

    def has_permission(self, request, view) -> bool:
        if not isinstance(request.auth, CachedToken):
            return False
        needed = _as_tuple(getattr(view, "required_scope", None))
        if request.method not in SAFE_METHODS:
            needed += _as_tuple(getattr(view, "write_scope", None))
        for scope in needed:
            require_scope(request.auth, scope)
        return True


class SuperuserWrites(BasePermission):
    """Writes (any method but GET, HEAD, OPTIONS) only with a superuser's token, checked on every request: the scope
    alone is not enough, and a user who stops being a superuser stops writing at once."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        if request.method in SAFE_METHODS or (user is not None and user.is_active and user.is_superuser):
            return True
        raise PermissionDenied("Only a superuser's token can change this.")
