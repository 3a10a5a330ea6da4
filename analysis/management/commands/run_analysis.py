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
from analysis.configs import DATASET_NAMES, DATASET_SIZE_OPTION
from analysis.models import AnalysisRun
from kb.models import ArchitectureChange, Finding, SubjectModel

BAR_WIDTH = 30
POLL_SECONDS = 0.5
# The flag that sets each config key analysis.configs reports errors under, and the record
# flags the services name; an error under any other key is shown under its key alone.
FLAGS = {
    "seeds": "--seeds", "train.epochs": "--epochs", "dataset.n": "--samples",
    "dataset.limit": "--samples", "dataset.name": "--dataset", "concept": "--concept",
    "change": "--change", "subject_model": "--model", "finding": "--finding",
}  # fmt: skip
# Flags that only some kinds of run take; giving one to another kind is refused, not dropped.
KIND_FLAGS = {"seeds": ("experiment",), "concept": ("experiment", "profile")}


def _config(options: dict) -> dict:
    """The run config the flags set; analysis.configs checks it (through the service)."""
    for flag, kinds in KIND_FLAGS.items():
        if options[flag] is not None and options["kind"] not in kinds:
            raise CommandError(f"--{flag} applies to {' and '.join(kinds)} runs only.")
    config: dict = {}
    if options["dataset"] is not None or options["samples"] is not None:
        name = options["dataset"] or "shapes"
        config["dataset"] = {"name": name}
        if options["samples"] is not None:
            config["dataset"][DATASET_SIZE_OPTION[name]] = options["samples"]
    if options["epochs"] is not None:
        config["train"] = {"epochs": options["epochs"]}
    for key in ("seeds", "concept"):
        if options[key] is not None:
            config[key] = options[key]
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
        parser.add_argument("--samples", type=int, help="examples to generate or load")
        parser.add_argument("--dataset", choices=DATASET_NAMES)
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
            change = _get(ArchitectureChange, options["change"], "--change")
            return services.experiment_request(
                actor=None, change=change, config=config, dispatch=dispatch
            )
        if kind == "profile":
            model = _get(SubjectModel, options["model"], "--model")
            return services.profile_request(
                actor=None, subject_model=model, config=config, dispatch=dispatch
            )
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
    """One line per field: "seeds (--seeds): use 3 to 20 seeds, got 2." """
    if not hasattr(error, "error_dict"):
        return error.messages
    return [
        f"{field}{f' ({FLAGS[field]})' if field in FLAGS else ''}: {' '.join(messages)}"
        for field, messages in error.message_dict.items()
    ]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
