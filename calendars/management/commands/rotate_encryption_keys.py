from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from calendars import connections, crypto


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored Google token under the first key of GOOGLE_TOKEN_ENCRYPTION_KEYS. "
        "Put the new key first, keep the old ones after it, run this, then drop the old keys. Safe to run twice."
    )

    def add_arguments(self, parser):
        parser.add_argument("--no-progress", action="store_true", help="Do not draw the progress bar.")

    def handle(self, *args, **options):
        problem = crypto.keys_problem()
        if problem:
            raise CommandError(problem)
        total = connections.encryption_rows_count()
        with tqdm(total=total, unit="row", desc="Re-encrypting", disable=options["no_progress"]) as bar:
            report = connections.encryption_keys_rotate(on_row=lambda: bar.update(1))
        self.stdout.write(f"Re-encrypted {report.rotated} row(s) under the first key.")
        if report.failed:
            raise CommandError(
                f"{report.failed} row(s) could not be decrypted with any configured key and were left as they are: "
                + ", ".join(report.failed_ids)
            )
