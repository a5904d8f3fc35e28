"""A paginator for tables with millions of rows: it never counts a whole table.

- Unfiltered, on PostgreSQL: the planner's row estimate (`pg_class.reltuples`), one catalog lookup.
- Otherwise (filtered, or SQLite, or a table too small or never analysed): a count capped at `exact_limit` + 1
  rows, `SELECT COUNT(*) FROM (SELECT ... LIMIT n)`, which stops reading after n matching rows.

`count_label` says which it is: "1,234", "about 3,400,000" or "more than 10,000".
"""

from django.core.paginator import Paginator
from django.db import connections
from django.utils.functional import cached_property


def table_row_estimate(model, using: str) -> int | None:
    """PostgreSQL's estimate of a table's rows (updated by ANALYZE/autovacuum); None elsewhere or if unknown."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
            [connection.ops.quote_name(model._meta.db_table)],
        )
        row = cursor.fetchone()
    if row is None or row[0] is None or row[0] < 0:  # -1: never analysed
        return None
    return int(row[0])


class EstimatedCountPaginator(Paginator):
    exact_limit = 10_000

    def __init__(self, *args, exact_limit: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if exact_limit is not None:
            self.exact_limit = exact_limit
        self.count_kind = "exact"  # or "estimate" (pg_class), or "lower_bound" (capped)

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not queryset.query.has_filters() and not queryset.query.is_sliced:
            estimate = table_row_estimate(queryset.model, queryset.db)
            if estimate is not None and estimate > self.exact_limit:
                self.count_kind = "estimate"
                return estimate
        capped = queryset.order_by()[: self.exact_limit + 1].count()
        if capped > self.exact_limit:
            self.count_kind = "lower_bound"
            return self.exact_limit
        return capped

    @property
    def count_label(self) -> str:
        count = self.count  # sets count_kind
        if self.count_kind == "estimate":
            return f"about {count:,}"
        if self.count_kind == "lower_bound":
            return f"more than {count:,}"
        return f"{count:,}"
