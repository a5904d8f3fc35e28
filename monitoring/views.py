"""`GET /metrics`: Prometheus's text format, for a staff user's token with the `metrics` scope or for a client
address in METRICS_ALLOWED_IPS (see docs/metrics.md). Refusals answer in djllm's error shape."""

import ipaddress

from django.conf import settings
from django.http import HttpResponse

from accounts.authentication import authenticate_plaintext, require_scope, token_from_headers
from accounts.models import Scope
from common.errors import AppError, PermissionDenied
from common.request_input import check_method
from common.responses import api_error_response
from monitoring.exposition import metrics_render


def address_allowed(address: str) -> bool:
    """Whether `address` (the connection's REMOTE_ADDR) is in METRICS_ALLOWED_IPS (addresses or networks)."""
    if not address or not settings.METRICS_ALLOWED_IPS:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(entry, strict=False) for entry in settings.METRICS_ALLOWED_IPS)


def _check_token(request) -> None:
    cached = authenticate_plaintext(token_from_headers(request.headers))
    require_scope(cached, Scope.METRICS.value)
    user = cached.token.user
    # Checked on every scrape, not only when the scope was given: a user who stops being staff stops reading.
    if not type(user).objects.filter(pk=user.pk, is_active=True, is_staff=True).exists():
        raise PermissionDenied("Only a staff user's token can read the metrics.")


def metrics(request):
    try:
        check_method(request, "GET", "HEAD")
        if not address_allowed(request.META.get("REMOTE_ADDR", "")):
            _check_token(request)
    except AppError as error:
        return api_error_response(error)
    body, content_type = metrics_render()
    return HttpResponse(body, content_type=content_type)
