"""Token authentication: `Authorization: Bearer <token>`, `X-API-Token: <token>` (clients of the Flask version) or
`x-api-key: <token>` (what Anthropic's SDKs send).

`authenticate_plaintext` / `aauthenticate_plaintext` are the core (used by the async LLM views);
`APITokenAuthentication` wraps them for DRF.
"""

import time

from asgiref.sync import sync_to_async
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables
from rest_framework import exceptions as drf
from rest_framework.authentication import BaseAuthentication

from accounts import services, token_cache
from accounts.token_cache import CachedToken
from accounts.tokens import digests_match, split_prefix
from common.errors import InsufficientScope, NotAuthenticated

_MARK_EVERY_SECONDS = 60.0
# Besides `Authorization: Bearer`, in this order.
TOKEN_HEADERS = ("X-API-Token", "X-Api-Key")


@sensitive_variables("auth", "value", "api_token")
def token_from_headers(headers) -> str | None:
    auth = headers.get("Authorization", "")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    for name in TOKEN_HEADERS:
        api_token = headers.get(name, "").strip()
        if api_token:
            return api_token
    return None


@sensitive_variables("plaintext")
def _check(plaintext: str | None, cached: CachedToken | None) -> CachedToken:
    if plaintext is None:
        raise NotAuthenticated()
    if cached is None or not digests_match(plaintext, cached.token.digest):
        raise NotAuthenticated("The API token is not valid.", code="token_invalid")
    token = cached.token
    if token.is_revoked:
        raise NotAuthenticated("The API token has been revoked.", code="token_revoked")
    if token.is_expired:
        raise NotAuthenticated("The API token has expired.", code="token_expired")
    if not token.user.is_active:
        raise NotAuthenticated("The API token's user is inactive.", code="token_invalid")
    return cached


def _due_for_mark(token_id: int) -> bool:
    """Per process: stamp `last_used_at` at most once a minute (the UPDATE also checks the stored time)."""
    now = time.monotonic()
    last = token_cache.last_marked.get(token_id)
    if last is not None and now - last < _MARK_EVERY_SECONDS:
        return False
    token_cache.last_marked[token_id] = now
    return True


@sensitive_variables("plaintext")
def authenticate_plaintext(plaintext: str | None) -> CachedToken:
    prefix = split_prefix(plaintext) if plaintext else None
    cached = _check(plaintext, token_cache.get(prefix) if prefix else None)
    if _due_for_mark(cached.token.pk):
        services.api_token_mark_used(token_id=cached.token.pk, now=timezone.now())
    return cached


@sensitive_variables("plaintext")
async def aauthenticate_plaintext(plaintext: str | None) -> CachedToken:
    prefix = split_prefix(plaintext) if plaintext else None
    cached = _check(plaintext, await token_cache.aget(prefix) if prefix else None)
    if _due_for_mark(cached.token.pk):
        await sync_to_async(services.api_token_mark_used)(token_id=cached.token.pk, now=timezone.now())
    return cached


async def aauthenticate_request(request) -> CachedToken:
    """The token of a request, from its headers alone (the body need not have been read)."""
    return await aauthenticate_plaintext(token_from_headers(request.headers))


async def aauthenticate_with_scope(request, scope: str = "llm") -> CachedToken:
    """The token of a request to a plain async view, which must carry `scope`."""
    # Under ASGI the lean handler has authenticated the request from its headers before reading the body.
    cached = getattr(request, "djllm_token", None) or await aauthenticate_request(request)
    require_scope(cached, scope)
    return cached


def require_scope(cached: CachedToken, scope: str) -> None:
    if scope not in cached.token.scopes:
        raise InsufficientScope(f"This token lacks the `{scope}` scope.", details={"required_scope": scope})


class APITokenAuthentication(BaseAuthentication):
    """DRF wrapper. `request.auth` is the `CachedToken`."""

    @sensitive_variables("plaintext")
    def authenticate(self, request):
        plaintext = token_from_headers(request.headers)
        if plaintext is None:
            return None  # DRF answers 401 token_missing
        try:
            cached = authenticate_plaintext(plaintext)
        except NotAuthenticated as error:
            raise drf.AuthenticationFailed(error.message, code=error.code) from None
        return cached.token.user, cached

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'
