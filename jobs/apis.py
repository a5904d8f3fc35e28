"""`/api/v1/jobs`: background jobs for large inputs (DRF: not the hot path). Create from a batch-like JSON body or
an uploaded .xlsx/.csv plus a column name; poll the job (202 while it runs, 200 once finished); fetch results as
JSON, CSV or XLSX; cancel."""

import hashlib
import json
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.http import HttpResponse
from django.urls import reverse
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

from accounts.permissions import HasTokenScope
from accounts.selectors import token_timezone
from common.errors import Conflict, InvalidRequest
from common.filters import MomentFilter, expose_from
from common.pagination import NewestFirstCursorPagination
from common.parsers import JSONParser
from common.request_id import current_request_id
from jobs import docs, idempotency, results, selectors, services
from jobs.batch import check_body_size, check_item_count
from jobs.execution import check_options
from jobs.inputs import BatchOptions, prompt_text
from jobs.models import Job, JobStatus
from jobs.serializers import JobInputSerializer, JobOptionsSerializer, JobUploadSerializer, batch_options
from jobs.spreadsheets import XLSX_CONTENT_TYPE
from llm.limits import rate_limit_hit

_FORM_OPTIONS = ("type", "template", "source", "language", "provider", "model", "system", "cache")
_FORM_PARAMETERS = ("temperature", "max_tokens", "top_p")
# A job id as Django's `uuid` path converter reads it: any other text is not a path here (a 404).
_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def _links(request, job_id) -> dict[str, str]:
    url = request.build_absolute_uri(reverse("job-detail", kwargs={"job_id": job_id}))
    return {"self": url, "results": f"{url}/results", "cancel": f"{url}/cancel"}


def _job_body(request, job) -> dict[str, Any]:
    return {**selectors.job_progress(job=job), "links": _links(request, job.pk)}


def job_response(request, job, status: int | None = None) -> Response:
    """202 with Location and Retry-After while the job is queued or running (the async request-reply pattern that
    Power Automate follows), 200 once it is finished."""
    body = _job_body(request, job)
    running = job.status in (JobStatus.QUEUED, JobStatus.RUNNING)
    response = Response(body, status=status or (202 if running else 200))
    if running:
        response["Location"] = body["links"]["self"]
        response["Retry-After"] = str(settings.JOB_RETRY_AFTER_SECONDS)
    return response


class _JobJSONParser(JSONParser):
    limit_setting = "JOB_UPLOAD_MAX_BYTES"  # a job's items may be many long texts


class _IgnoreFormatParameter(DefaultContentNegotiation):
    """`?format=csv|xlsx` picks the file type of the results, not a DRF renderer; errors are still JSON."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


@expose_from
class JobFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=JobStatus.choices)
    date_from = MomentFilter(field_name="created_at", end=False)
    to = MomentFilter(field_name="created_at", end=True)

    class Meta:
        model = Job
        fields: list[str] = []

    def request_timezone(self):
        return token_timezone(self.request.auth)


class _NewestJobFirst(NewestFirstCursorPagination):
    # Job ids are random UUIDs: newest first is by creation time (the id breaks ties in a stable order).
    ordering = ("-created_at", "-id")


@extend_schema_view(
    list=extend_schema(**docs.JOB_LIST),
    create=extend_schema(**docs.JOB_CREATE),
    retrieve=extend_schema(**docs.JOB_DETAIL),
)
class JobViewSet(viewsets.GenericViewSet):
    """The caller's background jobs: list, create (JSON rows or an uploaded file), progress, results, cancel."""

    permission_classes = [HasTokenScope]
    required_scope = "llm"
    parser_classes = [_JobJSONParser, MultiPartParser]
    pagination_class = _NewestJobFirst
    filterset_class = JobFilter
    serializer_class = JobInputSerializer  # what OPTIONS describes (the create body)
    lookup_url_kwarg = "job_id"
    lookup_value_regex = _UUID
    queryset = Job.objects.none()  # for the schema; requests read `get_queryset`

    def get_queryset(self):
        return selectors.jobs_for_user(user_id=self.request.auth.token.user_id)

    def _job(self, request, job_id) -> Job:
        return selectors.job_get_for_user(job_id=job_id, user_id=request.auth.token.user_id)

    def _job_response(self, request, job, status: int | None = None) -> Response:
        return job_response(request, job, status)

    def list(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response([_job_body(request, job) for job in page])

    def create(self, request):
        check_body_size(request)  # DRF reads JSON bodies itself, past Django's DATA_UPLOAD_MAX_MEMORY_SIZE
        multipart = (request.content_type or "").startswith("multipart/")
        if multipart:
            options, upload, fingerprint_body = _upload_input(request)
            items = None
        else:
            check_item_count(request.data, limit=settings.JOB_MAX_ITEMS, setting="JOB_MAX_ITEMS")
            body = JobInputSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            options, upload, fingerprint_body = batch_options(body.validated_data), None, request.data
            items = [
                services.NewItem(
                    ref=i if item.get("id") is None else item["id"],
                    prompt=prompt_text(item["prompt"]),
                    model=item.get("model") or "",
                    variables=item.get("variables"),
                )
                for i, item in enumerate(body.validated_data["items"])
            ]
        async_to_sync(check_options)(request.auth, options, request_id=current_request_id(), endpoint="job")
        guard = idempotency.idempotency_guard(
            token_id=request.auth.token.pk,
            headers=request.headers,
            method="POST",
            path=request.path,
            body=fingerprint_body,
        )
        with guard:
            if guard.replay is not None:
                return _replayed(guard.replay)
            async_to_sync(rate_limit_hit)(request.auth)
            if upload is not None:
                job = services.job_create_from_upload(
                    cached_token=request.auth, options=options, upload=upload, request_id=current_request_id()
                )
            else:
                job = services.job_create(
                    cached_token=request.auth, options=options, items=items, request_id=current_request_id()
                )
            response = self._job_response(request, job, status=202)
            guard.store(status_code=202, body=_jsonable(response.data))
        return response

    def retrieve(self, request, job_id):
        return self._job_response(request, self._job(request, job_id))

    @extend_schema(**docs.JOB_CANCEL)
    @action(detail=True, methods=["post"])
    def cancel(self, request, job_id):
        job = self._job(request, job_id)
        if job.is_finished:
            raise Conflict(f"The job is already {job.status}.", code="job_finished")
        return self._job_response(request, services.job_cancel(job=job), status=200)

    @extend_schema(**docs.JOB_RESULTS)
    @action(detail=True, methods=["get"], content_negotiation_class=_IgnoreFormatParameter)
    def results(self, request, job_id):
        fmt = request.query_params.get("format", "json")
        if fmt not in results.FORMATS:
            raise InvalidRequest(f"`format` must be one of {', '.join(results.FORMATS)}.", param="format")
        job = self._job(request, job_id)
        if fmt == "json":
            return Response(results.results_json(job))
        filename = f"djllm-job-{job.pk}.{fmt}"
        if fmt == "csv":
            response = HttpResponse(results.results_csv(job), content_type="text/csv; charset=utf-8")
        else:
            response = HttpResponse(results.results_xlsx(job), content_type=XLSX_CONTENT_TYPE)
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(data, cls=JSONEncoder))


def _replayed(replay: idempotency.Replay) -> Response:
    response = Response(replay.body, status=replay.status_code)
    response["Idempotent-Replayed"] = "true"
    links = replay.body.get("links") or {}
    if replay.status_code == 202 and links.get("self"):
        response["Location"] = links["self"]
        response["Retry-After"] = str(settings.JOB_RETRY_AFTER_SECONDS)
    return response


def _upload_input(request) -> tuple[BatchOptions, services.Upload, dict[str, Any]]:
    form = JobUploadSerializer(data=request.data)
    form.is_valid(raise_exception=True)
    data = form.validated_data
    fields = {name: request.data.get(name) for name in _FORM_OPTIONS if request.data.get(name) not in (None, "")}
    parameters = {n: request.data.get(n) for n in _FORM_PARAMETERS if request.data.get(n) not in (None, "")}
    option_input = JobOptionsSerializer(data={**fields, "parameters": parameters}, context={"form": True})
    option_input.is_valid(raise_exception=True)  # form fields are text: read as the types they stand for
    options = batch_options(option_input.validated_data)
    file = data["file"]
    name = file.name or "upload"
    kind = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if kind not in ("xlsx", "csv"):
        raise InvalidRequest("Upload an .xlsx workbook or a .csv file.", code="unsupported_file_type", param="file")
    if file.size > settings.JOB_UPLOAD_MAX_BYTES:
        raise InvalidRequest(
            f"The file is {file.size} bytes; the limit is JOB_UPLOAD_MAX_BYTES={settings.JOB_UPLOAD_MAX_BYTES}.",
            code="file_too_large",
            param="file",
        )
    content = file.read()
    upload = services.Upload(
        name=name, kind=kind, data=content, column=data["column"], sheet=data["sheet"], has_header=data["header"]
    )
    fingerprint_body = {
        **fields,
        "parameters": parameters,
        "column": data["column"],
        "sheet": data["sheet"],
        "header": data["header"],
        "file": {"name": name, "sha256": hashlib.sha256(content).hexdigest()},
    }
    return options, upload, fingerprint_body
