"""Admin for the gateway: usage records (read-only, fast at millions of rows), prices, routes, templates, spend.

Caches of prices, routes and templates are per process: a save here refreshes this process at once (after the
transaction commits); other worker processes re-read them within seconds.
"""

import calendar
import csv
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from asgiref.sync import sync_to_async
from django import forms
from django.contrib import admin
from django.contrib.admin.views.main import SEARCH_VAR
from django.contrib.auth import get_user_model
from django.core.handlers.asgi import ASGIRequest
from django.db import transaction
from django.db.models import Max, Min, OuterRef, Q, Subquery
from django.http import StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from accounts.admin import APITokenAdmin, UserAdmin
from accounts.models import APIToken, UserPreferences
from common.admin import ReadOnlyAdmin
from common.audit import VIA_ADMIN, actor_from_request
from common.crypto import UnreadableSecret
from common.errors import error_description
from common.formatting import money, usd
from common.spreadsheets import csv_cell
from llm import pricing, routing, services, templates_store
from llm.models import (
    Conversation,
    ConversationMessage,
    ModelPrice,
    ModelRoute,
    PromptTemplate,
    PromptTemplateVersion,
    SpendCounter,
    UsageRecord,
    UsageStatus,
)
from llm.paginator import EstimatedCountPaginator
from llm.providers.registry import provider_choices
from llm.selectors import PRICE_MISSING, spend_counter_amounts, usage_totals
from llm.usage_totals import UsageFilter, usage_totals_from_rollups

# --- UsageRecord ---------------------------------------------------------------------------------


class ProviderFilter(admin.SimpleListFilter):
    """The fixed provider list: no DISTINCT over the usage table to build it."""

    title = "provider"
    parameter_name = "provider"

    def lookups(self, request, model_admin):
        return provider_choices()

    def queryset(self, request, queryset):
        return queryset.filter(provider=self.value()) if self.value() else queryset


class ModelFilter(admin.SimpleListFilter):
    """The models of the latest requests (the newest rows read down the created_at index, de-duplicated here: a
    DISTINCT in the database would be planned over the whole table); any other model works by URL
    (`?upstream_model=...`)."""

    title = "model"
    parameter_name = "upstream_model"
    recent_rows = 5000

    def lookups(self, request, model_admin):
        recent = UsageRecord.objects.order_by("-created_at").values_list("upstream_model", flat=True)
        models = {model for model in recent[: self.recent_rows] if model}
        if self.value():
            models.add(self.value())
        return [(model, model) for model in sorted(models)]

    def queryset(self, request, queryset):
        return queryset.filter(upstream_model=self.value()) if self.value() else queryset


class CachedFilter(admin.SimpleListFilter):
    title = "cached"
    parameter_name = "cached"

    def lookups(self, request, model_admin):
        return [("yes", "Cache hits"), ("no", "Not cached")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(status=UsageStatus.CACHED)
        if self.value() == "no":
            return queryset.exclude(status=UsageStatus.CACHED)
        return queryset


class PriceMissingFilter(admin.SimpleListFilter):
    title = "price"
    parameter_name = "price_missing"

    def lookups(self, request, model_admin):
        return [("yes", "Price missing (tokens, no cost)")]

    def queryset(self, request, queryset):
        return queryset.filter(PRICE_MISSING) if self.value() == "yes" else queryset


CSV_COLUMNS = [
    ("created_at", "created_at"),
    ("request_id", "request_id"),
    ("user", "user__username"),
    ("token", "token__prefix"),
    ("endpoint", "endpoint"),
    ("provider", "provider"),
    ("requested_model", "requested_model"),
    ("upstream_model", "upstream_model"),
    ("type", "type"),
    ("source", "source"),
    ("status", "status"),
    ("http_status", "http_status"),
    ("error_code", "error_code"),
    ("input_tokens", "input_tokens"),
    ("output_tokens", "output_tokens"),
    ("cached_input_tokens", "cached_input_tokens"),
    ("cache_write_tokens", "cache_write_tokens"),
    ("reasoning_tokens", "reasoning_tokens"),
    ("usage_estimated", "usage_estimated"),
    ("cost_usd", "cost_usd"),
    ("saved_usd", "saved_usd"),
    ("latency_ms", "latency_ms"),
    ("upstream_latency_ms", "upstream_latency_ms"),
    ("time_to_first_token_ms", "time_to_first_token_ms"),
    ("stream", "stream"),
    ("id", "id"),
]
_CSV_CHUNK = 2000


class _Line:
    """A file-like target for csv.writer that hands back the last written line."""

    def write(self, value: str) -> str:
        return value


def _cell(value) -> object:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return money(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return csv_cell(value)  # never let a spreadsheet run a request id or model name as a formula


def _csv_page(queryset, after: tuple | None) -> list[tuple]:
    """One page of the export in (created_at, id) descending order, resumed after a keyset: every page is its
    own indexed query, so no cursor or transaction is held open while the client downloads."""
    rows = queryset.order_by("-created_at", "-id").values_list(*(field for _, field in CSV_COLUMNS))
    if after is not None:
        created_at, pk = after
        rows = rows.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=pk))
    return list(rows[:_CSV_CHUNK])


def _keyset(row: tuple) -> tuple:
    return row[0], row[-1]  # created_at is the first column, id the last


def _csv_lines_sync(queryset):
    writer = csv.writer(_Line())
    yield "\ufeff" + writer.writerow([name for name, _ in CSV_COLUMNS])  # BOM: Excel reads UTF-8
    after = None
    while rows := _csv_page(queryset, after):
        for row in rows:
            yield writer.writerow([_cell(value) for value in row])
        after = _keyset(rows[-1])


async def _csv_lines_async(queryset):
    writer = csv.writer(_Line())
    yield "\ufeff" + writer.writerow([name for name, _ in CSV_COLUMNS])
    after = None
    while rows := await sync_to_async(_csv_page)(queryset, after):
        for row in rows:
            yield writer.writerow([_cell(value) for value in row])
        after = _keyset(rows[-1])


def usage_csv_response(request, queryset) -> StreamingHttpResponse:
    # Under ASGI a sync iterator would be read whole into memory first; each server gets the kind it streams.
    lines = _csv_lines_async(queryset) if isinstance(request, ASGIRequest) else _csv_lines_sync(queryset)
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="djllm-usage-{stamp}.csv"'
    return response


def _month_start_utc() -> datetime:
    now = timezone.now().astimezone(UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _date_links(cl) -> dict | None:
    """The date drill-down of the change list, built from the calendar instead of DISTINCT date queries over the
    table (Django's own runs one per level). Only the first level reads the table: MIN and MAX of created_at,
    two index probes."""
    field = cl.date_hierarchy
    year, month, day = (cl.params.get(f"{field}__{part}") for part in ("year", "month", "day"))
    year, month, day = (int(v[-1] if isinstance(v, list) else v) if v else None for v in (year, month, day))

    def link(**parts):
        return cl.get_query_string({f"{field}__{k}": v for k, v in parts.items()}, [f"{field}__"])

    today = timezone.localdate()
    if year and month and day:
        return {
            "back": {"link": link(year=year, month=month), "title": f"{date(year, month, 1):%B %Y}"},
            "choices": [{"title": f"{date(year, month, day):%B} {day}"}],
        }
    if year and month:
        last = calendar.monthrange(year, month)[1]
        days = [d for d in range(1, last + 1) if date(year, month, d) <= today]
        return {
            "back": {"link": link(year=year), "title": str(year)},
            "choices": [
                {"link": link(year=year, month=month, day=d), "title": f"{date(year, month, d):%b} {d}"} for d in days
            ],
        }
    if year:
        months = [m for m in range(1, 13) if date(year, m, 1) <= today]
        return {
            "back": {"link": link(), "title": "All dates"},
            "choices": [{"link": link(year=year, month=m), "title": f"{date(year, m, 1):%B} {year}"} for m in months],
        }
    bounds = cl.queryset.order_by().aggregate(first=Min(field), last=Max(field))
    if not bounds["first"]:
        return None
    first, last = (timezone.localtime(bounds[k]) for k in ("first", "last"))
    return {
        "back": None,
        "choices": [{"link": link(year=y), "title": str(y)} for y in range(first.year, last.year + 1)],
    }


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    """Read-only: usage records are written by the gateway and never edited or deleted here."""

    date_hierarchy = "created_at"
    # What fits a 1400 px screen beside the filters; everything else is on the record page.
    list_display = ["when", "who", "upstream_model", "outcome", "tokens", "cost", "latency"]
    list_display_links = ["when"]
    list_filter = [
        "status",
        ProviderFilter,
        ModelFilter,
        "user",
        "token",
        CachedFilter,
        PriceMissingFilter,
        "priced",
        "stream",
    ]
    list_select_related = ["user", "token"]
    sortable_by = ["when", "cost", "latency"]
    search_fields = ["request_id"]
    search_help_text = "The exact request id (X-Request-ID)."
    actions = ["export_csv"]
    list_per_page = 100
    # Millions of rows: never COUNT the whole table (see llm/paginator.py), no facet counts.
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    fieldsets = [
        (None, {"fields": ["created_at", "request_id", "user", "token", "endpoint", "type", "source", "batch_id"]}),
        ("Model", {"fields": ["provider", "requested_model", "upstream_model"]}),
        ("Outcome", {"fields": ["status", "http_status", "error"]}),
        (
            "Usage and cost",
            {
                "fields": [
                    "input_tokens",
                    "output_tokens",
                    "cached_input_tokens",
                    "cache_write_tokens",
                    "reasoning_tokens",
                    "usage_estimated",
                    "priced",
                    "cost",
                    "cost_usd",
                    "saved",
                    "saved_usd",
                ]
            },
        ),
        ("Timing", {"fields": ["latency_ms", "upstream_latency_ms", "time_to_first_token_ms", "stream"]}),
    ]
    readonly_fields = ["cost", "saved", "error"]

    @admin.display(description="time", ordering="created_at")
    def when(self, obj):
        when = timezone.localtime(obj.created_at)
        return format_html(
            '<span data-request-id="{}" title="request {}"><span class="nowrap">{}</span> '
            '<span class="nowrap">{}</span></span>',
            obj.request_id,
            obj.request_id,
            f"{when:%Y-%m-%d}",
            f"{when:%H:%M:%S}",
        )

    @admin.display(description="user / token")
    def who(self, obj):
        user = obj.user.get_username() if obj.user_id else "—"
        return format_html("{}<br><small>{}</small>", user, obj.token.display_prefix if obj.token_id else "no token")

    @admin.display(description="status", ordering="status")
    def outcome(self, obj):
        if not obj.error_code:
            return obj.status
        return format_html(
            '{}<br><small title="{}">{}</small>',
            obj.status,
            obj.error_message or error_description(obj.error_code),
            obj.error_code,
        )

    @admin.display(description="error")
    def error(self, obj):
        """The error's code and the message the client was told (records written before it was kept: what the code
        means)."""
        if not obj.error_code:
            return "—"
        message = obj.error_message or error_description(obj.error_code)
        return f"{obj.error_code}: {message}" if message else obj.error_code

    @admin.display(description="tokens in / out")
    def tokens(self, obj):
        return format_html(
            '<span class="nowrap">{} /</span> <span class="nowrap">{}</span>',
            f"{obj.input_tokens:,}",
            f"{obj.output_tokens:,}",
        )

    @admin.display(description="latency", ordering="latency_ms")
    def latency(self, obj):
        return f"{obj.latency_ms:,} ms"

    @admin.display(description="saved by cache")
    def saved(self, obj):
        return usd(obj.saved_usd)

    @admin.display(description="cost", ordering="cost_usd")
    def cost(self, obj):
        if obj.cost_usd is not None:
            return usd(obj.cost_usd)
        if obj.input_tokens or obj.output_tokens:
            return format_html(
                '<strong class="price-missing" style="color: var(--error-fg, #ba2121)" title="No ModelPrice for {}/{}">'
                "⚠ price missing</strong>",
                obj.provider,
                obj.upstream_model,
            )
        return "—"

    def get_search_results(self, request, queryset, search_term):
        # An exact match walks the request_id index; icontains would scan every row.
        term = search_term.strip()
        return (queryset.filter(request_id=term) if term else queryset), False

    @admin.action(description="Export selected usage records to CSV", permissions=["view"])
    def export_csv(self, request, queryset):
        return usage_csv_response(request, queryset)

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if not isinstance(response, TemplateResponse) or not context or "cl" not in context:
            return response  # a redirect, or an action's own response (the CSV)
        cl = context["cl"]
        context["usage_totals"] = self._totals(cl)
        context["usage_dates"] = _date_links(cl)
        return response

    def _totals(self, cl) -> dict:
        """Totals of the filtered set. With no filter at all they cover the current month, so opening the page never
        sums the whole table. Filters the daily rollups can answer (user, token, provider, model, status, cache hits,
        dates) read them, and the raw rows only for partial days (llm/usage_totals.py); any other filter sums the raw
        rows in one aggregate query."""
        spec = _rollup_filter(cl)
        if cl.queryset.query.has_filters():
            scope = "the records shown by these filters"
        else:
            start = _month_start_utc()
            spec = spec and UsageFilter(start=start)
            scope = f"this month (since {start:%d %B %Y}, UTC); filter or pick a date for other totals"
        if spec is not None:
            values = usage_totals_from_rollups(spec)
        else:
            values = usage_totals(cl.queryset.order_by())
        return {
            "scope": scope,
            "values": values,
            "cost": usd(values.cost_usd),
            "saved": usd(values.saved_usd),
            "cost_exact": money(values.cost_usd),
            "saved_exact": money(values.saved_usd),
        }


# Change-list parameters that do not filter.
_NOT_FILTERS = {"o", "p", "e", "_to_field", "_popup", "_changelist_filters"}
_SAME_FIELD = {"user__id__exact": "user_id", "token__id__exact": "token_id", "provider": "provider",
               "upstream_model": "model", "status__exact": "status"}  # fmt: skip


def _moment(value: str) -> datetime | None:
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        moment = datetime.combine(day, datetime.min.time()) if day else None
    if moment is not None and timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


def _hierarchy_range(year: str, month: str | None, day: str | None) -> tuple[datetime, datetime]:
    """The date drill-down's range, as Django's ChangeList builds it (in the current timezone)."""
    start = datetime(int(year), int(month or 1), int(day or 1))
    if day:
        end = start + timedelta(days=1)
    elif month:
        end = (start + timedelta(days=32)).replace(day=1)
    else:
        end = start.replace(year=start.year + 1)
    return timezone.make_aware(start), timezone.make_aware(end)


def _rollup_filter(cl) -> UsageFilter | None:
    """The change list's filters as a `UsageFilter` when the rollups can answer them all exactly; else None."""
    params = {key: value[-1] if isinstance(value, list) else value for key, value in cl.params.items()}
    params = {key: value for key, value in params.items() if key not in _NOT_FILTERS}
    if params.pop(SEARCH_VAR, "").strip():
        return None
    spec: dict = {}
    try:
        for key, value in params.items():
            if key in _SAME_FIELD:
                spec[_SAME_FIELD[key]] = int(value) if key.endswith("__id__exact") else value
            elif key == "cached" and value in ("yes", "no"):
                spec["status" if value == "yes" else "exclude_status"] = UsageStatus.CACHED
            elif key in ("created_at__gte", "created_at__lt"):
                spec["start" if key.endswith("gte") else "end"] = _moment(value)
                if spec["start" if key.endswith("gte") else "end"] is None:
                    return None
            elif key == "created_at__year" and not {"created_at__gte", "created_at__lt"} & params.keys():
                spec["start"], spec["end"] = _hierarchy_range(
                    value, params.get("created_at__month"), params.get("created_at__day")
                )
            elif key not in ("created_at__month", "created_at__day"):
                return None
        if "cached" in params and params.get("status__exact") and "exclude_status" not in spec:
            return None  # cache hits and a status: two status filters
    except (ValueError, OverflowError):
        return None
    # A deleted user's or token's records lost their link on the raw side; the rollups still have its id.
    if "user_id" in spec and not get_user_model().objects.filter(pk=spec["user_id"]).exists():
        return None
    if "token_id" in spec and not APIToken.objects.filter(pk=spec["token_id"]).exists():
        return None
    return UsageFilter(**spec)


# --- ModelPrice ----------------------------------------------------------------------------------


class RefreshesProcessCaches:
    """For tables the gateway keeps a per-process copy of: after a save or delete commits, this process drops its
    copy at once (other workers re-read theirs within seconds)."""

    cache_changed = staticmethod(lambda: None)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        transaction.on_commit(self.cache_changed)

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        transaction.on_commit(self.cache_changed)

    def delete_queryset(self, request, queryset):
        super().delete_queryset(request, queryset)
        transaction.on_commit(self.cache_changed)


class AuditedAdminTable(RefreshesProcessCaches):
    """Prices and routes: each addition, change and deletion in the admin also goes to the audit log."""

    def save_model(self, request, obj, form, change):
        before = services.admin_table_settings(obj) if change else None
        super().save_model(request, obj, form, change)
        services.admin_table_change_record(by=actor_from_request(request, via=VIA_ADMIN), row=obj, before=before)

    def delete_model(self, request, obj):
        before, pk = services.admin_table_settings(obj), obj.pk
        super().delete_model(request, obj)
        obj.pk = pk
        services.admin_table_change_record(
            by=actor_from_request(request, via=VIA_ADMIN), row=obj, before=before, deleted=True
        )

    def delete_queryset(self, request, queryset):
        for row in queryset:
            self.delete_model(request, row)


@admin.register(ModelPrice)
class ModelPriceAdmin(AuditedAdminTable, admin.ModelAdmin):
    cache_changed = staticmethod(pricing.prices_changed)

    list_display = [
        "model",
        "provider",
        "input_price",
        "output_price",
        "cached_input_price",
        "cache_write_price",
        "max_output_tokens",
        "effective_from",
    ]
    list_filter = ["provider", "effective_from"]
    search_fields = ["model"]
    ordering = ["provider", "model", "-effective_from"]

    @admin.display(description="input / 1M tokens", ordering="input_per_mtok")
    def input_price(self, obj):
        return usd(obj.input_per_mtok, exact=True)

    @admin.display(description="output / 1M tokens", ordering="output_per_mtok")
    def output_price(self, obj):
        return usd(obj.output_per_mtok, exact=True)

    @admin.display(description="cached input / 1M", ordering="cached_input_per_mtok")
    def cached_input_price(self, obj):
        return usd(obj.cached_input_per_mtok, exact=True)

    @admin.display(description="cache write / 1M", ordering="cache_write_per_mtok")
    def cache_write_price(self, obj):
        return usd(obj.cache_write_per_mtok, exact=True)


# --- ModelRoute ----------------------------------------------------------------------------------

# A route's fields, in the order the form and the list show them, around its API key (or the key's status).
_ROUTE_HEAD = ["alias", "provider", "upstream_model", "base_url"]
_ROUTE_TAIL = ["fallback", "responses_api", "is_active"]


class ModelRouteForm(forms.ModelForm):
    """The API key is write-only: the input never shows the stored key, and a blank input keeps it."""

    api_key = forms.CharField(
        required=False,
        strip=True,
        label="API key",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only. Leave blank to keep the stored key. With none stored, a route on the provider's "
        "configured base URL uses the provider's key from the environment; a route with a base URL of its own sends "
        "no key (the server's key never goes to another host).",
    )
    clear_api_key = forms.BooleanField(required=False, label="Remove the stored API key")
    base_url = forms.URLField(
        required=False,
        assume_scheme="https",
        label="Base URL",
        help_text="Blank: the provider's configured base URL. Otherwise its host must be allowed by "
        "LLM_BASE_URL_ALLOWLIST.",
    )

    class Meta:
        model = ModelRoute
        fields = [*_ROUTE_HEAD, "api_key", *_ROUTE_TAIL]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial["api_key"] = ""  # the stored key never enters the form

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("clear_api_key"):
            cleaned["api_key"] = ""
        elif not cleaned.get("api_key"):
            cleaned["api_key"] = self.instance.api_key if self.instance.pk else ""
        return cleaned


@admin.register(ModelRoute)
class ModelRouteAdmin(AuditedAdminTable, admin.ModelAdmin):
    """Superusers only may add, change or delete routes: a route decides where prompts and keys are sent. Staff with
    any route permission can at most view them."""

    cache_changed = staticmethod(routing.routes_changed)

    form = ModelRouteForm
    list_display = [*_ROUTE_HEAD, "api_key_status", *_ROUTE_TAIL]
    list_filter = ["provider", "responses_api", "is_active"]
    search_fields = ["alias", "upstream_model"]
    list_select_related = ["fallback"]

    @admin.display(description="API key")
    def api_key_status(self, obj):
        if isinstance(obj.api_key, UnreadableSecret):
            return "cannot be decrypted with FIELD_ENCRYPTION_KEYS"
        return "set" if obj.api_key else "not set"

    def has_add_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    def get_fields(self, request, obj=None):
        if obj is not None and not self.has_change_permission(request, obj):
            # View-only users would get every field rendered as text: show the key's status instead.
            return [*_ROUTE_HEAD, "api_key_status", *_ROUTE_TAIL]
        key_fields = ["api_key"] if obj is None else ["api_key", "clear_api_key"]
        return [*_ROUTE_HEAD, *key_fields, *_ROUTE_TAIL]

    def get_readonly_fields(self, request, obj=None):
        return ["api_key_status"] if obj is not None and not self.has_change_permission(request, obj) else []


# --- PromptTemplate ------------------------------------------------------------------------------


@admin.register(PromptTemplate)
class PromptTemplateAdmin(RefreshesProcessCaches, admin.ModelAdmin):
    """Built-ins (a `type`, shared) and users' templates. Text is `string.Template`: `$prompt`, `$language`,
    `$topic`, and `$$` for a dollar sign. Each save that changes the text is a new version."""

    cache_changed = staticmethod(templates_store.templates_changed)

    list_display = ["name", "type", "source_or_default", "owner", "system_start", "user_template", "version"]
    list_filter = ["type", "source", ("owner", admin.EmptyFieldListFilter)]
    search_fields = ["name", "type", "source", "system"]
    list_select_related = ["owner", "current_version"]
    fields = [
        "name", "description", "owner", "type", "source", "system", "user_template", "default_model", "parameters",
        "versions",
    ]  # fmt: skip
    raw_id_fields = ["owner"]
    readonly_fields = ["versions"]

    @admin.display(description="source", ordering="source")
    def source_or_default(self, obj):
        return obj.source or "(any source)"

    @admin.display(description="system instruction")
    def system_start(self, obj):
        if not obj.system:
            return "(none: the user's prompt alone)"
        return obj.system if len(obj.system) <= 120 else obj.system[:119] + "…"

    @admin.display(description="versions (newest first; usage records keep the one they used)")
    def versions(self, obj):
        rows = PromptTemplateVersion.objects.filter(template=obj).select_related("created_by")[:20] if obj.pk else []
        return (
            format_html_join(
                "\n",
                "<p>v{} · {} · {}<br><code>{}</code><br><code>{}</code></p>",
                (
                    (v.number, v.created_at, v.created_by or "migration", v.system[:200], v.user_template[:200])
                    for v in rows
                ),
            )
            or "-"
        )

    @admin.display(description="version")
    def version(self, obj):
        return obj.current_version.number if obj.current_version else "-"

    def save_model(self, request, obj, form, change):
        edited = not change or bool(set(form.changed_data) & set(services.TEMPLATE_VERSIONED))
        if edited:
            obj.updated_at = timezone.now()
        super().save_model(request, obj, form, change)
        if edited:
            services.prompt_template_version_create(template=obj, created_by_id=request.user.pk)


# --- SpendCounter --------------------------------------------------------------------------------


@admin.register(SpendCounter)
class SpendCounterAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    """The running monthly totals budgets read, per token and per user: budget, spent, reserved (by requests in
    flight) and left. Written only by the gateway: reservations before upstream calls, spend with each usage
    record. A token or user has a row from its first request of the month; those with a budget and no request yet
    this month are listed above the rows (nothing spent, the whole budget left)."""

    list_display = ["scope", "owner", "month", "budget", "spent", "reserved", "left"]
    list_filter = ["scope", "month"]
    ordering = ["-month", "scope", "key"]
    unused_budgets_shown = 200

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, {**(extra_context or {}), "unused_budgets": self._unused_budgets()})

    def _unused_budgets(self) -> list[dict]:
        """Tokens (not revoked) and users with a budget and no counter row this month."""
        month = _month_start_utc().date()
        counted = SpendCounter.objects.filter(month=month)
        tokens = (
            APIToken.objects.filter(monthly_budget_usd__isnull=False, revoked_at__isnull=True)
            .exclude(pk__in=counted.filter(scope="token").values("key"))
            .order_by("prefix")
            .values_list("prefix", "monthly_budget_usd")[: self.unused_budgets_shown]
        )
        users = (
            UserPreferences.objects.filter(monthly_budget_usd__isnull=False)
            .exclude(user_id__in=counted.filter(scope="user").values("key"))
            .order_by("user__username")
            .values_list("user__username", "monthly_budget_usd")[: self.unused_budgets_shown]
        )
        return [
            {"scope": scope, "owner": owner, "month": month, "budget": usd(budget)}
            for scope, rows in (("token", [(f"djl_{p}", b) for p, b in tokens]), ("user", list(users)))
            for owner, budget in rows
        ]

    def get_queryset(self, request):
        user_model = get_user_model()
        return (
            super()
            .get_queryset(request)
            .annotate(
                token_prefix=Subquery(APIToken.objects.filter(pk=OuterRef("key")).values("prefix")[:1]),
                token_budget=Subquery(APIToken.objects.filter(pk=OuterRef("key")).values("monthly_budget_usd")[:1]),
                username=Subquery(user_model.objects.filter(pk=OuterRef("key")).values("username")[:1]),
                user_budget=Subquery(
                    UserPreferences.objects.filter(user_id=OuterRef("key")).values("monthly_budget_usd")[:1]
                ),
            )
        )

    @staticmethod
    def _budget_of(obj) -> Decimal | None:
        return obj.token_budget if obj.scope == "token" else obj.user_budget

    @admin.display(description="budget")
    def budget(self, obj):
        budget = self._budget_of(obj)
        return "no budget" if budget is None else usd(budget)

    @admin.display(description="spent", ordering="spent_usd")
    def spent(self, obj):
        return usd(obj.spent_usd)

    @admin.display(description="reserved", ordering="reserved_usd")
    def reserved(self, obj):
        return usd(obj.reserved_usd)

    @admin.display(description="left")
    def left(self, obj):
        budget = self._budget_of(obj)
        if budget is None:
            return "—"
        left = Decimal(budget) - Decimal(obj.spent_usd) - Decimal(obj.reserved_usd)
        return usd(max(left, Decimal("0")))

    @admin.display(description="token or user")
    def owner(self, obj):
        if obj.scope == "token":
            return f"djl_{obj.token_prefix}" if obj.token_prefix else f"token #{obj.key} (deleted)"
        return obj.username or f"user #{obj.key} (deleted)"


# --- Conversations -------------------------------------------------------------------------------


class ConversationMessageInline(ReadOnlyAdmin, admin.TabularInline):
    model = ConversationMessage
    fields = ["role", "content", "model", "input_tokens", "output_tokens", "cost", "complete", "created_at"]
    readonly_fields = fields
    extra = 0

    @admin.display(description="cost")
    def cost(self, obj):
        return usd(obj.cost_usd)


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    """Every user's conversations, read only."""

    list_display = ["id", "user", "title", "model", "created_at", "updated_at"]
    list_select_related = ["user"]
    search_fields = ["title", "user__username"]
    readonly_fields = [
        "user",
        "title",
        "model",
        "system",
        "template_version",
        "user_template",
        "variables",
        "parameters",
        "summarize_dropped",
        "summary",
        "summary_covers",
        "created_at",
        "updated_at",
    ]
    inlines = [ConversationMessageInline]


# --- Spend on the token and user pages -----------------------------------------------------------
# The accounts app knows nothing of usage (imports run one way); its token and user admins get their spend here.


def _budget_bar(*, spent: Decimal, reserved: Decimal, budget: Decimal | None):
    """This month's spend against a budget: the figures, and a bar (spent, then reserved) when there is a budget."""
    figures = f"{usd(spent)} spent, {usd(reserved)} reserved"
    if budget is None:
        return f"{figures} (no monthly budget)"
    budget = Decimal(budget)

    def share(amount: Decimal) -> str:
        return "100" if budget <= 0 else f"{min(amount / budget * 100, Decimal(100)):.1f}"

    return format_html(
        '{} of {} ({}%)<div class="budget-bar" role="img" aria-label="{}% of the budget spent, {}% reserved" '
        'style="display:flex;width:320px;max-width:100%;height:10px;margin-top:4px;'
        'background:var(--darkened-bg,#eee);border:1px solid var(--border-color,#ccc)">'
        '<span class="budget-spent" style="width:{}%;background:var(--primary,#79aec8)"></span>'
        '<span class="budget-reserved" style="width:{}%;background:var(--accent,#f5dd5d)"></span></div>',
        figures,
        usd(budget),
        share(spent + reserved),
        share(spent),
        share(reserved),
        share(spent),
        share(min(reserved, max(budget - spent, Decimal(0)))),
    )


def _usage_link(query: str, label: str):
    url = reverse("admin:llm_usagerecord_changelist")
    return format_html('<a href="{}?{}" class="usage-records-link">{}</a>', url, query, label)


class TokenSpendAdmin(APITokenAdmin):
    """A token's page with its spend this month against its budget and a link to its usage records."""

    usage_fields = ["spend_this_month", "usage_records"]

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        return fields if obj is None else [*fields, *self.usage_fields]

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), *self.usage_fields]

    @admin.display(description="spend this month (UTC)")
    def spend_this_month(self, obj):
        spent, reserved = spend_counter_amounts(scope="token", key=obj.pk, month=_month_start_utc().date())
        return _budget_bar(spent=spent, reserved=reserved, budget=obj.monthly_budget_usd)

    @admin.display(description="usage records")
    def usage_records(self, obj):
        return _usage_link(f"token__id__exact={obj.pk}", "This token's usage records")


class UserSpendAdmin(UserAdmin):
    """A user's page with their tokens, their spend this month and their budget."""

    usage_fields = ["api_tokens", "spend_this_month", "usage_records"]

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        return fieldsets if obj is None else [*fieldsets, ("Tokens and spend", {"fields": self.usage_fields})]

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), *self.usage_fields]

    @admin.display(description="API tokens")
    def api_tokens(self, obj):
        tokens = APIToken.objects.filter(user=obj).order_by("-created_at")
        if not tokens:
            return "none"
        return format_html_join(
            mark_safe("<br>"),  # noqa: S308 (a constant)
            '<a href="{}">{}…</a> {} ({})',
            (
                (reverse("admin:accounts_apitoken_change", args=[t.pk]), t.display_prefix, t.name, t.status)
                for t in tokens
            ),
        )

    @admin.display(description="spend this month (UTC)")
    def spend_this_month(self, obj):
        spent, reserved = spend_counter_amounts(scope="user", key=obj.pk, month=_month_start_utc().date())
        budget = UserPreferences.objects.filter(user=obj).values_list("monthly_budget_usd", flat=True).first()
        return _budget_bar(spent=spent, reserved=reserved, budget=budget)

    @admin.display(description="usage records")
    def usage_records(self, obj):
        return _usage_link(f"user__id__exact={obj.pk}", "This user's usage records")


for _model, _admin_class in ((APIToken, TokenSpendAdmin), (get_user_model(), UserSpendAdmin)):
    admin.site.unregister(_model)
    admin.site.register(_model, _admin_class)
