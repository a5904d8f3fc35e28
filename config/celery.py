"""The Celery app. Broker: Redis when REDIS_URL is set, else kombu's SQLAlchemy transport on a SQLite file under
var/ (no server to run); see docs/jobs.md. Run a worker with `make worker` (`make run` starts one too).

A worker started directly (`celery -A config worker`) uses the production settings unless DJANGO_SETTINGS_MODULE
says otherwise; the Makefile's targets name the development settings."""

import os
from pathlib import Path

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

app = Celery("djllm")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def ensure_broker_directory(url: str) -> None:
    """SQLite makes the file but not its folder."""
    prefix = "sqla+sqlite:///"
    if url.startswith(prefix) and url[len(prefix) :] not in ("", ":memory:"):
        Path(url[len(prefix) :]).parent.mkdir(parents=True, exist_ok=True)
