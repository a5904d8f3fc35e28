"""`/api/v1/usage/records`: the caller's usage records, one per request, filtered, paged newest first, or downloaded
whole as CSV (`?format=csv`)."""

import django_filters
from django.utils import timezone
from django_filters.rest_framework import FilterSet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, serializers, viewsets
from rest_framework.renderers import JSONRenderer

from accounts.permissions import HasTokenScope
from accounts.selectors import token_timezone
from common.filters import MOMENT_HELP, MomentFilter, expose_from
from common.renderers import CSVErrorsAsJSONMixin, CSVRenderer, csv_streaming_response
from llm import selectors
from llm.apis.usage import MoneyField
from llm.models import UsageRecord, UsageStatus


@expose_from
class UsageRecordFilter(FilterSet):
    date_from = MomentFilter(field_name="created_at", end=False)
    to = MomentFilter(field_name="created_at", end=True)
    model = django_filters.CharFilter(
        method="filter_model", max_length=100, help_text="The model that answered, or the one asked for."
    )
    provider = django_filters.CharFilter(max_length=20, help_text="openai, anthropic, local, ...")
    status = django_filters.ChoiceFilter(choices=UsageStatus.choices)
    token = django_filters.CharFilter(
        method="filter_token",
        max_length=40,
        help_text="One of your tokens, by id or prefix (`djl_` optional). Another user's token matches nothing.",
    )
    endpoint = django_filters.CharFilter(max_length=40, help_text="chat, messages, webhook, batch, job, ...")
    batch_id = django_filters.CharFilter(max_length=64, help_text="The records of one batch or job.")
    cached = django_filters.ChoiceFilter(
        choices=[("true", "true"), ("false", "false")],
        method="filter_cached",
        help_text="`true`: answered from djllm's response cache; `false`: the others.",
    )

    class Meta:
        model = UsageRecord
        fields: list[str] = []

    def request_timezone(self):
        return token_timezone(self.request.auth)

    def filter_model(self, queryset, name, value):
        return selectors.usage_records_for_model(queryset, value)

    def filter_token(self, queryset, name, value):
        return selectors.usage_records_for_token(queryset, value)

    def filter_cached(self, queryset, name, value: str):
        return selectors.usage_records_cached(queryset, cached=value == "true")


class UsageRecordSerializer(serializers.ModelSerializer):
    token = serializers.SerializerMethodField(help_text="The prefix of the token used (null: a deleted token).")
    model = serializers.SerializerMethodField(help_text="The model that answered, or the one asked for.")
    cost_usd = MoneyField(allow_null=True, help_text="Decimal string, USD; null when the model had no price.")
    saved_usd = MoneyField(help_text="Decimal string, USD: what djllm's response cache saved.")
    cached = serializers.SerializerMethodField(help_text="Answered from djllm's response cache.")
    template_version = serializers.PrimaryKeyRelatedField(
        read_only=True,
        allow_null=True,
        help_text="The id of the prompt template version the request used (GET /api/v1/templates/{id}/versions); "
        "null: none, or a deleted template.",
    )

    class Meta:
        model = UsageRecord
        fields = [
            "id",
            "request_id",
            "created_at",
            "token",
            "endpoint",
            "provider",
            "model",
            "requested_model",
            "upstream_model",
            "type",
            "source",
            "batch_id",
            "template_version",
            "status",
            "http_status",
            "error_code",
            "error_message",
            *selectors.TOKEN_FIELDS,
            "usage_estimated",
            "priced",
            "cost_usd",
            "saved_usd",
            "cached",
            "stream",
            "latency_ms",
            "upstream_latency_ms",
            "time_to_first_token_ms",
            "attempts",
        ]
        read_only_fields = fields

    def get_token(self, record) -> str | None:
        return f"djl_{record.token_prefix}" if record.token_prefix else None

    def get_model(self, record) -> str:
        return record.upstream_model or record.requested_model

    def get_cached(self, record) -> bool:
        return record.status == UsageStatus.CACHED


_RECORDS_CSV = OpenApiResponse(
    OpenApiTypes.STR,
    description="`?format=csv`: every record the filters select (not one page), newest first, one line each, the "
    "columns of the JSON fields. Cells a spreadsheet would run as a formula start with `'`.",
)


@extend_schema_view(
    list=extend_schema(
        operation_id="usage_records_list",
        summary="Usage records",
        description=(
            "Your requests, one record each, newest first (by id), through any of your tokens, in pages: follow "
            "`next` (a cursor) for the next page; `limit` sets the page size (up to 500). `?format=csv` downloads "
            "every record the filters select as one CSV file instead."
        ),
        tags=["usage"],
        parameters=[
            OpenApiParameter("from", str, OpenApiParameter.QUERY, description=f"At or after this. {MOMENT_HELP}"),
            OpenApiParameter(
                "to", str, OpenApiParameter.QUERY, description=f"At or before this (a date: to its end). {MOMENT_HELP}"
            ),
            OpenApiParameter(
                "format", str, OpenApiParameter.QUERY, enum=["json", "csv"], description="`csv`: the whole set."
            ),
        ],
        responses={(200, "application/json"): UsageRecordSerializer(many=True), (200, "text/csv"): _RECORDS_CSV},
    ),
    retrieve=extend_schema(
        operation_id="usage_records_retrieve",
        summary="A usage record",
        description="One of your usage records, by id (another user's is not found).",
        tags=["usage"],
        responses={200: UsageRecordSerializer},
    ),
)
class UsageRecordViewSet(
    CSVErrorsAsJSONMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    permission_classes = [HasTokenScope]
    required_scope = "llm"  # like the usage summary
    serializer_class = UsageRecordSerializer
    filterset_class = UsageRecordFilter
    lookup_value_regex = "[0-9]{1,18}"  # an id fits the 64-bit column; anything else is not a path here
    queryset = UsageRecord.objects.none()  # for the schema; requests read `get_queryset`

    def get_queryset(self):
        return selectors.usage_records_for_user(user=self.request.user)

    def get_renderers(self):
        if self.action == "list":
            return [JSONRenderer(), CSVRenderer()]
        return [JSONRenderer()]

    def list(self, request, *args, **kwargs):
        if request.accepted_renderer.format != "csv":
            return super().list(request, *args, **kwargs)
        records = self.filter_queryset(self.get_queryset()).order_by("-id")
        serializer = self.get_serializer()
        rows = (serializer.to_representation(record) for record in records.iterator(chunk_size=2000))
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        return csv_streaming_response(
            request, rows, columns=list(serializer.fields), filename=f"djllm-usage-records-{stamp}.csv"
        )
