"""Reads for the gateway: the caller's usage summary, what is left of its budgets, the models a caller can use."""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from datetime import timezone as dt_timezone
from decimal import Decimal

from django.db import connections, router
from django.db.models import Case, Count, F, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Coalesce, TruncDate

from accounts.selectors import api_tokens_for_user
from accounts.token_cache import CachedToken
from llm import pricing, routing
from llm.limits import budgets_for
from llm.models import (
    Conversation,
    ConversationMessage,
    ModelPrice,
    ModelRoute,
    PromptTemplate,
    PromptTemplateVersion,
    SpendCounter,
    StoredResponse,
    UsageDaily,
    UsageRecord,
    UsageStatus,
)
from llm.providers.registry import PROVIDERS

GROUP_BY_CHOICES = ("day", "model", "token")
TOKEN_FIELDS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens")
COUNT_FIELDS = ("requests", *TOKEN_FIELDS, "cached", "errors", "unpriced", "unpriced_requests")
MONEY_FIELDS = ("cost_usd", "saved_usd")

# A request "without a price" used tokens but has no cost: its model is missing from ModelPrice.
PRICE_MISSING = Q(cost_usd__isnull=True) & (Q(input_tokens__gt=0) | Q(output_tokens__gt=0))
# Requests that did not complete: upstream or client errors, budget and rate limit stops, cancelled streams.
NOT_COMPLETED = ~Q(status__in=[UsageStatus.OK, UsageStatus.CACHED])


@dataclass
class UsageGroup:
    key: str | None  # the day (ISO date), the model, or the token's prefix (None: a deleted token)
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal = Decimal("0")
    saved_usd: Decimal = Decimal("0")
    cached: int = 0
    errors: int = 0
    unpriced: int = 0
    unpriced_requests: int = 0
    provider: str | None = None  # with group_by=model
    token_name: str | None = None  # with group_by=token


@dataclass
class UsageSummary:
    date_from: date
    date_to: date
    group_by: str
    timezone: str
    totals: UsageGroup
    groups: list[UsageGroup]


def usage_aggregates() -> dict:
    """The aggregate expressions shared by the usage summary and the admin's totals."""
    return {
        "requests": Count("id"),
        # Aliased: an annotation may not take the name of a model field.
        **{f"sum_{name}": Sum(name) for name in (*TOKEN_FIELDS, *MONEY_FIELDS)},
        "cached": Count("id", filter=Q(status=UsageStatus.CACHED)),
        "errors": Count("id", filter=NOT_COMPLETED),
        "unpriced": Count("id", filter=PRICE_MISSING),
        "unpriced_requests": Count("id", filter=Q(priced=False)),
    }


def _group_from_row(key, row: dict, **labels) -> UsageGroup:
    return UsageGroup(
        key=key,
        requests=row["requests"],
        cached=row["cached"],
        errors=row["errors"],
        unpriced=row["unpriced"],
        unpriced_requests=row["unpriced_requests"],
        **{name: row[f"sum_{name}"] or 0 for name in TOKEN_FIELDS},
        **{name: row[f"sum_{name}"] or Decimal("0") for name in MONEY_FIELDS},
        **labels,
    )


def usage_totals(queryset: QuerySet[UsageRecord]) -> UsageGroup:
    """Requests, tokens, cost and savings of a set of records, in one aggregate query."""
    return _group_from_row(None, queryset.aggregate(**usage_aggregates()))


def _range(date_from: date, date_to: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """[start of `date_from`, start of the day after `date_to`) in `tz`: both dates are inclusive."""
    start = datetime.combine(date_from, time.min, tzinfo=tz)
    end = datetime.combine(date_to + timedelta(days=1), time.min, tzinfo=tz)
    return start, end


def usage_summary_for_user(*, user, date_from: date, date_to: date, group_by: str, tz: tzinfo = UTC) -> UsageSummary:
    """The user's requests, tokens, cost and cache savings between two dates (inclusive, in `tz`), per day, per
    model or per token.

    Days in UTC: read from the daily rollups (`UsageDaily`, one row per day, token, provider, model and status), a
    few rows per day whatever the number of records, with the same figures and order as the raw rows give. Days in
    another timezone do not line up with the rollups' UTC days, so they are summed from the raw records: one
    aggregate query, filtered on (user, created_at) so it walks the `usage_user_time` index. Either way the database
    groups and sums, Python only shapes the few resulting groups. Cost sums are exact on PostgreSQL (numeric); on
    SQLite, which stores decimals as floating point, they are exact to 15 significant digits.
    """
    if group_by not in GROUP_BY_CHOICES:
        raise ValueError(f"group_by must be one of {GROUP_BY_CHOICES}, not {group_by!r}")
    if _is_utc(tz):
        groups = usage_rollup_groups(user=user, date_from=date_from, date_to=date_to, group_by=group_by)
    else:
        groups = _raw_groups(user, date_from, date_to, group_by, tz)
    totals = UsageGroup(key=None)
    for group in groups:  # a handful of groups, not table rows
        for name in (*COUNT_FIELDS, *MONEY_FIELDS):
            setattr(totals, name, getattr(totals, name) + getattr(group, name))
    return UsageSummary(
        date_from=date_from,
        date_to=date_to,
        group_by=group_by,
        timezone=str(getattr(tz, "key", tz)),
        totals=totals,
        groups=groups,
    )


# Zones whose days are UTC days, always (the rollups' days).
_UTC_NAMES = frozenset(
    {"UTC", "Etc/UTC", "UCT", "Etc/UCT", "Universal", "Etc/Universal", "Zulu", "Etc/Zulu", "GMT", "Etc/GMT",
     "Greenwich", "Etc/Greenwich", "GMT0", "Etc/GMT0", "GMT+0", "Etc/GMT+0", "GMT-0", "Etc/GMT-0"}
)  # fmt: skip


def _is_utc(tz: tzinfo) -> bool:
    if isinstance(tz, dt_timezone):
        return tz.utcoffset(None) == timedelta(0)
    return getattr(tz, "key", None) in _UTC_NAMES


def usage_rollup_groups(*, user, date_from: date, date_to: date, group_by: str) -> list[UsageGroup]:
    """The user's usage per UTC day, per model or per token from the daily rollups: the same groups, figures and
    order as `_raw_groups` gives from the raw records in UTC. Where the raw query's SUM(cost_usd) is NULL (every
    record of the group without a cost), the rollups know it from `no_cost`, and order that group as the database
    orders a NULL sum (last, by `nulls_last`)."""
    rows = UsageDaily.objects.filter(user_key=user.pk, day__gte=date_from, day__lte=date_to).order_by()
    completed = [UsageStatus.OK, UsageStatus.CACHED]
    aggregates = {
        "n_requests": Sum("requests"),
        **{f"sum_{name}": Sum(name) for name in (*TOKEN_FIELDS, *MONEY_FIELDS)},
        "n_cached": Coalesce(Sum("requests", filter=Q(status=UsageStatus.CACHED)), 0),
        "n_errors": Coalesce(Sum("requests", filter=~Q(status__in=completed)), 0),
        "n_unpriced": Sum("price_missing"),
        "n_unpriced_requests": Sum("unpriced"),
        "n_no_cost": Sum("no_cost"),
    }
    # The raw query's SUM(cost_usd): NULL when no record of the group has a cost.
    cost = Case(When(n_no_cost=F("n_requests"), then=Value(None)), default=F("sum_cost_usd"))
    if group_by == "day":
        found = rows.values("day").annotate(**aggregates).order_by("day")
        return [_group_from_rollup(row["day"].isoformat(), row) for row in found]
    if group_by == "model":
        found = (
            rows.values("provider", "model")
            .annotate(**aggregates, cost_or_null=cost)
            .order_by(F("cost_or_null").desc(nulls_last=True), "-n_requests", "model", "provider")
        )
        return [_group_from_rollup(row["model"], row, provider=row["provider"]) for row in found]
    # Per token: rows of a deleted token (its id kept in the rollups) and rows without a token are one group, as
    # the raw records' NULL token is; ordered here as the database orders the raw groups (numbers only, no text).
    tokens = {
        pk: (prefix, name) for pk, prefix, name in api_tokens_for_user(user=user).values_list("pk", "prefix", "name")
    }
    merged: dict[int | None, dict] = {}
    for row in rows.values("token_key").annotate(**aggregates):
        pk = row["token_key"] if row["token_key"] in tokens else None
        into = merged.get(pk)
        if into is None:
            merged[pk] = dict(row)
            continue
        for name, value in row.items():
            if name != "token_key":
                into[name] = (into[name] or 0) + (value or 0)
    nulls_first = connections[router.db_for_read(UsageDaily)].features.nulls_order_largest is False

    def order(item):
        pk, row = item
        null_cost = row["n_no_cost"] == row["n_requests"]
        return (null_cost, -(row["sum_cost_usd"] or 0), -row["n_requests"], (pk is None) != nulls_first, pk or 0)

    return [
        _group_from_rollup(
            f"djl_{tokens[pk][0]}" if pk is not None else None, row, token_name=tokens[pk][1] if pk else None
        )
        for pk, row in sorted(merged.items(), key=order)
    ]


def _group_from_rollup(key, row: dict, **labels) -> UsageGroup:
    counts = {name: row[f"n_{name}"] or 0 for name in ("requests", "cached", "errors", "unpriced", "unpriced_requests")}
    return UsageGroup(
        key=key,
        **counts,
        **{name: row[f"sum_{name}"] or 0 for name in TOKEN_FIELDS},
        **{name: row[f"sum_{name}"] or Decimal("0") for name in MONEY_FIELDS},
        **labels,
    )


def _raw_groups(user, date_from: date, date_to: date, group_by: str, tz: tzinfo) -> list[UsageGroup]:
    start, end = _range(date_from, date_to, tz)
    records = UsageRecord.objects.filter(user=user, created_at__gte=start, created_at__lt=end).order_by()
    aggregates = usage_aggregates()

    if group_by == "day":
        rows = records.values(day=TruncDate("created_at", tzinfo=tz)).annotate(**aggregates).order_by("day")
        groups = [_group_from_row(row["day"].isoformat(), row) for row in rows]
    elif group_by == "model":
        # A request stopped before routing (unknown model, rate limit) has no upstream model: use what was asked.
        model = Case(When(upstream_model="", then=F("requested_model")), default=F("upstream_model"))
        rows = (
            records.values("provider", model_name=model)
            .annotate(**aggregates)
            .order_by(F("sum_cost_usd").desc(nulls_last=True), "-requests", "model_name", "provider")
        )
        groups = [_group_from_row(row["model_name"], row, provider=row["provider"]) for row in rows]
    else:
        rows = (
            records.values("token_id", "token__prefix", "token__name")
            .annotate(**aggregates)
            .order_by(F("sum_cost_usd").desc(nulls_last=True), "-requests", "token_id")
        )
        groups = [
            _group_from_row(
                f"djl_{row['token__prefix']}" if row["token_id"] else None, row, token_name=row["token__name"]
            )
            for row in rows
        ]
    return groups


def usage_records_for_user(*, user) -> QuerySet[UsageRecord]:
    """The user's usage records (through any of the user's tokens), with the prefix of the token each was made with
    (`token_prefix`; None once that token is deleted). Ordering is left to the caller (the API pages by id)."""
    return UsageRecord.objects.filter(user=user).annotate(token_prefix=F("token__prefix")).order_by()


def usage_records_for_token(records: QuerySet[UsageRecord], token: str) -> QuerySet[UsageRecord]:
    """The records made with one token, named by its id or its prefix (`djl_` optional)."""
    if token.isascii() and token.isdigit() and int(token) < 2**63:  # an id (the column is a 64-bit integer)
        return records.filter(Q(token_id=int(token)) | Q(token__prefix=token))
    return records.filter(token__prefix=token.removeprefix("djl_"))


def usage_records_cached(records: QuerySet[UsageRecord], *, cached: bool) -> QuerySet[UsageRecord]:
    """The records answered from djllm's response cache, or (`cached=False`) the others."""
    return records.filter(status=UsageStatus.CACHED) if cached else records.exclude(status=UsageStatus.CACHED)


def usage_records_for_model(records: QuerySet[UsageRecord], model: str) -> QuerySet[UsageRecord]:
    """The model that answered, or the one asked for (a request stopped before routing has only that one)."""
    return records.filter(Q(upstream_model=model) | Q(requested_model=model))


# --- Budgets ---------------------------------------------------------------------------------------


def spend_counter_amounts(*, scope: str, key: int, month: date) -> tuple[Decimal, Decimal]:
    """(spent, reserved) this month on one budget counter; zeros when nothing was spent yet."""
    row = SpendCounter.objects.filter(scope=scope, key=key, month=month).values("spent_usd", "reserved_usd").first()
    if row is None:
        return Decimal("0"), Decimal("0")
    return Decimal(row["spent_usd"]), Decimal(row["reserved_usd"])


@dataclass(frozen=True)
class BudgetLeft:
    scope: str  # "token" or "user"
    budget_usd: Decimal
    spent_usd: Decimal
    reserved_usd: Decimal  # held by requests in flight

    @property
    def left_usd(self) -> Decimal:
        return max(self.budget_usd - self.spent_usd - self.reserved_usd, Decimal("0"))


def budgets_left(*, cached: CachedToken, month: date) -> list[BudgetLeft]:
    """The monthly budgets that apply to the token (its own, its user's), with what is spent and reserved."""
    left = []
    for scope, key, budget, _ in budgets_for(cached):
        spent, reserved = spend_counter_amounts(scope=scope, key=key, month=month)
        left.append(BudgetLeft(scope=scope, budget_usd=budget, spent_usd=spent, reserved_usd=reserved))
    return left


# --- The models a caller can use -----------------------------------------------------------------


@dataclass(frozen=True)
class CatalogModel:
    id: str  # what a client sends as `model`
    provider: str
    upstream_model: str
    route: bool  # an alias an administrator defined
    price: ModelPrice | None  # the row in effect today; None: not priced


def _catalog(routes: dict[str, ModelRoute], prices: dict[tuple[str, str], list[ModelPrice]]) -> list[CatalogModel]:
    """Every active alias, every model priced today at a provider this server can reach, and each reachable
    provider's default model: one entry per name a client can send, aliases first."""
    models = [
        CatalogModel(
            alias,
            route.provider,
            route.upstream_model,
            True,
            pricing.price_row_in(prices, route.provider, route.upstream_model),
        )
        for alias, route in sorted(routes.items())
    ]
    reachable = [provider for provider in PROVIDERS if routing.provider_configured(provider)]
    for (provider, model), rows in sorted(prices.items()):
        if provider in reachable:
            models.append(
                CatalogModel(routing.name_to_request(provider, model, routes), provider, model, False, rows[0])
            )
    for provider in reachable:
        if PROVIDERS[provider].lists_default_model:
            model = routing.default_model(provider)
            name = routing.name_to_request(provider, model, routes)
            models.append(CatalogModel(name, provider, model, False, pricing.price_row_in(prices, provider, model)))
    unique: dict[str, CatalogModel] = {}
    for model in models:
        unique.setdefault(model.id, model)  # an alias shadows a model of the same name, as in `aresolve`
    return list(unique.values())


def model_catalog(*, provider: str | None = None) -> list[CatalogModel]:
    """The models a caller can use (the same for every user), read now; `provider` narrows it."""
    models = _catalog(routing.routes_table(), pricing.current_prices())
    return [model for model in models if provider in (None, model.provider)]


async def amodel_catalog() -> list[CatalogModel]:
    """The same list from this process's copies of the routes and prices (`GET /v1/models`, on the fast path)."""
    return _catalog(await routing.aroutes(), await pricing.acurrent_prices())


# --- Conversations -------------------------------------------------------------------------------


def conversations_for_user(*, user) -> QuerySet[Conversation]:
    """The user's conversations with their total cost (`total_cost_usd`: the sum of their usage records' costs)."""
    return Conversation.objects.filter(user=user).annotate(total_cost_usd=Sum("usage_records__cost_usd")).order_by()


async def aconversation_for_user(*, conversation_id: int, user_id: int) -> Conversation | None:
    """The conversation if it is the user's (another user's is None, as a missing one)."""
    return await Conversation.objects.filter(pk=conversation_id, user_id=user_id).afirst()


async def aconversation_history(*, conversation: Conversation) -> list[ConversationMessage]:
    return [message async for message in conversation.messages.order_by("id")]


def stored_response_for_user(*, response_id: str, user_id: int) -> StoredResponse | None:
    """One of the user's stored responses; None for an unknown id or another user's."""
    return StoredResponse.objects.filter(id=response_id, user_id=user_id).first()


# --- Prompt templates ----------------------------------------------------------------------------


def prompt_templates_for_user(*, user_id: int) -> QuerySet[PromptTemplate]:
    """The user's own templates and the shared ones (built-ins included); another user's private ones are not."""
    return PromptTemplate.objects.filter(Q(owner_id=user_id) | Q(owner__isnull=True)).select_related("current_version")


def prompt_template_versions(*, template: PromptTemplate) -> QuerySet[PromptTemplateVersion]:
    return PromptTemplateVersion.objects.filter(template=template)
