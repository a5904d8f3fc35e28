"""Celery beat runs `monitoring.alerts_evaluate` every ALERT_CHECK_SECONDS (CELERY_BEAT_SCHEDULE)."""

from celery import shared_task

from monitoring.alerts import alerts_evaluate


@shared_task(name="monitoring.alerts_evaluate", ignore_result=True)
def alerts_evaluate_task() -> int:
    return len(alerts_evaluate())
