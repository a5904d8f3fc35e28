"""`GET /api/v1/usage`: the caller's requests, tokens, cost and cache savings, per day, model or token."""

import calendar
from datetime import date

from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiExample,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import HasTokenScope
from accounts.selectors import token_timezone
from common.errors import InvalidRequest
from common.filters import FIRST_DAY, LAST_DAY
from common.openapi import error_example, error_responses
from common.serializers import query_values
from llm.apis.common import money
from llm.selectors import GROUP_BY_CHOICES, usage_summary_for_user


def _date_in_range(value: date) -> None:
    if not FIRST_DAY <= value <= LAST_DAY:
        raise serializers.ValidationError(f"Must be between {FIRST_DAY} and {LAST_DAY}.")


def _month_bounds(day: date) -> tuple[date, date]:
    return day.replace(day=1), day.replace(day=calendar.monthrange(day.year, day.month)[1])


@extend_schema_field({"type": "string", "format": "decimal", "example": "0.000021"})
class MoneyField(serializers.Field):
    """A Decimal amount as a plain decimal string (`"0.000021"`), never a float."""

    def to_representation(self, value):
        return money(value)


_GROUP_EXAMPLE = {
    "requests": 120,
    "input_tokens": 48210,
    "output_tokens": 9120,
    "cached_input_tokens": 12032,
    "cache_write_tokens": 0,
    "reasoning_tokens": 0,
    "cost_usd": "0.0124311",
    "saved_usd": "0.00042",
    "cached": 7,
    "errors": 2,
    "unpriced": 0,
    "unpriced_requests": 0,
}


class UsageApi(APIView):
    """The caller's usage summary."""

    permission_classes = [HasTokenScope]
    required_scope = "llm"

    class InputSerializer(serializers.Serializer):
        date_from = serializers.DateField(
            required=False,
            validators=[_date_in_range],
            help_text="First day (YYYY-MM-DD, inclusive, 1900-01-01 to 9998-12-31). Default: the first day of the "
            "month of `to`.",
        )
        to = serializers.DateField(
            required=False,
            validators=[_date_in_range],
            help_text="Last day (YYYY-MM-DD, inclusive, 1900-01-01 to 9998-12-31). Default: the last day of the "
            "current month.",
        )
        group_by = serializers.ChoiceField(
            choices=GROUP_BY_CHOICES, default="day", help_text="Group per `day`, per `model` or per `token`."
        )

        def get_fields(self):
            # `from` is a Python keyword, so the field is declared as `date_from` and exposed as `from`.
            fields = super().get_fields()
            return {"from": fields.pop("date_from"), **fields}

    @extend_schema_serializer(component_name="UsageSummary")
    class OutputSerializer(serializers.Serializer):
        class UsageCountsSerializer(serializers.Serializer):
            requests = serializers.IntegerField()
            input_tokens = serializers.IntegerField(help_text="All prompt tokens, cached ones included.")
            output_tokens = serializers.IntegerField()
            cached_input_tokens = serializers.IntegerField(help_text="Prompt tokens read from the provider's cache.")
            cache_write_tokens = serializers.IntegerField(help_text="Prompt tokens written to the provider's cache.")
            reasoning_tokens = serializers.IntegerField(help_text="Of the output tokens.")
            cost_usd = MoneyField(help_text="Decimal string, USD. Requests without a known price count as 0.")
            saved_usd = MoneyField(help_text="Decimal string, USD: what djllm's response cache saved.")
            cached = serializers.IntegerField(help_text="Requests answered from djllm's response cache.")
            errors = serializers.IntegerField(
                help_text="Requests that did not complete: errors, budget or rate-limit stops, clients that hung up."
            )
            unpriced = serializers.IntegerField(help_text="Requests with tokens but no price for their model.")
            unpriced_requests = serializers.IntegerField(
                help_text="Requests for a model without a price (their record has `priced` false), whether they ran "
                "with no cost, were charged the UNPRICED_* fallback price, or were refused with `model_not_priced`. "
                "Their cost is not a $0 price: it is unknown or estimated."
            )

        class UsageGroupSerializer(UsageCountsSerializer):
            key = serializers.CharField(
                allow_null=True,
                help_text="The day (YYYY-MM-DD), the model, or the token's prefix (null: a deleted token).",
            )
            provider = serializers.CharField(allow_null=True, help_text="With `group_by=model`; otherwise null.")
            token_name = serializers.CharField(allow_null=True, help_text="With `group_by=token`; otherwise null.")

        date_from = serializers.DateField()
        to = serializers.DateField(source="date_to")
        group_by = serializers.CharField()
        timezone = serializers.CharField(help_text="Days are counted in this timezone (your preferences').")
        totals = UsageCountsSerializer()
        groups = UsageGroupSerializer(many=True)

        def get_fields(self):
            fields = super().get_fields()
            date_from = fields.pop("date_from")
            date_from.source = "date_from"
            return {"from": date_from, **fields}

    @extend_schema(
        summary="Usage summary",
        operation_id="usage_summary",
        description=(
            "Your requests, tokens, cost and cache savings between `from` and `to` (both inclusive; default: the "
            "current month), grouped per `day`, per `model` (the upstream model that answered) or per `token`. "
            "Only requests made by the caller's user are counted, through any of the user's tokens. Days follow "
            "the timezone in your preferences. Money amounts are decimal strings in USD, exact to the last digit; "
            "requests whose model has no price count as 0 (or at the server's fallback price, when one is set) and "
            "are counted in `unpriced_requests` (and, when they used tokens with no cost, in `unpriced`)."
        ),
        tags=["usage"],
        parameters=[InputSerializer],
        responses={
            200: OutputSerializer,
            **error_responses(
                400,
                401,
                403,
                429,
                meanings={400: "Bad `from`, `to` or `group_by`.", 403: "The token lacks the `llm` scope."},
            ),
        },
        examples=[
            OpenApiExample(
                "Per model",
                response_only=True,
                status_codes=["200"],
                value={
                    "from": "2025-03-01",
                    "to": "2025-03-31",
                    "group_by": "model",
                    "timezone": "Europe/Berlin",
                    "totals": _GROUP_EXAMPLE,
                    "groups": [{"key": "gpt-4o-mini", "provider": "openai", "token_name": None, **_GROUP_EXAMPLE}],
                },
            ),
            error_example(
                "Bad date",
                400,
                "invalid_request",
                "Invalid `from`: Date has wrong format. Use one of these formats instead: YYYY-MM-DD.",
                {"from": ["Date has wrong format. Use one of these formats instead: YYYY-MM-DD."]},
            ),
        ],
    )
    def get(self, request):
        serializer = self.InputSerializer(data=query_values(request.query_params))
        serializer.is_valid(raise_exception=True)  # the one validation-error format (common/validation.py)
        data = serializer.validated_data

        tz = token_timezone(request.auth)
        date_to = data.get("to") or _month_bounds(timezone.localtime(timezone=tz).date())[1]
        date_from = data.get("from") or _month_bounds(date_to)[0]
        if date_from > date_to:
            raise InvalidRequest(
                f"`from` ({date_from}) is after `to` ({date_to}).",
                details={"from": ["Must not be after `to`."]},
                param="from",
            )
        summary = usage_summary_for_user(
            user=request.user, date_from=date_from, date_to=date_to, group_by=data["group_by"], tz=tz
        )
        return Response(self.OutputSerializer(summary).data)
