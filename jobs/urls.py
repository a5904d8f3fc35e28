from django.urls import path

from common.routers import api_router
from jobs import apis, batch, file_apis, swagger2

router = api_router()
# `jobs`, `jobs/{job_id}`, `jobs/{job_id}/results`, `jobs/{job_id}/cancel` (names job-list, job-detail, ...)
router.register("jobs", apis.JobViewSet, basename="job")

urlpatterns = [
    path("batch", batch.batch, name="batch"),
    path("files/process", file_apis.FileProcessApi.as_view(), name="files-process"),
    *router.urls,
    path("swagger2.json", swagger2.swagger2, name="swagger2"),
]
