"""`POST /api/v1/files/process`: a document uploaded as multipart, answered at once (200) when it is a few chunks,
else as a background job (202, answered like /api/v1/jobs). DRF: not the fast path."""

from asgiref.sync import async_to_sync
from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import HasTokenScope
from common.errors import RequestTooLarge
from common.formatting import money
from common.request_id import current_request_id
from jobs import docs
from jobs.apis import job_response
from jobs.documents import file_format
from jobs.file_process import FileJob, FileSummary, file_options_check, file_process
from jobs.inputs import BatchOptions, Parameters
from jobs.schema import FileCallOut, FileOut, FileProcessOut
from jobs.serializers import FileProcessSerializer
from llm.webhook_calls import usage_model

_FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the other fields, on top of the file


def _too_large(size: int) -> RequestTooLarge:
    limit = settings.FILE_UPLOAD_MAX_BYTES
    return RequestTooLarge(
        f"The file is {size} bytes; the limit is FILE_UPLOAD_MAX_BYTES={limit}.",
        code="file_too_large",
        details={"limit": limit, "setting": "FILE_UPLOAD_MAX_BYTES"},
        param="file",
    )


class FileProcessApi(APIView):
    permission_classes = [HasTokenScope]
    required_scope = "llm"
    parser_classes = [MultiPartParser]

    @extend_schema(**docs.FILE_PROCESS)
    def post(self, request):
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
        if declared > settings.FILE_UPLOAD_MAX_BYTES + _FORM_OVERHEAD:  # before the body is read
            raise _too_large(declared)
        form = FileProcessSerializer(data=request.data, context={"form": True})
        form.is_valid(raise_exception=True)
        data = form.validated_data
        upload = data["file"]
        name = upload.name or "upload"
        file_format(name)  # an unsupported type is refused before the file is read
        if upload.size > settings.FILE_UPLOAD_MAX_BYTES:
            raise _too_large(upload.size)
        template = data.get("template")
        options = BatchOptions.model_construct(
            type=data.get("type") or (None if template is not None else "summary"),
            template=template,
            variables=data.get("variables"),
            source="document",
            language=data.get("language") or None,
            provider=data.get("provider") or None,
            model=data.get("model") or None,
            system=None,
            parameters=Parameters.model_construct(),
            cache=None,
        )
        request_id = current_request_id()
        async_to_sync(file_options_check)(request.auth, options, request_id=request_id)
        outcome = file_process(
            cached_token=request.auth, options=options, name=name, data=upload.read(), request_id=request_id
        )
        if isinstance(outcome, FileJob):
            return job_response(request, outcome.job, status=202)
        return Response(_summary_body(outcome, name=name, size=upload.size, kind=options.kind).model_dump(mode="json"))


def _summary_body(summary: FileSummary, *, name: str, size: int, kind: str) -> FileProcessOut:
    document = summary.document
    return FileProcessOut(
        batch_id=summary.batch_id,
        request_id=current_request_id(),
        type=kind,
        result=summary.result,
        file=FileOut(
            name=name,
            format=document.format,
            bytes=size,
            characters=document.characters,
            pages=document.pages,
            chunks=summary.chunks,
        ),
        calls=[
            FileCallOut(
                request_id=call.request_id,
                step=call.step,
                model=call.result.completion.model or call.result.route.model,
                cached=call.result.cached,
                usage=usage_model(call.result.usage),
                cost_usd=money(call.result.cost_usd),
            )
            for call in summary.calls
        ],
        usage=usage_model(summary.usage),
        cost_usd=money(summary.cost_usd),
    )
