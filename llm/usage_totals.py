"""Totals of a filtered set of usage records that stay fast at millions of rows: the whole UTC days come from the
daily rollups (`UsageDaily`, exact by construction: kept in the transaction that writes the records), only the
partial days at either end of a time range from the raw rows (an index range of at most a day each).

Only filters the rollups can answer exactly qualify (`UsageFilter`); anything else is summed over the raw rows by
the caller (`selectors.usage_totals`).
"""

from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import Q, QuerySet, Sum

from llm.models import UsageDaily, UsageRecord, UsageStatus
from llm.selectors import COUNT_FIELDS, MONEY_FIELDS, TOKEN_FIELDS, UsageGroup, usage_totals

_COMPLETED = (UsageStatus.OK, UsageStatus.CACHED)


@dataclass(frozen=True)
class UsageFilter:
    """What the rollups can filter on exactly. `user_id`/`token_id` name an existing user or token (a deleted one's
    rows have NULL on the raw side but keep the id in the rollups); `model` is the upstream model; `start`/`end` are
    aware datetimes, `end` excluded."""

    user_id: int | None = None
    token_id: int | None = None
    provider: str | None = None
    model: str | None = None
    status: str | None = None
    exclude_status: str | None = None
    start: datetime | None = None
    end: datetime | None = None

    def records(self) -> QuerySet[UsageRecord]:
        """The same set, on the raw rows."""
        return self._apply(
            UsageRecord.objects.order_by(),
            user_id="user_id",
            token_id="token_id",
            provider="provider",
            model="upstream_model",
            status="status",
            start="created_at__gte",
            end="created_at__lt",
        )

    def _apply(self, queryset, **lookups):
        for name, lookup in lookups.items():
            value = getattr(self, name)
            if value is not None:
                queryset = queryset.filter(**{lookup: value})
        if self.exclude_status is not None:
            queryset = queryset.exclude(status=self.exclude_status)
        return queryset


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _whole_days(start: datetime | None, end: datetime | None) -> tuple[date | None, date | None]:
    """[first, last) whole UTC days inside [start, end); None: unbounded on that side."""
    first = last = None
    if start is not None:
        start = start.astimezone(UTC)
        first = start.date() if start == _midnight(start.date()) else start.date() + timedelta(days=1)
    if end is not None:
        last = end.astimezone(UTC).date()
    return first, last


def _add(total: UsageGroup, part: UsageGroup, sign: int = 1) -> None:
    for name in (*COUNT_FIELDS, *MONEY_FIELDS):
        setattr(total, name, getattr(total, name) + sign * getattr(part, name))


def _rollup_totals(spec: UsageFilter, first: date | None, last: date | None) -> UsageGroup:
    rows = spec._apply(
        UsageDaily.objects.order_by(),
        user_id="user_key",
        token_id="token_key",
        provider="provider",
        model="model",
        status="status",
    )
    if first is not None:
        rows = rows.filter(day__gte=first)
    if last is not None:
        rows = rows.filter(day__lt=last)
    # Aliased: an aggregate may not take the name of a model field.
    sums = rows.aggregate(
        **{f"sum_{name}": Sum(name) for name in ("requests", *TOKEN_FIELDS, *MONEY_FIELDS)},
        sum_cached=Sum("requests", filter=Q(status=UsageStatus.CACHED)),
        sum_errors=Sum("requests", filter=~Q(status__in=_COMPLETED)),
        sum_unpriced=Sum("price_missing"),
        sum_unpriced_requests=Sum("unpriced"),
    )
    group = UsageGroup(key=None)
    for field in fields(UsageGroup):
        value = sums.get(f"sum_{field.name}")
        if value is not None:
            setattr(group, field.name, value)
    return group


def usage_totals_from_rollups(spec: UsageFilter) -> UsageGroup:
    """Exactly `usage_totals(spec.records())`, without summing the raw rows of whole days."""
    first, last = _whole_days(spec.start, spec.end)
    if first is not None and last is not None and first >= last:  # not one whole day: the raw rows are few
        return usage_totals(spec.records())
    total = UsageGroup(key=None)
    _add(total, _rollup_totals(spec, first, last))
    if spec.model is not None:
        # A rollup row's model is the upstream model, or the requested one when no upstream was reached: take
        # those records (no upstream model, this model requested) back out.
        extra = (
            UsageFilter(**{**spec.__dict__, "model": None})
            .records()
            .filter(upstream_model="", requested_model=spec.model)
        )
        if first is not None:
            extra = extra.filter(created_at__gte=_midnight(first))
        if last is not None:
            extra = extra.filter(created_at__lt=_midnight(last))
        _add(total, usage_totals(extra), sign=-1)
    records = spec.records()
    if spec.start is not None and first is not None and spec.start < _midnight(first):
        _add(total, usage_totals(records.filter(created_at__lt=_midnight(first))))
    if spec.end is not None and last is not None and _midnight(last) < spec.end:
        _add(total, usage_totals(records.filter(created_at__gte=_midnight(last))))
    return total
