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
