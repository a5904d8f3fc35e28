"""DRF throttles, counted per API token (or per logged-in user on the few session endpoints).

`TokenRateThrottle` applies the `api` rate to every DRF endpoint; `TokenScopedRateThrottle` adds the rate named by a
view's `throttle_scope` (the calendar endpoints, which spend the Google quota every user shares). Rates are
`DEFAULT_THROTTLE_RATES` in the project's rate format (`60/m`, `10/5s`); a blank rate means no limit. A throttled
request gets 429 `rate_limited` with Retry-After (common.exceptions). Anonymous requests are not counted here:
they are refused before the throttles run, or are the public schema pages. With the cache down,
RATE_LIMIT_FAIL_OPEN decides (common.limiter).
"""

from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from accounts.rates import parse_rate
from accounts.token_cache import CachedToken
from common.limiter import CacheFailurePolicyThrottleMixin


def _ident(request) -> str | None:
    if isinstance(request.auth, CachedToken):
        return f"token:{request.auth.token.prefix}"
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return None


class _ProjectRateThrottle(CacheFailurePolicyThrottleMixin, SimpleRateThrottle):
    cache_format = "throttle:%(scope)s:%(ident)s"

    def get_rate(self):
        # Read at request time (DRF's class attribute is bound once at import).
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope) if self.scope else None

    def parse_rate(self, rate):
        if rate is None:
            return (None, None)
        return parse_rate(rate)

    def get_cache_key(self, request, view):
        ident = _ident(request)
        return None if ident is None else self.cache_format % {"scope": self.scope, "ident": ident}


class TokenRateThrottle(_ProjectRateThrottle):
    scope = "api"


class TokenScopedRateThrottle(_ProjectRateThrottle):
    """The rate of `view.throttle_scope`, when the view names one."""

    def __init__(self):
        pass  # the rate depends on the view; it is read in allow_request

    def allow_request(self, request, view) -> bool:
        self.scope = getattr(view, "throttle_scope", None)
        if not self.scope:
            return True
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)
