from datetime import UTC

from django import template
from django.utils import timezone
from django.utils.html import format_html

from common.formatting import usd
from llm.dashboard_filters import DashboardFilterForm
from llm.dashboard_page import dashboard_context
from llm.selectors import usage_summary_for_user

register = template.Library()


@register.simple_tag
def spend_this_month_for(user) -> dict | None:
    """The signed-in user's own spend this month (UTC), by day and by model: two aggregate queries."""
    if not getattr(user, "is_authenticated", False):
        return None
    today = timezone.now().astimezone(UTC).date()
    start = today.replace(day=1)
    summaries = {
        group_by: usage_summary_for_user(user=user, date_from=start, date_to=today, group_by=group_by)
        for group_by in ("day", "model")
    }
    return {
        "since": start,
        "total": usd(summaries["day"].totals.cost_usd),
        "requests": summaries["day"].totals.requests,
        "by_day": [(group.key, group.requests, usd(group.cost_usd)) for group in summaries["day"].groups],
        "by_model": [(group.key, group.requests, usd(group.cost_usd)) for group in summaries["model"].groups],
    }


@register.simple_tag
def linked(value, link) -> str:
    """A figure, as a link to its records when there is one (the admin; the account page has none)."""
    shown = f"{value:,}" if isinstance(value, int) else value
    return format_html('<a href="{}">{}</a>', link, shown) if link else format_html("{}", shown)


@register.simple_tag
def account_dashboard(request) -> dict:
    """The signed-in user's own spend dashboard, filtered by the page's GET parameters (their own tokens only)."""
    today = timezone.now().astimezone(UTC).date()
    form = DashboardFilterForm(request.GET, today=today, owner=request.user)
    if not form.is_valid():
        return {"form": form, "figures": None}
    figures = dashboard_context(
        form.dashboard_filter(), split=form.cleaned_data["split"], today=today, records_url=None
    )
    return {"form": form, "figures": figures}
