"""Send, once, what the workers' sweeper sends every few seconds: runs the broker never took,
jobs whose lease ran out, and a done job of each run that nobody finished. For operators
(after a long broker outage, or with no worker running yet); the workers do it themselves.

    python manage.py sweep_runs
"""

from django.core.management.base import BaseCommand, CommandError

from analysis.dispatch import BrokerUnavailable
from analysis.services import runs_sweep


class Command(BaseCommand):
    help = "Send queued runs the broker never took, and jobs whose lease ran out, to the workers."

    def handle(self, *args, **options) -> None:
        try:
            swept = runs_sweep()
        except BrokerUnavailable:
            raise CommandError(
                "The broker is not answering; nothing more was sent. Try again once it is up."
            ) from None
        message = f"Sent {swept.runs} run(s) and {swept.jobs} expired job(s)."
        if swept.studies or swept.unfinished:
            message += (
                f" Nudged {swept.studies} stalled stud(ies) and {swept.unfinished} run(s) "
                "whose jobs were done but that were never finished."
            )
        self.stdout.write(message)
