from django.urls import path

from accounts.apis import MeApi
from accounts.token_apis import TokenViewSet
from common.routers import api_router

router = api_router()
router.register("tokens", TokenViewSet, basename="token")

urlpatterns = [
    path("me", MeApi.as_view(), name="me"),
    *router.urls,
]
