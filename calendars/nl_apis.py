"""`POST /api/v1/calendar/process-text`: plain language -> Google Calendar events (or a preview, or a question)."""

from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from calendars.apis import CalendarApi, validated
from calendars.mapping import is_valid_timezone
from calendars.nl import calendar_text_process
from calendars.openapi import COMMON_ERRORS, error_responses
from common import openapi
from common.formatting import money
from common.idempotency_keys import idempotency_key_from_headers
from common.openapi import IDEMPOTENCY_PARAMETER, UsageField
from common.serializers import StrictInputSerializer
from llm.webhook_calls import usage_out

EXAMPLE_RESULT = {
    "status": "created",
    "question": None,
    "timezone": "Europe/Berlin",
    "events": [
        {
            "id": "a1b2c3",
            "summary": "Team lunch",
            "start": "2026-12-01T13:00:00+01:00",
            "end": "2026-12-01T14:00:00+01:00",
            "attendees": ["team@example.com"],
            "created": True,
        }
    ],
    "request_id": "3f2a9c0e",
    "usage": {
        "input_tokens": 812,
        "output_tokens": 95,
        "cached_input_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "total_tokens": 907,
    },
    "cost_usd": "0.0001788",
}


class CalendarProcessTextApi(CalendarApi):
    # It makes an LLM call with a model the caller may choose, so it needs the `llm` scope as well.
    required_scope = ("calendar", "llm")

    class InputSerializer(StrictInputSerializer):
        text = serializers.CharField(
            max_length=5000, help_text='e.g. "Team lunch next Tuesday at 1, invite team@example.com"'
        )
        timezone = serializers.CharField(
            required=False,
            allow_blank=True,
            default="",
            help_text="IANA zone for the text's times (default: your preferences).",
        )
        calendar_id = serializers.CharField(required=False, default="primary", max_length=500)
        dry_run = serializers.BooleanField(required=False, default=False, help_text="Preview; create nothing.")
        model = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)

        def validate_timezone(self, value: str) -> str:
            if value and not is_valid_timezone(value):
                raise serializers.ValidationError(f"{value!r} is not an IANA timezone name.")
            return value

    @extend_schema(
        summary="Schedule from plain language",
        description=(
            "Extracts one or more events from the text with the LLM (structured output; usage and cost are "
            "recorded like any gateway request), given the current time and your timezone, then creates them in "
            'Google Calendar. `dry_run` returns the preview without creating anything. Ambiguous text ("sometime '
            'next week") answers `status: needs_clarification` with a `question` instead of a guess. A retry '
            "with the same `Idempotency-Key` (or the same extracted events) never creates a duplicate. Needs a token "
            "with both the `calendar` and the `llm` scope."
        ),
        tags=["calendar"],
        parameters=[IDEMPOTENCY_PARAMETER],
        request=InputSerializer,
        responses={
            200: inline_serializer(
                "CalendarProcessTextResult",
                {
                    "status": serializers.ChoiceField(choices=["created", "preview", "needs_clarification"]),
                    "question": serializers.CharField(allow_null=True),
                    "timezone": serializers.CharField(),
                    "events": serializers.ListField(child=serializers.DictField()),
                    "request_id": serializers.CharField(),
                    "usage": UsageField(),
                    "cost_usd": serializers.CharField(allow_null=True),
                },
            ),
            **error_responses(400, 403, 409, 429, 502, 503),
            **openapi.error_responses(
                422,
                meanings={
                    422: "The model's extraction was not a valid event (`calendar_extraction_invalid`; see details)."
                },
            ),
        },
        examples=[
            OpenApiExample(
                "Request",
                request_only=True,
                value={"text": "Team lunch next Tuesday at 1, invite team@example.com", "dry_run": False},
            ),
            OpenApiExample("Created", response_only=True, value=EXAMPLE_RESULT),
            *COMMON_ERRORS,
        ],
    )
    def post(self, request):
        data = validated(self.InputSerializer, request.data)
        processed = calendar_text_process(
            cached_token=request.auth,
            text=data["text"],
            request_id=request.request_id,
            endpoint="calendar.process_text",
            timezone_name=data["timezone"] or None,
            calendar_id=data["calendar_id"],
            dry_run=data["dry_run"],
            idempotency_key=idempotency_key_from_headers(request.headers),
            model=data["model"] or None,
        )
        return Response(
            {
                **processed.result.to_dict(),
                "request_id": request.request_id,
                "usage": usage_out(processed.usage),
                "cost_usd": money(processed.cost_usd),
            }
        )
