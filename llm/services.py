"""Writes for the gateway: usage records, the running spend totals that budgets read, budget reservations, and the
prices and model routes an administrator keeps."""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from asgiref.sync import async_to_sync
from django.db import IntegrityError, connections, router, transaction
from django.utils import timezone

from common.audit import Actor, audit_event_record
from common.errors import BudgetExceeded
from common.validation import invalid_request
from llm import pricing, rollups, routing
from llm.limits import month_start
from llm.models import (
    Conversation,
    ConversationMessage,
    ModelPrice,
    ModelRoute,
    PromptTemplate,
    PromptTemplateVersion,
    SpendCounter,
    StoredResponse,
    UsageRecord,
    UsageStatus,
)
from llm.providers.base import Usage
from llm.selectors import spend_counter_amounts
from llm.templates_store import aget_template, conversation_template, templates_changed


@dataclass(frozen=True)
class Reservation:
    """What `spend_reserve` holds on the counters of `scopes` (the token's and/or the user's, those with a budget)
    for one request; released by the transaction that writes the request's usage record."""

    month: date
    amount: Decimal
    scopes: tuple[tuple[str, int], ...]


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
    template_version_id: int | None = None
    status: str = UsageStatus.OK
    http_status: int = 200
    error_code: str = ""
    error_message: str = ""  # as the client was told (already mapped and redacted)
    usage: Usage | None = None
    usage_estimated: bool = False
    cost_usd: Decimal | None = Decimal("0")  # None: the model has no price (flagged in the admin)
    priced: bool = True  # False: no ModelPrice row (cost_usd is None, or the UNPRICED_* fallback price)
    saved_usd: Decimal = Decimal("0")
    latency_ms: int = 0
    upstream_latency_ms: int | None = None
    time_to_first_token_ms: int | None = None
    stream: bool = False
    attempts: int = 0  # calls sent upstream for this request, retries and fallbacks included
    reservation: Reservation | None = None  # released when this draft's record is written
    conversation_id: int | None = None


def _counter_sql():
    connection = connections[router.db_for_write(SpendCounter)]
    ops, meta = connection.ops, SpendCounter._meta
    names = (meta.db_table, "spent_usd", "reserved_usd", "scope", "key", "month")
    return connection, ops, tuple(ops.quote_name(name) for name in names)


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


def _settle_spend(scope: str, key: int, month, amount: Decimal, release: Decimal) -> int:
    """UPDATE ... SET spent_usd = spent_usd + amount, reserved_usd = reserved_usd - release (never below 0)."""
    connection, ops, (table, spent, reserved, scope_, key_, month_) = _counter_sql()
    number = "CAST(%s AS NUMERIC)"
    # Only identifiers from the model's own metadata go into the text; every value is a parameter.
    sql = f"UPDATE {table} SET {spent} = CAST({spent} + {number} AS NUMERIC), "  # noqa: S608
    sql += f"{reserved} = CASE WHEN {reserved} - {number} > 0 THEN CAST({reserved} - {number} AS NUMERIC) ELSE 0 END "
    sql += f"WHERE {scope_} = %s AND {key_} = %s AND {month_} = %s"
    amount_, release_ = ops.adapt_decimalfield_value(amount), ops.adapt_decimalfield_value(release)
    with connection.cursor() as cursor:
        cursor.execute(sql, [amount_, release_, release_, scope, key, ops.adapt_datefield_value(month)])
        return cursor.rowcount


def _add_spend(scope: str, key: int, month, amount: Decimal, release: Decimal = Decimal("0")) -> None:
    """Add a cost to a counter and release a reservation from it; creates the month's row if missing."""

    def update() -> int:
        if release:
            return _settle_spend(scope, key, month, amount, release)
        return _increment_spend(scope, key, month, amount)

    if update():
        return
    try:
        with transaction.atomic():
            SpendCounter.objects.create(scope=scope, key=key, month=month, spent_usd=amount)
    except IntegrityError:  # another worker created it first
        update()


# Draft fields stored as they are, and the token counts of its Usage.
_COPIED = (
    "request_id", "user_id", "token_id", "endpoint", "provider", "type", "source", "batch_id", "template_version_id",
    "status",
    "http_status", "usage_estimated", "priced", "cost_usd", "saved_usd", "latency_ms", "upstream_latency_ms",
    "time_to_first_token_ms", "stream", "attempts", "conversation_id",
)  # fmt: skip
_TOKENS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens")


def _record_from(draft: UsageDraft, now) -> UsageRecord:
    usage = draft.usage or Usage()
    return UsageRecord(
        created_at=now,
        requested_model=draft.requested_model[:100],
        upstream_model=draft.upstream_model[:100],
        error_code=draft.error_code[:60],
        error_message=draft.error_message[:500],
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
    """Write the records in one transaction, add their costs to the tokens' and users' monthly totals and release
    their budget reservations: one INSERT for all of them and one UPDATE per (token or user, month), summed exactly
    in Decimal; and add them to the daily rollups (one upsert per rollup table). All or none, so spend,
    reservations and rollups never drift apart from the records."""
    now = timezone.now()
    month = month_start(now.date())
    records = [_record_from(draft, now) for draft in drafts]
    spend: dict[tuple[str, int, date], Decimal] = defaultdict(Decimal)
    release: dict[tuple[str, int, date], Decimal] = defaultdict(Decimal)
    for draft in drafts:
        if draft.cost_usd:
            if draft.token_id:
                spend["token", draft.token_id, month] += draft.cost_usd
            if draft.user_id:
                spend["user", draft.user_id, month] += draft.cost_usd
        if draft.reservation is not None and draft.reservation.amount:
            for scope, key in draft.reservation.scopes:  # the month it was reserved in, across a month's end
                release[scope, key, draft.reservation.month] += draft.reservation.amount
    # Before the transaction: its rollup statements need only the records' own fields (not their ids).
    rollup_statements = rollups.rollups_statements(records)
    with transaction.atomic():
        _insert(records)
        # One order everywhere (the reservations' too): no deadlock between workers.
        for scope, key, month_ in sorted(spend.keys() | release.keys()):
            amount, released = spend.get((scope, key, month_), Decimal("0")), release.get((scope, key, month_))
            if amount or released:
                _add_spend(scope, key, month_, amount, released or Decimal("0"))
        rollups.rollups_execute(rollup_statements)  # after the counters, in key order: one lock order everywhere
    return records


def usage_record_create(*, draft: UsageDraft) -> UsageRecord:
    """Write one record and, in the same transaction, add its cost to the token's and the user's monthly totals."""
    return usage_records_create(drafts=[draft])[0]


# --- Budget reservations -------------------------------------------------------------------------


def _reserve(scope: str, key: int, month: date, amount: Decimal, budget: Decimal) -> int:
    """UPDATE ... SET reserved_usd = reserved_usd + amount WHERE spent_usd + reserved_usd + amount <= budget: the
    database decides whether it fits, against what every other process has spent and reserved (the row stays
    locked until the transaction ends). The rows changed: 0 (no row, or it does not fit) or 1."""
    connection, ops, (table, spent, reserved, scope_, key_, month_) = _counter_sql()
    number = "CAST(%s AS NUMERIC)"
    # Only identifiers from the model's own metadata go into the text; every value is a parameter.
    sql = f"UPDATE {table} SET {reserved} = CAST({reserved} + {number} AS NUMERIC) "  # noqa: S608
    sql += f"WHERE {scope_} = %s AND {key_} = %s AND {month_} = %s AND {spent} + {reserved} + {number} <= {number}"
    amount_ = ops.adapt_decimalfield_value(amount)
    params = [amount_, scope, key, ops.adapt_datefield_value(month), amount_, ops.adapt_decimalfield_value(budget)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.0001")))


def _plain(value: Decimal) -> str:
    return format(Decimal(value).normalize(), "f")


def _does_not_fit(scope: str, key: int, month: date, amount: Decimal, budget: Decimal, label: str) -> BudgetExceeded:
    # Read only to explain the refusal: the UPDATE above already decided.
    spent, reserved = spend_counter_amounts(scope=scope, key=key, month=month)
    left = max(budget - spent - reserved, Decimal("0"))
    details = {
        "scope": scope,
        "budget_usd": _plain(budget),
        "spent_usd": _plain(spent),
        "reserved_usd": _plain(reserved),
        "left_usd": _plain(left),
        "request_max_cost_usd": _plain(amount),
    }
    if spent >= budget:
        message = f"The monthly budget of ${budget} for {label} is used up (spent ${_money(spent)})."
    else:
        message = (
            f"This request may cost up to ${_money(amount)}, more than is left of the monthly budget of ${budget} "
            f"for {label} (${_money(left)} left: ${_money(spent)} spent, ${_money(reserved)} reserved by requests "
            "in flight). Send a lower max_tokens or a shorter prompt, or retry once requests in flight have finished."
        )
    return BudgetExceeded(message, details=details)


def spend_reserve(*, month: date, amount: Decimal, budgets: Sequence[tuple[str, int, Decimal, str]]) -> Reservation:
    """Reserve `amount` on every (scope, key, budget, label) counter of the month, or on none: one transaction of
    conditional UPDATEs (a missing month row is created first, race-safe), rolled back with BudgetExceeded when
    any of them does not fit. Never read-then-write: the check and the write are one statement."""
    ordered = sorted(budgets)  # the order every writer locks counters in: no deadlock between workers
    with transaction.atomic():
        for scope, key, budget, label in ordered:
            if _reserve(scope, key, month, amount, budget):
                continue
            # No row yet for this month (or no room): create it if missing; a concurrent creator wins harmlessly.
            SpendCounter.objects.bulk_create([SpendCounter(scope=scope, key=key, month=month)], ignore_conflicts=True)
            if not _reserve(scope, key, month, amount, budget):
                raise _does_not_fit(scope, key, month, amount, budget, label)
    return Reservation(month=month, amount=amount, scopes=tuple((scope, key) for scope, key, _, _ in ordered))


def spend_release(*, reservation: Reservation) -> None:
    """Give a reservation back without a usage record (its request was abandoned before it had one)."""
    with transaction.atomic():
        for scope, key in reservation.scopes:
            _settle_spend(scope, key, reservation.month, Decimal("0"), reservation.amount)


# --- Prices and model routes ---------------------------------------------------------------------


# The audit log keeps what changed on a price or a route, never a route's API key (only that it changed).
SECRET_FIELDS = ("api_key",)
AUDIT_NOUNS = {ModelPrice: "price", ModelRoute: "route"}


def _settings(row) -> dict:
    return {f.attname: getattr(row, f.attname) for f in row._meta.concrete_fields if f.name != "id"}


def admin_table_change_record(*, by: Actor | None, row, before: dict | None, deleted: bool = False) -> None:
    """One audit event for a price or route added, changed or deleted (by the API's services or the admin).
    `before`: the row's settings as stored before the change (None for an addition)."""
    noun = AUDIT_NOUNS[type(row)]
    after = {} if deleted else _settings(row)
    if before is None:
        action, details = "created", {"values": after}
    elif deleted:
        action, details = "deleted", {"values": before}
    else:
        changes = {name: [before.get(name), value] for name, value in after.items() if before.get(name) != value}
        if not changes:
            return
        action, details = "changed", {"changes": changes}
    for section in details.values():
        for name in SECRET_FIELDS:
            if name in section:
                section[name] = "changed" if action == "changed" else bool(section[name])
    audit_event_record(by=by, action=f"{noun}.{action}", target=row, target_id=row.pk or "", details=details)


def admin_table_settings(row) -> dict | None:
    """The stored settings of a price or route about to change (None when it is new)."""
    stored = type(row).objects.filter(pk=row.pk).first() if row.pk else None
    return _settings(stored) if stored is not None else None


def _saved(row, changed, by: Actor | None):
    """Checked as the admin's form checks it (`full_clean`: field rules, one price per model and day, a route's
    base URL against LLM_BASE_URL_ALLOWLIST), saved and audited, and this process's copy of the table dropped once
    the transaction commits (other processes re-read theirs within seconds), as after an admin save."""
    before = admin_table_settings(row)
    row.full_clean()
    with transaction.atomic():
        row.save()
        admin_table_change_record(by=by, row=row, before=before)
    transaction.on_commit(changed)
    return row


def _deleted(row, changed, by: Actor | None) -> None:
    before, pk = _settings(row), row.pk
    with transaction.atomic():
        row.delete()
        row.pk = pk
        admin_table_change_record(by=by, row=row, before=before, deleted=True)
    transaction.on_commit(changed)


def model_price_create(*, by: Actor | None = None, **fields) -> ModelPrice:
    return _saved(ModelPrice(**fields), pricing.prices_changed, by)


def model_price_update(*, price: ModelPrice, by: Actor | None = None, **fields) -> ModelPrice:
    for name, value in fields.items():
        setattr(price, name, value)
    return _saved(price, pricing.prices_changed, by)


def model_price_delete(*, price: ModelPrice, by: Actor | None = None) -> None:
    _deleted(price, pricing.prices_changed, by)


def model_route_create(*, by: Actor | None = None, **fields) -> ModelRoute:
    return _saved(ModelRoute(**fields), routing.routes_changed, by)


def model_route_update(*, route: ModelRoute, by: Actor | None = None, **fields) -> ModelRoute:
    """Fields not given stay as they are: the stored API key too, unless `api_key` is given ("" removes it)."""
    for name, value in fields.items():
        setattr(route, name, value)
    return _saved(route, routing.routes_changed, by)


def model_route_delete(*, route: ModelRoute, by: Actor | None = None) -> None:
    """Routes that fell back to it no longer have a fallback."""
    _deleted(route, routing.routes_changed, by)


# --- Retention ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PruneReport:
    cutoff: datetime
    matched: int
    deleted: int


def usage_records_prune(
    *, older_than: timedelta, dry_run: bool = False, batch_size: int = 5000, by: Actor | None = None
) -> PruneReport:
    """Delete usage records created before now - `older_than`, rounded down to midnight UTC, `batch_size` at a time
    (short transactions, no table-wide lock). Only raw rows go: the monthly spend totals (`SpendCounter`) and the
    daily rollups (`UsageDaily`, `UsageLatencyDaily`) stay as they are. Whole UTC days only, so the oldest day
    left keeps all its records and a rebuild of the rollups (which starts there) stays exact. A dry run counts and
    deletes nothing (and is not audited)."""
    cutoff = (timezone.now() - older_than).astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    old = UsageRecord.objects.filter(created_at__lt=cutoff)
    if dry_run:
        return PruneReport(cutoff=cutoff, matched=old.count(), deleted=0)
    deleted = 0
    while True:
        with transaction.atomic():
            batch = list(old.order_by("pk").values_list("pk", flat=True)[:batch_size])
            if not batch:
                break
            _, counts = UsageRecord.objects.filter(pk__in=batch).delete()
            deleted += counts.get(UsageRecord._meta.label, 0)
    audit_event_record(
        by=by,
        action="usage.pruned",
        target_type=UsageRecord._meta.label_lower,
        target_label=f"before {cutoff:%Y-%m-%d %H:%M} UTC",
        details={"older_than_days": older_than.days, "cutoff": cutoff, "deleted": deleted},
    )
    return PruneReport(cutoff=cutoff, matched=deleted, deleted=deleted)


# --- Conversations -------------------------------------------------------------------------------


def conversation_create(
    *,
    user,
    title: str = "",
    model: str = "",
    system: str | None = None,
    template: str | int | None = None,
    variables: dict[str, str] | None = None,
    language: str = "",
    summarize_dropped: bool = False,
) -> Conversation:
    """A new conversation; from a prompt template (yours or a shared one, by name or id), it keeps the template's
    version, its system prompt (unless `system` is given), default model (unless `model` is) and parameters, and
    sends each message in its user text (llm/templates_store.py `conversation_template`)."""
    if template is None:
        if variables:
            raise invalid_request({"variables": ["Only with `template`."]})
        return Conversation.objects.create(
            user=user, title=title, model=model, system=system or "", summarize_dropped=summarize_dropped
        )
    snapshot = async_to_sync(aget_template)(user_id=user.pk, ref=template)
    kept = conversation_template(snapshot, variables=variables or {}, language=language, system_override=system)
    return Conversation.objects.create(
        user=user,
        title=title,
        model=model or kept.default_model,
        system=kept.system,
        template_version_id=kept.version_id,
        user_template=kept.user_template,
        variables=kept.variables,
        parameters=kept.parameters,
        summarize_dropped=summarize_dropped,
    )


def conversation_summary_store(*, conversation_id: int, summary: str, covers: int) -> None:
    Conversation.objects.filter(pk=conversation_id).update(summary=summary, summary_covers=covers)


def conversation_delete(*, conversation: Conversation) -> None:
    """Its messages go with it; its usage records stay (they are the bill) and no longer name it."""
    conversation.delete()


def conversation_exchange_store(
    *,
    conversation_id: int,
    user_text: str,
    answer: str,
    model: str,
    usage: Usage | None,
    cost_usd: Decimal | None,
    complete: bool = True,
) -> tuple[ConversationMessage, ConversationMessage]:
    """The user's message and the answer, stored together once the answer is known."""
    usage = usage or Usage()
    with transaction.atomic():
        asked = ConversationMessage.objects.create(
            conversation_id=conversation_id, role=ConversationMessage.Role.USER, content=user_text
        )
        answered = ConversationMessage.objects.create(
            conversation_id=conversation_id,
            role=ConversationMessage.Role.ASSISTANT,
            content=answer,
            model=model[:200],
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cost_usd=cost_usd,
            complete=complete,
        )
        Conversation.objects.filter(pk=conversation_id).update(updated_at=timezone.now())
    return asked, answered


def stored_response_create(
    *, response_id: str, user_id: int, parent_id: str | None, input: list, output: list, body: dict
) -> StoredResponse:
    """Keep a response of `POST /v1/responses` (`store`): the conversation it answered, its output, its body."""
    return StoredResponse.objects.create(
        id=response_id, user_id=user_id, parent_id=parent_id, input=input, output=output, body=body
    )


def stored_response_delete(*, response_id: str, user_id: int) -> bool:
    """Delete one of the user's stored responses; False when they have none by that id."""
    deleted, _ = StoredResponse.objects.filter(id=response_id, user_id=user_id).delete()
    return deleted > 0


# --- Prompt templates ----------------------------------------------------------------------------

# A template's fields that each version keeps.
TEMPLATE_VERSIONED = ("name", "description", "system", "user_template", "default_model", "parameters")


def prompt_template_version_create(*, template: PromptTemplate, created_by_id: int | None) -> PromptTemplateVersion:
    """A new version with the template's current text, made its current version (every save of a template)."""
    with transaction.atomic():
        last = PromptTemplateVersion.objects.filter(template=template).order_by("-number").first()
        version = PromptTemplateVersion.objects.create(
            template=template,
            number=(last.number if last else 0) + 1,
            created_by_id=created_by_id,
            **{name: getattr(template, name) for name in TEMPLATE_VERSIONED},
        )
        template.current_version = version
        template.save(update_fields=["current_version"])
    if template.type:
        transaction.on_commit(templates_changed)
    return version


def prompt_template_create(*, owner_id: int | None, created_by_id: int, **fields: Any) -> PromptTemplate:
    template = PromptTemplate(owner_id=owner_id, **fields)
    template.full_clean()
    with transaction.atomic():
        template.save()
        prompt_template_version_create(template=template, created_by_id=created_by_id)
    return template


def prompt_template_update(*, template: PromptTemplate, changed_by_id: int, **changes: Any) -> PromptTemplate:
    """Changed text is a new version; the same text again changes nothing."""
    if all(getattr(template, name) == value for name, value in changes.items()):
        return template
    for name, value in changes.items():
        setattr(template, name, value)
    template.updated_at = timezone.now()
    template.full_clean()
    with transaction.atomic():
        template.save()
        prompt_template_version_create(template=template, created_by_id=changed_by_id)
    return template


def prompt_template_delete(*, template: PromptTemplate) -> None:
    """Its versions go with it; usage records that used one keep their row (without the link)."""
    template.delete()
    if template.type:
        transaction.on_commit(templates_changed)
