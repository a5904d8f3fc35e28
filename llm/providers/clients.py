"""SDK clients, created once per process (per event loop) and reused, so connections are pooled.

Under ASGI there is one event loop per worker, hence one client per (provider, base URL, key). Under WSGI each
request runs its async view in a fresh loop, and an httpx pool cannot outlive its loop, so clients are keyed by
loop too (slower, but correct).
"""

import asyncio
import re
import typing
import weakref
from contextlib import asynccontextmanager
from types import ModuleType
from typing import ClassVar

import httpx
import orjson
from django.conf import settings

from common.parsers import dumps
from llm.providers.base import ProviderError
from llm.providers.errors import from_sdk_error

_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict]" = weakref.WeakKeyDictionary()


def _limits() -> httpx.Limits:
    return httpx.Limits(max_connections=1000, max_keepalive_connections=200, keepalive_expiry=30)


def _timeout() -> httpx.Timeout:
    return httpx.Timeout(settings.REQUEST_TIMEOUT, connect=min(settings.REQUEST_TIMEOUT, 10.0))


def _http_client(sdk) -> httpx.AsyncClient:
    # The SDKs' own aiohttp transport (httpx-aiohttp): measured here at twice httpx's default transport's
    # throughput at 100 concurrent requests (httpcore's pool bookkeeping grows with connections x requests).
    # Redirects are never followed: a route's base URL is checked against LLM_BASE_URL_ALLOWLIST, and an allowed host
    # answering 307 must not carry the prompt on to a host that is not (the SDKs' clients follow them by default).
    if settings.LLM_HTTP_TRANSPORT == "aiohttp":
        return sdk.DefaultAioHttpClient(limits=_limits(), timeout=_timeout(), follow_redirects=False)
    return httpx.AsyncClient(limits=_limits(), timeout=_timeout(), follow_redirects=False)


class _Sender:
    """Sends a request through one SDK client's own HTTP transport, with the headers the SDK sends (its auth,
    version and platform headers over the HTTP client's own), its timeout, its exceptions and its SSE stream class,
    prepared once per client rather than on every call: the SDK's `post()` copies and validates its request options,
    merges the headers and joins the URL each time (measured: a third of the SDK's CPU per call here), and the HTTP
    client's `send()` then merges them again and runs its auth, redirect and cookie steps, none of which applies
    here (no auth flow, redirects are never followed, and an upstream's cookies are not kept to be sent back with
    other users' requests). Retries stay off (the clients have max_retries=0; djllm retries itself), so the SDK's
    retry headers are constant."""

    def __init__(self, sdk: ModuleType, client, extra_headers: dict) -> None:
        self.sdk = sdk
        self.client = client
        self.http = client._client  # the httpx client given to the SDK client (`_http_client`)
        timeout = client.timeout
        sdk_headers = {**client.default_headers, **extra_headers}
        sdk_headers["x-stainless-retry-count"] = "0"
        if isinstance(timeout, httpx.Timeout) and timeout.read is not None:
            sdk_headers["x-stainless-read-timeout"] = str(timeout.read)
        headers = httpx.Headers(self.http.headers)
        for name, value in sdk_headers.items():
            if isinstance(value, sdk.Omit):
                headers.pop(name, None)
            else:
                headers[name] = value
        self.headers = headers
        self.timeout = httpx.Timeout(timeout).as_dict()
        self._targets: dict[str, tuple[httpx.URL, httpx.AsyncBaseTransport]] = {}

    def target(self, path: str) -> tuple[httpx.URL, httpx.AsyncBaseTransport]:
        """The URL of `path` and the transport the HTTP client sends it through (a proxy's, if one is mounted)."""
        target = self._targets.get(path)
        if target is None:
            url = self.client._prepare_url(path)
            target = self._targets[path] = (url, self.http._transport_for_url(url))
        return target

    async def post(self, path: str, body: dict, *, cast_to, stream_cls=None):
        url, transport = self.target(path)
        request = httpx.Request(
            "POST", url, headers=self.headers, content=dumps(body), extensions={"timeout": self.timeout}
        )
        response = None
        try:
            response = await transport.handle_async_request(request)
            response.request = request
            if stream_cls is None:
                await response.aread()  # closes the stream once read: the connection goes back to the pool
        except BaseException as exc:
            if response is not None:
                await response.aclose()
            if isinstance(exc, httpx.TimeoutException):
                raise self.sdk.APITimeoutError(request=request) from exc
            if isinstance(exc, Exception):
                raise self.sdk.APIConnectionError(request=request) from exc
            raise
        if not response.is_success:
            await response.aread()
            await response.aclose()
            raise self.client._make_status_error_from_response(response)
        if stream_cls is not None:
            # Each event is read as the stream's type argument (AsyncStream[X]), as the SDK does.
            event_type = (typing.get_args(stream_cls) or (object,))[0]
            return stream_cls(cast_to=event_type, response=response, client=self.client)
        data = orjson.loads(response.content)
        return data if cast_to is object else cast_to.construct(**data)


def sender_for(provider: "type[SDKProvider]", base_url: str | None, api_key: str, extra_headers: dict) -> _Sender:
    """This loop's sender (SDK client) of `provider`'s SDK kind for (base URL, key); providers of one kind build
    theirs alike."""
    loop = asyncio.get_running_loop()
    per_loop = _clients.get(loop)
    if per_loop is None:
        per_loop = _clients[loop] = {}
    key = (provider.kind, base_url, api_key, settings.REQUEST_TIMEOUT)
    sender = per_loop.get(key)
    if sender is None:
        client = provider.new_client(
            base_url=base_url, api_key=api_key, http_client=_http_client(provider.sdk), timeout=_timeout()
        )
        sender = per_loop[key] = _Sender(provider.sdk, client, extra_headers)
    return sender


class SDKProvider:
    """A provider: everything about it is declared here, on its class, and the rest of djllm derives from the
    registry (`llm.providers.registry`): the choices of forms and model fields, the `provider` values the APIs
    accept, the `name/` model prefixes, routing by model family, the default model, and the SDK client.

    An instance serves one request's route: a name, an endpoint and a key, and this process's client for them."""

    name: ClassVar[str]  # the id: a model prefix (`name/model`), stored on usage records and routes
    label: ClassVar[str]  # as forms and the admin show it
    kind: ClassVar[str]  # which SDK: "openai" (OpenAI and compatible servers) or "anthropic"
    sdk: ClassVar[ModuleType]  # that SDK's module (its exceptions, its aiohttp transport)
    api_key_setting: ClassVar[str]  # the server's key for this provider
    base_url_setting: ClassVar[str]  # the server's endpoint for it (blank: `sdk_base_url`)
    sdk_base_url: ClassVar[str | None] = None  # where the SDK sends requests when no base URL is set
    model_setting: ClassVar[str]  # the default model when a request names none
    requires: ClassVar[str] = "api_key"  # what must be configured for it to serve: "api_key" or "base_url"
    model_pattern: ClassVar["re.Pattern[str] | None"] = None  # model names routed here without a prefix or alias
    model_hint: ClassVar[str] = ""  # those names in short, for the unknown-model message ("claude-*")
    lists_default_model: ClassVar[bool] = True  # `GET /v1/models` lists its default model when it is configured
    default_max_tokens_setting: ClassVar[str | None] = None  # the `max_tokens` sent when a request sets none
    # `POST /v1/responses` goes to the upstream's own Responses endpoint: always (`responses_api`), or when the
    # route says its server has one (`responses_api_by_route`: OpenAI-compatible servers differ by version).
    # Neither: the chat translation, and a route cannot claim the endpoint (its form refuses the flag).
    responses_api: ClassVar[bool] = False
    responses_api_by_route: ClassVar[bool] = False

    def __init__(self, *, name: str, base_url: str | None, api_key: str, responses_api: bool = False) -> None:
        self.name = name
        self.base_url = base_url
        self.api_key = api_key
        # This route's server: a Responses request is sent to its Responses endpoint as it is.
        self.serves_responses = type(self).responses_api or (type(self).responses_api_by_route and responses_api)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} base_url={self.base_url!r}>"  # never the key

    @classmethod
    def new_client(cls, *, base_url: str | None, api_key: str, http_client: httpx.AsyncClient, timeout):
        raise NotImplementedError

    @classmethod
    def configured_base_url(cls) -> str | None:
        """The base URL the server's own key for this provider belongs to."""
        return getattr(settings, cls.base_url_setting, None) or cls.sdk_base_url

    @classmethod
    def default_model(cls) -> str:
        return getattr(settings, cls.model_setting)

    @classmethod
    def default_max_tokens(cls) -> int | None:
        return getattr(settings, cls.default_max_tokens_setting) if cls.default_max_tokens_setting else None

    async def _post(self, path: str, body: dict, *, cast_to, stream_cls=None):
        """A request through the SDK client's HTTP client, headers, exceptions and typed responses (`_Sender`),
        without the per-call transform of typed params that `create()` runs first: our bodies are plain JSON
        already, and that transform was the SDK's largest CPU cost here (~1.2 ms a call)."""
        sender = sender_for(type(self), self.base_url, self.api_key, self._headers())
        return await sender.post(path, body, cast_to=cast_to, stream_cls=stream_cls)

    @asynccontextmanager
    async def _streaming(self, path: str, body: dict, *, cast_to, stream_cls):
        """The upstream's event stream: what goes wrong while it is read becomes a ProviderError, and it is closed
        when the reader stops (closing the SDK stream closes its connection, so a client that hung up stops the
        upstream too)."""
        upstream = None
        try:
            upstream = await self._post(path, body, cast_to=cast_to, stream_cls=stream_cls)
            yield upstream
        except ProviderError:
            raise
        except Exception as exc:
            raise from_sdk_error(exc, self.name) from exc
        finally:
            if upstream is not None:
                await upstream.close()

    def _headers(self) -> dict:
        """Headers added to (or, as the SDK's `Omit()`, removed from) the SDK client's own."""
        return {}
