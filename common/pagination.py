"""How every resource list pages: a cursor over a unique ordering, newest first by id.

A cursor (not a page number) stays correct while rows are added, and never counts the table: usage records run to
millions of rows. `?limit=` picks the page size up to `max_page_size`; any other value is a 400 (DRF would quietly
use the default page size instead)."""

from rest_framework.pagination import CursorPagination

from common.validation import invalid_request


class NewestFirstCursorPagination(CursorPagination):
    ordering = "-id"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= self.max_page_size):
            message = f"Must be an integer from 1 to {self.max_page_size}."
            raise invalid_request({self.page_size_query_param: [message]})
        return int(raw)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": self.max_page_size}
                parameter["description"] = f"Page size (default {self.page_size})."
        return parameters

    def get_paginated_response_schema(self, schema):
        # DRF writes OpenAPI 3.0's `nullable`, which 3.1 (this schema) does not know: the last page's `next` and the
        # first page's `previous` are null, and both are always there.
        paginated = super().get_paginated_response_schema(schema)
        for name in ("next", "previous"):
            link = paginated["properties"][name]
            link.pop("nullable", None)
            link["type"] = ["string", "null"]
        paginated["required"] = ["next", "previous", "results"]
        return paginated
