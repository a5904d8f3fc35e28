"""Graceful shutdown of a web worker: nothing billed goes unrecorded.

On SIGTERM (a deploy, `docker stop`, gunicorn replacing a worker) the ASGI server stops accepting connections and
waits for the requests in flight, up to its graceful timeout. On top of that:

- the process is *draining* from the moment the signal arrives: the upstream attempt in flight finishes, but no
  new retry or fallback starts (llm/pipeline.py asks `draining()` before each), so one attempt bounds the wait;
- when the server has finished its requests it sends the ASGI lifespan `shutdown` event (common/asgi.py); the app
  then waits for the work that outlives its request (calls whose client hung up, records being written, see
  common/aio.py) and runs the flush hooks (the usage recorder's queue, llm/recorder.py) before it says it is done.

This needs the server's lifespan protocol on (uvicorn's and gunicorn's UvicornWorker's default, `auto`).
"""

import asyncio
import logging
import signal
import threading
from collections.abc import Awaitable, Callable

from common.aio import background_tasks

logger = logging.getLogger(__name__)

_draining = threading.Event()
_flush_hooks: list[Callable[[], Awaitable[None]]] = []


def draining() -> bool:
    """True once this process was asked to stop: start no new upstream attempt (retry or fallback)."""
    return _draining.is_set()


def begin_draining() -> None:
    _draining.set()


def register_flush(hook: Callable[[], Awaitable[None]]) -> None:
    """An async callable run at shutdown, after the requests and their background work are done."""
    if hook not in _flush_hooks:
        _flush_hooks.append(hook)


def install_signal_hooks(loop: asyncio.AbstractEventLoop) -> None:
    """Start draining as soon as SIGTERM or SIGINT arrives, not only once the server reaches the lifespan shutdown
    (that comes after the requests in flight are done, too late to stop their retries). The server's own handler
    (uvicorn installs it before the app's lifespan starts) still runs and does the rest."""
    if threading.current_thread() is not threading.main_thread():
        return  # signals belong to the main thread; a server run in a thread handles none
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous) or getattr(previous, "_djllm_drain", False):
            continue  # no server handler to chain to (the default would end the process at once), or done already

        def handler(signum, frame, previous=previous):
            if not draining():
                begin_draining()
                loop.call_soon_threadsafe(
                    logger.warning, "Signal %s: draining (no new retries or fallbacks; records flushed at exit)", signum
                )
            previous(signum, frame)

        handler._djllm_drain = True
        signal.signal(sig, handler)


async def drain(within: float) -> None:
    """Wait (up to `within` seconds) for the work that outlived its request, then run the flush hooks."""
    begin_draining()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        pending = background_tasks()
        remaining = deadline - loop.time()
        if not pending or remaining <= 0:
            break
        await asyncio.wait(pending, timeout=remaining)  # finishing work may start more (its record): look again
    if pending:
        logger.error("Shutdown: %d background task(s) still running after %.0fs", len(pending), within)
    for hook in _flush_hooks:
        try:
            await hook()
        except Exception:
            logger.exception("Shutdown: a flush hook failed")
