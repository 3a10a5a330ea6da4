"""Run an analysis from the command line, with a progress bar.

    python manage.py run_analysis experiment --change 3 --seeds 3 --epochs 1 --samples 600
    python manage.py run_analysis profile --model 2 --concept curvature
    python manage.py run_analysis ablation --finding 5

By default the jobs run in this process (no worker needed); --queue sends them to the
workers instead and follows the run's progress until it finishes.
"""

import sys
import threading
import time

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from analysis import services
from analysis.models import AnalysisRun
from kb.models import ArchitectureChange, Finding, SubjectModel

BAR_WIDTH = 30
POLL_SECONDS = 0.5


def _config(options: dict) -> dict:
    config: dict = {}
    if options["samples"] is not None:
        config["dataset"] = {"name": "shapes", "n": options["samples"]}
    if options["dataset"] is not None:
        config["dataset"] = {"name": options["dataset"], **config.get("dataset", {})}
        config["dataset"]["name"] = options["dataset"]
        if options["dataset"] != "shapes":
            config["dataset"].pop("n", None)
    if options["epochs"] is not None:
        config["train"] = {"epochs": options["epochs"]}
    if options["concept"]:
        config["concept"] = options["concept"]
    return config


class Command(BaseCommand):
    help = "Run a change experiment, a profiling run or an ablation, showing its progress."

    def add_arguments(self, parser) -> None:
        parser.add_argument("kind", choices=["experiment", "profile", "ablation"])
        parser.add_argument("--change", type=int, help="architecture change id (experiment)")
        parser.add_argument("--model", type=int, help="built-in model id (profile)")
        parser.add_argument("--finding", type=int, help="finding id (ablation)")
        parser.add_argument("--seeds", type=int, help="number of seeds (experiment, >= 3)")
        parser.add_argument("--epochs", type=int, help="training epochs")
        parser.add_argument("--samples", type=int, help="shapes dataset size")
        parser.add_argument("--dataset", choices=["shapes", "digits", "fashion-mnist"])
        parser.add_argument("--concept", help="class or attribute name, e.g. curvature")
        parser.add_argument("--queue", action="store_true", help="send to the workers")

    def handle(self, *args, **options) -> None:
        try:
            run = self._request(options)
        except ValidationError as error:
            raise CommandError("; ".join(_messages(error))) from None
        self.stdout.write(f"Run {run.pk} ({run.get_kind_display()}), {run.jobs.count()} job(s)")
        if options["queue"]:
            self._follow(run)
        else:
            self._run_here(run)
        run.refresh_from_db()
        self._report(run)

    def _request(self, options: dict) -> AnalysisRun:
        config, dispatch = _config(options), options["queue"]
        kind = options["kind"]
        if kind == "experiment":
            if options["seeds"] is not None:
                config["seeds"] = options["seeds"]
            change = _get(ArchitectureChange, options["change"], "--change")
            return services.experiment_request(
                actor=None, change=change, config=config, dispatch=dispatch
            )
        config.pop("seeds", None)
        if kind == "profile":
            model = _get(SubjectModel, options["model"], "--model")
            return services.profile_request(
                actor=None, subject_model=model, config=config, dispatch=dispatch
            )
        config.pop("concept", None)
        finding = _get(Finding, options["finding"], "--finding")
        return services.ablation_request(
            actor=None, finding=finding, config=config, dispatch=dispatch
        )

    def _run_here(self, run: AnalysisRun) -> None:
        from analysis.execution import execute_job

        done = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(run.pk, done), daemon=True)
        watcher.start()
        try:
            for key in run.jobs.values_list("key", flat=True):
                execute_job(run_id=run.pk, key=key)
        finally:
            done.set()
            watcher.join()

    def _watch(self, run_id: int, done: threading.Event) -> None:
        from django.db import connection

        try:
            while not done.wait(POLL_SECONDS):
                self._draw(AnalysisRun.objects.get(pk=run_id))
        finally:
            connection.close()

    def _follow(self, run: AnalysisRun) -> None:
        while True:
            run.refresh_from_db()
            self._draw(run)
            if run.is_finished:
                return
            time.sleep(POLL_SECONDS)

    def _draw(self, run: AnalysisRun) -> None:
        filled = BAR_WIDTH * run.progress_percent // 100
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        line = f"\r[{bar}] {run.progress_percent:3d}% {run.progress_message[:60]:<60}"
        self.stdout.write(line, ending="")
        sys.stdout.flush()

    def _report(self, run: AnalysisRun) -> None:
        self._draw(run)
        self.stdout.write("")
        if run.status != AnalysisRun.Status.SUCCEEDED:
            raise CommandError(f"Run {run.pk} {run.status}: {run.error}")
        self.stdout.write(self.style.SUCCESS(f"Run {run.pk} succeeded."))
        aggregate = run.result.get("aggregate")
        if aggregate:
            for arm, summary in aggregate["arms"].items():
                self.stdout.write(
                    f"  {arm:<9} {aggregate['metric']} mean {summary['mean']:.4f} "
                    f"(95% CI {_fmt(summary['ci_low'])} to {_fmt(summary['ci_high'])})"
                )
            self.stdout.write(f"  verdict: {aggregate['verdict']}")
            for warning in aggregate["warnings"]:
                self.stdout.write(self.style.WARNING(f"  warning: {warning}"))


def _get(model, pk: int | None, flag: str):
    if pk is None:
        raise CommandError(f"{flag} is required")
    try:
        return model.objects.select_related().get(pk=pk)
    except model.DoesNotExist:
        raise CommandError(f"No {model._meta.verbose_name} with id {pk}.") from None


def _messages(error: ValidationError) -> list[str]:
    if hasattr(error, "message_dict"):
        return [f"{field}: {' '.join(msgs)}" for field, msgs in error.message_dict.items()]
    return error.messages


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
