"""`Idempotency-Key`: the first answer to a request is stored (per token and key, in the database) and replayed to
retries with the same key and body, so a retried batch or job is never billed twice. The same key with a
different body is a 409; a retry while the first request is still being answered is a 409 with Retry-After.

Views use `idempotency_guard`, the one sequence (reserve, replay or answer, store, release on failure) for sync
(`with`) and async (`async with`) code."""

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from common.aio import shielded
from common.errors import Conflict
from common.idempotency_keys import HEADER, idempotency_key_from_headers
from jobs.models import IdempotencyKey

# A reservation older than this was left by a request that died (server restart mid-batch): a retry takes it over.
ABANDONED_AFTER = timedelta(minutes=10)


@dataclass(frozen=True)
class Replay:
    status_code: int
    body: dict[str, Any]


def fingerprint(*, method: str, path: str, body: Any, extra: str = "") -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{method} {path}\n{canonical}\n{extra}".encode()).hexdigest()


def _expired(row: IdempotencyKey, now) -> bool:
    return row.created_at < now - timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL)


def idempotency_reserve(*, token_id: int, key: str, fingerprint: str) -> Replay | None:
    """None: the caller answers the request and then calls `idempotency_store` (or `idempotency_release`).
    A Replay: the stored first answer. Raises Conflict for a different body or a request still in progress."""
    for _ in range(3):  # a row that expires or is released between our two statements: try again
        now = timezone.now()
        try:
            with transaction.atomic():
                IdempotencyKey.objects.create(token_id=token_id, key=key, fingerprint=fingerprint, created_at=now)
            return None
        except IntegrityError:
            pass
        row = IdempotencyKey.objects.filter(token_id=token_id, key=key).first()
        if row is None:
            continue
        if _expired(row, now):
            IdempotencyKey.objects.filter(pk=row.pk, created_at=row.created_at).delete()
            continue
        if row.fingerprint != fingerprint:
            raise Conflict(
                f"This `{HEADER}` was already used for a different request; use a new key for a new request.",
                code="idempotency_key_reused",
            )
        if row.status_code is not None:
            return Replay(status_code=row.status_code, body=row.response)
        if row.created_at < now - ABANDONED_AFTER:
            taken = IdempotencyKey.objects.filter(pk=row.pk, created_at=row.created_at, status_code=None).update(
                created_at=now
            )
            if taken:
                return None
            continue
        raise Conflict(
            f"A request with this `{HEADER}` is still being answered; retry in a moment.",
            code="idempotency_key_in_use",
            headers={"Retry-After": "1"},
        )
    raise Conflict(f"This `{HEADER}` is changing under us; retry in a moment.", code="idempotency_key_in_use")


def idempotency_store(*, token_id: int, key: str, status_code: int, body: dict[str, Any]) -> None:
    IdempotencyKey.objects.filter(token_id=token_id, key=key, status_code=None).update(
        status_code=status_code, response=body
    )


def idempotency_release(*, token_id: int, key: str) -> None:
    """The request failed as a whole (e.g. rate limited): forget the reservation so a retry runs it."""
    IdempotencyKey.objects.filter(token_id=token_id, key=key, status_code=None).delete()


def idempotency_purge_expired() -> int:
    cutoff = timezone.now() - timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL)
    return IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()[0]


class IdempotencyGuard:
    """One request's `Idempotency-Key`, as a context manager for sync (`with`) or async (`async with`) code.

    Entering reserves the key (a 409 if it is in use or was used for another body); `replay` is then the stored
    first answer, to be sent as it is, or None: answer the request and `store`/`astore` the answer. If the block
    raises (an error, a crash, the client hanging up) before the answer is stored, the reservation is released,
    so a retry with the key runs the request again. Without a key it does nothing."""

    __slots__ = ("token_id", "key", "fingerprint", "replay", "_held")

    def __init__(self, *, token_id: int, key: str | None, fingerprint: str = "") -> None:
        self.token_id, self.key, self.fingerprint = token_id, key, fingerprint
        self.replay: Replay | None = None
        self._held = False

    def _reserved(self, replay: Replay | None) -> "IdempotencyGuard":
        self.replay, self._held = replay, replay is None
        return self

    def __enter__(self) -> "IdempotencyGuard":
        if self.key is None:
            return self
        return self._reserved(idempotency_reserve(token_id=self.token_id, key=self.key, fingerprint=self.fingerprint))

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is not None and self._held:
            self._held = False
            idempotency_release(token_id=self.token_id, key=self.key)

    def store(self, *, status_code: int, body: dict[str, Any]) -> None:
        if self._held:
            idempotency_store(token_id=self.token_id, key=self.key, status_code=status_code, body=body)
            self._held = False

    async def __aenter__(self) -> "IdempotencyGuard":
        if self.key is None:
            return self
        reserve = sync_to_async(idempotency_reserve)
        return self._reserved(await reserve(token_id=self.token_id, key=self.key, fingerprint=self.fingerprint))

    async def __aexit__(self, exc_type, exc, traceback) -> None:
        if exc_type is not None and self._held:
            self._held = False
            # Shielded: a client that hangs up cancels the request, and the release must still happen.
            await shielded(sync_to_async(idempotency_release)(token_id=self.token_id, key=self.key))

    async def astore(self, *, status_code: int, body: dict[str, Any]) -> None:
        if self._held:
            await sync_to_async(idempotency_store)(
                token_id=self.token_id, key=self.key, status_code=status_code, body=body
            )
            self._held = False


def idempotency_guard(*, token_id: int, headers, method: str, path: str, body: Any) -> IdempotencyGuard:
    """The guard for a request: its `Idempotency-Key` header (a 400 if malformed) and the fingerprint of its body."""
    key = idempotency_key_from_headers(headers)
    if key is None:
        return IdempotencyGuard(token_id=token_id, key=None)
    return IdempotencyGuard(token_id=token_id, key=key, fingerprint=fingerprint(method=method, path=path, body=body))
