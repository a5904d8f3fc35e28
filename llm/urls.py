from django.urls import path

from llm.apis import chat, usage, webhook

openai_urlpatterns = [
    path("chat/completions", chat.chat_completions, name="chat-completions"),
    path("models", chat.models, name="models"),
]

api_urlpatterns = [
    path("webhook", webhook.webhook, name="webhook"),
    path("usage", usage.UsageApi.as_view(), name="usage"),
]
