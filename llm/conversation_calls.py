"""A gateway call continued from a conversation: its history sent before the new message, trimmed to the model's
context window (llm/context.py), and the exchange stored once the answer is known. Shared by
`POST /api/v1/conversations/{id}/messages` and the webhook's `conversation_id`.

Both messages are stored only with an answer: a request that fails (a refusal, an upstream error) stores neither,
so it can be sent again. A streamed answer is stored when the stream ends; if the client hangs up or the upstream
fails mid-stream, the text that arrived is stored with `complete: false`."""

from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import replace

from django.conf import settings

from common.aio import shielded
from common.db_thread import run_in_db_thread
from common.errors import AppError, NotFound
from llm import pipeline, selectors, services
from llm.context import trim_history
from llm.conversation_summary import summary_extend, summary_note
from llm.providers import Message, Usage
from llm.routing import aresolve
from llm.template_text import PARAMETERS
from llm.templates_store import render_message


async def aconversation_or_404(cached_token, conversation_id: int):
    conversation = await selectors.aconversation_for_user(
        conversation_id=conversation_id, user_id=cached_token.token.user_id
    )
    if conversation is None:
        raise NotFound("No such conversation.", code="conversation_not_found", param="conversation_id")
    return conversation


async def with_history(call: pipeline.GatewayCall, conversation) -> int:
    """Put the conversation's system prompt and history before the call's last (user) message, trimmed to the
    model's context window; link the call's usage record to the conversation. Returns how many old messages were
    left out (summarised ones included). A message that cannot fit is refused with its usage record. A conversation
    with `summarize_dropped` sends its summary instead of the messages it covers and extends it with those trimming
    leaves out (llm/conversation_summary.py)."""
    call.conversation_id = conversation.pk
    call.requested_model = call.requested_model or conversation.model or None
    call.template_version_id = call.template_version_id or conversation.template_version_id
    defaults = {
        name: conversation.parameters[name]
        for name in PARAMETERS
        if conversation.parameters.get(name) is not None and getattr(call.chat, name) is None
    }
    if defaults:  # the template's parameters, where the request sets none
        call.chat = replace(call.chat, **defaults)
    *system, new = call.chat.messages
    if conversation.system:
        system = [Message(role="system", content=conversation.system), *system]
    history = [
        Message(role=m.role, content=m.content)
        for m in await selectors.aconversation_history(conversation=conversation)
    ]
    covered = conversation.summary_covers if conversation.summary else 0  # summarised: sent as the summary only
    history = history[covered:]
    route = await _route_or_refusal(call)

    async def fit() -> tuple[list[Message], int]:
        notes = [summary_note(conversation.summary, conversation.summary_covers)] if conversation.summary else []
        try:
            return trim_history(
                system=[*system, *notes],
                history=history,
                new=new,
                provider=route.provider,
                model=route.model,
                reply_tokens=call.chat.max_tokens or settings.CONVERSATION_REPLY_TOKENS,
            )
        except AppError as error:
            await pipeline.record_refusal(call, error)
            raise

    messages, dropped = await fit()
    if dropped and conversation.summarize_dropped:
        # One more call (its own usage record) summarises what was left out; then the rest is fitted again with
        # the longer summary, which may leave out more (summarised with the next message).
        await summary_extend(
            call, conversation, history[:dropped], covered=covered, provider=route.provider, model=route.model
        )
        covered, history = covered + dropped, history[dropped:]
        messages, dropped = await fit()
    call.chat = replace(call.chat, messages=messages)
    return covered + dropped


async def _route_or_refusal(call: pipeline.GatewayCall):
    try:
        return await aresolve(call.requested_model, provider=call.provider_hint, preferences=call.cached.preferences)
    except AppError as error:
        await pipeline.record_refusal(call, error)
        raise


def message_text(conversation, content: str) -> str:
    """The user's message as sent and stored: in the conversation's template's user text, if it has one."""
    if not conversation.user_template:
        return content
    return render_message(conversation.user_template, variables=conversation.variables, content=content)


async def store_exchange(
    conversation_id: int, user_text: str, answer: str, model: str, usage: Usage | None, cost, complete: bool = True
):
    """Store the user's message and the answer; returns the stored answer."""
    _, answered = await run_in_db_thread(
        services.conversation_exchange_store,
        conversation_id=conversation_id,
        user_text=user_text,
        answer=answer,
        model=model,
        usage=usage,
        cost_usd=cost,
        complete=complete,
    )
    return answered


def store_session(session: pipeline.StreamSession, conversation_id: int, user_text: str, complete: bool):
    """Store what a stream answered (as far as it got), finished even if the caller is cancelled."""
    text = "".join(session.text)
    return shielded(
        store_exchange(
            conversation_id, user_text, text, session.upstream_model, session.usage, session.cost_usd, complete
        )
    )


async def stored_stream(
    events: AsyncIterator[bytes], session: pipeline.StreamSession, conversation_id: int, user_text: str
) -> AsyncIterator[bytes]:
    """Relay `events` (read from `session`) and store the exchange once they end, however they end."""
    complete = False
    try:
        async with aclosing(events) as relayed:
            async for event in relayed:
                yield event
        complete = session.error is None
    finally:
        await store_session(session, conversation_id, user_text, complete)
