"""Logins into the admin and the account page, successful or not, and django-axes lockouts, in the audit log."""

from axes.signals import user_locked_out
from django.contrib.auth.signals import user_logged_in, user_login_failed

from common.audit import VIA_ACCOUNT, VIA_ADMIN, VIA_SYSTEM, Actor, audit_event_record, client_ip


def _via(request) -> str:
    path = getattr(request, "path", "") or ""
    if path.startswith("/admin/"):
        return VIA_ADMIN
    if path.startswith("/account/"):
        return VIA_ACCOUNT
    return VIA_SYSTEM


def _username(credentials) -> str:
    return str((credentials or {}).get("username") or "")[:150]


def logged_in(sender, request, user, **kwargs) -> None:
    by = Actor(user=user, ip=client_ip(request) if request is not None else None, via=_via(request))
    audit_event_record(by=by, action="login.succeeded", target=user)


def login_failed(sender, credentials, request=None, **kwargs) -> None:
    # `credentials` comes cleansed by Django (the password masked); only the user name is kept.
    username = _username(credentials)
    by = Actor(ip=client_ip(request) if request is not None else None, via=_via(request), description=username)
    audit_event_record(by=by, action="login.failed", target_type="auth.user", target_label=username)


def locked_out(sender, request, username, ip_address, **kwargs) -> None:
    by = Actor(ip=ip_address or None, via=_via(request), description=str(username or "")[:150])
    audit_event_record(by=by, action="login.locked_out", target_type="auth.user", target_label=str(username or ""))


def connect() -> None:
    user_logged_in.connect(logged_in, dispatch_uid="audit_logged_in")
    user_login_failed.connect(login_failed, dispatch_uid="audit_login_failed")
    user_locked_out.connect(locked_out, dispatch_uid="audit_locked_out")
