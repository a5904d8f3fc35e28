"""Daily rollups of the usage records (`UsageDaily`, `UsageLatencyDaily`): how they are keyed, added to with each
batch of records, rebuilt from the raw rows, and read back as percentiles.

A record's rollup key: the UTC day of `created_at`, the user's and token's ids (0 for none), the provider, the model
(`upstream_model`, or `requested_model` when that is empty) and the status. Its latency counts once in the
"latency" histogram of its (day, provider) when its status is "ok", and its time to first token once in the "ttft"
histogram when it is also streamed and has one. Bucket `i` holds the values `<= LATENCY_BUCKETS_MS[i]` and above the
previous bound; bucket `len(LATENCY_BUCKETS_MS)` holds those above the last bound.

The write path (`rollups_add`, called by `services.usage_records_create` in the transaction that inserts the
records) and the rebuild (`rollups_rebuild`, one GROUP BY per table over the raw rows) compute the same figures, so
the rollups equal a rebuild at any time. Deleting a user or a token sets its records' `user`/`token` to NULL; the
deleting transaction moves its rollup rows to key 0 the same way (`rollups_unlink`, wired in LlmConfig.ready).
"""

import bisect
import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.db import connections, models, router, transaction
from django.db.models import Case, Count, F, Q, Sum, Value, When
from django.db.models.functions import Coalesce, TruncDate

LATENCY_BUCKETS_MS = (25, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10000, 15000, 20000, 30000,
                      60000, 120000)  # fmt: skip
LATENCY = "latency"
TTFT = "ttft"

DAILY_KEY = ("day", "user_key", "token_key", "provider", "model", "status")
DAILY_SUMS = ("requests", "unpriced", "input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens",
              "reasoning_tokens", "cost_usd", "saved_usd", "latency_ms_sum", "no_cost", "price_missing")  # fmt: skip
LATENCY_KEY = ("day", "provider", "metric", "bucket")
LATENCY_SUMS = ("count",)
_TOKENS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens")


def latency_bucket(value_ms: int) -> int:
    """The histogram bucket of a duration in milliseconds."""
    return bisect.bisect_left(LATENCY_BUCKETS_MS, value_ms)


def percentile_from_buckets(counts: Sequence[int] | Mapping[int, int], q: float) -> float | None:
    """The q-th percentile (q a fraction such as 0.95, or a percentage such as 95) of a latency histogram, exact to
    the bucket: the upper bound in ms of the bucket that holds the nearest-rank value, so the true percentile is at
    most this and above the previous bound. `counts` is indexed by bucket (a list, or a {bucket: count} mapping,
    e.g. the summed `UsageLatencyDaily.count` of some days). None when there is no value; `math.inf` when the value
    is above the last bound (the histogram cannot say by how much)."""
    if q > 1:
        q = q / 100
    if not 0 <= q <= 1:
        raise ValueError(f"percentile out of range: {q!r}")
    items = sorted(counts.items()) if isinstance(counts, Mapping) else list(enumerate(counts))
    total = sum(count for _, count in items)
    if total <= 0:
        return None
    rank, seen = max(1, math.ceil(q * total)), 0
    for bucket, count in items:
        seen += count
        if count and seen >= rank:
            return LATENCY_BUCKETS_MS[bucket] if bucket < len(LATENCY_BUCKETS_MS) else math.inf
    return math.inf  # not reached: the counts sum to total


def rollup_model(upstream_model: str, requested_model: str) -> str:
    return upstream_model or requested_model


# --- Write path ----------------------------------------------------------------------------------------------------


def _deltas(records: Iterable[Any]) -> tuple[dict[tuple, list], dict[tuple, int]]:
    """One row per key, summed in Python (Decimal for the money)."""
    daily: dict[tuple, list] = {}
    latency: dict[tuple, int] = {}
    for record in records:
        day = record.created_at.astimezone(UTC).date()
        key = (day, record.user_id or 0, record.token_id or 0, record.provider,
               record.upstream_model or record.requested_model, record.status)  # fmt: skip
        sums = daily.get(key)
        if sums is None:
            sums = daily[key] = [0, 0, 0, 0, 0, 0, 0, Decimal("0"), Decimal("0"), 0, 0, 0]
        sums[0] += 1
        sums[1] += not record.priced
        for index, name in enumerate(_TOKENS, start=2):
            sums[index] += getattr(record, name)
        sums[7] += record.cost_usd or 0
        sums[8] += record.saved_usd or 0
        sums[9] += record.latency_ms
        if record.cost_usd is None:
            sums[10] += 1
            sums[11] += bool(record.input_tokens or record.output_tokens)
        if record.status == "ok":
            bucket = (day, record.provider, LATENCY, bisect.bisect_left(LATENCY_BUCKETS_MS, record.latency_ms))
            latency[bucket] = latency.get(bucket, 0) + 1
            if record.stream and record.time_to_first_token_ms is not None:
                ttft = bisect.bisect_left(LATENCY_BUCKETS_MS, record.time_to_first_token_ms)
                bucket = (day, record.provider, TTFT, ttft)
                latency[bucket] = latency.get(bucket, 0) + 1
    return daily, latency


@functools.lru_cache(maxsize=256)
def _upsert_sql(vendor: str, model: type[models.Model], key: tuple[str, ...], sums: tuple[str, ...], rows: int) -> str:
    """INSERT ... VALUES (...) x rows ON CONFLICT (key) DO UPDATE SET sum = table.sum + excluded.sum, written once
    per backend, table and number of rows from the model's metadata (only identifiers go into the text)."""
    ops, meta = connections[router.db_for_write(model)].ops, model._meta
    table = ops.quote_name(meta.db_table)
    column = {name: ops.quote_name(meta.get_field(name).column) for name in (*key, *sums)}
    updates = ", ".join(f"{column[n]} = {table}.{column[n]} + excluded.{column[n]}" for n in sums)
    row = "(" + ", ".join(["%s"] * len(column)) + ")"
    sql = f"INSERT INTO {table} ({', '.join(column.values())}) VALUES "  # noqa: S608
    return sql + ", ".join([row] * rows) + f" ON CONFLICT ({', '.join(column[n] for n in key)}) DO UPDATE SET {updates}"


def rollups_statements(records: Sequence[Any]) -> list[tuple[str, list]]:
    """The statements that add a batch of records to the rollups: one upsert per table, every value a parameter.
    Worked out before the batch's transaction begins, so that the transaction (which holds SQLite's one write
    lock) only sends them: each Python step in it is a chance to wait for the GIL with the lock held. The values
    are ints, strs, Decimals and one date, which both drivers adapt as the fields would (Django registers
    SQLite's adapters for Decimal and date). Rows go in key order, so concurrent writers lock the rows they share
    in the same order and never deadlock."""
    from llm.models import UsageDaily, UsageLatencyDaily

    if not records:
        return []
    daily, latency = _deltas(records)
    vendor = connections[router.db_for_write(UsageDaily)].vendor
    rows = [value for key in sorted(daily) for value in (*key, *daily[key])]
    statements = [(_upsert_sql(vendor, UsageDaily, DAILY_KEY, DAILY_SUMS, len(daily)), rows)]
    if latency:
        rows = [value for key in sorted(latency) for value in (*key, latency[key])]
        statements.append((_upsert_sql(vendor, UsageLatencyDaily, LATENCY_KEY, LATENCY_SUMS, len(latency)), rows))
    return statements


def rollups_add(records: Sequence[Any]) -> None:
    """Add a batch of just-written usage records to the rollups. Call it inside the transaction that inserts the
    records, so the rollups and the raw rows commit (or roll back) together; `services.usage_records_create` works
    the statements out first (`rollups_statements`) and sends them with `rollups_execute`."""
    rollups_execute(rollups_statements(records))


def rollups_execute(statements: list[tuple[str, list]]) -> None:
    from llm.models import UsageDaily

    if statements:
        with connections[router.db_for_write(UsageDaily)].cursor() as cursor:
            for sql, params in statements:
                cursor.execute(sql, params)


def rollups_unlink(*, user_ids: Sequence[int] = (), token_ids: Sequence[int] = ()) -> None:
    """Deleting users or tokens sets their records' `user`/`token` to NULL; move their rollup rows to key 0 the
    same way, in the deleting transaction, so the rollups still equal a rebuild. Rows that now share a key are
    added together: one INSERT ... SELECT ... GROUP BY ... ON CONFLICT DO UPDATE (its targets, with a 0 where an
    id was, are never among the rows it reads), then one DELETE of the old rows."""
    from llm.models import UsageDaily

    user_ids, token_ids = [int(pk) for pk in user_ids], [int(pk) for pk in token_ids]
    if not user_ids and not token_ids:
        return
    connection = connections[router.db_for_write(UsageDaily)]
    ops, meta = connection.ops, UsageDaily._meta
    q = {name: ops.quote_name(meta.get_field(name).column) for name in (*DAILY_KEY, *DAILY_SUMS)}
    table = ops.quote_name(meta.db_table)

    def among(column: str, ids: list[int]) -> tuple[str, list[int]]:
        return (f"{column} IN ({', '.join(['%s'] * len(ids))})", ids) if ids else ("1 = 0", [])

    user_in, user_params = among(q["user_key"], user_ids)
    token_in, token_params = among(q["token_key"], token_ids)
    keys = [
        q["day"],
        f"CASE WHEN {user_in} THEN 0 ELSE {q['user_key']} END",
        f"CASE WHEN {token_in} THEN 0 ELSE {q['token_key']} END",
        q["provider"],
        q["model"],
        q["status"],
    ]
    columns = ", ".join(q[name] for name in (*DAILY_KEY, *DAILY_SUMS))
    sums = ", ".join(f"SUM({q[name]})" for name in DAILY_SUMS)
    where = f"{user_in} OR {token_in}"
    updates = ", ".join(f"{q[n]} = {table}.{q[n]} + excluded.{q[n]}" for n in DAILY_SUMS)
    # Only identifiers from the model's metadata go into the text; the ids are parameters.
    sql = f"INSERT INTO {table} ({columns}) SELECT {', '.join(keys)}, {sums} FROM {table} WHERE {where} "  # noqa: S608
    sql += f"GROUP BY {', '.join(str(i) for i in range(1, 7))} "
    # (SQLite parses an upsert after INSERT ... SELECT only when the SELECT has a WHERE: it has one.)
    sql += f"ON CONFLICT ({', '.join(q[n] for n in DAILY_KEY)}) DO UPDATE SET {updates}"
    params = [*user_params, *token_params, *user_params, *token_params]
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute(sql, params)
        cursor.execute(f"DELETE FROM {table} WHERE {where}", [*user_params, *token_params])  # noqa: S608


def user_deleted(sender, instance, **kwargs) -> None:
    """post_delete of a user (wired in LlmConfig.ready): its records' user is now NULL."""
    rollups_unlink(user_ids=[instance.pk])


def token_deleted(sender, instance, **kwargs) -> None:
    """post_delete of an API token (wired in LlmConfig.ready): its records' token is now NULL."""
    rollups_unlink(token_ids=[instance.pk])


# --- Rebuild from the raw rows -------------------------------------------------------------------------------------


def _bucket_case(field_name: str) -> Case:
    whens = [When(**{f"{field_name}__lte": bound}, then=Value(i)) for i, bound in enumerate(LATENCY_BUCKETS_MS)]
    return Case(*whens, default=Value(len(LATENCY_BUCKETS_MS)), output_field=models.IntegerField())


def _day():
    return TruncDate("created_at", tzinfo=UTC)


def _daily_query(records: models.QuerySet) -> models.QuerySet:
    """The UsageDaily rows of `records`, as one GROUP BY; values are named after the UsageDaily columns."""
    model = Case(
        When(upstream_model="", then=F("requested_model")),
        default=F("upstream_model"),
        output_field=models.CharField(),
    )
    money = models.DecimalField(max_digits=24, decimal_places=12)
    zero = Value(Decimal("0"), output_field=money)
    return (
        records.order_by()
        # Numbers first: the GROUP BY sorts (or hashes) in this order, and text compares slowly under a collation.
        .values(
            r_day=_day(),
            r_user_key=Coalesce("user_id", Value(0), output_field=models.BigIntegerField()),
            r_token_key=Coalesce("token_id", Value(0), output_field=models.BigIntegerField()),
            r_status=F("status"),
            r_provider=F("provider"),
            r_model=model,
        )
        .annotate(
            r_requests=Count("pk"),
            r_unpriced=Count("pk", filter=Q(priced=False)),
            **{f"r_{name}": Coalesce(Sum(name), 0, output_field=models.BigIntegerField()) for name in _TOKENS},
            r_cost_usd=Coalesce(Sum("cost_usd"), zero, output_field=money),
            r_saved_usd=Coalesce(Sum("saved_usd"), zero, output_field=money),
            r_latency_ms_sum=Coalesce(Sum("latency_ms"), 0, output_field=models.BigIntegerField()),
            r_no_cost=Count("pk", filter=Q(cost_usd__isnull=True)),
            r_price_missing=Count(
                "pk", filter=Q(cost_usd__isnull=True) & (Q(input_tokens__gt=0) | Q(output_tokens__gt=0))
            ),
        )
    )


def _latency_queries(records: models.QuerySet) -> list[tuple[str, models.QuerySet]]:
    ok = records.order_by().filter(status="ok")
    latency = ok.values("provider", r_day=_day(), r_bucket=_bucket_case("latency_ms")).annotate(r_count=Count("pk"))
    ttft = (
        ok.filter(stream=True, time_to_first_token_ms__isnull=False)
        .values("provider", r_day=_day(), r_bucket=_bucket_case("time_to_first_token_ms"))
        .annotate(r_count=Count("pk"))
    )
    return [(LATENCY, latency), (TTFT, ttft)]


def _column(select_item) -> str:
    expression, _, alias = select_item
    if alias:
        return alias.removeprefix("r_")
    return expression.target.name


def _insert_select(connection, model: type[models.Model], query: models.QuerySet, constants: dict) -> int:
    """INSERT INTO rollup (columns) SELECT ... GROUP BY ...: the aggregation runs in the database, set-based."""
    compiler = query.query.get_compiler(connection=connection)
    select_sql, select_params = compiler.as_sql()
    names = [_column(item) for item in compiler.select]
    ops, meta = connection.ops, model._meta
    columns = [ops.quote_name(meta.get_field(name).column) for name in (*constants, *names)]
    prefix = ", ".join(["%s"] * len(constants))
    # Only identifiers from the models' metadata and the ORM's own SELECT go into the text; values are parameters.
    sql = f"INSERT INTO {ops.quote_name(meta.db_table)} ({', '.join(columns)}) "  # noqa: S608
    sql += f"SELECT {prefix + ', ' if constants else ''}sub.* FROM ({select_sql}) sub"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, [*constants.values(), *select_params])
        return cursor.rowcount


def _start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


@dataclass
class RebuildReport:
    since: date | None  # None: nothing to rebuild (no raw records and no range given)
    until: date | None  # None: open-ended (every later day)
    records: int = 0  # raw records read
    daily_rows: int = 0  # UsageDaily rows written (or that a rebuild would write, with check)
    latency_rows: int = 0
    deleted_daily: int = 0  # rows replaced (or, with check, that differ)
    deleted_latency: int = 0
    differences: list[str] = field(default_factory=list)  # check only: one line per differing row


def _default_since(usage_model, using: str) -> date | None:
    oldest = usage_model.objects.using(using).order_by("created_at").values_list("created_at", flat=True).first()
    return oldest.astimezone(UTC).date() if oldest is not None else None


def _rows_in(model, using: str, since: date, until: date | None) -> models.QuerySet:
    rows = model.objects.using(using).filter(day__gte=since)
    return rows.filter(day__lte=until) if until is not None else rows


def _records_in(usage_model, using: str, since: date, until: date | None) -> models.QuerySet:
    records = usage_model.objects.using(using).filter(created_at__gte=_start(since))
    if until is not None:
        records = records.filter(created_at__lt=_start(until + timedelta(days=1)))
    return records


def _models(apps=None):
    if apps is None:
        from llm.models import UsageDaily, UsageLatencyDaily, UsageRecord
    else:  # a migration's historical models
        UsageDaily, UsageLatencyDaily, UsageRecord = (  # noqa: N806
            apps.get_model("llm", name) for name in ("UsageDaily", "UsageLatencyDaily", "UsageRecord")
        )
    return UsageRecord, UsageDaily, UsageLatencyDaily


def rollups_rebuild(
    *, since: date | None = None, until: date | None = None, check: bool = False, apps=None, using: str | None = None
) -> RebuildReport:
    """Recompute the rollups of the UTC days `since`..`until` (both included) from the raw usage records, replacing
    their rows in one transaction; with `check`, write nothing and list the rows that differ instead.

    Default range: from the day of the oldest remaining raw record on, open-ended. The rows of older days, those
    `prune_usage` emptied of raw records, are kept: only an explicit `since` reaches them (and then empties them).
    `prune_usage` deletes whole UTC days only, so the oldest remaining day is complete.

    Where the rollups can differ from the raw rows (and a rebuild puts them right): a user or token deleted by raw
    SQL, without Django's delete (no post_delete signal to move its rows to key 0); records written or deleted
    by hand in the database; rows of pruned days after an explicit `since` that reaches them.

    PostgreSQL, writers running: the days before yesterday are replaced first (no writer adds to them: a record's
    day is the day it is written); then the rollup tables are locked against writers (readers go on) while
    yesterday and today are recomputed, so a record committed meanwhile is counted once, by the rebuild or by its
    writer after the lock. SQLite holds the database's write lock for the whole transaction anyway."""
    usage_model, daily_model, latency_model = _models(apps)
    connection = connections[using or router.db_for_write(daily_model)]
    if since is None:
        since = _default_since(usage_model, connection.alias)
        if since is None:
            if until is None:
                return RebuildReport(since=None, until=None)
            since = until
    if until is not None and until < since:
        raise ValueError(f"until ({until}) is before since ({since})")
    report = RebuildReport(since=since, until=until)
    if check:
        with transaction.atomic(using=connection.alias):
            if connection.vendor == "postgresql":  # one snapshot for the raw rows and the rollups
                with connection.cursor() as cursor:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            _check(report, connection.alias, usage_model, daily_model, latency_model, since, until)
        return report
    with transaction.atomic(using=connection.alias):
        today = datetime.now(UTC).date()
        split = today - timedelta(days=1)
        if connection.vendor == "postgresql" and (until is None or until >= split):
            if since < split:
                _replace(report, connection, usage_model, daily_model, latency_model, since, split - timedelta(1))
            with connection.cursor() as cursor:
                tables = ", ".join(connection.ops.quote_name(m._meta.db_table) for m in (daily_model, latency_model))
                cursor.execute(f"LOCK TABLE {tables} IN EXCLUSIVE MODE")
            _replace(report, connection, usage_model, daily_model, latency_model, max(since, split), until)
        else:
            _replace(report, connection, usage_model, daily_model, latency_model, since, until)
        # What the rows just written add up to: the raw records read, without counting them a second time.
        report.records = _rows_in(daily_model, connection.alias, since, until).aggregate(n=Sum("requests"))["n"] or 0
    return report


def _replace(report, connection, usage_model, daily_model, latency_model, since, until) -> None:
    using = connection.alias
    report.deleted_daily += _rows_in(daily_model, using, since, until).delete()[0]
    report.deleted_latency += _rows_in(latency_model, using, since, until).delete()[0]
    records = _records_in(usage_model, using, since, until)
    report.daily_rows += _insert_select(connection, daily_model, _daily_query(records), {})
    for metric, query in _latency_queries(records):
        report.latency_rows += _insert_select(connection, latency_model, query, {"metric": metric})


def _check(report, using, usage_model, daily_model, latency_model, since, until) -> None:
    records = _records_in(usage_model, using, since, until)
    report.records = records.count()
    expected = {}
    for row in _daily_query(records):
        key = (row["r_day"], row["r_user_key"], row["r_token_key"], row["r_provider"], row["r_model"], row["r_status"])
        expected[key] = _exact(row[f"r_{name}"] for name in DAILY_SUMS)
    actual = {
        tuple(row[:6]): _exact(row[6:])
        for row in _rows_in(daily_model, using, since, until).values_list(*DAILY_KEY, *DAILY_SUMS)
    }
    report.daily_rows = len(expected)
    report.differences += _compare("daily", DAILY_KEY, DAILY_SUMS, expected, actual)
    report.deleted_daily = len(report.differences)
    expected_latency = {}
    for metric, query in _latency_queries(records):
        for row in query:
            expected_latency[row["r_day"], row["provider"], metric, row["r_bucket"]] = (row["r_count"],)
    actual_latency = {
        tuple(row[:4]): tuple(row[4:])
        for row in _rows_in(latency_model, using, since, until).values_list(*LATENCY_KEY, *LATENCY_SUMS)
    }
    report.latency_rows = len(expected_latency)
    latency_differences = _compare("latency", LATENCY_KEY, LATENCY_SUMS, expected_latency, actual_latency)
    report.deleted_latency = len(latency_differences)
    report.differences += latency_differences


_MONEY_PLACES = Decimal("1e-12")


def _exact(values) -> tuple:
    """Money to the columns' 12 decimal places (SQLite sums REALs, so a SUM there comes back with float noise)."""
    return tuple(value.quantize(_MONEY_PLACES) if isinstance(value, Decimal) else value for value in values)


def _compare(label, key_names, sum_names, expected: dict, actual: dict) -> list[str]:
    lines = []
    for key in sorted(expected.keys() | actual.keys(), key=lambda k: tuple(str(part) for part in k)):
        want, have = expected.get(key), actual.get(key)
        if want == have:
            continue
        where = " ".join(f"{name}={value}" for name, value in zip(key_names, key, strict=True))
        if have is None:
            lines.append(f"{label} {where}: missing")
        elif want is None:
            lines.append(f"{label} {where}: no raw records, rollup has {dict(zip(sum_names, have, strict=True))}")
        else:
            changed = {n: f"{h} != {w}" for n, w, h in zip(sum_names, want, have, strict=True) if w != h}
            lines.append(f"{label} {where}: {', '.join(f'{n} {v}' for n, v in changed.items())} (rollup != raw)")
    return lines
