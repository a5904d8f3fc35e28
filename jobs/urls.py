from django.urls import path

from common.routers import api_router
from jobs import apis, batch, swagger2

router = api_router()
# `jobs`, `jobs/{job_id}`, `jobs/{job_id}/results`, `jobs/{job_id}/cancel` (names job-list, job-detail, ...)
router.register("jobs", apis.JobViewSet, basename="job")

urlpatterns = [
    path("batch", batch.batch, name="batch"),
    *router.urls,
    path("swagger2.json", swagger2.swagger2, name="swagger2"),
]
