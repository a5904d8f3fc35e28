"""A per-process copy of a small table that admins edit rarely (prices, model routes, prompt templates).

Each process re-reads it at most every `seconds`, and at once after `changed()` (the admin calls that after a save
in this process; other processes catch up within `seconds`). When the copy goes stale under load, one request
re-reads it and the others arriving meanwhile wait for that read instead of each reading it again. The read runs
on the process's database thread, whose connection stays open.
"""

import time
from collections.abc import Callable
from typing import Generic, TypeVar

from common.aio import single_flight
from common.db_thread import run_in_db_thread

T = TypeVar("T")


class ProcessCopy(Generic[T]):
    def __init__(self, load: Callable[[], T], *, seconds: float, empty: T) -> None:
        self._load = load
        self._seconds = seconds
        self._value = empty
        self._loaded_at = -1e9
        self._generation = 0  # bumped by changed(): a read that began before a change does not count as fresh

    async def aget(self) -> T:
        if time.monotonic() - self._loaded_at <= self._seconds:
            return self._value
        return await single_flight(self, self._refresh)

    async def _refresh(self) -> T:
        generation = self._generation
        value = await run_in_db_thread(self._load)
        self._value = value
        if generation == self._generation:
            self._loaded_at = time.monotonic()
        return value

    def changed(self) -> None:
        self._generation += 1
        self._loaded_at = -1e9
