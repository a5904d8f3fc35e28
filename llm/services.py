"""Writes for the gateway: usage records and the running spend totals that budgets read."""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.db import IntegrityError, connections, router, transaction
from django.utils import timezone

from llm.limits import month_start
from llm.models import SpendCounter, UsageRecord, UsageStatus
from llm.providers.base import Usage


@dataclass
class UsageDraft:
    """What the pipeline learned about one request; turned into exactly one UsageRecord."""

    request_id: str
    endpoint: str
    user_id: int | None = None
    token_id: int | None = None
    provider: str = ""
    requested_model: str = ""
    upstream_model: str = ""
    type: str = ""
    source: str = ""
    batch_id: str = ""
    status: str = UsageStatus.OK
    http_status: int = 200
    error_code: str = ""
    usage: Usage | None = None
    usage_estimated: bool = False
    cost_usd: Decimal | None = Decimal("0")  # None: the model has no price (flagged in the admin)
    saved_usd: Decimal = Decimal("0")
    latency_ms: int = 0
    upstream_latency_ms: int | None = None
    time_to_first_token_ms: int | None = None
    stream: bool = False


def _increment_spend(scope: str, key: int, month, amount: Decimal) -> int:
    """UPDATE ... SET spent_usd = spent_usd + amount; the rows changed (0 or 1). The statement the ORM builds for
    `.update(spent_usd=F("spent_usd") + amount)` on both backends, written out: building it through the ORM cost
    ~0.8 ms of CPU per call here, twice per batch of records."""
    connection = connections[router.db_for_write(SpendCounter)]
    ops, meta = connection.ops, SpendCounter._meta
    table, spent, scope_, key_, month_ = (
        ops.quote_name(name) for name in (meta.db_table, "spent_usd", "scope", "key", "month")
    )
    # Only identifiers from the model's own metadata go into the text; every value is a parameter.
    sql = f"UPDATE {table} SET {spent} = CAST({spent} + CAST(%s AS NUMERIC) AS NUMERIC) "  # noqa: S608
    sql += f"WHERE {scope_} = %s AND {key_} = %s AND {month_} = %s"
    with connection.cursor() as cursor:
        cursor.execute(sql, [ops.adapt_decimalfield_value(amount), scope, key, ops.adapt_datefield_value(month)])
        return cursor.rowcount


def _add_spend(scope: str, key: int, month, amount: Decimal) -> None:
    if _increment_spend(scope, key, month, amount):
        return
    try:
        with transaction.atomic():
            SpendCounter.objects.create(scope=scope, key=key, month=month, spent_usd=amount)
    except IntegrityError:  # another worker created it first
        _increment_spend(scope, key, month, amount)


# Draft fields stored as they are, and the token counts of its Usage.
_COPIED = (
    "request_id", "user_id", "token_id", "endpoint", "provider", "type", "source", "batch_id", "status",
    "http_status", "usage_estimated", "cost_usd", "saved_usd", "latency_ms", "upstream_latency_ms",
    "time_to_first_token_ms", "stream",
)  # fmt: skip
_TOKENS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens")


def _record_from(draft: UsageDraft, now) -> UsageRecord:
    usage = draft.usage or Usage()
    return UsageRecord(
        created_at=now,
        requested_model=draft.requested_model[:100],
        upstream_model=draft.upstream_model[:100],
        error_code=draft.error_code[:60],
        **{name: getattr(draft, name) for name in _COPIED},
        **{name: getattr(usage, name) for name in _TOKENS},
    )


def _insert(records: list[UsageRecord]) -> None:
    """One multi-row INSERT ... RETURNING id, as `bulk_create` sends it, but with the statement written out rather
    than built by the ORM's compiler for every batch (that compiler was ~5 % of a request's CPU at concurrency 32
    here). Values go through each field's own `get_db_prep_save`, as in `bulk_create`."""
    connection = connections[router.db_for_write(UsageRecord)]
    ops, meta = connection.ops, UsageRecord._meta
    fields = [field for field in meta.concrete_fields if field is not meta.pk]
    columns = ", ".join(ops.quote_name(field.column) for field in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    # Only identifiers from the model's own metadata go into the text; every value is a parameter.
    sql = f"INSERT INTO {ops.quote_name(meta.db_table)} ({columns}) VALUES "  # noqa: S608
    sql += ", ".join([row] * len(records)) + f" RETURNING {ops.quote_name(meta.pk.column)}"
    params = [
        field.get_db_prep_save(getattr(record, field.attname), connection) for record in records for field in fields
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        ids = [returned[0] for returned in cursor.fetchall()]
    for record, pk in zip(records, ids, strict=True):
        record.pk = pk
        record._state.adding, record._state.db = False, connection.alias


def usage_records_create(*, drafts: Sequence[UsageDraft]) -> list[UsageRecord]:
    """Write the records in one transaction and add their costs to the tokens' and users' monthly totals: one
    INSERT for all of them and one UPDATE per (token or user, month), summed exactly in Decimal. All or none."""
    now = timezone.now()
    month = month_start(now.date())
    records = [_record_from(draft, now) for draft in drafts]
    spend: dict[tuple[str, int], Decimal] = defaultdict(Decimal)
    for draft in drafts:
        if draft.cost_usd:
            if draft.token_id:
                spend["token", draft.token_id] += draft.cost_usd
            if draft.user_id:
                spend["user", draft.user_id] += draft.cost_usd
    with transaction.atomic():
        _insert(records)
        for (scope, key), amount in sorted(spend.items()):  # one order everywhere: no deadlock between workers
            if amount:
                _add_spend(scope, key, month, amount)
    return records


def usage_record_create(*, draft: UsageDraft) -> UsageRecord:
    """Write one record and, in the same transaction, add its cost to the token's and the user's monthly totals."""
    return usage_records_create(drafts=[draft])[0]
