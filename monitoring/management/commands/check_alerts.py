from django.core.management.base import BaseCommand

from monitoring.alerts import alerts_evaluate


class Command(BaseCommand):
    help = "Check the alert conditions once and send the alerts due (for cron, where Celery beat does not run)."

    def handle(self, *args, **options):
        sent = alerts_evaluate()
        for alert in sent:
            self.stdout.write(f"Sent: {alert.text}")
        self.stdout.write(f"{len(sent)} alert(s) sent.")
