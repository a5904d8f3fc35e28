from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from common import key_rotation


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret under the first key of its setting: the encrypted model fields (e.g. model "
        "route API keys) under FIELD_ENCRYPTION_KEYS, and the Google tokens under GOOGLE_TOKEN_ENCRYPTION_KEYS. Put "
        "the new key first, keep the old ones after it, run this, then drop the old keys. Values written with the key "
        "derived from DJANGO_SECRET_KEY (installs that ran without FIELD_ENCRYPTION_KEYS) are accepted as old. Values "
        "no key opens are left untouched and listed. Safe to run twice."
    )

    def add_arguments(self, parser):
        parser.add_argument("--no-progress", action="store_true", help="Do not draw the progress bar.")

    def handle(self, *args, **options):
        total = key_rotation.rows_count()
        with tqdm(total=total, unit="row", desc="Re-encrypting", disable=options["no_progress"]) as bar:
            reports = key_rotation.rotate_all(on_row=lambda: bar.update(1))
        problems, failed = [], []
        for report in reports:
            if report.problem:
                problems.append(report.problem)
                self.stdout.write(f"{report.name}: nothing re-encrypted: {report.problem}")
                continue
            self.stdout.write(f"{report.name}: re-encrypted {report.rotated} value(s) under the first key.")
            if report.note:
                self.stdout.write(f"{report.name}: {report.note}")
            if report.failed:
                failed.append(
                    f"{len(report.failed)} value(s) could not be decrypted with any key of {report.name} and were left "
                    "as they are: " + ", ".join(report.failed)
                )
        if problems or failed:
            raise CommandError("; ".join(problems + failed))
