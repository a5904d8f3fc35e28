"""Celery tasks. The queue only carries wake-up calls (a job id): the job and its rows are in the database, so a
lost, late or duplicated message costs nothing. Workers resume every unfinished job when they start and, every
JOB_SWEEP_SECONDS, the jobs no worker has shown life for within a lease (their worker died)."""

import logging
import threading

from asgiref.sync import async_to_sync
from celery import shared_task
from celery.signals import worker_ready, worker_shutting_down
from django.conf import settings
from django.db import close_old_connections

from config.celery import ensure_broker_directory
from jobs import claims
from jobs.idempotency import idempotency_purge_expired
from jobs.runner import job_run

logger = logging.getLogger(__name__)

ensure_broker_directory(settings.CELERY_BROKER_URL)


@shared_task(name="jobs.process", ignore_result=True)
def job_process(job_id: str) -> None:
    async_to_sync(job_run)(job_id)


def jobs_sweep() -> int:
    """Queue the stalled jobs again and forget expired idempotency answers. Returns how many jobs were queued."""
    stalled = claims.jobs_stalled(lease_seconds=settings.JOB_ITEM_LEASE_SECONDS)
    for job_id in stalled:
        logger.warning("Job %s has had no worker for a lease; queueing it again", job_id)
        job_process.delay(str(job_id))
    idempotency_purge_expired()
    return len(stalled)


_stop = threading.Event()


def _sweeper() -> None:
    while not _stop.wait(max(settings.JOB_SWEEP_SECONDS, 0.2)):
        try:
            close_old_connections()
            jobs_sweep()
        except Exception:  # the database or the broker is away for a moment: the next sweep tries again
            logger.exception("Job sweep failed")
        finally:
            close_old_connections()


@worker_ready.connect
def _on_worker_ready(**kwargs) -> None:
    unfinished = claims.jobs_unfinished()
    for job_id in unfinished:
        job_process.delay(str(job_id))
    if unfinished:
        logger.info("Resuming %d unfinished job(s)", len(unfinished))
    close_old_connections()
    _stop.clear()
    threading.Thread(target=_sweeper, name="djllm-job-sweeper", daemon=True).start()


@worker_shutting_down.connect
def _on_worker_shutting_down(**kwargs) -> None:
    _stop.set()
