"""CSV for DRF views: a renderer that `?format=csv` (or `Accept: text/csv`) selects, and a streaming response for
lists too long to hold in memory.

Every cell goes through `common.spreadsheets.csv_cell`, so a value such as `=cmd()` is shown by a spreadsheet as
text, never run. The first line starts with a byte order mark: Excel then reads the file as UTF-8."""

import csv
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, StreamingHttpResponse
from rest_framework.renderers import BaseRenderer, JSONRenderer

from common.spreadsheets import csv_cell

CSV_CONTENT_TYPE = "text/csv; charset=utf-8"
_BOM = "\ufeff"
_LINES_PER_HOP = 500  # lines read per hop to the sync thread when streaming under ASGI


class _Line:
    """A file-like target for csv.writer that hands back the line just written."""

    def write(self, value: str) -> str:
        return value


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"  # as the JSON shows it, not Python's True/False
    return csv_cell(value)


def csv_lines(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> Iterator[str]:
    """The header line, then one line per row (values looked up by column name; missing ones blank)."""
    writer = csv.writer(_Line())
    yield _BOM + writer.writerow(columns)
    for row in rows:
        yield writer.writerow([_cell(row.get(column)) for column in columns])


async def _lines_async(lines: Iterator[str]) -> AsyncIterator[str]:
    """A sync line iterator (one that reads the database) consumed a batch at a time on the sync thread, so that an
    ASGI server streams it instead of reading it whole into memory first."""
    next_batch = sync_to_async(lambda: list(islice(lines, _LINES_PER_HOP)))
    while batch := await next_batch():
        for line in batch:
            yield line


def csv_streaming_response(
    request: HttpRequest, rows: Iterable[Mapping[str, Any]], *, columns: Sequence[str], filename: str
) -> StreamingHttpResponse:
    """A CSV download of `rows`, written while it is sent (`rows` may be a database iterator)."""
    lines = csv_lines(rows, columns)
    django_request = getattr(request, "_request", request)  # a DRF Request wraps Django's
    content = _lines_async(lines) if isinstance(django_request, ASGIRequest) else lines
    response = StreamingHttpResponse(content, content_type=CSV_CONTENT_TYPE)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class CSVRenderer(BaseRenderer):
    """`text/csv`: a list of objects as a table (one object: one row), the columns those of the first object.

    A view that lists more rows than fit in a page streams them with `csv_streaming_response` instead; this
    renderer is what DRF's content negotiation selects for `?format=csv`, and what the OpenAPI schema shows."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        rows = data if isinstance(data, list) else [data]
        columns = list(rows[0]) if rows else []
        return "".join(csv_lines(rows, columns)).encode(self.charset)


class CSVErrorsAsJSONMixin:
    """For a view that offers CSV: errors are still answered in the JSON error shape (a 400 for a bad filter in a
    CSV download is read by a program, and the error body is JSON on every path)."""

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if response.status_code >= 400 and isinstance(getattr(response, "accepted_renderer", None), CSVRenderer):
            response.accepted_renderer = JSONRenderer()
            response.accepted_media_type = JSONRenderer.media_type
        return response
