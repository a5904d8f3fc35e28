"""`POST /v1/responses`, `GET` and `DELETE /v1/responses/{id}`: OpenAI's Responses API, so clients written against
`client.responses.create(...)` just work. The translation both ways is `llm/responses_api.py`; the gateway is the
one of `/v1/chat/completions`."""

import json

from django.http import HttpRequest, HttpResponse

from common.db_thread import run_in_db_thread
from common.errors import NotFound
from common.operations import openapi_operation
from common.request_id import current_request_id
from common.responses import json_response
from llm import pipeline, responses_api, responses_schema
from llm.apis import streaming
from llm.apis.common import check_prompt_length, no_cache_requested, prompt_chars
from llm.endpoints import fast_endpoint, response_headers
from llm.responses_schema import ResponseDeletedOut, ResponseOut, ResponsesIn
from llm.selectors import stored_response_for_user
from llm.services import stored_response_create, stored_response_delete


def _not_found(response_id: str, param: str | None = None) -> NotFound:
    return NotFound(f"No stored response with id `{response_id}`.", param=param)


async def _history(body: ResponsesIn, user_id: int) -> list[dict]:
    """The whole conversation `previous_response_id` continues, as input items (empty without one)."""
    if body.previous_response_id is None:
        return []
    stored = await run_in_db_thread(stored_response_for_user, response_id=body.previous_response_id, user_id=user_id)
    if stored is None:
        raise _not_found(body.previous_response_id, "previous_response_id")
    return [*stored.input, *responses_api.stored_items(stored.output)]


def _store(body: ResponsesIn, user_id: int, history: list[dict]):
    """What keeps a finished response (when `store`): the conversation it answered and its output."""

    async def keep(response: ResponseOut | dict) -> None:
        """`response`: djllm's own response object, or a relayed upstream's (a dict, kept as it was sent)."""
        payload = json.loads(response.model_dump_json()) if isinstance(response, ResponseOut) else response
        if not body.store or payload.get("status") == "failed":
            return
        await run_in_db_thread(
            stored_response_create,
            response_id=payload["id"],
            user_id=user_id,
            parent_id=body.previous_response_id,
            input=[*history, *responses_api.input_items(body)],
            output=payload["output"],
            body=payload,
        )

    return keep


@openapi_operation(request=ResponsesIn, **responses_schema.RESPONSES)
@fast_endpoint(body=ResponsesIn, errors="openai")
async def responses(request: HttpRequest, cached_token, body: ResponsesIn) -> HttpResponse:
    user_id = cached_token.token.user_id
    history = await _history(body, user_id)
    chat = responses_api.chat_request(body, history)
    check_prompt_length(
        sum(prompt_chars(m.content) + prompt_chars(m.tool_calls) for m in chat.messages)
        + prompt_chars(chat.tools)
        + prompt_chars(chat.tool_choice)
        + prompt_chars(chat.response_format)
    )
    call = pipeline.GatewayCall(
        cached=cached_token,
        endpoint="responses",
        request_id=current_request_id(),
        chat=chat,
        requested_model=body.model,
        cache_flag=body.cache,
        no_cache_header=no_cache_requested(request),
    )
    shell = responses_api.Shell(body, responses_api.new_id("resp"))
    keep = _store(body, user_id, history)
    if body.stream:
        session = await streaming.open_stream(request, call)
        # An upstream that serves the Responses API streams its own events: relayed; other streams are translated.
        relay = responses_api.relay_events if session.relayed else responses_api.stream_events
        events = relay(session, shell, body.model, on_done=keep)
        return response_headers(streaming.event_stream_response(request, events), session.rate, cached=session.cached)
    result = await pipeline.complete(call)
    payload = shell.completed(result.completion, result.usage)
    await keep(payload)
    return response_headers(json_response(payload), result.rate, cached=result.cached, cost=result.cost_usd)


@openapi_operation(**responses_schema.RESPONSE_GET)
@openapi_operation(**responses_schema.RESPONSE_DELETE)
@fast_endpoint(methods=("GET", "DELETE"), errors="openai")
async def response_detail(request: HttpRequest, cached_token, response_id: str) -> HttpResponse:
    user_id = cached_token.token.user_id
    if request.method == "DELETE":
        if not await run_in_db_thread(stored_response_delete, response_id=response_id, user_id=user_id):
            raise _not_found(response_id)
        return json_response(ResponseDeletedOut(id=response_id))
    stored = await run_in_db_thread(stored_response_for_user, response_id=response_id, user_id=user_id)
    if stored is None:
        raise _not_found(response_id)
    return json_response(ResponseOut.model_validate(stored.body))
