from datetime import date

from django.core.management.base import BaseCommand, CommandError

from llm import rollups


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"Dates are written YYYY-MM-DD, not {value!r}.") from None


class Command(BaseCommand):
    help = (
        "Recompute the daily usage rollups (UsageDaily, UsageLatencyDaily) from the raw usage records, replacing the "
        "rows of the UTC days --since..--until (both included) in one transaction. Default: from the day of the "
        "oldest remaining usage record on, so the rollups of days that prune_usage emptied are kept; a --since "
        "before that day empties those days' rollups. --check writes nothing, lists the rows that differ and exits "
        "with status 1 if any does."
    )

    def add_arguments(self, parser):
        parser.add_argument("--since", type=_day, help="First UTC day, YYYY-MM-DD (default: the oldest record's).")
        parser.add_argument("--until", type=_day, help="Last UTC day, YYYY-MM-DD, included (default: no end).")
        parser.add_argument("--check", action="store_true", help="Compare only: write nothing, exit 1 on a difference.")

    def handle(self, *args, since, until, check, **options):
        if since and until and until < since:
            raise CommandError(f"--until ({until}) is before --since ({since}).")
        report = rollups.rollups_rebuild(since=since, until=until, check=check)
        if report.since is None:
            self.stdout.write("No usage records: nothing to rebuild.")
            return
        days = f"{report.since} to {report.until or 'the latest day'} (UTC)"
        if check:
            for line in report.differences:
                self.stdout.write(line)
            summary = (
                f"Checked {days}: {report.records} usage record(s), {report.daily_rows} daily row(s) and "
                f"{report.latency_rows} latency row(s) expected; {len(report.differences)} difference(s)."
            )
            if report.differences:
                self.stderr.write(summary)
                raise SystemExit(1)
            self.stdout.write(summary)
            return
        self.stdout.write(
            f"Rebuilt {days} from {report.records} usage record(s): replaced {report.deleted_daily} daily row(s) "
            f"with {report.daily_rows} and {report.deleted_latency} latency row(s) with {report.latency_rows}."
        )
