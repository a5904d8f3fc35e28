"""Conversations: the `/api/v1/conversations` viewset (APIClient and real HTTP), `POST .../{id}/messages` over a live
server with the fake upstream (the history it receives, plain and streamed, one usage record per message linked to
the conversation, the total cost), isolation between users, trimming at the context window's boundary, the
webhook's `conversation_id` and the user's default model."""

import json
import time
from decimal import Decimal

import httpx
import pytest
from django.test import Client

from accounts import services as account_services
from accounts.models import UserPreferences
from bench.fake_upstream import Usage as FakeUsage
from llm.context import MESSAGE_OVERHEAD, count_tokens, trim_history
from llm.models import Conversation, ConversationMessage, UsageRecord
from llm.providers import Message
from tests.factories import UserFactory

URL = "/api/v1/conversations"


def auth(token) -> dict:
    return {"Authorization": f"Bearer {token[1]}"}


@pytest.fixture
def upstream(fake_upstream):
    fake_upstream.configure(usage=FakeUsage(input_tokens=20, output_tokens=5))
    return fake_upstream


def sent_messages(upstream) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in upstream.last_request.body["messages"]]


def send(server, token, conversation_id, **body) -> httpx.Response:
    return httpx.post(f"{server.url}{URL}/{conversation_id}/messages", headers=auth(token), json=body, timeout=30)


@pytest.mark.django_db
def test_create_list_retrieve_delete_with_the_api_client(api_client, token, make_token):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token[1]}")
    first = api_client.post(URL, {"title": "Trip", "system": "Be brief."}, format="json")
    assert first.status_code == 201, first.content
    assert first.json()["title"] == "Trip" and first.json()["total_cost_usd"] == "0"
    second = api_client.post(URL, {}, format="json").json()
    listed = api_client.get(URL).json()
    assert [c["id"] for c in listed["results"]] == [second["id"], first.json()["id"]]  # newest first

    detail = api_client.get(f"{URL}/{first.json()['id']}").json()
    assert detail["system"] == "Be brief." and detail["messages"] == []

    other = make_token(name="other", scopes=["llm"])
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {other[1]}")
    assert api_client.get(f"{URL}/{first.json()['id']}").status_code == 404
    assert api_client.delete(f"{URL}/{first.json()['id']}").status_code == 404
    assert api_client.get(URL).json()["results"] == []

    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token[1]}")
    assert api_client.delete(f"{URL}/{first.json()['id']}").status_code == 204
    assert not Conversation.objects.filter(pk=first.json()["id"]).exists()
    bad = api_client.post(URL, {"title": 5}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"


def test_a_conversation_over_real_http(live_djllm, upstream, token, prices):
    created = httpx.post(f"{live_djllm.url}{URL}", headers=auth(token), json={"system": "Be brief."}, timeout=30)
    assert created.status_code == 201, created.text
    cid = created.json()["id"]

    upstream.configure(reply="Paris.", usage=FakeUsage(input_tokens=20, output_tokens=5))
    first = send(live_djllm, token, cid, content="Capital of France?")
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["message"]["content"] == "Paris." and body["message"]["role"] == "assistant"
    assert body["usage"]["input_tokens"] == 20 and body["dropped_messages"] == 0
    assert sent_messages(upstream) == [("system", "Be brief."), ("user", "Capital of France?")]

    upstream.configure(reply="Berlin.", usage=FakeUsage(input_tokens=30, output_tokens=5))
    second = send(live_djllm, token, cid, content="And Germany?")
    assert second.status_code == 200, second.text
    assert sent_messages(upstream) == [
        ("system", "Be brief."),
        ("user", "Capital of France?"),
        ("assistant", "Paris."),
        ("user", "And Germany?"),
    ]

    records = list(UsageRecord.objects.filter(conversation_id=cid).order_by("id"))
    assert len(records) == 2 and UsageRecord.objects.count() == 2
    assert [r.request_id for r in records] == [first.json()["request_id"], second.json()["request_id"]]
    assert Decimal(second.json()["cost_usd"]) == records[1].cost_usd

    detail = httpx.get(f"{live_djllm.url}{URL}/{cid}", headers=auth(token), timeout=30).json()
    assert [(m["role"], m["content"]) for m in detail["messages"]] == [
        ("user", "Capital of France?"),
        ("assistant", "Paris."),
        ("user", "And Germany?"),
        ("assistant", "Berlin."),
    ]
    assert Decimal(detail["total_cost_usd"]) == sum(r.cost_usd for r in records) > 0


def test_a_streamed_message_is_stored_when_the_stream_ends(live_djllm, upstream, token, prices):
    conversation = Conversation.objects.create(user=token[0].user, system="")
    upstream.configure(reply="Hello there", usage=FakeUsage(input_tokens=12, output_tokens=3))
    with httpx.stream(
        "POST",
        f"{live_djllm.url}{URL}/{conversation.pk}/messages",
        headers=auth(token),
        json={"content": "Hi", "stream": True},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    assert "".join(e["delta"] for e in events if "delta" in e) == "Hello there"
    done = events[-1]
    assert done["done"] is True and done["message"]["content"] == "Hello there" and done["message"]["complete"]
    stored = list(ConversationMessage.objects.filter(conversation=conversation).values_list("role", "content"))
    assert stored == [("user", "Hi"), ("assistant", "Hello there")]
    record = UsageRecord.objects.get()
    assert record.conversation_id == conversation.pk and record.stream
    assert Decimal(done["cost_usd"]) == record.cost_usd


def test_another_users_conversation_is_not_found(live_djllm, upstream, token, make_token):
    theirs = Conversation.objects.create(user=UserFactory())
    response = send(live_djllm, token, theirs.pk, content="Hi")
    assert response.status_code == 404 and response.json()["error"]["code"] == "conversation_not_found"
    assert upstream.requests == [] and not ConversationMessage.objects.exists()
    webhook = httpx.post(
        f"{live_djllm.url}/api/v1/webhook",
        headers=auth(token),
        json={"prompt": "Hi", "conversation_id": theirs.pk},
        timeout=30,
    )
    assert webhook.status_code == 404 and upstream.requests == []


def _size(text: str) -> int:
    return count_tokens(text, provider="openai", model="gpt-4o-mini") + MESSAGE_OVERHEAD


@pytest.mark.parametrize("spare", [0, -1])
def test_history_is_trimmed_at_the_context_window(live_djllm, upstream, token, settings, spare):
    """The window holds the system prompt, the new message and the last exchange exactly (spare 0): all of it is
    sent; one token less (spare -1) and the oldest exchange is dropped."""
    conversation = Conversation.objects.create(user=token[0].user, system="You are terse.")
    old = [("user", "first question here"), ("assistant", "first answer"), ("user", "second"), ("assistant", "two")]
    for role, content in old:
        ConversationMessage.objects.create(conversation=conversation, role=role, content=content)
    new = "third question"
    needed = sum(_size(text) for text in ["You are terse.", new, *[content for _, content in old]])
    settings.CONVERSATION_REPLY_TOKENS = 100
    settings.LLM_CONTEXT_WINDOWS = {}
    settings.LLM_CONTEXT_WINDOW_DEFAULT = needed + 100 + spare
    response = send(live_djllm, token, conversation.pk, content=new)
    assert response.status_code == 200, response.text
    sent = sent_messages(upstream)
    if spare == 0:
        assert sent == [("system", "You are terse."), *old, ("user", new)]
        assert response.json()["dropped_messages"] == 0
    else:
        assert sent == [("system", "You are terse."), *old[2:], ("user", new)]
        assert response.json()["dropped_messages"] == 2


def test_a_message_that_cannot_fit_is_refused_with_its_record(live_djllm, upstream, token, settings):
    conversation = Conversation.objects.create(user=token[0].user)
    settings.LLM_CONTEXT_WINDOWS = {}
    settings.LLM_CONTEXT_WINDOW_DEFAULT = 10
    settings.CONVERSATION_REPLY_TOKENS = 5
    response = send(live_djllm, token, conversation.pk, content="far too long a message for this window")
    assert response.status_code == 400 and response.json()["error"]["code"] == "context_length_exceeded"
    assert upstream.requests == [] and not ConversationMessage.objects.exists()
    record = UsageRecord.objects.get()
    assert (record.status, record.conversation_id) == ("client_error", conversation.pk)


def test_the_webhook_continues_a_conversation(live_djllm, upstream, token, prices):
    conversation = Conversation.objects.create(user=token[0].user)
    ConversationMessage.objects.create(conversation=conversation, role="user", content="My name is Ada.")
    ConversationMessage.objects.create(conversation=conversation, role="assistant", content="Hello Ada.")
    upstream.configure(reply="Ada.", usage=FakeUsage(input_tokens=20, output_tokens=2))
    response = httpx.post(
        f"{live_djllm.url}/api/v1/webhook",
        headers=auth(token),
        json={"prompt": "What is my name?", "conversation_id": conversation.pk},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    sent = sent_messages(upstream)
    assert sent[-3:] == [("user", "My name is Ada."), ("assistant", "Hello Ada."), ("user", "What is my name?")]
    assert list(conversation.messages.values_list("role", "content"))[-2:] == [
        ("user", "What is my name?"),
        ("assistant", "Ada."),
    ]
    assert UsageRecord.objects.get().conversation_id == conversation.pk


def test_the_default_model_of_the_preferences_applies(live_djllm, upstream, token):
    UserPreferences.objects.update_or_create(user=token[0].user, defaults={"default_model": "gpt-4.1-mini"})
    conversation = Conversation.objects.create(user=token[0].user)
    response = send(live_djllm, token, conversation.pk, content="Hi")
    assert response.status_code == 200, response.text
    assert upstream.last_request.body["model"] == "gpt-4.1-mini"
    pinned = Conversation.objects.create(user=token[0].user, model="gpt-4o")
    assert send(live_djllm, token, pinned.pk, content="Hi").status_code == 200
    assert upstream.last_request.body["model"] == "gpt-4o"


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not stored in time"
        time.sleep(0.05)


def test_a_client_hanging_up_mid_stream_keeps_what_arrived(live_djllm, upstream, token):
    conversation = Conversation.objects.create(user=token[0].user)
    upstream.configure(reply="one two three four", chunks=4, chunk_delay_ms=300)
    with httpx.stream(
        "POST",
        f"{live_djllm.url}{URL}/{conversation.pk}/messages",
        headers=auth(token),
        json={"content": "Count", "stream": True},
        timeout=30,
    ) as response:
        first = next(line for line in response.iter_lines() if line.startswith("data: "))
    assert "delta" in json.loads(first[6:])
    _wait_for(lambda: ConversationMessage.objects.filter(role="assistant").exists())
    answer = ConversationMessage.objects.get(role="assistant")
    assert not answer.complete and "one two three four".startswith(answer.content) and answer.content
    _wait_for(lambda: UsageRecord.objects.exists())
    record = UsageRecord.objects.get()
    assert (record.status, record.conversation_id) == ("cancelled", conversation.pk)


def test_a_streamed_webhook_continues_a_conversation(live_djllm, upstream, token):
    conversation = Conversation.objects.create(user=token[0].user, system="Answer in one word.")
    upstream.configure(reply="Blue.")
    with httpx.stream(
        "POST",
        f"{live_djllm.url}/api/v1/webhook",
        headers=auth(token),
        json={"prompt": "Sky colour?", "conversation_id": conversation.pk, "stream": True},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1]["done"] is True and events[-1]["result"] == "Blue."
    assert sent_messages(upstream)[0] == ("system", "Answer in one word.")
    _wait_for(lambda: conversation.messages.count() == 2)
    assert list(conversation.messages.values_list("role", "content", "complete")) == [
        ("user", "Sky colour?", True),
        ("assistant", "Blue.", True),
    ]


def test_openai_models_are_counted_with_their_tokenizer_and_others_by_the_estimate():
    # o200k_base and cl100k_base from the shipped encoding files (no download), not the 4-characters rule.
    assert count_tokens("hello world, how are you?", provider="openai", model="gpt-4o-mini") == 7
    assert count_tokens("hello world, how are you?", provider="openai", model="gpt-4") == 7
    assert count_tokens("antidisestablishmentarianism", provider="openai", model="gpt-4o") != 7
    assert count_tokens("x" * 9, provider="anthropic", model="claude-3-5-haiku") == 3


def test_trimming_by_the_estimate_rule_at_the_boundary(settings):
    settings.LLM_CONTEXT_WINDOWS = {"claude": 40}
    history = [Message(role="user", content="a" * 16), Message(role="assistant", content="b" * 16)]
    new = Message(role="user", content="c" * 16)  # 4 tokens + 4 of framing each: 24 in all
    kept, dropped = trim_history(
        system=[], history=history, new=new, provider="anthropic", model="claude-x", reply_tokens=16
    )
    assert (kept, dropped) == ([*history, new], 0)
    kept, dropped = trim_history(
        system=[], history=history, new=new, provider="anthropic", model="claude-x", reply_tokens=17
    )
    assert (kept, dropped) == ([new], 2)


@pytest.mark.django_db
def test_the_admin_shows_every_conversation_read_only(token):
    Conversation.objects.create(user=token[0].user, title="Mine")
    Conversation.objects.create(user=UserFactory(), title="Theirs")
    client = Client()
    client.force_login(account_services.user_create(username="root", password="pw-for-tests-123", is_superuser=True))
    page = client.get("/admin/llm/conversation/").content.decode()
    assert "Mine" in page and "Theirs" in page
    assert client.get("/admin/llm/conversation/add/").status_code == 403
    theirs = Conversation.objects.get(title="Theirs")
    assert client.post(f"/admin/llm/conversation/{theirs.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Conversation.objects.filter(pk=theirs.pk).exists()


def test_ids_beyond_the_column_are_not_found_or_refused(live_djllm, upstream, token):
    response = send(live_djllm, token, 10**19, content="Hi")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    webhook = httpx.post(
        f"{live_djllm.url}/api/v1/webhook",
        headers=auth(token),
        json={"prompt": "Hi", "conversation_id": 2**64},
        timeout=30,
    )
    assert webhook.status_code == 400 and "conversation_id" in webhook.json()["error"]["details"]
    assert upstream.requests == []
