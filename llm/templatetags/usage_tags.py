from datetime import UTC

from django import template
from django.utils import timezone

from common.formatting import usd
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
