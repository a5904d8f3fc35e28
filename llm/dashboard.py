"""Reads for the spend dashboard (`/admin/dashboard/` and the one on `/account/`).

Everything comes from the daily rollups (`UsageDaily`, `UsageLatencyDaily`), grouped and summed by the database,
so the unfiltered dashboard never reads the usage table, however large it is: two GROUP BYs over the range's rollup
rows, one by (day, provider, model, status) and one by (user, token), from which Python derives every table and
chart. Names of the top users and tokens are one lookup each; budgets read the month's `SpendCounter` rows. The one exception is latency under a user, token
or model filter, which the latency rollup cannot split: those percentiles are counted from the latest (at most
LATENCY_SAMPLE) matching usage records, in the same buckets, through the (user|token|model, created_at) indexes.
"""

from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Case, Count, IntegerField, Q, QuerySet, Subquery, Sum, Value, When

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
LATENCY_SAMPLE = 20_000  # filtered latency: at most this many of the latest matching records
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


@dataclass
class Figures:
    """Sums over some rollup rows: the totals, a day, a user, a token or a model."""

    key: object = None
    label: str = ""
    provider: str = ""
    owner: str = ""  # a token's user
    narrow: str = ""  # what the dashboard's filter takes to show only this user, token or model ("": gone)
    requests: int = 0
    errors: int = 0
    cache_hits: int = 0
    unpriced: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = ZERO
    saved_usd: Decimal = ZERO

    def add(self, row: dict) -> "Figures":
        self.requests += row["n"]
        self.cost_usd += Decimal(row["cost"] or 0)
        status = row.get("status")
        if status is not None:
            self.errors += row["n"] if status in ERROR_STATUSES else 0
            self.cache_hits += row["n"] if status == UsageStatus.CACHED else 0
            self.unpriced += row["unpriced_n"]
            self.input_tokens += row["input"]
            self.output_tokens += row["output"]
            self.saved_usd += Decimal(row["saved"] or 0)
        return self


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


@dataclass
class Breakdown:
    """Everything the dashboard shows but latency and budgets, from two GROUP BYs over the rollup rows of the
    range: one by (day, provider, model, status), one by (user, token)."""

    totals: Figures
    series: DailySeries
    top_models: list[Figures]
    cache_models: list[Figures]
    unpriced_models: list[Figures]
    top_users: list[Figures]
    top_tokens: list[Figures]


@contextmanager
def _hash_aggregates():
    """On PostgreSQL, room to group a month of rollup rows in a hash table (for this transaction only): with the
    default 4 MB of work_mem the planner, which overestimates the number of groups, sorts the rows by their text
    columns instead, two to three times slower at 10M records (160k rollup rows in 30 days)."""
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL work_mem = '64MB'")
        yield


def _by_model_day(f: DashboardFilter) -> list[dict]:
    return list(
        _rollup(f)
        .values("day", "provider", "model", "status")
        .annotate(
            n=Sum("requests"),
            unpriced_n=Sum("unpriced"),
            input=Sum("input_tokens"),
            output=Sum("output_tokens"),
            cost=Sum("cost_usd"),
            saved=Sum("saved_usd"),
        )
    )


def _by_owner(f: DashboardFilter) -> list[dict]:
    return list(_rollup(f).values("user_key", "token_key").annotate(n=Sum("requests"), cost=Sum("cost_usd")))


def _ranked(groups: dict, *, by=lambda g: (-g.cost_usd, -g.requests), limit: int = TOP_ROWS) -> list[Figures]:
    return sorted(groups.values(), key=lambda g: (*by(g), str(g.label), str(g.provider)))[:limit]


def dashboard_breakdown(f: DashboardFilter, *, split: str = "provider") -> Breakdown:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    with _hash_aggregates():
        rows, owners = _by_model_day(f), _by_owner(f)
    days = f.days
    index = {day: i for i, day in enumerate(days)}
    totals = Figures()
    models: dict[tuple, Figures] = {}
    cached: dict[tuple, Figures] = {}
    cost_by: dict[str, list[Decimal]] = {}
    requests, errors = [0] * len(days), [0] * len(days)
    for row in rows:
        totals.add(row)
        key = (row["provider"], row["model"])
        models.setdefault(
            key, Figures(key=row["model"], label=row["model"], provider=row["provider"], narrow=row["model"])
        ).add(row)
        if row["status"] == UsageStatus.CACHED:
            cached.setdefault(key, Figures(key=row["model"], label=row["model"], provider=row["provider"])).add(row)
        i = index[row["day"]]
        cost_by.setdefault(row[split], [ZERO] * len(days))[i] += Decimal(row["cost"] or 0)
        requests[i] += row["n"]
        errors[i] += row["n"] if row["status"] in ERROR_STATUSES else 0
    ranked = sorted(cost_by, key=lambda name: (-sum(cost_by[name]), name))
    kept, rest = ranked[:STACKED_SERIES], ranked[STACKED_SERIES:]
    other = [sum((cost_by[name][i] for name in rest), ZERO) for i in range(len(days))] if rest else None
    series = DailySeries(days, split, {name: cost_by[name] for name in kept}, other, requests, errors)

    users: dict[int, Figures] = {}
    tokens: dict[int, Figures] = {}
    for row in owners:
        users.setdefault(row["user_key"], Figures(key=row["user_key"])).add(row)
        tokens.setdefault(row["token_key"], Figures(key=row["token_key"], label=str(row["user_key"]))).add(row)
    top_users, top_tokens = _ranked(users), _ranked(tokens)
    _name_users(top_users)
    _name_tokens(top_tokens)
    unpriced = {key: group for key, group in models.items() if group.unpriced}
    return Breakdown(
        totals=totals,
        series=series,
        top_models=_ranked(models),
        cache_models=_ranked(cached, by=lambda g: (-g.saved_usd, -g.requests)),
        unpriced_models=_ranked(unpriced, by=lambda g: (-g.unpriced,)),
        top_users=top_users,
        top_tokens=top_tokens,
    )


def _name_users(rows: list[Figures]) -> None:
    """One lookup for the usernames of the top users."""
    names = dict(get_user_model().objects.filter(pk__in=[r.key for r in rows if r.key]).values_list("pk", "username"))
    for row in rows:
        row.narrow = names.get(row.key, "")
        row.label = row.narrow or (f"user #{row.key} (deleted)" if row.key else "no user")


def _name_tokens(rows: list[Figures]) -> None:
    """One lookup for the prefixes, names and owners of the top tokens."""
    tokens = {
        pk: (f"djl_{prefix}", name, username)
        for pk, prefix, name, username in APIToken.objects.filter(pk__in=[r.key for r in rows if r.key]).values_list(
            "pk", "prefix", "name", "user__username"
        )
    }
    for row in rows:
        if row.key in tokens:
            row.narrow, name, row.owner = tokens[row.key]
            row.label = row.narrow + (f" ({name})" if name else "")
        else:
            row.label = f"token #{row.key} (deleted)" if row.key else "no token"


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


def _bucket_case(column: str, *, none_if: Q | None = None) -> Case:
    """The latency bucket of `column` in SQL (-1 where `none_if` holds)."""
    skip = [When(none_if, then=Value(-1))] if none_if is not None else []
    return Case(
        *skip,
        *(When(**{f"{column}__lte": bound}, then=Value(i)) for i, bound in enumerate(LATENCY_BUCKETS_MS)),
        default=Value(len(LATENCY_BUCKETS_MS)),
        output_field=IntegerField(),
    )


def _raw_bucket_counts(f: DashboardFilter) -> tuple[list[tuple[str, str, int, int]], bool]:
    """(provider, metric, bucket, count) from the latest LATENCY_SAMPLE answered records matching a narrowed filter
    (newest first through the (user|token|upstream_model, created_at) index: bounded work for a heavy user), and
    whether there were more."""
    records = UsageRecord.objects.filter(created_at__gte=f.start, created_at__lt=f.end, status=UsageStatus.OK)
    if f.user_id:
        records = records.filter(user_id=f.user_id)
    if f.token_id:
        records = records.filter(token_id=f.token_id)
    if f.model:  # an answered request always has its upstream model
        records = records.filter(upstream_model=f.model)
    latest = records.order_by("-created_at").values("pk")[:LATENCY_SAMPLE]
    rows = (
        UsageRecord.objects.filter(pk__in=Subquery(latest))
        .values(
            "provider",
            latency=_bucket_case("latency_ms"),
            ttft=_bucket_case(
                "time_to_first_token_ms", none_if=Q(stream=False) | Q(time_to_first_token_ms__isnull=True)
            ),
        )
        .annotate(n=Count("id"))
        .order_by()
    )
    counts, seen = [], 0
    for row in rows:
        seen += row["n"]
        counts.append((row["provider"], "latency", row["latency"], row["n"]))
        if row["ttft"] >= 0:
            counts.append((row["provider"], "ttft", row["ttft"], row["n"]))
    return counts, seen >= LATENCY_SAMPLE


def latency_by_provider(f: DashboardFilter) -> tuple[list[LatencyRow], str]:
    """p50 and p95 of request latency and of time to first token (streams) per provider, of the requests answered
    ("ok"; errors and cache hits would skew them), exact to the bucket; and where they were read from ("rollup":
    every request of the range; "records": the records matching the filter; "sample": the latest LATENCY_SAMPLE
    of them)."""
    if f.narrowed:
        counts, more = _raw_bucket_counts(f)
        source = "sample" if more else "records"
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
