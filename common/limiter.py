"""What every limiter that counts in the Django cache does when the cache (Redis) cannot be reached.

One policy, one setting, `RATE_LIMIT_FAIL_OPEN`, for the per-token rate limits of the LLM endpoints, DRF throttles
and login throttles alike:

- true (the default): the request goes on, unlimited. Each such request is counted (`cache_failures()`, shown by
  the readiness check) and logged at most once a minute per process, so an outage is visible without flooding
  the log;
- false: the request is refused with 503 `rate_limiter_unavailable` and `Retry-After`.

Either way a cache outage is never a 500. Budgets count in the database and do not depend on the cache.

Usage: `guarded(fn, *args, limiter="name", default=...)` runs one cache operation (sync callers, DRF);
`aguarded(...)` the same from async code, off the event loop unless the cache is in process memory; a DRF
throttle gets the policy by putting `CacheFailurePolicyThrottleMixin` before its base class.
"""

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings

from common.aio import run_blocking
from common.errors import RateLimiterUnavailable

logger = logging.getLogger(__name__)

LOG_EVERY_SECONDS = 60.0

try:  # the Redis client is installed with the Redis cache backend; without it the cache is local memory
    from redis.exceptions import RedisError
except ImportError:  # pragma: no cover
    RedisError = OSError  # type: ignore[misc,assignment]

# What an unreachable cache raises: redis-py's errors, and socket errors (refused, reset, timed out, DNS).
CACHE_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError)

_lock = threading.Lock()
_failures = 0
_unlogged = 0
_last_logged: float | None = None


def cache_failures() -> int:
    """Requests this process let through (or refused) because a limiter's cache could not be reached."""
    return _failures


def reset_cache_failures() -> None:
    global _failures, _unlogged, _last_logged
    with _lock:
        _failures, _unlogged, _last_logged = 0, 0, None


def _count_and_maybe_log(limiter: str, exc: BaseException, fail_open: bool) -> None:
    global _failures, _unlogged, _last_logged
    now = time.monotonic()
    with _lock:
        _failures += 1
        _unlogged += 1
        if _last_logged is not None and now - _last_logged < LOG_EVERY_SECONDS:
            return
        _last_logged, skipped = now, _unlogged
        _unlogged = 0
    logger.error(
        "Rate limiter %s: the cache is unreachable (%s: %s); %d request(s) %s since the last report "
        "(RATE_LIMIT_FAIL_OPEN=%s). Logged at most once a minute.",
        limiter,
        type(exc).__name__,
        exc,
        skipped,
        "went on unlimited" if fail_open else "were refused with 503",
        "true" if fail_open else "false",
    )


def cache_unavailable(limiter: str, exc: BaseException) -> None:
    """Apply the policy to one failed cache operation: return (fail open) or raise `RateLimiterUnavailable`."""
    fail_open = settings.RATE_LIMIT_FAIL_OPEN
    _count_and_maybe_log(limiter, exc, fail_open)
    if not fail_open:
        raise RateLimiterUnavailable(details={"limiter": limiter}) from None


def guarded(fn: Callable[..., Any], *args, limiter: str, default: Any = None, **kwargs) -> Any:
    """`fn(*args, **kwargs)`, a limiter's cache operation; `default` when the cache is down and the policy is
    fail-open (for a throttle: True, "allowed")."""
    try:
        return fn(*args, **kwargs)
    except CACHE_ERRORS as exc:
        cache_unavailable(limiter, exc)
        return default


def cache_is_local() -> bool:
    return settings.CACHES["default"]["BACKEND"].endswith("LocMemCache")


async def aguarded(fn: Callable[..., Any], *args, limiter: str, default: Any = None, **kwargs) -> Any:
    """`guarded` for async callers: a network cache is called off the event loop (not on the shared sync thread);
    the in-process local-memory cache is called in place (no I/O)."""
    if cache_is_local():
        return guarded(fn, *args, limiter=limiter, default=default, **kwargs)
    return await run_blocking(guarded, fn, *args, limiter=limiter, default=default, **kwargs)


class CacheFailurePolicyThrottleMixin:
    """For DRF throttles on the cache (`class MyThrottle(CacheFailurePolicyThrottleMixin, UserRateThrottle)`):
    the request is allowed (fail open) or refused with 503 when the cache is down."""

    def allow_request(self, request, view) -> bool:
        return guarded(
            super().allow_request,  # type: ignore[misc]
            request,
            view,
            limiter=f"throttle:{getattr(self, 'scope', None) or type(self).__name__}",
            default=True,
        )
