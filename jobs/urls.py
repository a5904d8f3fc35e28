from django.urls import path

from jobs import apis, batch, swagger2

urlpatterns = [
    path("batch", batch.batch, name="batch"),
    path("jobs", apis.JobCreateApi.as_view(), name="jobs"),
    path("jobs/<uuid:job_id>", apis.JobDetailApi.as_view(), name="job-detail"),
    path("jobs/<uuid:job_id>/results", apis.JobResultsApi.as_view(), name="job-results"),
    path("jobs/<uuid:job_id>/cancel", apis.JobCancelApi.as_view(), name="job-cancel"),
    path("swagger2.json", swagger2.swagger2, name="swagger2"),
]
