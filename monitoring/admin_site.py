"""djllm's admin site: Django's, plus the spend dashboard at `/admin/dashboard/` (staff only, like every admin
page). Installed as the default site by `monitoring.apps.AdminConfig`, so `admin.site` and `@admin.register` are
unchanged."""

from django.contrib import admin
from django.urls import path

from monitoring.dashboard import dashboard_view


class AdminSite(admin.AdminSite):
    def get_urls(self):
        return [path("dashboard/", self.admin_view(dashboard_view), name="dashboard"), *super().get_urls()]
