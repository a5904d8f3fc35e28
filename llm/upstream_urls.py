"""Which upstream base URLs a model route may point at, and which of them count as a provider's own endpoint.

A route's base URL is where djllm sends the prompt (and the route's key), so an admin typo or a hostile edit must not
turn the gateway into a proxy to an arbitrary host (SSRF). `LLM_BASE_URL_ALLOWLIST` lists the hosts a route may name;
the hosts of each provider's configured base URL (`OPENAI_BASE_URL`, `ANTHROPIC_BASE_URL`, `LOCAL_LLM_BASE_URL`) are
always allowed.

Entries: a host name (`api.openai.com`), a subdomain wildcard (`*.openrouter.ai`), an IP address or a network in CIDR
form (`127.0.0.0/8`, `::1`). Blank: `DEFAULT_ALLOWLIST` (the providers' public hosts and loopback).
"""

import ipaddress
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

from llm.providers.registry import PROVIDERS

LOOPBACK = ("localhost", "127.0.0.0/8", "::1")
# The registered providers' public hosts (the SDKs' own endpoints) and loopback.
DEFAULT_ALLOWLIST = (
    *(urlsplit(provider.sdk_base_url).hostname for provider in PROVIDERS.values() if provider.sdk_base_url),
    *LOOPBACK,
)


def configured_base_url(provider: str) -> str | None:
    """The base URL the server's own key for `provider` belongs to."""
    return PROVIDERS[provider].configured_base_url()


def _endpoint(url: str) -> tuple | None:
    try:
        parts = urlsplit(url.strip())
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    if parts.username or parts.password:
        return None  # never "the same" as a configured URL: the SDK would send the URL's credentials too
    return parts.scheme.lower(), (parts.hostname or "").lower(), port, parts.path.rstrip("/")


def is_configured_endpoint(url: str, provider: str) -> bool:
    """True when `url` is the provider's configured base URL (scheme, host, port and path; a trailing `/` aside)."""
    configured = configured_base_url(provider)
    return bool(configured) and _endpoint(url) is not None and _endpoint(url) == _endpoint(configured)


def allowlist() -> list[str]:
    entries = list(getattr(settings, "LLM_BASE_URL_ALLOWLIST", None) or DEFAULT_ALLOWLIST)
    for provider in PROVIDERS:
        configured = configured_base_url(provider)
        host = urlsplit(configured).hostname if configured else None
        if host:
            entries.append(host)
    hosts = []
    for entry in entries:
        entry = (entry or "").strip().lower()
        if "://" in entry:  # a whole URL written where a host was meant: its host
            entry = urlsplit(entry).hostname or ""
        if entry:
            hosts.append(entry)
    return hosts


def _host_allowed(host: str, entries: list[str]) -> bool:
    host = host.lower().rstrip(".")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in entries:
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        if entry.startswith("*."):
            if host.endswith(entry[1:]) and host != entry[2:]:
                return True
        elif host == entry:
            return True
    return False


def base_url_problem(url: str) -> str | None:
    """None when a route may use `url`; otherwise why not (an operator-facing sentence)."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError:
        return "The base URL is not a valid URL."
    if parts.scheme.lower() not in ("http", "https"):
        return "The base URL must start with http:// or https://."
    if parts.username or parts.password:
        return "The base URL must not hold credentials; put the key in the API key field."
    host = parts.hostname
    if not host:
        return "The base URL has no host."
    if not _host_allowed(host, allowlist()):
        return f"The host {host!r} is not in LLM_BASE_URL_ALLOWLIST; add it there to allow routes to it."
    return None


def validate_base_url(url: str) -> None:
    """Django validator form of `base_url_problem` (admin forms, model `full_clean`)."""
    if url:
        problem = base_url_problem(url)
        if problem:
            raise ValidationError(problem, code="base_url_not_allowed")
