from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import TemplateView
from drf_spectacular.views import SpectacularAPIView

from common import exceptions
from common.apis import HealthApi, ReadinessApi
from common.docs_pages import RedocPage, SwaggerPage
from llm import urls as llm_urls
from monitoring.views import metrics

api_v1 = [
    path("health", HealthApi.as_view(), name="health"),
    path("health/ready", ReadinessApi.as_view(), name="health-ready"),
    path("", include("accounts.urls")),
    path("calendar/", include("calendars.urls")),
    path("", include(llm_urls.api_urlpatterns)),
    path("", include("jobs.urls")),
]

urlpatterns = [
    path("", TemplateView.as_view(template_name="landing.html"), name="landing"),
    path("admin/", admin.site.urls),
    path("metrics", metrics, name="metrics"),  # Prometheus (docs/metrics.md)
    path("account/", include("accounts.page_urls")),
    path("excel/", include("excel.urls")),  # the Excel add-in's files and manifest (not API endpoints)
    path("api/v1/", include(api_v1)),
    path("v1/", include(llm_urls.openai_urlpatterns)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SwaggerPage.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", RedocPage.as_view(url_name="schema"), name="redoc"),
    # Anything else under the API answers JSON in the documented shape, never an HTML page or a redirect.
    re_path(r"^(?:api|v1)/", exceptions.api_not_found),
]

handler400 = "common.exceptions.handler400"
handler403 = "common.exceptions.handler403"
handler404 = "common.exceptions.handler404"
handler500 = "common.exceptions.handler500"
