"""Query filters shared by the resource lists (django-filter): a time range whose ends are a date or a date-time.

A date covers its whole day in the caller's timezone (the FilterSet's `request_timezone()`); a date-time without an
offset is in that timezone too. `from` is a Python keyword: declare the filter as `date_from` and expose it with
`expose_from`."""

from datetime import date, datetime, time, timedelta, tzinfo

import django_filters
from django import forms
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

# The range is turned into datetimes in the caller's timezone, the day after `to` included: near the ends of what
# Python's dates hold (`to=9999-12-31`) that overflows.
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(9998, 12, 31)
MOMENT_HELP = (
    "A date (YYYY-MM-DD, a whole day in your timezone) or a date-time (ISO 8601; without an offset, in your "
    f"timezone), {FIRST_DAY} to {LAST_DAY}."
)


class MomentField(forms.Field):
    """A date or a date-time (the filter tells them apart: a date covers its whole day)."""

    default_error_messages = {
        "invalid": "Enter a date (YYYY-MM-DD) or a date-time (ISO 8601, e.g. 2025-03-01T12:00:00Z).",
        "range": f"Must be between {FIRST_DAY} and {LAST_DAY}.",
    }

    def to_python(self, value):
        if value in self.empty_values:
            return None
        text = str(value).strip()
        try:
            moment = parse_date(text) or parse_datetime(text)  # this order: a date alone parses as a date-time too
        except ValueError:  # well formed, but no such day or time (2025-02-30)
            moment = None
        if moment is None:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        day = moment.date() if isinstance(moment, datetime) else moment
        if not FIRST_DAY <= day <= LAST_DAY:
            raise forms.ValidationError(self.error_messages["range"], code="range")
        return moment


@extend_schema_field(OpenApiTypes.STR)
class MomentFilter(django_filters.Filter):
    """`field_name` at or after (`end=False`) or at or before (`end=True`, a date to its end) the value."""

    field_class = MomentField

    def __init__(self, *, end: bool, **kwargs) -> None:
        self.end = end
        super().__init__(**kwargs)

    def filter(self, qs, value):
        if value is None:
            return qs
        tz: tzinfo = self.parent.request_timezone()
        if isinstance(value, datetime):
            moment = value if timezone.is_aware(value) else value.replace(tzinfo=tz)
            lookup = "lte" if self.end else "gte"
        else:
            moment = datetime.combine(value + timedelta(days=1) if self.end else value, time.min, tzinfo=tz)
            lookup = "lt" if self.end else "gte"
        return qs.filter(**{f"{self.field_name}__{lookup}": moment})


def expose_from(filterset_class):
    """Class decorator: the filter declared as `date_from` is read from the query parameter `from`."""
    filterset_class.base_filters["from"] = filterset_class.base_filters.pop("date_from")
    return filterset_class
