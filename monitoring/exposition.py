"""What `/metrics` serves: the gateway's counters (llm/metrics.py), summed over every process in multiprocess mode,
and the figures read at scrape time (the job queue)."""

import os

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from monitoring import selectors


class JobQueueCollector:
    """`djllm_job_queue_depth{status}`: unfinished jobs, read from the database when scraped (one query)."""

    def collect(self):
        family = GaugeMetricFamily("djllm_job_queue_depth", "Unfinished jobs, by status.", labels=["status"])
        for status, count in selectors.job_queue_depth().items():
            family.add_metric([status], count)
        yield family


def multiprocess_dir() -> str:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


class _ThisProcess:
    """The default registry's metrics: this process's own values (with the process and Python collectors)."""

    def collect(self):
        yield from REGISTRY.collect()


def metrics_render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    registry = CollectorRegistry()
    if multiprocess_dir():
        MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    registry.register(JobQueueCollector())
    return generate_latest(registry), CONTENT_TYPE_LATEST
