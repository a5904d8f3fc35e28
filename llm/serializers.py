"""Serializers of the model, price and route resources. A route's API key is write-only: only whether one is set
is ever shown."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from common.crypto import UnreadableSecret
from common.serializers import StrictInputSerializer
from llm.models import DEFAULT_MAX_OUTPUT_TOKENS, ModelRoute
from llm.providers.registry import provider_choices

_PER_MTOK = {"max_digits": 12, "decimal_places": 6}
_MAX_INT = 2**31 - 1
RESPONSES_API_HELP = (
    "This OpenAI-compatible server has a /v1/responses endpoint: `POST /v1/responses` is sent there as it is "
    "(vLLM and recent Ollama have one); false: translated through Chat Completions. Local routes only: OpenAI "
    "routes always use their Responses endpoint, Anthropic routes refuse true."
)


class PriceRatesSerializer(serializers.Serializer):
    input_per_mtok = serializers.DecimalField(**_PER_MTOK, help_text="USD per 1M input tokens.")
    output_per_mtok = serializers.DecimalField(**_PER_MTOK, help_text="USD per 1M output tokens.")
    cached_input_per_mtok = serializers.DecimalField(
        **_PER_MTOK, allow_null=True, help_text="USD per 1M cached input tokens. Null: the input rate."
    )
    cache_write_per_mtok = serializers.DecimalField(
        **_PER_MTOK, allow_null=True, help_text="USD per 1M tokens written to the cache. Null: the input rate."
    )
    max_output_tokens = serializers.IntegerField(help_text="What a request under a budget reserves without max_tokens.")
    effective_from = serializers.DateField(help_text="In effect from this day until the model's next price.")


class ModelPriceSerializer(PriceRatesSerializer):
    id = serializers.IntegerField()
    provider = serializers.ChoiceField(choices=provider_choices())
    model = serializers.CharField(help_text="The upstream model; dated snapshots take the longest priced prefix.")


class ModelPriceInputSerializer(StrictInputSerializer):
    provider = serializers.ChoiceField(choices=provider_choices())
    model = serializers.CharField(max_length=100)
    input_per_mtok = serializers.DecimalField(**_PER_MTOK, min_value=0)
    output_per_mtok = serializers.DecimalField(**_PER_MTOK, min_value=0)
    cached_input_per_mtok = serializers.DecimalField(**_PER_MTOK, min_value=0, required=False, allow_null=True)
    cache_write_per_mtok = serializers.DecimalField(**_PER_MTOK, min_value=0, required=False, allow_null=True)
    max_output_tokens = serializers.IntegerField(
        min_value=1, max_value=_MAX_INT, required=False, help_text=f"Omitted: {DEFAULT_MAX_OUTPUT_TOKENS}."
    )
    effective_from = serializers.DateField(required=False, help_text="Omitted: today.")


class ModelRouteSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    alias = serializers.CharField(help_text="The model name clients send.")
    provider = serializers.ChoiceField(choices=provider_choices())
    upstream_model = serializers.CharField()
    base_url = serializers.CharField(help_text="Blank: the provider's configured base URL.")
    api_key = serializers.SerializerMethodField(help_text="Whether the route has a key of its own; never the key.")
    fallback = serializers.CharField(source="fallback.alias", allow_null=True, help_text="Tried when this fails.")
    responses_api = serializers.BooleanField(help_text=RESPONSES_API_HELP)
    is_active = serializers.BooleanField()

    @extend_schema_field(serializers.ChoiceField(choices=["set", "not set", "unreadable"]))
    def get_api_key(self, route: ModelRoute) -> str:
        if isinstance(route.api_key, UnreadableSecret):
            return "unreadable"  # stored, and not decryptable with FIELD_ENCRYPTION_KEYS
        return "set" if route.api_key else "not set"


def _unencodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class _RouteAlias(serializers.SlugRelatedField):
    """A route by its alias, or null. DRF reads a blank string as null on a nullable relation; the schema (and an
    honest API) says an alias is never blank, so "" is refused rather than silently clearing the fallback."""

    def run_validation(self, data=empty):
        if data == "":
            raise serializers.ValidationError("Send a route's alias, or null for no fallback.")
        if isinstance(data, str) and ("\x00" in data or not data.isprintable() and _unencodable(data)):
            # Never looked up: PostgreSQL refuses a NUL byte or a lone surrogate in a query parameter.
            raise serializers.ValidationError("No route has this alias (it holds a NUL byte or invalid text).")
        return super().run_validation(data)


class ModelRouteInputSerializer(StrictInputSerializer):
    alias = serializers.CharField(max_length=100)
    provider = serializers.ChoiceField(choices=provider_choices())
    upstream_model = serializers.CharField(max_length=100)
    base_url = serializers.URLField(
        max_length=200,
        required=False,
        allow_blank=True,
        help_text="Blank: the provider's configured base URL. Otherwise a host LLM_BASE_URL_ALLOWLIST allows.",
    )
    api_key = serializers.CharField(
        required=False,
        allow_blank=True,
        write_only=True,
        help_text="Write-only. Omitted: the stored key stays. Blank: no key of its own.",
    )
    fallback = _RouteAlias(
        slug_field="alias",
        queryset=ModelRoute.objects.all(),
        required=False,
        allow_null=True,
        help_text="The alias of the route tried when this one keeps failing.",
    )
    responses_api = serializers.BooleanField(required=False, help_text=f"{RESPONSES_API_HELP} Omitted: false.")
    is_active = serializers.BooleanField(required=False)


class CatalogModelSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="What to send as `model`.")
    provider = serializers.ChoiceField(choices=provider_choices())
    upstream_model = serializers.CharField()
    route = serializers.BooleanField(help_text="An alias defined by an administrator.")
    price = PriceRatesSerializer(
        allow_null=True,
        help_text="Null: no price (the UNPRICED_* fallback prices apply if set; under a budget, a request is refused "
        "with `model_not_priced` without them).",
    )


class CatalogQuerySerializer(serializers.Serializer):
    provider = serializers.ChoiceField(choices=provider_choices(), required=False)
