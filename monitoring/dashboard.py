"""`/admin/dashboard/`: the spend dashboard for staff (served by the admin site, see monitoring/admin_site.py).

The figures come from the daily rollups (llm/dashboard.py); every figure links to the usage records list filtered
the same way."""

from datetime import UTC
from urllib.parse import urlencode

from django.contrib import admin
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from llm.dashboard_filters import DashboardFilterForm
from llm.dashboard_page import dashboard_context


def dashboard_view(request):
    today = timezone.now().astimezone(UTC).date()
    form = DashboardFilterForm(request.GET, today=today)
    context = {
        **admin.site.each_context(request),
        "title": "Spend dashboard",
        "form": form,
        "records_url": reverse("admin:llm_usagerecord_changelist"),
    }
    if not form.is_valid():
        return TemplateResponse(request, "admin/dashboard.html", context, status=400)
    changelist = context["records_url"]
    context["dashboard"] = dashboard_context(
        form.dashboard_filter(),
        split=form.cleaned_data["split"],
        today=today,
        records_url=lambda params: f"{changelist}?{urlencode(params)}",
    )
    return TemplateResponse(request, "admin/dashboard.html", context)
