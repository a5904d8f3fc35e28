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
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder
from rest_framework.views import APIView

from accounts.permissions import HasTokenScope
from common.errors import Conflict, InvalidRequest
from common.parsers import JSONParser
from common.request_id import current_request_id
from common.request_input import validate
from jobs import docs, idempotency, results, selectors, services
from jobs.batch import check_body_size, check_item_count
from jobs.execution import check_options
from jobs.inputs import BatchOptions, JobIn
from jobs.models import JobStatus
from jobs.spreadsheets import XLSX_CONTENT_TYPE
from llm.limits import rate_limit_hit

_FORM_OPTIONS = ("type", "template", "source", "language", "provider", "model", "system", "cache")
_FORM_PARAMETERS = ("temperature", "max_tokens", "top_p")


class _JobApi(APIView):
    permission_classes = [HasTokenScope]
    required_scope = "llm"

    def _job(self, request, job_id):
        return selectors.job_get_for_user(job_id=job_id, user_id=request.auth.token.user_id)

    def _job_response(self, request, job, status: int | None = None) -> Response:
        """202 with Location and Retry-After while the job is queued or running (the async request-reply pattern
        that Power Automate follows), 200 once it is finished."""
        body = selectors.job_progress(job=job)
        body["links"] = _links(request, job.pk)
        running = job.status in (JobStatus.QUEUED, JobStatus.RUNNING)
        response = Response(body, status=status or (202 if running else 200))
        if running:
            response["Location"] = body["links"]["self"]
            response["Retry-After"] = str(settings.JOB_RETRY_AFTER_SECONDS)
        return response


def _links(request, job_id) -> dict[str, str]:
    url = request.build_absolute_uri(reverse("job-detail", kwargs={"job_id": job_id}))
    return {"self": url, "results": f"{url}/results", "cancel": f"{url}/cancel"}


class _JobJSONParser(JSONParser):
    limit_setting = "JOB_UPLOAD_MAX_BYTES"  # a job's items may be many long texts


class JobCreateApi(_JobApi):
    parser_classes = [_JobJSONParser, MultiPartParser]

    class UploadInputSerializer(serializers.Serializer):
        file = serializers.FileField()
        column = serializers.CharField(max_length=100)
        sheet = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
        header = serializers.BooleanField(required=False, default=True)

    @extend_schema(**docs.JOB_CREATE)
    def post(self, request):
        check_body_size(request)  # DRF reads JSON bodies itself, past Django's DATA_UPLOAD_MAX_MEMORY_SIZE
        multipart = (request.content_type or "").startswith("multipart/")
        if multipart:
            upload_input = self.UploadInputSerializer(data=request.data)
            upload_input.is_valid(raise_exception=True)
            options, upload, fingerprint_body = _upload_input(request, upload_input.validated_data)
        else:
            check_item_count(request.data, limit=settings.JOB_MAX_ITEMS, setting="JOB_MAX_ITEMS")
            body = validate(JobIn, request.data)
            options, upload, fingerprint_body = body, None, request.data
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
                items = [
                    services.NewItem(ref=i if item.id is None else item.id, prompt=item.text(), model=item.model or "")
                    for i, item in enumerate(body.items)
                ]
                job = services.job_create(
                    cached_token=request.auth, options=options, items=items, request_id=current_request_id()
                )
            response = self._job_response(request, job, status=202)
            guard.store(status_code=202, body=_jsonable(response.data))
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


def _upload_input(request, data) -> tuple[BatchOptions, services.Upload, dict[str, Any]]:
    fields = {name: request.data.get(name) for name in _FORM_OPTIONS if request.data.get(name) not in (None, "")}
    parameters = {n: request.data.get(n) for n in _FORM_PARAMETERS if request.data.get(n) not in (None, "")}
    options = validate(BatchOptions, {**fields, "parameters": parameters}, strict=False)  # form fields are text
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


class JobDetailApi(_JobApi):
    @extend_schema(**docs.JOB_DETAIL)
    def get(self, request, job_id):
        return self._job_response(request, self._job(request, job_id))


class JobCancelApi(_JobApi):
    @extend_schema(**docs.JOB_CANCEL)
    def post(self, request, job_id):
        job = self._job(request, job_id)
        if job.is_finished:
            raise Conflict(f"The job is already {job.status}.", code="job_finished")
        return self._job_response(request, services.job_cancel(job=job), status=200)


class _IgnoreFormatParameter(DefaultContentNegotiation):
    """`?format=csv|xlsx` picks the file type here, not a DRF renderer; errors are still rendered as JSON."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class JobResultsApi(_JobApi):
    content_negotiation_class = _IgnoreFormatParameter

    @extend_schema(**docs.JOB_RESULTS)
    def get(self, request, job_id):
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
