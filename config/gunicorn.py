"""gunicorn settings for `make serve` (flags on the command line override these).

A deploy (SIGTERM) gives the requests in flight `graceful_timeout` seconds before their worker is killed. One upstream
attempt may take REQUEST_TIMEOUT, and a draining worker starts no retry or fallback (common/shutdown.py), so the
timeout follows REQUEST_TIMEOUT, plus a margin for the usage records to be written: GRACEFUL_TIMEOUT overrides it.
"""

import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # gunicorn loads this file before the app

from config.env import env  # noqa: E402  (reads .env like the settings do)

GRACEFUL_MARGIN = 15  # seconds: a call's record, and the flush of the queued records, after its last attempt

worker_class = "uvicorn_worker.UvicornWorker"
_override = env.str("GRACEFUL_TIMEOUT", default="").strip()
graceful_timeout = (
    int(_override) if _override else math.ceil(env.float("REQUEST_TIMEOUT", default=60.0)) + GRACEFUL_MARGIN
)
# A worker that is shutting down on its own (a HUP reload, `max_requests`) no longer reports to the arbiter, which
# kills a silent worker after `timeout` seconds: give it the same time.
timeout = graceful_timeout


# Metrics (docs/metrics.md): the workers add up their counters through files in PROMETHEUS_MULTIPROC_DIR
# (prometheus_client's multiprocess mode), which must be set before any worker imports prometheus_client. Unset: a
# fresh directory for this server. Set: emptied at start, so a restart does not add the last run's counts again.
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
if _metrics_dir:
    Path(_metrics_dir).mkdir(parents=True, exist_ok=True)
    for _stale in Path(_metrics_dir).glob("*.db"):
        _stale.unlink()
    _made_metrics_dir = None
else:
    _made_metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="djllm-metrics-")


def child_exit(server, worker):
    """A dead worker's live gauges (the recorder queue) stop counting; its counters stay in the sums."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """The directory made for this server goes with it (one given in PROMETHEUS_MULTIPROC_DIR stays)."""
    if _made_metrics_dir:
        shutil.rmtree(_made_metrics_dir, ignore_errors=True)
