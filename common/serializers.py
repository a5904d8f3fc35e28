"""Input serializers for JSON bodies that take values at their declared types.

DRF coerces by default (`0` for a string field becomes "0", "true" for a boolean becomes True), which accepts what
the OpenAPI description forbids and hides client bugs. A JSON body has real types, so a value of the wrong JSON
type is a 400 naming the field. (Query strings and form fields are text by nature and keep DRF's coercion.)"""

from django.http import QueryDict
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

# Field class -> the JSON types (Python types after parsing) it accepts. Checked in order: BooleanField before
# IntegerField matters, since bool is an int in Python.
_JSON_TYPES: tuple[tuple[type[serializers.Field], tuple[type, ...], str], ...] = (
    (serializers.BooleanField, (bool,), "a boolean"),
    (serializers.IntegerField, (int,), "an integer"),
    (serializers.FloatField, (int, float), "a number"),
    (serializers.DecimalField, (int, float, str), "a number"),
    (serializers.ChoiceField, (str,), "a string"),
    (serializers.CharField, (str,), "a string"),
    (serializers.ListField, (list,), "a list"),
    (serializers.DictField, (dict,), "an object"),
    (serializers.Serializer, (dict,), "an object"),
)


def _type_error(field: serializers.Field, value) -> str | None:
    if value is None:
        return None  # null is the field's own business (allow_null)
    for field_class, types, name in _JSON_TYPES:
        if isinstance(field, field_class):
            ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
            return None if ok else f"Must be {name}."
    return None


class StrictInputSerializer(serializers.Serializer):
    def to_internal_value(self, data):
        if isinstance(data, dict):
            errors = {}
            for field in self.fields.values():
                if field.read_only or field.source == "*":
                    continue
                if field.field_name in data:
                    value = data[field.field_name]
                    message = _type_error(field, value)
                    if message is None and isinstance(field, serializers.ListField) and isinstance(value, list):
                        message = next((m for item in value if (m := _type_error(field.child, item))), None)
                    if message is not None:
                        errors[field.field_name] = [message]
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


@extend_schema_field({"type": ["string", "integer"]})
class TemplateRefField(serializers.Field):
    """A template's name or id; form fields are text, so digits there are an id."""

    default_error_messages = {"invalid": "Must be a template's name (a string) or id (an integer)."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, str | int) or data == "":
            self.fail("invalid")
        return data

    def to_representation(self, value):
        return value


def query_values(query: QueryDict) -> dict[str, str]:
    """A query string as plain values for a serializer. DRF reads a blank query value (`?to=`) as if it were absent,
    which the schema does not allow for (a date, or minLength 1): given plain values, a blank one is validated like
    any other and answered with a 400."""
    return query.dict()
