from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import services
from accounts.models import provider_choices, validate_timezone
from accounts.permissions import HasTokenScope
from common.audit import VIA_API, actor_from_request
from common.openapi import error_responses
from common.serializers import StrictInputSerializer


class MeApi(APIView):
    """The caller: user, the token's scopes, and the user's preferences. Changing them needs the `account` scope."""

    permission_classes = [HasTokenScope]
    write_scope = "account"

    class PreferencesSerializer(StrictInputSerializer):
        default_provider = serializers.ChoiceField(choices=[], required=False, allow_blank=True)
        default_model = serializers.CharField(max_length=100, required=False, allow_blank=True)
        language = serializers.CharField(max_length=50, required=False, allow_blank=True)
        timezone = serializers.CharField(max_length=64, required=False, validators=[validate_timezone])

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.fields["default_provider"].choices = [""] + [name for name, _ in provider_choices()]

    class OutputSerializer(serializers.Serializer):
        class UserSerializer(serializers.Serializer):
            id = serializers.IntegerField()
            username = serializers.CharField()
            email = serializers.CharField(help_text="Empty when the account has none.")

        class TokenSerializer(serializers.Serializer):
            prefix = serializers.CharField(source="display_prefix")
            name = serializers.CharField()
            scopes = serializers.ListField(child=serializers.CharField())
            expires_at = serializers.DateTimeField(allow_null=True)

        user = UserSerializer()
        token = TokenSerializer()
        preferences = serializers.DictField()

    def _render(self, request, preferences):
        prefs = self.PreferencesSerializer(preferences).data
        data = {"user": request.user, "token": request.auth.token, "preferences": prefs}
        return Response(self.OutputSerializer(data).data)

    @extend_schema(
        summary="Who am I",
        description="The authenticated user, the scopes of the token used, and the user's preferences.",
        responses={200: OutputSerializer, **error_responses(401, 429)},
        examples=[
            OpenApiExample(
                "Me",
                value={
                    "user": {"id": 1, "username": "alice", "email": "alice@example.com"},
                    "token": {
                        "prefix": "djl_1a2b3c4d",
                        "name": "excel",
                        "scopes": ["calendar", "llm"],
                        "expires_at": None,
                    },
                    "preferences": {
                        "default_provider": "openai",
                        "default_model": "gpt-4o-mini",
                        "language": "English",
                        "timezone": "Europe/Berlin",
                    },
                },
                response_only=True,
            )
        ],
    )
    def get(self, request):
        return self._render(request, services.user_preferences_get(user=request.user))

    @extend_schema(
        summary="Update my preferences",
        description=(
            "Change any of the default provider, default model, output language and timezone (IANA name). "
            "Needs a token with the `account` scope (403 `insufficient_scope` otherwise)."
        ),
        request=PreferencesSerializer,
        responses={
            200: OutputSerializer,
            **error_responses(
                400, 401, 403, 429, meanings={403: "The token lacks the `account` scope (`insufficient_scope`)."}
            ),
        },
        examples=[
            OpenApiExample("Set timezone", value={"timezone": "Europe/Berlin", "language": "German"}, request_only=True)
        ],
    )
    def patch(self, request):
        serializer = self.PreferencesSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        preferences = services.user_preferences_update(
            user=request.user, by=actor_from_request(request, via=VIA_API), **serializer.validated_data
        )
        return self._render(request, preferences)
