"""How every resource list pages: a cursor over a unique ordering, newest first by id.

A cursor (not a page number) stays correct while rows are added, and never counts the table: usage records run to
millions of rows. `?limit=` picks the page size up to `max_page_size`."""

from rest_framework.pagination import CursorPagination


class NewestFirstCursorPagination(CursorPagination):
    ordering = "-id"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500
