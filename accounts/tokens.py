"""Token format: `djl_<prefix>_<secret>`. The prefix (8 hex chars) is visible and indexed; the secret carries
256 bits of randomness. Only the SHA-256 of the whole token is stored."""

import hashlib
import hmac
import secrets

TOKEN_MARKER = "djl"
PREFIX_LENGTH = 8


def generate_token() -> tuple[str, str]:
    """A new (plaintext, prefix) pair."""
    prefix = secrets.token_hex(PREFIX_LENGTH // 2)
    return f"{TOKEN_MARKER}_{prefix}_{secrets.token_urlsafe(32)}", prefix


def token_digest(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def split_prefix(plaintext: str) -> str | None:
    """The lookup prefix of a well-formed token, or None."""
    parts = plaintext.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_MARKER or len(parts[1]) != PREFIX_LENGTH or len(parts[2]) < 20:
        return None
    return parts[1]


def digests_match(plaintext: str, digest: str) -> bool:
    return hmac.compare_digest(token_digest(plaintext), digest)
