"""The router every app registers its viewsets on: paths without a trailing slash, like the rest of the API, and no
browsable root view (the OpenAPI schema lists the resources)."""

from rest_framework.routers import SimpleRouter


def api_router() -> SimpleRouter:
    return SimpleRouter(trailing_slash=False)
