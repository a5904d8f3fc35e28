"""The audit log: who did what, from where and through which path (the admin, the account page, the API, a
command). Services take an `Actor` (`by=`) and call `audit_event_record`; callers build the actor from their
request (`actor_from_request`) or as a command (`COMMAND`)."""

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from axes.helpers import get_client_ip_address

from common.models import AuditEvent

VIA_ADMIN = "admin"
VIA_ACCOUNT = "account"
VIA_API = "api"
VIA_COMMAND = "command"
VIA_SYSTEM = "system"


@dataclass(frozen=True)
class Actor:
    user: Any = None
    ip: str | None = None
    via: str = VIA_SYSTEM
    description: str = ""

    @property
    def label(self) -> str:
        if self.description:
            return self.description
        if self.user is not None and getattr(self.user, "pk", None) is not None:
            return self.user.get_username()
        return self.via


COMMAND = Actor(via=VIA_COMMAND, description="command")
SYSTEM = Actor(via=VIA_SYSTEM, description="system")


def client_ip(request) -> str | None:
    """The client's address as the login throttle (django-axes) reads it, so both agree behind a proxy."""
    request = getattr(request, "_request", request)  # a DRF request wraps Django's
    return get_client_ip_address(request) or None


def actor_from_request(request, *, via: str) -> Actor:
    user = getattr(request, "user", None)
    if user is not None and not getattr(user, "is_authenticated", False):
        user = None
    return Actor(user=user, ip=client_ip(request), via=via)


def _plain(value: Any) -> Any:
    """JSON-ready: decimals and dates as strings, containers recursively."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "pk"):
        return value.pk
    return str(value)


def audit_event_record(
    *,
    by: Actor | None,
    action: str,
    target: Any = None,
    target_type: str = "",
    target_id: Any = "",
    target_label: str = "",
    details: dict | None = None,
) -> AuditEvent:
    """Store one event. `target` (a model instance) fills the type, id and label unless they are given. The caller
    puts no secret in `details`."""
    by = by or SYSTEM
    if target is not None:
        target_type = target_type or target._meta.label_lower
        target_id = target_id or target.pk
        target_label = target_label or str(target)
    user = by.user if by.user is not None and getattr(by.user, "pk", None) is not None else None
    return AuditEvent.objects.create(
        actor=user,
        actor_description=by.label[:150],
        ip=by.ip,
        via=by.via,
        action=action,
        target_type=target_type,
        target_id=str(target_id or "")[:64],
        target_label=str(target_label)[:200],
        details=_plain(details or {}),
    )
