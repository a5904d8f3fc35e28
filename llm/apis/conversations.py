"""`/api/v1/conversations`: the caller's conversations (create, list newest first, retrieve with the messages and
the total cost, delete). Sending a message is `POST /api/v1/conversations/{id}/messages`, a fast-path view
(llm/apis/conversation_messages.py)."""

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.response import Response

from accounts.permissions import HasTokenScope
from common.serializers import StrictInputSerializer, TemplateRefField
from llm import selectors, services
from llm.apis.usage import MoneyField
from llm.models import Conversation, ConversationMessage


class ConversationInputSerializer(StrictInputSerializer):
    title = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    model = serializers.CharField(
        max_length=200, required=False, allow_blank=True, default="", help_text="Blank: your default model."
    )
    system = serializers.CharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        help_text="Sent first with every message. With `template`: replaces the template's system prompt (even blank).",
    )
    template = TemplateRefField(
        required=False,
        help_text="A prompt template of yours or a shared one (GET /api/v1/templates), by name or id. The "
        "conversation keeps its version: its system prompt (unless `system`), its default model (unless `model`) "
        "and parameters (unless a message sets them); each message is sent as `$prompt` in its user text.",
    )
    summarize_dropped = serializers.BooleanField(
        required=False,
        default=False,
        help_text="When the history outgrows the model's context window, summarise the messages left out (one more "
        "call, its own usage record of type `summary`) and send the summary instead of dropping them.",
    )
    variables = serializers.DictField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False),
        required=False,
        help_text="With `template`: every variable it uses besides `$prompt` (`$language` defaults to your "
        "language), fixed for the conversation. A missing or unknown one is a 400 naming it.",
    )


class ConversationMessageSerializer(serializers.ModelSerializer):
    cost_usd = MoneyField(allow_null=True, help_text="Decimal string, USD (assistant messages); null: not priced.")

    class Meta:
        model = ConversationMessage
        fields = [
            "id",
            "role",
            "content",
            "model",
            "input_tokens",
            "output_tokens",
            "cost_usd",
            "complete",
            "created_at",
        ]
        read_only_fields = fields


class ConversationSerializer(serializers.ModelSerializer):
    total_cost_usd = MoneyField(
        help_text="Decimal string, USD: the sum of the conversation's usage records (0 when there are none)."
    )

    class Meta:
        model = Conversation
        fields = [
            "id",
            "title",
            "model",
            "system",
            "template_version",
            "variables",
            "summarize_dropped",
            "summary",
            "summary_covers",
            "created_at",
            "updated_at",
            "total_cost_usd",
        ]
        read_only_fields = fields

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if getattr(instance, "total_cost_usd", None) is None:
            data["total_cost_usd"] = "0"
        return data


class ConversationDetailSerializer(ConversationSerializer):
    messages = ConversationMessageSerializer(many=True, read_only=True, help_text="Oldest first.")

    class Meta(ConversationSerializer.Meta):
        fields = [*ConversationSerializer.Meta.fields, "messages"]
        read_only_fields = fields


_TAGS = ["conversations"]


@extend_schema_view(
    list=extend_schema(
        operation_id="conversations_list",
        summary="Conversations",
        description="Your conversations, newest first, in pages: follow `next` (a cursor); `limit` sets the page size.",
        tags=_TAGS,
        responses={200: ConversationSerializer(many=True)},
    ),
    retrieve=extend_schema(
        operation_id="conversations_retrieve",
        summary="A conversation with its messages",
        description="One of your conversations (another user's is not found), its messages oldest first and its total "
        "cost.",
        tags=_TAGS,
        responses={200: ConversationDetailSerializer},
    ),
    create=extend_schema(
        operation_id="conversations_create",
        summary="Start a conversation",
        description="`model` blank: your default model (preferences) when a message is sent. `system` is sent first "
        "with every message. `template` starts it from a prompt template (with its `variables`): the template's "
        "version is kept and recorded on every message's usage record. Send messages with "
        "`POST /api/v1/conversations/{id}/messages`.",
        tags=_TAGS,
        request=ConversationInputSerializer,
        responses={201: ConversationSerializer},
    ),
    destroy=extend_schema(
        operation_id="conversations_destroy",
        summary="Delete a conversation",
        description="Deletes it and its messages; its usage records stay (no longer linked to it).",
        tags=_TAGS,
        responses={204: None},
    ),
)
class ConversationViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    permission_classes = [HasTokenScope]
    required_scope = "llm"
    serializer_class = ConversationSerializer
    lookup_value_regex = "[0-9]{1,18}"
    queryset = Conversation.objects.none()  # for the schema; requests read `get_queryset`

    def get_queryset(self):
        conversations = selectors.conversations_for_user(user=self.request.user)
        if self.action == "retrieve":
            return conversations.prefetch_related("messages")
        return conversations

    def get_serializer_class(self):
        return ConversationDetailSerializer if self.action == "retrieve" else ConversationSerializer

    def create(self, request):
        data = ConversationInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        preferences = request.auth.preferences
        conversation = services.conversation_create(
            user=request.user, language=preferences.language if preferences else "", **data.validated_data
        )
        conversation.total_cost_usd = None  # nothing spent yet
        return Response(ConversationSerializer(conversation).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        services.conversation_delete(conversation=instance)
