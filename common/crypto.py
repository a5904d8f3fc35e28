"""Encryption at rest for secrets stored in the database (MultiFernet: the first key encrypts, all decrypt).

`FIELD_ENCRYPTION_KEYS` holds the keys. Blank is allowed in development only (the production settings refuse to
start without it): the fields then use a key derived from `SECRET_KEY`, so `make run` works with no setup. That
derived key is also accepted as an *old* key by `manage.py rotate_encryption_keys`, so an install that ran without
`FIELD_ENCRYPTION_KEYS` moves its stored secrets under the new key without losing them.
"""

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class DecryptionFailed(ImproperlyConfigured):
    """A stored value cannot be decrypted with any configured key (a wrong or dropped key, not a code bug)."""


class UnreadableSecret:
    """What an encrypted field holds when its stored value cannot be decrypted with the configured keys.

    Not a string, so it can never be sent anywhere as a key by mistake; saved back as the ciphertext it was read from,
    so a row saved with it (e.g. an admin toggling another field) keeps its stored secret for when the right key
    returns. Its repr never shows the ciphertext.
    """

    __slots__ = ("ciphertext", "keys_setting")

    def __init__(self, ciphertext: str, keys_setting: str) -> None:
        self.ciphertext = ciphertext
        self.keys_setting = keys_setting

    def __repr__(self) -> str:
        return f"<UnreadableSecret: not decryptable with {self.keys_setting}>"

    __str__ = __repr__

    def __eq__(self, other) -> bool:
        return isinstance(other, UnreadableSecret) and other.ciphertext == self.ciphertext

    def __hash__(self) -> int:
        return hash(self.ciphertext)


def _derive(secret: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(b"djllm-field-encryption:" + secret.encode()).digest()).decode()


def derived_keys() -> tuple[str, ...]:
    """The keys derived from `SECRET_KEY` (and `SECRET_KEY_FALLBACKS`): what earlier installs encrypted with."""
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return tuple(_derive(secret) for secret in secrets if secret)


def configured_keys(keys_setting: str = "FIELD_ENCRYPTION_KEYS") -> tuple[str, ...]:
    value = getattr(settings, keys_setting, None) or ()
    if isinstance(value, str):
        value = value.split(",")
    return tuple(key.strip() for key in value if key and key.strip())


def keys_problem(keys_setting: str = "FIELD_ENCRYPTION_KEYS") -> str | None:
    """None when the configured keys are usable (or blank); otherwise what is wrong, never the key itself."""
    for position, key in enumerate(configured_keys(keys_setting), start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            return f"{keys_setting}: key #{position} is not a Fernet key (32 url-safe base64-encoded bytes)."
    return None


@lru_cache(maxsize=16)
def _multifernet(keys: tuple[str, ...], keys_setting: str) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except (ValueError, TypeError):
        raise ImproperlyConfigured(keys_problem(keys_setting) or f"{keys_setting} holds an invalid key.") from None


def multifernet(keys_setting: str = "FIELD_ENCRYPTION_KEYS") -> MultiFernet:
    """The configured keys; with none (development only), the key derived from `SECRET_KEY`."""
    return _multifernet(configured_keys(keys_setting) or derived_keys()[:1], keys_setting)


def rotation_multifernet(keys_setting: str = "FIELD_ENCRYPTION_KEYS") -> MultiFernet:
    """For re-encryption: encrypts with the first configured key, decrypts with every configured key and, after them,
    the keys derived from `SECRET_KEY` (what an install without `FIELD_ENCRYPTION_KEYS` wrote)."""
    keys = configured_keys(keys_setting)
    extra = tuple(key for key in derived_keys() if key not in keys)
    return _multifernet(keys + extra, keys_setting)


def encrypt(plaintext: str, *, keys_setting: str = "FIELD_ENCRYPTION_KEYS") -> str:
    return multifernet(keys_setting).encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str, *, keys_setting: str = "FIELD_ENCRYPTION_KEYS") -> str:
    try:
        return multifernet(keys_setting).decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise DecryptionFailed(f"A stored secret cannot be decrypted with {keys_setting}.") from None


def rotate(ciphertext: str, *, keys_setting: str = "FIELD_ENCRYPTION_KEYS") -> str:
    """Re-encrypt under the first configured key (idempotent); accepts the derived key as an old key."""
    try:
        return rotation_multifernet(keys_setting).rotate(ciphertext.encode()).decode()
    except InvalidToken:
        raise DecryptionFailed(f"A stored secret cannot be decrypted with {keys_setting}.") from None
