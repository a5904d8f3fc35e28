from django.urls import path, re_path

from common.routers import api_router
from llm.apis import (
    catalog,
    chat,
    conversation_messages,
    conversations,
    messages,
    responses,
    templates,
    usage,
    usage_records,
    webhook,
)

openai_urlpatterns = [
    path("chat/completions", chat.chat_completions, name="chat-completions"),
    path("models", chat.models, name="models"),
    path("messages", messages.messages, name="messages"),
    path("messages/count_tokens", messages.count_tokens, name="messages-count-tokens"),
    path("responses", responses.responses, name="responses"),
    path("responses/<str:response_id>", responses.response_detail, name="response-detail"),
]

router = api_router()
router.register("usage/records", usage_records.UsageRecordViewSet, basename="usage-record")
router.register("models", catalog.ModelCatalogViewSet, basename="model-catalog")
router.register("prices", catalog.ModelPriceViewSet, basename="price")
router.register("routes", catalog.ModelRouteViewSet, basename="route")
router.register("conversations", conversations.ConversationViewSet, basename="conversation")
router.register("templates", templates.TemplateViewSet, basename="template")

api_urlpatterns = [
    path("webhook", webhook.webhook, name="webhook"),
    # A fast-path view, not the viewset's (see API_FAST_PATH_PATTERNS).
    re_path(
        r"^conversations/(?P<pk>[0-9]{1,18})/messages$",
        conversation_messages.conversation_messages,
        name="conversation-messages",
    ),
    path("usage", usage.UsageApi.as_view(), name="usage"),  # the summary; its records are `usage/records`
    *router.urls,
]
