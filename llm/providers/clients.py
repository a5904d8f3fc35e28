"""SDK clients, created once per process (per event loop) and reused, so connections are pooled.

Under ASGI there is one event loop per worker, hence one client per (provider, base URL, key). Under WSGI each
request runs its async view in a fresh loop, and an httpx pool cannot outlive its loop, so clients are keyed by
loop too (slower, but correct).
"""

import asyncio
import weakref

import anthropic
import httpx
import openai
from django.conf import settings

_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict]" = weakref.WeakKeyDictionary()


def _limits() -> httpx.Limits:
    return httpx.Limits(max_connections=1000, max_keepalive_connections=200, keepalive_expiry=30)


def _timeout() -> httpx.Timeout:
    return httpx.Timeout(settings.REQUEST_TIMEOUT, connect=min(settings.REQUEST_TIMEOUT, 10.0))


def _http_client(kind: str) -> httpx.AsyncClient:
    # The SDKs' own aiohttp transport (httpx-aiohttp): measured here at twice httpx's default transport's
    # throughput at 100 concurrent requests (httpcore's pool bookkeeping grows with connections x requests).
    # Redirects are never followed: a route's base URL is checked against LLM_BASE_URL_ALLOWLIST, and an allowed host
    # answering 307 must not carry the prompt on to a host that is not (the SDKs' clients follow them by default).
    if settings.LLM_HTTP_TRANSPORT == "aiohttp":
        sdk = anthropic if kind == "anthropic" else openai
        return sdk.DefaultAioHttpClient(limits=_limits(), timeout=_timeout(), follow_redirects=False)
    return httpx.AsyncClient(limits=_limits(), timeout=_timeout(), follow_redirects=False)


def _make(kind: str, base_url: str | None, api_key: str):
    http_client = _http_client(kind)
    if kind == "anthropic":
        client = anthropic.AsyncAnthropic(
            api_key=api_key,
            auth_token="",
            base_url=base_url,
            max_retries=0,
            timeout=_timeout(),
            http_client=http_client,
        )
        # Only the key given here is ever sent: never ANTHROPIC_AUTH_TOKEN from the environment, and with no key
        # (a route to a server of its own) no key header at all (see `SDKProvider._options`).
        client.auth_token = None
        if not api_key:
            client.api_key = None
        return client
    # OpenAI-compatible servers often need no key, but the SDK insists on one (and would read OPENAI_API_KEY from the
    # environment if given None).
    return openai.AsyncOpenAI(
        api_key=api_key or "not-needed", base_url=base_url, max_retries=0, timeout=_timeout(), http_client=http_client
    )


def client_for(kind: str, base_url: str | None, api_key: str):
    """`kind` is "openai" (OpenAI and compatible servers) or "anthropic"."""
    loop = asyncio.get_running_loop()
    per_loop = _clients.get(loop)
    if per_loop is None:
        per_loop = _clients[loop] = {}
    key = (kind, base_url, api_key, settings.REQUEST_TIMEOUT)
    client = per_loop.get(key)
    if client is None:
        client = per_loop[key] = _make(kind, base_url, api_key)
    return client


class SDKProvider:
    """What both SDK-backed providers share: a name, an endpoint and a key, and this process's client for them."""

    kind = "openai"  # which SDK: "openai" (OpenAI and compatible servers) or "anthropic"

    def __init__(self, *, name: str, base_url: str | None, api_key: str) -> None:
        self.name = name
        self.base_url = base_url
        self.api_key = api_key

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} base_url={self.base_url!r}>"  # never the key

    def _client(self):
        return client_for(self.kind, self.base_url, self.api_key)

    async def _post(self, path: str, body: dict, *, cast_to, stream_cls=None):
        """A request through the SDK's own client (auth headers, timeout, connection pool, its exceptions and
        typed responses), without the per-call transform of typed params that `create()` runs first: our bodies
        are plain JSON already, and that transform was the SDK's largest CPU cost here (~1.2 ms a call)."""
        client = self._client()
        options = self._options()
        if stream_cls is None:
            return await client.post(path, body=body, cast_to=cast_to, options=options)
        return await client.post(path, body=body, cast_to=cast_to, options=options, stream=True, stream_cls=stream_cls)

    def _options(self) -> dict:
        if self.kind == "anthropic" and not self.api_key:
            # The SDK refuses to send a request without an auth header unless one is explicitly omitted.
            return {"headers": {"X-Api-Key": anthropic.Omit()}}
        return {}
