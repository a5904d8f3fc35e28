"""Background jobs and their items (the database is the source of truth: workers only claim and fill rows), and
stored answers for `Idempotency-Key`."""

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"  # stopped for a reason that concerns every row (budget used up, token revoked)


FINISHED_JOB_STATUSES = (JobStatus.DONE, JobStatus.CANCELLED, JobStatus.FAILED)


class ItemStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"  # claimed by a worker under a lease
    OK = "ok"
    ERROR = "error"
    CANCELLED = "cancelled"


FINISHED_ITEM_STATUSES = (ItemStatus.OK, ItemStatus.ERROR, ItemStatus.CANCELLED)


class SourceKind(models.TextChoices):
    JSON = "json"
    XLSX = "xlsx"
    CSV = "csv"
    FILE = "file"  # a document processed map-reduce (jobs/file_process.py)


class Job(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    token = models.ForeignKey("accounts.APIToken", null=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=12, choices=JobStatus.choices, default=JobStatus.QUEUED)
    request_id = models.CharField(max_length=128, blank=True)
    options = models.JSONField(default=dict, help_text="type, source, language, provider, model, system, parameters.")
    total = models.PositiveIntegerField(default=0)
    source_kind = models.CharField(max_length=8, choices=SourceKind.choices, default=SourceKind.JSON)
    upload_name = models.CharField(max_length=255, blank=True)
    upload = models.BinaryField(null=True, blank=True, help_text="The uploaded workbook or CSV, kept for the results.")
    upload_sheet = models.CharField(max_length=100, blank=True)
    upload_column = models.PositiveIntegerField(null=True, blank=True, help_text="1-based column of the prompts.")
    header_row = models.BooleanField(default=True)
    error_code = models.CharField(max_length=60, blank=True)
    error_message = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="Last sign of life from a worker.")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="job_status_heartbeat")]

    def __str__(self) -> str:
        return f"job {self.id} ({self.status})"

    @property
    def batch_id(self) -> str:
        """What every usage record of this job carries in `batch_id`."""
        return f"job_{self.id.hex}"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_JOB_STATUSES


class JobItem(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveIntegerField(help_text="0-based input order.")
    ref = models.JSONField(help_text="The client's item id, or the row number of an upload.")
    prompt = models.TextField(blank=True)
    model = models.CharField(max_length=200, blank=True, help_text="Per-item model; blank: the job's.")
    variables = models.JSONField(default=dict, blank=True, help_text="Per-item template variables.")
    status = models.CharField(max_length=12, choices=ItemStatus.choices, default=ItemStatus.PENDING)
    result = models.TextField(blank=True)
    error_code = models.CharField(max_length=60, blank=True)
    error_message = models.TextField(blank=True)
    cached = models.BooleanField(default=False)
    cost_usd = models.DecimalField(max_digits=24, decimal_places=12, null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    claim = models.CharField(max_length=64, blank=True, help_text="The claim (worker + round) holding the lease.")
    lease_until = models.DateTimeField(null=True, blank=True)
    # The record that billed this row: written in the same transaction as the result, so a row is billed once.
    usage_record = models.OneToOneField(
        "llm.UsageRecord", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "position"]
        constraints = [models.UniqueConstraint(fields=["job", "position"], name="uniq_job_item_position")]
        indexes = [
            models.Index(fields=["job", "status", "position"], name="job_item_status"),
            models.Index(fields=["claim"], name="job_item_claim"),
        ]

    def __str__(self) -> str:
        return f"{self.job_id}#{self.position} {self.status}"

    @property
    def request_id(self) -> str:
        """The request id of this row's usage records (and its log lines)."""
        return f"job_{self.job_id.hex}.{self.position}"


class IdempotencyKey(models.Model):
    """The first answer to a request sent with `Idempotency-Key`, replayed to retries with the same key and body."""

    token = models.ForeignKey("accounts.APIToken", on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the method, path and body.")
    status_code = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Blank: still being answered.")
    response = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["token", "key"], name="uniq_idempotency_token_key")]

    def __str__(self) -> str:
        return f"{self.key} ({self.status_code or 'in progress'})"
