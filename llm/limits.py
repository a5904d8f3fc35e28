"""Per-token rate limits (django-ratelimit, on the Django cache: shared across workers with Redis) and monthly
budgets (running totals in `SpendCounter`, never a sum over the usage table)."""

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.conf import settings
from django_ratelimit.core import get_usage

from accounts.token_cache import CachedToken
from common.db_thread import run_in_db_thread
from common.errors import BudgetExceeded, RateLimited
from common.limiter import aguarded
from llm.models import SpendCounter


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


def _key(group, request) -> str:
    return request.djllm_token_prefix


class _KeyHolder:
    """django-ratelimit reads the method and our key from a request-like object."""

    method = "POST"

    def __init__(self, prefix: str) -> None:
        self.djllm_token_prefix = prefix


def _check(prefix: str, rate: str) -> dict | None:
    return get_usage(_KeyHolder(prefix), group="djllm.llm", key=_key, rate=rate, method=["POST"], increment=True)


async def rate_limit_hit(cached: CachedToken) -> RateState | None:
    """Count this request against the token's rate. Raises RateLimited (429) over the limit. With the cache down,
    RATE_LIMIT_FAIL_OPEN decides: no limit (None) or RateLimiterUnavailable (503)."""
    if not settings.RATE_LIMIT_ENABLED:
        return None
    rate = cached.token.rate_limit or settings.RATE_LIMIT
    usage = await aguarded(_check, cached.token.prefix, rate, limiter="token_rate_limit")
    if usage is None:
        return None
    state = RateState(
        limit=usage["limit"],
        remaining=max(usage["limit"] - usage["count"], 0),
        reset_seconds=max(usage["time_left"], 0),
    )
    if usage["should_limit"]:
        raise RateLimited(
            f"Rate limit of {rate} for this token exceeded; retry in {max(state.reset_seconds, 1)} s.",
            details={"limit": rate},
            headers={**state.headers(), "Retry-After": str(max(state.reset_seconds, 1))},
        )
    return state


def month_start(day: date) -> date:
    return day.replace(day=1)


def _spent(scope: str, key: int, month: date) -> Decimal:
    row = SpendCounter.objects.filter(scope=scope, key=key, month=month).values_list("spent_usd", flat=True).first()
    return row or Decimal("0")


def _budget_check(cached: CachedToken, month: date) -> None:
    token = cached.token
    user_budget = cached.preferences.monthly_budget_usd if cached.preferences else None
    for scope, key, budget, label in (
        ("token", token.pk, token.monthly_budget_usd, "this token"),
        ("user", token.user_id, user_budget, "your account"),
    ):
        if budget is None:
            continue
        spent = _spent(scope, key, month)
        if spent >= budget:
            raise BudgetExceeded(
                f"The monthly budget of ${budget} for {label} is used up (spent ${spent.quantize(Decimal('0.0001'))}).",
                details={"scope": scope, "budget_usd": str(budget), "spent_usd": str(spent)},
            )


async def budget_check(cached: CachedToken, month: date) -> None:
    """Before the upstream call. Only touches the database when a budget is set on the token or the user."""
    user_budget = cached.preferences.monthly_budget_usd if cached.preferences else None
    if cached.token.monthly_budget_usd is None and user_budget is None:
        return
    await run_in_db_thread(_budget_check, cached, month)
