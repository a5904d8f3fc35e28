from django.contrib.admin.apps import AdminConfig as DjangoAdminConfig


class AdminConfig(DjangoAdminConfig):
    """`django.contrib.admin` with djllm's site (the dashboard's URL added), listed in INSTALLED_APPS in its place.
    A module of its own: apps.py may hold only the app's own config."""

    default_site = "monitoring.admin_site.AdminSite"
