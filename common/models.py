from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    """One security-relevant action: who did it (a user, or a command), from where, through which path, to what.

    Written by `common.audit.audit_event_record` only; never edited. `details` holds what changed, never a secret
    (no token plaintext or digest, no OAuth credentials, no provider keys)."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_description = models.CharField(max_length=150, blank=True, help_text='The user name, or "command".')
    ip = models.GenericIPAddressField(null=True, blank=True, verbose_name="IP")
    via = models.CharField(max_length=16, db_index=True, help_text="admin, account, api, command or system.")
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=200, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = "audit event"
        verbose_name_plural = "audit log"

    def __str__(self) -> str:
        target = f" {self.target_type} {self.target_label or self.target_id}".rstrip() if self.target_type else ""
        return f"{self.action}{target} by {self.actor_description or '?'} via {self.via}"
