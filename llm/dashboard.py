"""Reads for the spend dashboard (`/admin/dashboard/` and the one on `/account/`).

Everything comes from the daily rollups (`UsageDaily`, `UsageLatencyDaily`), grouped and summed by the database,
so the unfiltered dashboard never reads the usage table, however large it is. Names of the top users and tokens
are one lookup each; budgets read the month's `SpendCounter` rows. The one exception is latency under a user, token
or model filter, which the latency rollup cannot split: those percentiles are counted from the matching usage
records, in the same buckets, through the (user|token|model, created_at) indexes.
"""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db.models import Case, Count, IntegerField, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Coalesce

from accounts.models import APIToken, UserPreferences
from llm.limits import month_start
from llm.models import SpendCounter, UsageDaily, UsageLatencyDaily, UsageRecord, UsageStatus
from llm.rollups import LATENCY_BUCKETS_MS, percentile_from_buckets

COMPLETED = (UsageStatus.OK, UsageStatus.CACHED)
ERROR_STATUSES = tuple(status for status in UsageStatus.values if status not in COMPLETED)
SPLITS = ("provider", "model")
STACKED_SERIES = 8  # the costliest providers/models get a colour each; the rest are "other"
TOP_ROWS = 10
BUDGET_ROWS = 15
ZERO = Decimal("0")


@dataclass(frozen=True)
class DashboardFilter:
    """Which records the figures cover: UTC days `date_from`..`date_to` (inclusive), optionally one user, one
    token and one model (the upstream model, or the requested one when no upstream was reached)."""

    date_from: date
    date_to: date
    user_id: int | None = None
    token_id: int | None = None
    model: str = ""

    @property
    def narrowed(self) -> bool:
        return bool(self.user_id or self.token_id or self.model)

    @property
    def days(self) -> list[date]:
        return [self.date_from + timedelta(days=i) for i in range((self.date_to - self.date_from).days + 1)]

    @property
    def start(self) -> datetime:
        return datetime.combine(self.date_from, time.min, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.date_to + timedelta(days=1), time.min, tzinfo=UTC)


def _rollup(f: DashboardFilter) -> QuerySet[UsageDaily]:
    rows = UsageDaily.objects.filter(day__gte=f.date_from, day__lte=f.date_to)
    if f.user_id:
        rows = rows.filter(user_key=f.user_id)
    if f.token_id:
        rows = rows.filter(token_key=f.token_id)
    if f.model:
        rows = rows.filter(model=f.model)
    return rows.order_by()


def _sums() -> dict:
    def total(name, **kw):
        return Coalesce(Sum(name, **kw), Value(0))

    def money(name, **kw):
        return Coalesce(Sum(name, **kw), Value(ZERO))

    return {
        "requests_": total("requests"),
        "errors": total("requests", filter=Q(status__in=ERROR_STATUSES)),
        "cache_hits": total("requests", filter=Q(status=UsageStatus.CACHED)),
        "unpriced_": total("unpriced"),
        "input": total("input_tokens"),
        "output": total("output_tokens"),
        "cached_input": total("cached_input_tokens"),
        "cost": money("cost_usd"),
        "saved": money("saved_usd"),
        "latency_sum": total("latency_ms_sum"),
    }


@dataclass
class Figures:
    """One row of sums: the totals, a day, a user, a token or a model."""

    key: object = None
    label: str = ""
    provider: str = ""
    requests: int = 0
    errors: int = 0
    cache_hits: int = 0
    unpriced: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cost_usd: Decimal = ZERO
    saved_usd: Decimal = ZERO
    latency_ms_sum: int = 0

    @classmethod
    def from_row(cls, row: dict, **labels) -> "Figures":
        return cls(
            requests=row["requests_"],
            errors=row["errors"],
            cache_hits=row["cache_hits"],
            unpriced=row["unpriced_"],
            input_tokens=row["input"],
            output_tokens=row["output"],
            cached_input_tokens=row["cached_input"],
            cost_usd=Decimal(row["cost"]),
            saved_usd=Decimal(row["saved"]),
            latency_ms_sum=row["latency_sum"],
            **labels,
        )

    @property
    def mean_latency_ms(self) -> int | None:
        return round(self.latency_ms_sum / self.requests) if self.requests else None


def dashboard_totals(f: DashboardFilter) -> Figures:
    return Figures.from_row(_rollup(f).aggregate(**_sums()))


@dataclass
class DailySeries:
    """Per day: the cost of each provider or model (the costliest first, the rest summed as "other"), and
    requests and errors."""

    days: list[date]
    split: str
    cost: dict[str, list[Decimal]]  # name -> one amount per day
    other: list[Decimal] | None  # the providers/models beyond the first STACKED_SERIES
    requests: list[int]
    errors: list[int]


def daily_series(f: DashboardFilter, *, split: str = "provider") -> DailySeries:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    days = f.days
    index = {day: i for i, day in enumerate(days)}
    rows = _rollup(f).values("day", split).annotate(cost=Coalesce(Sum("cost_usd"), Value(ZERO)))
    by_name: dict[str, list[Decimal]] = {}
    for row in rows:
        by_name.setdefault(row[split], [ZERO] * len(days))[index[row["day"]]] += Decimal(row["cost"])
    ranked = sorted(by_name, key=lambda name: (-sum(by_name[name]), name))
    kept, rest = ranked[:STACKED_SERIES], ranked[STACKED_SERIES:]
    other = [sum((by_name[name][i] for name in rest), ZERO) for i in range(len(days))] if rest else None

    requests, errors = [0] * len(days), [0] * len(days)
    counts = (
        _rollup(f)
        .values("day")
        .annotate(n=Sum("requests"), e=Coalesce(Sum("requests", filter=Q(status__in=ERROR_STATUSES)), Value(0)))
    )
    for row in counts:
        requests[index[row["day"]]], errors[index[row["day"]]] = row["n"], row["e"]
    return DailySeries(
        days=days,
        split=split,
        cost={name: by_name[name] for name in kept},
        other=other,
        requests=requests,
        errors=errors,
    )


def top_users(f: DashboardFilter, *, limit: int = TOP_ROWS) -> list[Figures]:
    rows = list(_rollup(f).values("user_key").annotate(**_sums()).order_by("-cost", "-requests_", "user_key")[:limit])
    names = dict(
        get_user_model()
        .objects.filter(pk__in=[row["user_key"] for row in rows if row["user_key"]])
        .values_list("pk", "username")
    )
    return [
        Figures.from_row(
            row,
            key=row["user_key"],
            label=names.get(row["user_key"], f"user #{row['user_key']} (deleted)") if row["user_key"] else "no user",
        )
        for row in rows
    ]


def top_tokens(f: DashboardFilter, *, limit: int = TOP_ROWS) -> list[Figures]:
    rows = list(_rollup(f).values("token_key").annotate(**_sums()).order_by("-cost", "-requests_", "token_key")[:limit])
    tokens = {
        pk: (f"djl_{prefix}" + (f" ({name})" if name else ""), username)
        for pk, prefix, name, username in APIToken.objects.filter(
            pk__in=[row["token_key"] for row in rows if row["token_key"]]
        ).values_list("pk", "prefix", "name", "user__username")
    }
    result = []
    for row in rows:
        key = row["token_key"]
        label, owner = tokens.get(key, (f"token #{key} (deleted)", "")) if key else ("no token", "")
        result.append(Figures.from_row(row, key=key, label=label, provider=owner))
    return result


def top_models(f: DashboardFilter, *, limit: int = TOP_ROWS, cached_only: bool = False) -> list[Figures]:
    rows = _rollup(f)
    if cached_only:
        rows = rows.filter(status=UsageStatus.CACHED)
    order = ("-saved", "-requests_") if cached_only else ("-cost", "-requests_")
    rows = rows.values("provider", "model").annotate(**_sums()).order_by(*order, "model", "provider")[:limit]
    return [Figures.from_row(row, key=row["model"], label=row["model"], provider=row["provider"]) for row in rows]


def unpriced_models(f: DashboardFilter, *, limit: int = TOP_ROWS) -> list[Figures]:
    rows = (
        _rollup(f)
        .filter(unpriced__gt=0)
        .values("provider", "model")
        .annotate(**_sums())
        .order_by("-unpriced_", "model", "provider")[:limit]
    )
    return [Figures.from_row(row, key=row["model"], label=row["model"], provider=row["provider"]) for row in rows]


# --- Latency -------------------------------------------------------------------------------------------------


@dataclass
class LatencyRow:
    provider: str
    requests: int = 0
    p50_ms: float | None = None  # a bucket's upper bound; math.inf: above the last bound
    p95_ms: float | None = None
    streamed: int = 0
    ttft_p50_ms: float | None = None
    ttft_p95_ms: float | None = None


def _bucket_case(column: str) -> Case:
    return Case(
        *(When(**{f"{column}__lte": bound}, then=Value(i)) for i, bound in enumerate(LATENCY_BUCKETS_MS)),
        default=Value(len(LATENCY_BUCKETS_MS)),
        output_field=IntegerField(),
    )


def _raw_bucket_counts(f: DashboardFilter) -> list[tuple[str, str, int, int]]:
    """(provider, metric, bucket, count) from the usage records matching a narrowed filter."""
    records = UsageRecord.objects.filter(created_at__gte=f.start, created_at__lt=f.end)
    if f.user_id:
        records = records.filter(user_id=f.user_id)
    if f.token_id:
        records = records.filter(token_id=f.token_id)
    if f.model:
        records = records.filter(Q(upstream_model=f.model) | Q(upstream_model="", requested_model=f.model))
    records = records.filter(status=UsageStatus.OK).order_by()  # as the rollup counts them (llm/rollups.py)
    counts = []
    for metric, column, only in (
        ("latency", "latency_ms", {}),
        ("ttft", "time_to_first_token_ms", {"stream": True, "time_to_first_token_ms__isnull": False}),
    ):
        rows = records.filter(**only).values("provider", b=_bucket_case(column)).annotate(n=Count("id"))
        counts += [(row["provider"], metric, row["b"], row["n"]) for row in rows]
    return counts


def latency_by_provider(f: DashboardFilter) -> tuple[list[LatencyRow], str]:
    """p50 and p95 of request latency and of time to first token (streams) per provider, of the requests answered
    ("ok"; errors and cache hits would skew them), exact to the bucket; and where they were read from ("rollup":
    every request of the range; "records": the records matching the filter)."""
    if f.narrowed:
        counts, source = _raw_bucket_counts(f), "records"
    else:
        rows = (
            UsageLatencyDaily.objects.filter(day__gte=f.date_from, day__lte=f.date_to)
            .values("provider", "metric", "bucket")
            .annotate(n=Sum("count"))
            .order_by()
        )
        counts, source = [(row["provider"], row["metric"], row["bucket"], row["n"]) for row in rows], "rollup"
    histograms: dict[tuple[str, str], list[int]] = {}
    for provider, metric, bucket, n in counts:
        histograms.setdefault((provider, metric), [0] * (len(LATENCY_BUCKETS_MS) + 1))[bucket] += n
    result = []
    for provider in sorted({provider for provider, _ in histograms}):
        row = LatencyRow(provider=provider)
        if latency := histograms.get((provider, "latency")):
            row.requests = sum(latency)
            row.p50_ms, row.p95_ms = (percentile_from_buckets(latency, q) for q in (0.5, 0.95))
        if ttft := histograms.get((provider, "ttft")):
            row.streamed = sum(ttft)
            row.ttft_p50_ms, row.ttft_p95_ms = (percentile_from_buckets(ttft, q) for q in (0.5, 0.95))
        result.append(row)
    return result, source


# --- Budgets -------------------------------------------------------------------------------------------------


@dataclass
class BudgetUse:
    scope: str  # "token" or "user"
    key: int
    label: str
    owner: str = ""  # a token's user
    user_id: int | None = None
    budget_usd: Decimal | None = None
    spent_usd: Decimal = ZERO
    reserved_usd: Decimal = ZERO
    extra: dict = field(default_factory=dict)

    @property
    def used_percent(self) -> int | None:
        """Spent and reserved as a share of the budget (may pass 100)."""
        if not self.budget_usd:
            return None
        return int((self.spent_usd + self.reserved_usd) * 100 / self.budget_usd)

    @property
    def left_usd(self) -> Decimal | None:
        if self.budget_usd is None:
            return None
        return max(self.budget_usd - self.spent_usd - self.reserved_usd, ZERO)


def budget_use(*, today: date, user_id: int | None = None, token_id: int | None = None) -> list[BudgetUse]:
    """This month's (UTC) spend and reservations per token and per user against their budgets: with a filter, the
    user's tokens and the user (or the token and its user); without, the biggest spenders and every budget set
    (up to BUDGET_ROWS of each)."""
    month = month_start(today)
    counters = SpendCounter.objects.filter(month=month).order_by()
    tokens = APIToken.objects.order_by()
    users = get_user_model().objects.order_by()
    if token_id:
        token_user = APIToken.objects.filter(pk=token_id).values_list("user_id", flat=True).first()
        token_keys, user_keys = [token_id], [token_user] if token_user else []
    elif user_id:
        token_keys = list(tokens.filter(user_id=user_id).values_list("pk", flat=True)[: BUDGET_ROWS * 2])
        user_keys = [user_id]
    else:
        token_keys = _top_keys(counters, "token") + list(
            tokens.filter(monthly_budget_usd__isnull=False, revoked_at__isnull=True).values_list("pk", flat=True)[
                :BUDGET_ROWS
            ]
        )
        user_keys = _top_keys(counters, "user") + list(
            UserPreferences.objects.filter(monthly_budget_usd__isnull=False).values_list("user_id", flat=True)[
                :BUDGET_ROWS
            ]
        )
    amounts = {
        (scope, key): (Decimal(spent), Decimal(reserved))
        for scope, key, spent, reserved in counters.filter(
            Q(scope="token", key__in=token_keys) | Q(scope="user", key__in=user_keys)
        ).values_list("scope", "key", "spent_usd", "reserved_usd")
    }
    rows = []
    for pk, prefix, name, budget, owner, owner_id in tokens.filter(pk__in=token_keys).values_list(
        "pk", "prefix", "name", "monthly_budget_usd", "user__username", "user_id"
    ):
        spent, reserved = amounts.get(("token", pk), (ZERO, ZERO))
        label = f"djl_{prefix}" + (f" ({name})" if name else "")
        rows.append(BudgetUse("token", pk, label, owner, owner_id, budget, spent, reserved))
    for pk, username, budget in users.filter(pk__in=user_keys).values_list(
        "pk", "username", "preferences__monthly_budget_usd"
    ):
        spent, reserved = amounts.get(("user", pk), (ZERO, ZERO))
        rows.append(BudgetUse("user", pk, username, "", pk, budget, spent, reserved))
    rows.sort(key=lambda r: (r.scope != "user", -(r.used_percent or -1), -(r.spent_usd + r.reserved_usd), r.label))
    return rows


def _top_keys(counters: QuerySet[SpendCounter], scope: str) -> list[int]:
    return list(counters.filter(scope=scope).order_by("-spent_usd", "key").values_list("key", flat=True)[:BUDGET_ROWS])
