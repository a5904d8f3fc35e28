"""Rate limits per token and per user (fixed windows on the Django cache: shared across workers with Redis) and
which monthly budgets apply (reserved against the running totals in `SpendCounter`: see llm/budgets.py).

Each request counts once against its token's rate and once against its user's (all of the user's tokens
together). With Redis both counters are created and incremented in one pipelined round trip. With the cache down,
RATE_LIMIT_FAIL_OPEN decides (common.limiter): no limit, or 503 `rate_limiter_unavailable`."""

import logging
import time
import zlib
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.conf import settings
from django.core.cache.backends.redis import RedisCache

from accounts.rates import parse_rate
from accounts.token_cache import CachedToken
from common.errors import RateLimited
from common.limiter import aguarded
from common.shared_cache import default_cache

logger = logging.getLogger(__name__)

_FUDGE_SECONDS = 5  # counters outlive their window a little, so a late increment never starts a fresh one


@dataclass(frozen=True)
class RateState:
    limit: int
    remaining: int
    reset_seconds: int

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_seconds),
        }


@dataclass(frozen=True)
class _Counter:
    """One fixed window of one rate for one key (a token prefix or a user id)."""

    key: str
    rate: str
    limit: int
    ttl: int
    reset_seconds: int
    label: str


def _counter(kind: str, value: str, rate: str, label: str, now: int) -> _Counter:
    limit, period = parse_rate(rate)
    # Windows end at a per-key offset so that all keys do not reset in the same second.
    end = now - (now % period) + (zlib.crc32(value.encode()) % period)
    if end <= now:
        end += period
    return _Counter(
        key=f"rl:djllm.llm.{kind}:{limit}/{period}s:{value}:{end}",
        rate=rate,
        limit=limit,
        ttl=period + _FUDGE_SECONDS,
        reset_seconds=end - now,
        label=label,
    )


def _hit_generic(cache, counters: list[_Counter]) -> list[int]:
    counts = []
    for counter in counters:
        if cache.add(counter.key, 1, counter.ttl):
            counts.append(1)
        else:
            try:
                counts.append(cache.incr(counter.key))
            except ValueError:  # expired between add and incr
                cache.add(counter.key, 1, counter.ttl)
                counts.append(1)
    return counts


def _hit_redis(cache: RedisCache, counters: list[_Counter]) -> list[int]:
    """Every counter created if missing (with its expiry) and incremented: one pipelined round trip."""
    client = cache._cache.get_client(write=True)
    pipe = client.pipeline(transaction=False)
    for counter in counters:
        key = cache.make_key(counter.key)
        pipe.set(key, 0, ex=counter.ttl, nx=True)
        pipe.incr(key)
    results = pipe.execute()
    return [int(n) for n in results[1::2]]


def _hit(counters: list[_Counter]) -> list[int]:
    cache = (
        default_cache()
    )  # the backend itself (`django.core.cache.cache` is a proxy, never a RedisCache), one per process
    if isinstance(cache, RedisCache):
        return _hit_redis(cache, counters)
    return _hit_generic(cache, counters)


def _stored_rate(rate: str, *, default: str, owner: str) -> str:
    """A rate read from a row saved before rates were validated (`10/0s`) yields to the setting's, instead of
    failing every request of its token with a 500."""
    if not rate:
        return default
    try:
        parse_rate(rate)
    except ValueError:
        logger.warning("%s has an invalid rate %r; %s applies", owner, rate, default or "no limit")
        return default
    return rate


def _user_rate(cached: CachedToken) -> str:
    override = cached.preferences.rate_limit if cached.preferences else ""
    default = getattr(settings, "RATE_LIMIT_PER_USER", "")
    return _stored_rate(override, default=default, owner=f"User {cached.token.user_id}")


async def rate_limit_hit(cached: CachedToken) -> RateState | None:
    """Count this request against the token's rate and the user's. Raises RateLimited (429) over either. With the
    cache down, RATE_LIMIT_FAIL_OPEN decides: no limit (None) or RateLimiterUnavailable (503)."""
    if not settings.RATE_LIMIT_ENABLED:
        return None
    now = int(time.time())
    token_rate = _stored_rate(
        cached.token.rate_limit, default=settings.RATE_LIMIT, owner=f"Token {cached.token.prefix}"
    )
    counters = [_counter("token", cached.token.prefix, token_rate, "this token", now)]
    user_rate = _user_rate(cached)
    if user_rate:
        counters.append(_counter("user", str(cached.token.user_id), user_rate, "your account (all tokens)", now))
    # In-process memory is counted in place (no I/O); a network cache off the event loop.
    counts = await aguarded(_hit, counters, limiter="token_rate_limit")
    if counts is None:
        return None
    states = [
        (counter, RateState(counter.limit, max(counter.limit - count, 0), max(counter.reset_seconds, 0)), count)
        for counter, count in zip(counters, counts, strict=True)
    ]
    for counter, state, count in states:
        if count > counter.limit:
            retry = max(state.reset_seconds, 1)
            raise RateLimited(
                f"Rate limit of {counter.rate} for {counter.label} exceeded; retry in {retry} s.",
                details={"limit": counter.rate, "scope": "token" if counter is counters[0] else "user"},
                headers={**state.headers(), "Retry-After": str(retry)},
            )
    # The headers describe whichever limit is closer to running out.
    return min((state for _, state, _ in states), key=lambda state: state.remaining)


def month_start(day: date) -> date:
    return day.replace(day=1)


def budgets_for(cached: CachedToken) -> list[tuple[str, int, Decimal, str]]:
    """(scope, key, budget, label) of the token's and the user's monthly budgets that are set; no I/O."""
    token = cached.token
    user_budget = cached.preferences.monthly_budget_usd if cached.preferences else None
    return [
        (scope, key, budget, label)
        for scope, key, budget, label in (
            ("token", token.pk, token.monthly_budget_usd, "this token"),
            ("user", token.user_id, user_budget, "your account"),
        )
        if budget is not None
    ]
