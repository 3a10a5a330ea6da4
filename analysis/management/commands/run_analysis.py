"""Run an analysis from the command line, with a progress bar.

    python manage.py run_analysis experiment --change 3 --seeds 3 --epochs 1 --samples 600
    python manage.py run_analysis profile --model 2 --concept curvature
    python manage.py run_analysis ablation --finding 5
    python manage.py run_analysis study --model 2 --rounds 4 --seeds 5 --concept circle
    python manage.py run_analysis profile --model 7 --dataset induction --length 32 --steps 300
    python manage.py run_analysis experiment --change 9 --dataset modular-addition \
        --train-fraction 0.3 --steps 2000 --control-policy any_operation

A transformer's runs take a sequence task (--dataset induction or modular-addition, with the
task's options) and train by --steps; a CNN's take an image dataset and train by --epochs.
By default the jobs run in this process (no worker needed); --queue sends them to the
workers instead and follows the run's progress until it finishes.
"""

import sys
import threading
import time

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from analysis import services
from analysis.configs import (
    DATASET_NAMES,
    DATASET_SIZE_OPTION,
    SEQUENCE_TASK_BOUNDS,
    SEQUENCE_TASK_NAMES,
)
from analysis.models import AnalysisRun
from analysis.study_cli import STUDY, add_study_arguments, handle_study, refuse_study_flags
from kb.models import ArchitectureChange, Finding, SubjectModel

BAR_WIDTH = 30
POLL_SECONDS = 0.5
# The flag that sets each config key analysis.configs reports errors under, and the record
# flags the services name; an error under any other key is shown under its key alone.
FLAGS = {
    "seeds": "--seeds", "train.epochs": "--epochs", "dataset.n": "--samples",
    "dataset.limit": "--samples", "dataset.name": "--dataset", "concept": "--concept",
    "change": "--change", "subject_model": "--model", "finding": "--finding",
    "dataset": "--dataset", "dataset.p": "--dataset", "train.steps": "--steps",
    "probe_size": "--probe-size", "seed": "--seed", "mode": "--mode",
    "random_sets": "--random-sets", "control_seed": "--control-seed",
    "control_policy": "--control-policy",
    **{f"dataset.{option}": f"--{option.replace('_', '-')}"
       for options in SEQUENCE_TASK_BOUNDS.values() for option in options if option != "p"},
}  # fmt: skip
# Flags that only some kinds of run take; giving one to another kind is refused, not dropped.
KIND_FLAGS = {
    "seeds": ("experiment",), "concept": ("experiment", "profile"),
    "control_seed": ("experiment",), "control_policy": ("experiment",),
    "seed": ("profile", "ablation"), "mode": ("ablation",), "random_sets": ("ablation",),
}  # fmt: skip
# A sequence task's options (argparse destinations), by task; p follows the model.
TASK_OPTIONS = {
    task: tuple(option for option in options if option != "p")
    for task, options in SEQUENCE_TASK_BOUNDS.items()
}
# Top-level settings that go into the config as given; the cleaner checks them.
PLAIN_SETTINGS = ("seeds", "concept", "probe_size", "seed", "mode", "random_sets",
                  "control_seed", "control_policy")  # fmt: skip


def _config(options: dict) -> dict:
    """The run config the flags set; analysis.configs checks it (through the service)."""
    for flag, kinds in KIND_FLAGS.items():
        if options[flag] is not None and options["kind"] not in kinds:
            dashed = flag.replace("_", "-")
            raise CommandError(f"--{dashed} applies to {' and '.join(kinds)} runs only.")
    config: dict = {}
    if dataset := _dataset(options):
        config["dataset"] = dataset
    train = {key: options[key] for key in ("epochs", "steps") if options[key] is not None}
    if train:
        config["train"] = train
    for key in PLAIN_SETTINGS:
        if options[key] is not None:
            config[key] = options[key]
    return config


def _dataset(options: dict) -> dict:
    """The dataset (a CNN's) or sequence task (a transformer's) the flags set, {} for none.
    Task options without --dataset name their own task."""
    given = {option: options[option] for task_options in TASK_OPTIONS.values()
             for option in task_options if options[option] is not None}  # fmt: skip
    if options["dataset"] is None and options["samples"] is None and not given:
        return {}
    name = options["dataset"] or next(
        (task for task, task_options in TASK_OPTIONS.items() if set(given) & set(task_options)),
        "shapes",
    )
    dataset = {"name": name, **given}
    if options["samples"] is not None:
        if name not in DATASET_SIZE_OPTION:
            raise CommandError(
                f"--samples sets an image dataset's size; the {name} task's probe set is "
                "--probe-size."
            )
        dataset[DATASET_SIZE_OPTION[name]] = options["samples"]
    return dataset


class Command(BaseCommand):
    help = (
        "Run a change experiment, a profiling run, an ablation or a guided-search study, "
        "showing its progress."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("kind", choices=["experiment", "profile", "ablation", STUDY])
        parser.add_argument("--change", type=int, help="architecture change id (experiment)")
        parser.add_argument("--model", type=int, help="built-in model id (profile)")
        parser.add_argument("--finding", type=int, help="finding id (ablation)")
        parser.add_argument("--seeds", type=int, help="number of seeds (experiment, >= 3)")
        parser.add_argument("--epochs", type=int, help="training epochs")
        parser.add_argument("--samples", type=int, help="examples to generate or load")
        parser.add_argument(
            "--dataset",
            choices=(*DATASET_NAMES, *SEQUENCE_TASK_NAMES),
            help="an image dataset (CNNs) or a sequence task (transformers)",
        )
        parser.add_argument("--concept", help="class or attribute name, e.g. curvature")
        self._add_transformer_arguments(parser)
        self._add_run_arguments(parser)
        parser.add_argument("--queue", action="store_true", help="send to the workers")
        add_study_arguments(parser)

    def _add_transformer_arguments(self, parser) -> None:
        group = parser.add_argument_group(
            "transformers",
            "Runs on a transformer train on a sequence task by steps (when the model has no "
            "weights) and measure on a probe set; left out, the task's options follow the "
            "model (length: n_ctx, p: d_vocab - 1).",
        )
        group.add_argument("--steps", type=int, help="training steps (per arm and seed)")
        group.add_argument("--probe-size", type=int, help="held-out probe sequences")
        group.add_argument("--length", type=int, help="induction: tokens per sequence")
        group.add_argument("--segment", type=int, help="induction: tokens that then repeat")
        group.add_argument("--eval-seed", type=int, help="induction: draws the probe set")
        group.add_argument(
            "--train-fraction", type=float, help="modular addition: share of pairs trained on"
        )
        group.add_argument("--split-seed", type=int, help="modular addition: draws the split")

    def _add_run_arguments(self, parser) -> None:
        parser.add_argument("--seed", type=int, help="training seed (profile, ablation)")
        parser.add_argument("--mode", help="ablation: zero or mean")
        parser.add_argument("--random-sets", type=int, help="ablation: random unit sets")
        parser.add_argument("--control-seed", type=int, help="experiment: draws the control")
        parser.add_argument(
            "--control-policy",
            help="experiment: same_operation (a CNN's default) or any_operation (a "
            "transformer's default), the random control's budget-matched change",
        )

    def handle(self, *args, **options) -> None:
        if options["kind"] == STUDY:  # analysis/study_cli.py
            handle_study(self, options)
            return
        refuse_study_flags(options)
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
            control = run.config["plan"]["control"]
            self.stdout.write(
                f"  random control ({control.get('policy', 'same_operation')}): "
                f"{control['result']['description']}"
            )
            for warning in aggregate["warnings"]:
                self.stdout.write(self.style.WARNING(f"  warning: {warning}"))
        for proposal in run.result.get("proposed_findings", []):
            self.stdout.write(f"  proposed: {proposal['text']}")


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
