"""`summarize_dropped`: a conversation whose history outgrows the context window has the messages trimming leaves out
summarised by one more call (its own usage record, type `summary`, linked to the conversation, under the budget),
sent as a system note before the kept turns; the summary is stored with how many messages it covers, extended when
more are left out and not recomputed otherwise. Over real HTTP with the fake upstream."""

from decimal import Decimal

import httpx
import pytest

from accounts import token_cache
from bench.fake_upstream import Usage as FakeUsage
from llm.conversation_summary import INSTRUCTION, summary_note
from llm.models import Conversation, ConversationMessage, UsageRecord
from tests.test_conversations import URL, _size, auth, send, sent_messages

SYSTEM = "You are terse."
OLD = [
    ("user", "first question " + "about the tides and the moon " * 8),
    ("assistant", "first answer " + "with a long explanation of gravity " * 8),
    ("user", "second"),
    ("assistant", "two"),
]


@pytest.fixture
def upstream(fake_upstream):
    summaries: list[str] = []

    def reply(body):
        if body["messages"][0]["content"] == INSTRUCTION:
            summaries.append(body["messages"][1]["content"])
            return f"S{len(summaries)}"
        return "ok"

    fake_upstream.configure(reply=reply, usage=FakeUsage(input_tokens=20, output_tokens=5))
    fake_upstream.summaries = summaries
    return fake_upstream


def summarising(token, history=OLD) -> Conversation:
    conversation = Conversation.objects.create(user=token[0].user, system=SYSTEM, summarize_dropped=True)
    for role, content in history:
        ConversationMessage.objects.create(conversation=conversation, role=role, content=content)
    return conversation


def note(summary: str, covers: int) -> str:
    return summary_note(summary, covers).content


def window_for(settings, *texts: str) -> None:
    """A context window that holds exactly these messages and CONVERSATION_REPLY_TOKENS for the answer (room enough
    for a summary call's instruction, the messages it summarises and CONVERSATION_SUMMARY_TOKENS)."""
    settings.CONVERSATION_REPLY_TOKENS = 1000
    settings.CONVERSATION_SUMMARY_TOKENS = 50
    settings.LLM_CONTEXT_WINDOWS = {}
    settings.LLM_CONTEXT_WINDOW_DEFAULT = sum(_size(t) for t in texts) + 1000


def test_created_with_summarize_dropped(live_djllm, token):
    created = httpx.post(f"{live_djllm.url}{URL}", headers=auth(token), json={"summarize_dropped": True}, timeout=30)
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["summarize_dropped"], body["summary"], body["summary_covers"]) == (True, "", 0)
    assert Conversation.objects.get(pk=body["id"]).summarize_dropped
    plain = httpx.post(f"{live_djllm.url}{URL}", headers=auth(token), json={}, timeout=30).json()
    assert plain["summarize_dropped"] is False


def test_dropped_turns_are_summarised_once_then_extended(live_djllm, upstream, token, settings, prices):
    conversation = summarising(token)
    # Room for the system prompt, the summary of two messages, the last exchange and the new message: the first
    # exchange does not fit as itself.
    window_for(settings, SYSTEM, note("S1", 2), "second", "two", "third")
    first = send(live_djllm, token, conversation.pk, content="third")
    assert first.status_code == 200, first.text
    assert first.json()["dropped_messages"] == 2
    assert upstream.summaries == [f"user: {OLD[0][1]}\n\nassistant: {OLD[1][1]}"]
    assert sent_messages(upstream) == [
        ("system", SYSTEM),
        ("system", note("S1", 2)),
        ("user", "second"),
        ("assistant", "two"),
        ("user", "third"),
    ]
    conversation.refresh_from_db()
    assert (conversation.summary, conversation.summary_covers) == ("S1", 2)
    records = list(UsageRecord.objects.filter(conversation_id=conversation.pk).order_by("id"))
    assert [(r.type, r.status) for r in records] == [("summary", "ok"), ("", "ok")]
    assert records[0].request_id == f"{first.json()['request_id']}.summary" and records[0].cost_usd > 0
    detail = httpx.get(f"{live_djllm.url}{URL}/{conversation.pk}", headers=auth(token), timeout=30).json()
    assert (detail["summary"], detail["summary_covers"]) == ("S1", 2)
    assert Decimal(detail["total_cost_usd"]) == sum(r.cost_usd for r in records)  # the summary is part of the bill

    # The next message does not fit with the rest of the history: the summary is extended with it, from "S1".
    second = send(live_djllm, token, conversation.pk, content="fourth")
    assert second.status_code == 200, second.text
    assert (
        upstream.summaries[1] == "Summary so far:\nS1\n\nuser: second\n\nassistant: two\n\nuser: third\n\nassistant: ok"
    )
    conversation.refresh_from_db()
    assert (conversation.summary, conversation.summary_covers) == ("S2", 6)
    assert sent_messages(upstream) == [("system", SYSTEM), ("system", note("S2", 6)), ("user", "fourth")]
    assert second.json()["dropped_messages"] == 6

    # Room again: nothing more is left out, so no summary call; summarised messages are not sent again.
    settings.LLM_CONTEXT_WINDOW_DEFAULT = 100_000
    third = send(live_djllm, token, conversation.pk, content="fifth")
    assert third.status_code == 200, third.text
    assert len(upstream.summaries) == 2 and third.json()["dropped_messages"] == 6
    assert sent_messages(upstream) == [
        ("system", SYSTEM),
        ("system", note("S2", 6)),
        ("user", "fourth"),
        ("assistant", "ok"),
        ("user", "fifth"),
    ]
    types = list(UsageRecord.objects.filter(conversation_id=conversation.pk).values_list("type", flat=True))
    assert sorted(types) == ["", "", "", "summary", "summary"]


def test_without_summarize_dropped_nothing_is_summarised(live_djllm, upstream, token, settings):
    conversation = summarising(token)
    Conversation.objects.filter(pk=conversation.pk).update(summarize_dropped=False)
    window_for(settings, SYSTEM, "second", "two", "third")
    response = send(live_djllm, token, conversation.pk, content="third")
    assert response.status_code == 200 and response.json()["dropped_messages"] == 2
    assert upstream.summaries == [] and UsageRecord.objects.count() == 1
    assert sent_messages(upstream)[0] == ("system", SYSTEM) and len(sent_messages(upstream)) == 4


def test_the_summary_call_is_refused_by_the_budget_like_any_call(live_djllm, upstream, token, settings, prices):
    token[0].monthly_budget_usd = Decimal("0.0000001")
    token[0].save()
    token_cache.clear()
    conversation = summarising(token)
    window_for(settings, SYSTEM, note("S1", 2), "second", "two", "third")
    response = send(live_djllm, token, conversation.pk, content="third")
    assert response.status_code == 402, response.text
    assert response.json()["error"]["code"] == "budget_exceeded"
    record = UsageRecord.objects.get()
    assert (record.type, record.status, record.conversation_id) == ("summary", "budget_exceeded", conversation.pk)
    assert upstream.requests == [] and conversation.messages.count() == 4
    conversation.refresh_from_db()
    assert (conversation.summary, conversation.summary_covers) == ("", 0)


def test_an_upstream_failure_of_the_summary_stores_nothing(live_djllm, upstream, token, settings):
    conversation = summarising(token)
    window_for(settings, SYSTEM, note("S1", 2), "second", "two", "third")
    upstream.fail_next("400")
    response = send(live_djllm, token, conversation.pk, content="third")
    assert response.status_code == 400, response.text
    assert conversation.messages.count() == 4 and len(upstream.requests) == 1  # the main call was not sent
    assert list(UsageRecord.objects.values_list("type", "status")) == [("summary", "upstream_error")]
    conversation.refresh_from_db()
    assert (conversation.summary, conversation.summary_covers) == ("", 0)
