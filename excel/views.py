"""The Excel custom-functions add-in, served by djllm itself under /excel/.

Plain Django views (not DRF), so they stay out of the OpenAPI schema: these are files for Excel, not JSON API
endpoints. The add-in's files live in `clients/excel/addin/`; the manifest is generated here with the server's
own public URL (`PUBLIC_URL`), which is what Excel loads every other file from.

Excel shows the task pane in an iframe (Excel on the web) or a WebView (desktop), so these responses may be framed,
and they carry `Access-Control-Allow-Origin: *` like Microsoft's own add-in dev server: they are public files.
"""

import uuid
from pathlib import Path

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.http import require_GET

ADDIN_DIR = Path(settings.BASE_DIR) / "clients" / "excel" / "addin"
CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
}
MANIFEST_VERSION = "1.0.0.0"


def addin_base_url() -> str:
    return f"{settings.PUBLIC_URL}/excel"


def addin_id() -> str:
    """Stable for one server, different between servers, so two djllm installs can be sideloaded side by side."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, addin_base_url() + "/"))


def _addin_response(response: HttpResponse) -> HttpResponse:
    response["Access-Control-Allow-Origin"] = "*"
    response["Cache-Control"] = "no-cache"  # Excel caches add-in files hard; make it revalidate after an upgrade
    response["X-Content-Type-Options"] = "nosniff"
    return response


@require_GET
@xframe_options_exempt
def manifest(request: HttpRequest) -> HttpResponse:
    base = addin_base_url()
    context = {"base": base, "id": addin_id(), "version": MANIFEST_VERSION, "origin": settings.PUBLIC_URL}
    response = HttpResponse(render_to_string("excel/manifest.xml", context), content_type="application/xml")
    if request.GET.get("download"):
        response["Content-Disposition"] = 'attachment; filename="djllm-excel-manifest.xml"'
    return _addin_response(response)


@require_GET
@xframe_options_exempt
def addin_file(request: HttpRequest, name: str) -> HttpResponse:
    path = (ADDIN_DIR / name).resolve()
    if ADDIN_DIR.resolve() not in path.parents or not path.is_file():  # the URL pattern already rules out "..";
        raise Http404("No such add-in file.")  # this guards against a symlink or a future looser pattern
    return _addin_response(HttpResponse(path.read_bytes(), content_type=CONTENT_TYPES[path.suffix]))


@require_GET
@xframe_options_exempt
def addin_settings(request: HttpRequest) -> HttpResponse:
    """What the add-in's functions need to know of this server before they send anything: the batch limit they
    chunk by, and the range size above which EACH, CLASSIFY and EXTRACT run as a background job. Public, like the
    add-in's files: nothing here is secret."""
    limits = {"batch_max_items": settings.BATCH_MAX_ITEMS, "job_threshold": settings.EXCEL_JOB_THRESHOLD}
    return _addin_response(JsonResponse(limits))


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    context = {
        "base": addin_base_url(),
        "public_url": settings.PUBLIC_URL,
        "https": settings.PUBLIC_URL.startswith("https://"),
    }
    return render(request, "excel/index.html", context)
