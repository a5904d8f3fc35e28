"""Input of the jobs API (DRF serializers): a batch-like JSON body, or the form fields of an upload.

A JSON body is taken at its declared types and refuses unknown keys, like the batch's models (jobs/inputs.py), so
a job accepts exactly what a batch accepts; form fields are text by nature and are coerced. The validated input
becomes the `BatchOptions` the services and the worker share."""

import json
from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from common.serializers import StrictInputSerializer, TemplateRefField
from jobs.inputs import BatchOptions, Parameters
from llm.providers.registry import provider_choices
from llm.webhook_calls import SOURCES, TYPES


class _JobInputSerializer(StrictInputSerializer):
    """Unknown keys are refused. Under `context={"form": True}` values are coerced from text instead of checked
    against their JSON types."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = [key for key in data if key not in self.fields]
            if unknown:
                raise serializers.ValidationError({str(key): ["Unknown field."] for key in unknown})
        if self.context.get("form"):
            return serializers.Serializer.to_internal_value(self, data)
        return super().to_internal_value(data)


class _ClosedObject(OpenApiSerializerExtension):
    """In the OpenAPI schema, these inputs allow no other keys (`additionalProperties: false`), as they validate."""

    target_class = "jobs.serializers._JobInputSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        return {**auto_schema._map_basic_serializer(self.target, direction), "additionalProperties": False}


def _text(**kwargs) -> serializers.CharField:
    """Optional text taken as sent (no trimming; blank allowed), null meaning absent."""
    return serializers.CharField(required=False, allow_null=True, allow_blank=True, trim_whitespace=False, **kwargs)


def _variables(**kwargs) -> serializers.DictField:
    return serializers.DictField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False), required=False, allow_null=True, **kwargs
    )


@extend_schema_field({"type": "string", "description": "A JSON object of strings."})
class _JSONObjectField(serializers.Field):
    """A form field holding a JSON object of strings (a template's variables)."""

    default_error_messages = {"invalid": 'Must be a JSON object of strings, e.g. {{"topic": "tides"}}.'}

    def to_internal_value(self, data):
        try:
            value = json.loads(data) if isinstance(data, str) else None
        except ValueError:
            value = None
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            self.fail("invalid")
        return value

    def to_representation(self, value):
        return json.dumps(value)


class ParametersSerializer(_JobInputSerializer):
    """Sampling parameters sent with every item."""

    temperature = serializers.FloatField(
        required=False, allow_null=True, min_value=0, max_value=2, help_text="0: identical rows answer from cache."
    )
    max_tokens = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    top_p = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=1)
    stop = serializers.ListField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False), required=False, allow_null=True
    )
    response_format = serializers.DictField(
        required=False,
        allow_null=True,
        help_text='OpenAI\'s `response_format`, sent with every item, e.g. `{"type": "json_schema", "json_schema": '
        '{"name": ..., "schema": {...}, "strict": true}}` for answers in a JSON shape.',
    )


class JobOptionsSerializer(_JobInputSerializer):
    """What every item of a job shares (the batch's options)."""

    type = serializers.ChoiceField(
        choices=TYPES, required=False, allow_null=True, help_text="What to do with each text (default: custom)."
    )
    template = TemplateRefField(
        required=False,
        allow_null=True,
        help_text="A prompt template of yours or a shared one (GET /api/v1/templates), by name or id; a built-in "
        "type's name is an alias of `type`.",
    )
    variables = _variables(help_text="The template's variables for every row (a row's own win).")
    source = serializers.ChoiceField(choices=SOURCES, default="excel", help_text="Where the texts come from.")
    language = _text(max_length=50, help_text="Output language; default: preferences.")
    provider = serializers.ChoiceField(choices=provider_choices(), required=False, allow_null=True)
    model = _text(max_length=200)
    system = _text(help_text="Replaces the template's instruction.")
    parameters = ParametersSerializer(required=False)
    cache = serializers.BooleanField(
        required=False, allow_null=True, default=None, help_text="Default: cached when temperature is 0."
    )
    labels = serializers.ListField(
        child=serializers.CharField(),
        min_length=1,
        max_length=200,
        required=False,
        allow_null=True,
        help_text="Each answer must be one of these labels (returned as given); any other is the row's error "
        "`answer_not_in_labels` and is not kept in the response cache.",
    )

    def validate(self, attrs):
        kind, template = attrs.get("type"), attrs.get("template")
        if kind is not None and template is not None and kind != template and template in TYPES:
            raise serializers.ValidationError("send `type` or `template`, not both")
        return attrs


@extend_schema_field({"type": ["string", "number", "boolean"]})
class _PromptField(serializers.Field):
    """One cell: text, a number or a boolean (taken as text), or null (an empty cell fails only its own row)."""

    default_error_messages = {"invalid": "Must be a string, a number, a boolean or null."}

    def to_internal_value(self, data):
        if not isinstance(data, str | int | float | bool):
            self.fail("invalid")
        return data

    def to_representation(self, value):
        return value


@extend_schema_field({"type": ["string", "integer"]})
class _ItemIdField(serializers.Field):
    default_error_messages = {"invalid": "Must be a string or an integer."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, str | int):
            self.fail("invalid")
        return data

    def to_representation(self, value):
        return value


class JobItemSerializer(_JobInputSerializer):
    """One row."""

    id = _ItemIdField(required=False, allow_null=True, help_text="Echoed in the result; default: the item's index.")
    prompt = _PromptField(allow_null=True, help_text="The text to work on (one cell).")
    model = _text(max_length=200, help_text="Overrides the job's model for this item.")
    variables = _variables(help_text="This row's template variables (over the job's `variables`).")


class JobInputSerializer(JobOptionsSerializer):
    """A job's rows and the options they share (the batch's body, with up to JOB_MAX_ITEMS items)."""

    items = serializers.ListField(
        child=JobItemSerializer(), min_length=1, help_text="At most JOB_MAX_ITEMS (default 50,000)."
    )


class JobUploadSerializer(serializers.Serializer):
    file = serializers.FileField()
    column = serializers.CharField(max_length=100)
    sheet = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    header = serializers.BooleanField(required=False, default=True)


def batch_options(data: dict[str, Any]) -> BatchOptions:
    """The validated options as the model the services and the worker share (already valid: not checked again)."""
    fields = {name: data[name] for name in BatchOptions.model_fields if name in data and name != "parameters"}
    parameters = Parameters.model_construct(**(data.get("parameters") or {}))
    return BatchOptions.model_construct(**fields, parameters=parameters)


class FileProcessSerializer(_JobInputSerializer):
    """The form of `POST /api/v1/files/process`: the document and what to do with it (unknown fields refused)."""

    file = serializers.FileField(allow_empty_file=True, help_text="A .txt, .md, .csv, .pdf, .docx or .xlsx document.")
    type = serializers.ChoiceField(
        choices=[t for t in TYPES if t != "calendar_event"],
        required=False,
        help_text="What to do with the document, as the webhook's `type` (default: summary). Give `type` or "
        "`template`, not both.",
    )
    template = TemplateRefField(
        required=False,
        help_text="A prompt template of yours or a shared one (GET /api/v1/templates), by name or id, instead of "
        "`type`: its system prompt and user text (with `variables`) make every call, map and reduce alike, and its "
        "default model and parameters apply unless the form sets them. The document's text is `$prompt`: each "
        "chunk's text in a map call, the parts' answers in a reduce call; a template without `$prompt` is a 400.",
    )
    variables = _JSONObjectField(
        required=False,
        help_text='With `template`: its variables as a JSON object of strings, e.g. `{"audience": "board"}` for '
        "`$audience` (`$prompt` is the document's text and cannot be set; `$language` defaults to `language`). A "
        "missing or unknown variable is a 400 naming it, before any call.",
    )
    language = _text(max_length=50, help_text="Output language; default: preferences.")
    provider = serializers.ChoiceField(choices=provider_choices(), required=False, allow_null=True)
    model = _text(
        max_length=200, help_text="Default: the template's default model, then preferences, then the provider's."
    )

    def validate(self, attrs):
        if attrs.get("type") is not None and attrs.get("template") is not None:
            raise serializers.ValidationError({"type": ["Give one of `type` or `template`, not both."]})
        if attrs.get("variables") is not None and attrs.get("template") is None:
            raise serializers.ValidationError({"variables": ["Only with `template`: the built-in types take none."]})
        return attrs
