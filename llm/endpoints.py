"""The one skeleton of the fast path's views (`/v1/chat/completions`, `/v1/models`, `/api/v1/webhook`,
`/api/v1/batch`): plain async Django views, not DRF (see docs/architecture.md for why).

    @fast_endpoint(body=WebhookIn)
    async def webhook(request, token, body): ...

checks the method (405 with `Allow`), authenticates the token and its scope (under ASGI the lean handler has
already done it from the headers, before the body was read), parses the JSON body, validates it with the pydantic
model (the one validation-error formatter), and renders any `AppError` in the endpoint's error shape: djllm's
(`errors="api"`), OpenAI's (`errors="openai"`) or Anthropic's (`errors="anthropic"`). The view gets the request, the token and the validated body, and
sets the rate-limit headers of its result with `rate_headers`.

Everything is decided once, when the view is decorated: per request the skeleton does what the views did inline.
"""

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse
from pydantic import BaseModel

from accounts.authentication import aauthenticate_with_scope as authenticate
from common.errors import AppError
from common.formatting import money
from common.request_input import check_method, parse_json, validate
from common.responses import anthropic_error_response, api_error_response, openai_error_response

_RENDERERS = {"api": api_error_response, "openai": openai_error_response, "anthropic": anthropic_error_response}


def fast_endpoint(
    *,
    methods: tuple[str, ...] = ("POST",),
    scope: str = "llm",
    body: type[BaseModel] | None = None,
    errors: str = "api",
    parse: Callable[[HttpRequest], Any] = parse_json,
    check: Callable[[Any], None] | None = None,
    with_data: bool = False,
):
    """`body`: the pydantic model of the JSON body (None: the view takes no body and is called `view(request,
    token)`). `parse`: reads the body (another limit than Django's, say). `check`: runs on the parsed data before
    validation (e.g. counts the items before validating thousands of them). `with_data`: the view also gets the
    parsed data as sent (`view(request, token, body, data)`), e.g. to fingerprint it for `Idempotency-Key`."""
    render = _RENDERERS[errors]

    def decorate(view: Callable[..., Awaitable[HttpResponse]]) -> Callable[..., Awaitable[HttpResponse]]:
        @wraps(view)
        async def endpoint(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            try:
                if request.method not in methods:
                    check_method(request, *methods)  # raises the 405
                token = await authenticate(request, scope)
                if body is None:
                    return await view(request, token, *args, **kwargs)
                data = parse(request)
                if check is not None:
                    check(data)
                validated = validate(body, data)
                if with_data:
                    return await view(request, token, validated, data, *args, **kwargs)
                return await view(request, token, validated, *args, **kwargs)
            except AppError as error:
                return render(error)

        # Token-authenticated: no cookies are read, so no CSRF check (a wrong method is a 405, not a CSRF failure).
        # Marked as `csrf_exempt` marks a view, without its extra wrapper: one coroutine per request, as before.
        endpoint.csrf_exempt = True
        return endpoint

    return decorate


def rate_headers(response: HttpResponse, rate) -> HttpResponse:
    """The token's rate-limit headers (`X-RateLimit-*`) on the answer, when a limit applies."""
    if rate is not None:
        for name, value in rate.headers().items():
            response[name] = value
    return response


def response_headers(response: HttpResponse, rate, cached: bool | None = None, cost=None) -> HttpResponse:
    """An LLM answer's headers: the rate limit's, `X-Djllm-Cached` and `X-Djllm-Cost-USD` (when known)."""
    rate_headers(response, rate)
    if cached is not None:
        response["X-Djllm-Cached"] = "true" if cached else "false"
    if cost is not None:
        response["X-Djllm-Cost-USD"] = money(cost)
    return response
