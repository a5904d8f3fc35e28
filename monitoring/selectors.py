"""Reads for /metrics (at scrape time) and for the alert checks: each one query over an indexed column."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Count, F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import APIToken, UserPreferences
from jobs.models import Job, JobStatus
from llm.limits import month_start
from llm.models import SpendCounter, UsageRecord, UsageStatus

UNFINISHED = (JobStatus.QUEUED, JobStatus.RUNNING)


def job_queue_depth() -> dict[str, int]:
    """Unfinished jobs by status (queued, running)."""
    counts = dict.fromkeys(UNFINISHED, 0)
    rows = Job.objects.filter(status__in=UNFINISHED).values("status").annotate(n=Count("pk")).order_by()
    counts.update({row["status"]: row["n"] for row in rows})
    return counts


def jobs_stuck(*, older_than: timedelta) -> int:
    """Unfinished jobs no worker has shown life for since `older_than` (queued and never started, or silent)."""
    cutoff = timezone.now() - older_than
    return (
        Job.objects.filter(status__in=UNFINISHED)
        .annotate(last_sign=Coalesce("heartbeat_at", "created_at"))
        .filter(last_sign__lt=cutoff)
        .count()
    )


@dataclass(frozen=True)
class ErrorRate:
    requests: int  # requests that reached an upstream (errors included), in the window
    errors: int

    @property
    def rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def upstream_error_rate(*, since: datetime) -> ErrorRate:
    """Of the requests sent upstream since `since` (not cache hits nor refusals), how many failed upstream."""
    counts = UsageRecord.objects.filter(created_at__gte=since, attempts__gt=0).aggregate(
        requests=Count("pk"), errors=Count("pk", filter=Q(status=UsageStatus.UPSTREAM_ERROR))
    )
    return ErrorRate(requests=counts["requests"], errors=counts["errors"])


def unpriced_requests(*, since: datetime) -> dict[str, int]:
    """`provider/model` -> requests to it without a price row since `since`."""
    rows = (
        UsageRecord.objects.filter(created_at__gte=since, priced=False)
        .values("provider", "upstream_model")
        .annotate(n=Count("pk"))
        .order_by("provider", "upstream_model")
    )
    return {f"{row['provider']}/{row['upstream_model']}": row["n"] for row in rows}


@dataclass(frozen=True)
class BudgetUse:
    scope: str  # "token" or "user"
    key: int
    label: str  # names the token by its visible prefix or the user by username; never a secret
    budget: Decimal
    spent: Decimal

    @property
    def share(self) -> float:
        return float(self.spent / self.budget) if self.budget else 1.0


def budgets_used(*, at_least: float) -> list[BudgetUse]:
    """This month's token and user budgets whose spend reached `at_least` of the budget (0.8 = 80 %)."""
    month = month_start(timezone.now().date())
    spent = {
        (row.scope, row.key): row.spent_usd
        for row in SpendCounter.objects.filter(month=month, spent_usd__gt=0).only("scope", "key", "spent_usd")
    }
    if not spent:
        return []
    used = []
    token_ids = [key for scope, key in spent if scope == "token"]
    for token in APIToken.objects.filter(pk__in=token_ids, monthly_budget_usd__isnull=False).select_related("user"):
        used.append(
            BudgetUse(
                "token",
                token.pk,
                f"token {token.display_prefix} of {token.user.get_username()}",
                token.monthly_budget_usd,
                spent[("token", token.pk)],
            )
        )
    user_ids = [key for scope, key in spent if scope == "user"]
    preferences = UserPreferences.objects.filter(user_id__in=user_ids, monthly_budget_usd__isnull=False)
    for pref in preferences.select_related("user").annotate(uid=F("user_id")):
        used.append(
            BudgetUse(
                "user", pref.uid, f"user {pref.user.get_username()}", pref.monthly_budget_usd, spent[("user", pref.uid)]
            )
        )
    return [use for use in used if use.share >= at_least]
