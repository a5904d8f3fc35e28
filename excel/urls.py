from django.urls import path, re_path

from excel import views

app_name = "excel"

urlpatterns = [
    path("", views.index, name="index"),
    path("manifest.xml", views.manifest, name="manifest"),
    path("settings.json", views.addin_settings, name="settings"),
    re_path(r"^(?P<name>[a-z0-9-]+\.(?:js|json|html|css)|assets/[a-z0-9-]+\.png)$", views.addin_file, name="file"),
]
