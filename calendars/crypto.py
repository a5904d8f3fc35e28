"""Encryption at rest for the stored Google tokens: MultiFernet over `GOOGLE_TOKEN_ENCRYPTION_KEYS`.

The first key encrypts; every key decrypts, so a new key can be put first and the old one kept until
`manage.py rotate_encryption_keys` has re-encrypted every row. The keys are separate from `SECRET_KEY`:
there is deliberately no fallback derived from it.
"""

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

NO_KEYS = "GOOGLE_TOKEN_ENCRYPTION_KEYS is not set."


class CredentialDecryptError(Exception):
    """A stored value cannot be decrypted with any configured key."""


def configured_keys() -> tuple[str, ...]:
    value = getattr(settings, "GOOGLE_TOKEN_ENCRYPTION_KEYS", None) or ()
    if isinstance(value, str):
        value = value.split(",")
    return tuple(key.strip() for key in value if key and key.strip())


@lru_cache(maxsize=8)
def _multifernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def keys_problem() -> str | None:
    """None when the keys are usable; otherwise what is wrong (never the key itself)."""
    keys = configured_keys()
    if not keys:
        return NO_KEYS
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            return (
                f"GOOGLE_TOKEN_ENCRYPTION_KEYS: key #{position} is not a Fernet key (32 url-safe base64-encoded bytes)."
            )
    return None


def _current() -> MultiFernet:
    problem = keys_problem()
    if problem:
        from calendars.errors import CalendarNotConfigured

        raise CalendarNotConfigured(
            f"Google Calendar is not configured: {problem}", details={"missing": ["GOOGLE_TOKEN_ENCRYPTION_KEYS"]}
        )
    return _multifernet(configured_keys())


def encrypt(plaintext: str) -> str:
    """Fernet token (ASCII) for `plaintext`; an empty value stays empty."""
    if not plaintext:
        return ""
    return _current().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    if not ciphertext:
        return ""
    try:
        return _current().decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise CredentialDecryptError("A stored Google token cannot be decrypted with any configured key.") from None


def rotate(ciphertext: str) -> str:
    """Re-encrypt under the first key. Running it again on its own output is harmless."""
    if not ciphertext:
        return ""
    try:
        return _current().rotate(ciphertext.encode()).decode()
    except InvalidToken:
        raise CredentialDecryptError("A stored Google token cannot be decrypted with any configured key.") from None
