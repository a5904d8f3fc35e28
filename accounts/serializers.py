"""Serializers of the token API: what a client sends and what it is shown (never the digest)."""

from django.conf import settings
from django.utils import timezone
from rest_framework import serializers

from accounts.models import ALL_SCOPES, rate_limit_validator
from accounts.selectors import TOKEN_STATUSES
from common.serializers import StrictInputSerializer


def _in_the_future(value):
    if value is not None and value <= timezone.now():
        raise serializers.ValidationError("Must be in the future.")
    return value


class APITokenSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    prefix = serializers.CharField(source="display_prefix", help_text="The visible start of the token.")
    name = serializers.CharField()
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=ALL_SCOPES))
    status = serializers.ChoiceField(
        choices=TOKEN_STATUSES, help_text="`rotating`: replaced, and still working until `revoked_at`."
    )
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True, help_text="Stamped at most once a minute.")
    expires_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True, help_text="When it stopped (or stops) working.")
    rate_limit = serializers.CharField(help_text="Like 60/m. Blank: the server's default.")
    monthly_budget_usd = serializers.DecimalField(
        max_digits=12, decimal_places=2, allow_null=True, help_text="Null: no budget of its own."
    )
    rotated_from = serializers.IntegerField(
        source="rotated_from_id", allow_null=True, help_text="The id of the token this one replaced."
    )


class APITokenCreatedSerializer(APITokenSerializer):
    token = serializers.CharField(help_text="The token itself. Shown in this response only: store it now.")


class APITokenCreateSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=ALL_SCOPES),
        required=False,
        help_text="Only scopes an administrator allows you (403 `token_limit_exceeded` otherwise); `admin` only for "
        "a superuser. Omitted: `calendar` and `llm`, those you are allowed.",
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True, validators=[_in_the_future])
    rate_limit = serializers.CharField(
        max_length=20,
        required=False,
        allow_blank=True,
        default="",
        validators=[rate_limit_validator],
        help_text="Like 60/m, at most the rate an administrator allows you. Blank: that rate, or the default.",
    )
    monthly_budget_usd = serializers.DecimalField(
        max_digits=12,
        decimal_places=2,
        min_value=0,
        required=False,
        allow_null=True,
        help_text="At most the budget an administrator allows you. Omitted: that budget, or none.",
    )


class APITokenUpdateSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=100, required=False, allow_blank=True)
    expires_at = serializers.DateTimeField(
        required=False, allow_null=True, validators=[_in_the_future], help_text="Null: never expires."
    )

    def validate(self, attrs):
        # Scopes and limits are not changed after creation; saying so beats ignoring them silently.
        others = sorted(set(self.initial_data) - set(self.fields))
        if others:
            raise serializers.ValidationError({name: ["Only name and expires_at can be changed."] for name in others})
        return attrs


class APITokenRotateSerializer(StrictInputSerializer):
    grace_minutes = serializers.IntegerField(
        min_value=0,
        max_value=60 * 24 * 30,
        required=False,
        help_text="How long the old token keeps working. Omitted: TOKEN_ROTATION_GRACE_MINUTES (60 by default).",
    )

    def validate(self, attrs):
        attrs.setdefault("grace_minutes", settings.TOKEN_ROTATION_GRACE_MINUTES)
        return attrs
