from datetime import UTC, datetime

from django.conf import settings
from django.db import models
from django.utils import timezone

from calendars import crypto


class GoogleCredential(models.Model):
    """One user's Google authorization. Token columns hold Fernet ciphertext only (see `calendars.crypto`)."""

    class Status(models.TextChoices):
        CONNECTED = "connected", "Connected"
        NEEDS_RECONNECT = "needs_reconnect", "Needs reconnect"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="google_credential")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.CONNECTED)
    email = models.EmailField(blank=True, help_text="The Google account that granted access.")
    scopes = models.JSONField(default=list, help_text="The scopes Google actually granted.")
    refresh_token_encrypted = models.TextField(blank=True, editable=False)
    access_token_encrypted = models.TextField(blank=True, editable=False)
    expiry = models.DateTimeField(null=True, blank=True, help_text="When the access token expires.")
    connected_at = models.DateTimeField(default=timezone.now)
    refreshed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_error = models.CharField(max_length=300, blank=True)

    class Meta:
        verbose_name = "Google credential"

    def __str__(self) -> str:
        return f"{self.user} → {self.email or 'Google'} ({self.status})"

    # Plaintext views of the encrypted columns; only the services read or write them.
    @property
    def refresh_token(self) -> str:
        return crypto.decrypt(self.refresh_token_encrypted)

    @refresh_token.setter
    def refresh_token(self, value: str | None) -> None:
        self.refresh_token_encrypted = crypto.encrypt(value or "")

    @property
    def access_token(self) -> str:
        return crypto.decrypt(self.access_token_encrypted)

    @access_token.setter
    def access_token(self, value: str | None) -> None:
        self.access_token_encrypted = crypto.encrypt(value or "")

    @property
    def has_refresh_token(self) -> bool:
        return bool(self.refresh_token_encrypted)

    @property
    def needs_reconnect(self) -> bool:
        return self.status == self.Status.NEEDS_RECONNECT

    @property
    def expiry_naive_utc(self) -> datetime | None:
        """google-auth compares expiry as a naive UTC datetime."""
        return self.expiry.astimezone(UTC).replace(tzinfo=None) if self.expiry else None


class OAuthState(models.Model):
    """A pending consent: random, single-use, bound to one user, short-lived, with its PKCE code_verifier.

    Only a SHA-256 digest of the state is stored, and the verifier is encrypted like the tokens.
    """

    state_digest = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    code_verifier_encrypted = models.TextField(editable=False)
    redirect_uri = models.URLField(max_length=500)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "OAuth state"
        indexes = [models.Index(fields=["expires_at"])]

    def __str__(self) -> str:
        return f"OAuth state for {self.user} (expires {self.expires_at:%Y-%m-%d %H:%M})"

    @property
    def code_verifier(self) -> str:
        return crypto.decrypt(self.code_verifier_encrypted)
