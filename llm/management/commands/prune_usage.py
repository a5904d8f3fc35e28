import re
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from common.audit import COMMAND
from llm import services


def _age(value: str) -> timedelta:
    match = re.fullmatch(r"\s*(\d+)\s*d\s*", value)
    if not match or int(match.group(1)) < 1:
        raise CommandError(f"--older-than takes a number of days such as 400d, not {value!r}.")
    return timedelta(days=int(match.group(1)))


class Command(BaseCommand):
    help = (
        "Delete usage records older than --older-than (e.g. 400d), whole UTC days (the cutoff is rounded down to "
        "midnight UTC), in batches, and print how many. Only raw usage records are deleted: the monthly spend totals "
        "that budgets read and the daily rollups that the dashboard and /api/v1/usage read are kept (and a later "
        "rebuild_usage_rollups leaves the pruned days alone). Jobs' rows that pointed at a deleted record keep their "
        "results. "
        "--dry-run counts and deletes nothing. Each real run is recorded in the audit log."
    )

    def add_arguments(self, parser):
        parser.add_argument("--older-than", required=True, type=_age, help="An age in days, e.g. 400d.")
        parser.add_argument("--dry-run", action="store_true", help="Count the records, delete nothing.")
        parser.add_argument("--batch-size", type=int, default=5000, help="Records per delete (default 5000).")

    def handle(self, *args, older_than, dry_run, batch_size, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        report = services.usage_records_prune(older_than=older_than, dry_run=dry_run, batch_size=batch_size, by=COMMAND)
        when = f"{report.cutoff:%Y-%m-%d %H:%M:%S} UTC"
        if dry_run:
            self.stdout.write(f"Dry run: {report.matched} usage record(s) created before {when} would be deleted.")
        else:
            self.stdout.write(f"Deleted {report.deleted} usage record(s) created before {when}.")
