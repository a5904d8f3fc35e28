"""Summarising what trimming leaves out of a conversation created with `summarize_dropped` (llm/context.py trims).

The conversation's summary covers its oldest `summary_covers` messages, which are then never sent again: the summary
is sent in their place, as a system note after the system prompt. When trimming leaves out more messages, one more
gateway call extends it: the previous summary and the newly left-out messages in, the new summary out (at most
CONVERSATION_SUMMARY_TOKENS tokens). That call is a request of its own to the budget and the usage records (type
`summary`, linked to the conversation, request id `<request id>.summary`), not to the rate limit: it is part of the
message's request. It uses the message's model."""

from django.conf import settings

from common.db_thread import run_in_db_thread
from llm import pipeline, services
from llm.context import context_window, message_tokens
from llm.providers import ChatRequest, Message

INSTRUCTION = (
    "You keep the memory of a conversation that has grown too long to be sent whole. Summarise the earlier part "
    "given below (and the summary so far, if there is one) as short notes: the facts, names, numbers, decisions, "
    "preferences and open questions a continuation needs. Write in the conversation's language; no preamble."
)


def summary_note(summary: str, covers: int) -> Message:
    return Message(
        role="system", content=f"Summary of the earlier conversation ({covers} messages, no longer sent):\n{summary}"
    )


def _transcript(previous: str, messages: list[Message], *, provider: str, model: str) -> str:
    """The previous summary and the messages, newest first while they fit the model's window with the instruction
    and the summary's room (older ones beyond that are left out of the summary)."""
    room = context_window(model) - settings.CONVERSATION_SUMMARY_TOKENS
    room -= message_tokens(Message(role="system", content=INSTRUCTION), provider=provider, model=model)
    head = [f"Summary so far:\n{previous}"] if previous else []
    room -= sum(message_tokens(Message(role="user", content=h), provider=provider, model=model) for h in head)
    lines: list[str] = []
    for message in reversed(messages):
        line = f"{message.role}: {message.content}"
        room -= message_tokens(Message(role="user", content=line), provider=provider, model=model)
        if room < 0:
            break
        lines.append(line)
    return "\n\n".join([*head, *reversed(lines)])


async def summary_extend(
    call: pipeline.GatewayCall, conversation, dropped: list[Message], *, covered: int, provider: str, model: str
) -> str:
    """The conversation's summary (of its `covered` oldest messages) extended with `dropped`, the messages after
    them, stored on the conversation with how many messages it now covers."""
    transcript = _transcript(conversation.summary, dropped, provider=provider, model=model)
    summary_call = pipeline.GatewayCall(
        cached=call.cached,
        endpoint=call.endpoint,
        request_id=f"{call.request_id}.summary",
        chat=ChatRequest(
            model="",
            messages=[Message(role="system", content=INSTRUCTION), Message(role="user", content=transcript)],
            max_tokens=settings.CONVERSATION_SUMMARY_TOKENS,
        ),
        requested_model=call.requested_model,
        provider_hint=call.provider_hint,
        no_cache_header=call.no_cache_header,
        type="summary",
        skip_rate_limit=True,
        conversation_id=conversation.pk,
    )
    result = await pipeline.complete(summary_call)
    summary = result.completion.text.strip()
    covers = covered + len(dropped)
    await run_in_db_thread(
        services.conversation_summary_store, conversation_id=conversation.pk, summary=summary, covers=covers
    )
    conversation.summary, conversation.summary_covers = summary, covers
    return summary
