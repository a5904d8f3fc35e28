"""Encryption at rest for secrets stored in the database (MultiFernet: the first key encrypts, all decrypt)."""

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def _derived_key() -> bytes:
    # Development fallback only: a key derived from SECRET_KEY, so `make run` works with no setup.
    return base64.urlsafe_b64encode(hashlib.sha256(b"djllm-field-encryption:" + settings.SECRET_KEY.encode()).digest())


@lru_cache(maxsize=8)
def multifernet(keys_setting: str) -> MultiFernet:
    keys = [k.strip() for k in getattr(settings, keys_setting, []) if k.strip()]
    try:
        fernets = [Fernet(k) for k in keys] or [Fernet(_derived_key())]
    except ValueError as exc:
        raise ImproperlyConfigured(f"{keys_setting} holds an invalid Fernet key: {exc}") from None
    return MultiFernet(fernets)


def encrypt(plaintext: str, *, keys_setting: str = "FIELD_ENCRYPTION_KEYS") -> str:
    return multifernet(keys_setting).encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str, *, keys_setting: str = "FIELD_ENCRYPTION_KEYS") -> str:
    try:
        return multifernet(keys_setting).decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured(f"A stored secret cannot be decrypted with {keys_setting}.") from None


def rotate(ciphertext: str, *, keys_setting: str = "FIELD_ENCRYPTION_KEYS") -> str:
    """Re-encrypt under the first key (idempotent)."""
    return multifernet(keys_setting).rotate(ciphertext.encode()).decode()
