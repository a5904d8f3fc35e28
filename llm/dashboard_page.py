"""What the dashboard templates show: the figures of `llm.dashboard` as formatted rows, SVG charts and links.

Links go to the usage records admin filtered the same way, with the admin's own lookup parameters
(`created_at__gte`/`__lt`, `user__id__exact`, `token__id__exact`, `upstream_model`, `provider`, `status__exact`,
`status__in`, `priced__exact`). `records_url` is None where the viewer cannot open that list (the account page):
the figures are then shown without links.
"""

import math
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from common.charts import OTHER_COLOUR, Series, StackedBars, stacked_bars
from common.formatting import money, usd
from llm import dashboard
from llm.dashboard import DailySeries, DashboardFilter, Figures
from llm.models import UsageStatus
from llm.rollups import LATENCY_BUCKETS_MS

RecordsUrl = Callable[[dict], str] | None
ERROR_COLOUR = "#b00020"
COMPLETED_COLOUR = "#2f6f8f"


def _stamp(day: date) -> str:
    return datetime.combine(day, time.min, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def records_params(f: DashboardFilter, *, day: date | None = None, **extra) -> dict:
    """The admin changelist's query for the records behind a figure: the filter's range (or one day) and its
    user, token and model, plus `extra` lookups."""
    start, end = (day, day) if day else (f.date_from, f.date_to)
    params = {"created_at__gte": _stamp(start), "created_at__lt": _stamp(end + timedelta(days=1))}
    if f.user_id:
        params["user__id__exact"] = str(f.user_id)
    if f.token_id:
        params["token__id__exact"] = str(f.token_id)
    if f.model:
        params["upstream_model"] = f.model
    params.update(extra)
    return params


def user_param(key: int) -> dict:
    return {"user__id__exact": str(key)} if key else {"user__isnull": "True"}


def token_param(key: int) -> dict:
    return {"token__id__exact": str(key)} if key else {"token__isnull": "True"}


def model_param(model: str, provider: str) -> dict:
    """A model's records: by the upstream model, or (no provider: stopped before routing) by the requested one, as
    the rollups count them. None drops the filter's own `upstream_model`."""
    if provider:
        return {"upstream_model": model, "provider": provider}
    return {"upstream_model": None, "requested_model": model, "upstream_model__exact": ""}


ERRORS_PARAM = {"status__in": ",".join(dashboard.ERROR_STATUSES)}
CACHED_PARAM = {"status__exact": UsageStatus.CACHED}
UNPRICED_PARAM = {"priced__exact": "0"}


def exact_usd(value) -> str:
    return f"${money(Decimal(value))}"


def latency_text(ms: float | None) -> str:
    """A percentile read from a bucket: its upper bound ("≤ 500 ms"), or "> 120 s" above the last bound."""
    if ms is None:
        return "—"
    if math.isinf(ms):
        return f"> {LATENCY_BUCKETS_MS[-1] // 1000:,} s"
    return f"≤ {int(ms):,} ms" if ms < 1000 else f"≤ {ms / 1000:g} s"


def _row(figures: Figures, link: str | None) -> dict:
    return {
        "key": figures.key,
        "label": figures.label,
        "provider": figures.provider,
        "owner": figures.owner,
        "narrow": figures.narrow,
        "requests": figures.requests,
        "errors": figures.errors,
        "cache_hits": figures.cache_hits,
        "unpriced": figures.unpriced,
        "tokens_in": figures.input_tokens,
        "tokens_out": figures.output_tokens,
        "tokens": f"{figures.input_tokens:,} / {figures.output_tokens:,}",
        "cost": usd(figures.cost_usd),
        "cost_exact": exact_usd(figures.cost_usd),
        "saved": usd(figures.saved_usd),
        "saved_exact": exact_usd(figures.saved_usd),
        "link": link,
    }


def _charts(series: DailySeries, split: str, link: Callable[..., str | None]) -> dict:
    days = [day.isoformat() for day in series.days]
    split_param = "provider" if split == "provider" else "upstream_model"
    cost_series = [
        Series(
            name=name or "(none)",
            values=values,
            links=[link(day=day, **{split_param: name}) for day in series.days],
        )
        for name, values in series.cost.items()
    ]
    if series.other:
        cost_series.append(Series(name="other", values=series.other, colour=OTHER_COLOUR))
    completed = [n - e for n, e in zip(series.requests, series.errors, strict=True)]
    request_series = [
        Series(
            name="completed (ok, cached)",
            values=completed,
            links=[link(day=day, status__in="ok,cached") for day in series.days],
            colour=COMPLETED_COLOUR,
        ),
        Series(
            name="errors",
            values=series.errors,
            links=[link(day=day, **ERRORS_PARAM) for day in series.days],
            colour=ERROR_COLOUR,
        ),
    ]

    def short_day(day: str) -> str:
        return day[5:]  # MM-DD

    return {
        "cost": stacked_bars(
            StackedBars(
                title=f"Cost per day by {split} (USD)",
                categories=days,
                series=cost_series,
                axis_format=usd,
                exact_format=exact_usd,
                category_label=short_day,
                extra_class="chart-cost",
            )
        ),
        "requests": stacked_bars(
            StackedBars(
                title="Requests and errors per day",
                categories=days,
                series=request_series,
                axis_format=lambda v: f"{v:,}",
                exact_format=lambda v: f"{int(v):,} requests",
                category_label=short_day,
                extra_class="chart-requests",
                integer=True,
            )
        ),
        "requests_total": sum(series.requests),
        "errors_total": sum(series.errors),
    }


def dashboard_context(f: DashboardFilter, *, split: str, today: date, records_url: RecordsUrl) -> dict:
    """Everything the dashboard template shows, for one filter."""

    def link(*, day: date | None = None, **extra) -> str | None:
        if not records_url:
            return None
        return records_url({k: v for k, v in records_params(f, day=day, **extra).items() if v is not None})

    breakdown = dashboard.dashboard_breakdown(f, split=split)
    totals = breakdown.totals
    latency, latency_source = dashboard.latency_by_provider(f)
    budgets = dashboard.budget_use(today=today, user_id=f.user_id, token_id=f.token_id)
    month = today.replace(day=1)
    return {
        "filter": f,
        "split": split,
        "totals": {
            **_row(totals, link()),
            "errors_link": link(**ERRORS_PARAM),
            "cache_link": link(**CACHED_PARAM),
            "unpriced_link": link(**UNPRICED_PARAM),
            "hit_rate": f"{totals.cache_hits * 100 / totals.requests:.1f}%" if totals.requests else "—",
            "error_rate": f"{totals.errors * 100 / totals.requests:.1f}%" if totals.requests else "—",
        },
        "charts": _charts(breakdown.series, split, link),
        "top_users": [_row(r, link(**user_param(r.key))) for r in breakdown.top_users],
        "top_tokens": [_row(r, link(**token_param(r.key))) for r in breakdown.top_tokens],
        "top_models": [_row(r, link(**model_param(r.key, r.provider))) for r in breakdown.top_models],
        "cache_models": [
            _row(r, link(**model_param(r.key, r.provider), **CACHED_PARAM)) for r in breakdown.cache_models
        ],
        "unpriced_models": [
            _row(r, link(**model_param(r.key, r.provider), **UNPRICED_PARAM)) for r in breakdown.unpriced_models
        ],
        "latency": [
            {
                "provider": row.provider or "(none)",
                "requests": row.requests,
                "p50": latency_text(row.p50_ms),
                "p95": latency_text(row.p95_ms),
                "streamed": row.streamed,
                "ttft_p50": latency_text(row.ttft_p50_ms),
                "ttft_p95": latency_text(row.ttft_p95_ms),
                "link": link(provider=row.provider, status__exact=UsageStatus.OK) if row.provider else None,
            }
            for row in latency
        ],
        "latency_source": latency_source,
        "latency_sample": f"{dashboard.LATENCY_SAMPLE:,}",
        "budgets": [
            {
                "scope": row.scope,
                "label": row.label,
                "owner": row.owner,
                "budget": usd(row.budget_usd) if row.budget_usd is not None else "no budget",
                "spent": usd(row.spent_usd),
                "spent_exact": exact_usd(row.spent_usd),
                "reserved": usd(row.reserved_usd),
                "left": usd(row.left_usd) if row.left_usd is not None else "—",
                "percent": row.used_percent,
                "bar": min(row.used_percent or 0, 100),
                "link": records_url(
                    {
                        "created_at__gte": _stamp(month),
                        **(token_param(row.key) if row.scope == "token" else user_param(row.key)),
                    }
                )
                if records_url
                else None,
            }
            for row in budgets
        ],
        "month": month,
    }
