"""`run_analysis study`: a guided-search study from the command line.

    python manage.py run_analysis study --model 2 --rounds 4 --seeds 5 --concept circle
    python manage.py run_analysis study --model 2 --rounds 2 --seeds 3 --concept circle \\
        --epochs 1 --samples 400 --tracks guided random --queue
    python manage.py run_analysis study --model 7 --rounds 4 --seeds 5 --length 32 \\
        --segment 8 --steps 2000 --budget-fraction 0.6 --head-role induction --threshold 0.5

A transformer's study takes a sequence task (--dataset induction, or the task's options
--length, --segment, --eval-seed), --steps, --probe-size, and a head role with its threshold
(--head-role, --threshold) in place of --concept; a CNN's takes an image dataset and --epochs.

The study is saved like one requested from a page, so its rounds, decisions and records land
in the knowledge base either way. Without --queue its jobs run in this process, one after the
other in the order they were planned, through the very path the workers take
(analysis.execution.execute_job, which advances the study once a job is done: a track's next
round is planned as soon as its dependencies allow), with a progress bar, and the final report
is printed; a job a worker happens to hold is waited for. With --queue the study goes to the
workers and the command prints its id and addresses and returns.

run_analysis.py registers the subcommand: it adds the flags here to its parser and hands a
"study" request to handle_study.
"""

import sys
import threading
import time

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.urls import reverse

from analysis.configs import DATASET_SIZE_OPTION, SEQUENCE_TASK_BOUNDS
from analysis.engine.study_rules import GUIDED_RULES, HEAD_ROLES
from analysis.engine.study_settings import TRACKS
from analysis.models import AnalysisJob, AnalysisRun, Study
from analysis.studies import study_advance, study_request
from kb.models import SubjectModel

STUDY = "study"
BAR_WIDTH = 30
POLL_SECONDS = 0.5
# The flags only a study takes (argparse destinations); another kind of run refuses them.
SEARCH_FLAGS = ("rounds", "budget_fraction", "rule", "tracks", "random_seed")
HEAD_ROLE_FLAGS = ("head_role", "threshold")  # transformers' studies only
STUDY_ONLY = (*SEARCH_FLAGS, *HEAD_ROLE_FLAGS)
# A sequence task's options (run_analysis's flags, argparse destinations), by task; p follows
# the model.
TASK_OPTIONS = {
    task: tuple(option for option in options if option != "p")
    for task, options in SEQUENCE_TASK_BOUNDS.items()
}
# The run_analysis flags a study takes, by the model's family; it refuses any other run flag.
STUDY_USES = {
    "cnn": ("model", "seeds", "concept", "epochs", "samples", "dataset", "queue",
            *SEARCH_FLAGS),
    "transformer": ("model", "seeds", "dataset", "queue", "steps", "probe_size",
                    *(option for options in TASK_OPTIONS.values() for option in options),
                    *STUDY_ONLY),
}  # fmt: skip
# Every command's own options (BaseCommand's), and the subcommand itself.
COMMAND_OPTIONS = (
    "kind", "verbosity", "settings", "pythonpath", "traceback", "no_color", "force_color",
    "skip_checks", "stdout", "stderr",
)  # fmt: skip
# The flag that sets each key study_request reports errors under (study_settings' keys);
# an error under any other key is shown under its key alone.
FLAGS = {
    "model": "--model", "seeds": "--seeds", "rounds": "--rounds",
    "budget_fraction": "--budget-fraction", "concept": "--concept", "rule": "--rule",
    "tracks": "--tracks", "random_seed": "--random-seed", "train.epochs": "--epochs",
    "dataset.n": "--samples", "dataset.limit": "--samples", "dataset.name": "--dataset",
    "train.steps": "--steps", "probe_size": "--probe-size", "head_role": "--head-role",
    "threshold": "--threshold",
    **{f"dataset.{option}": f"--{option.replace('_', '-')}"
       for options in TASK_OPTIONS.values() for option in options},
}  # fmt: skip


def add_study_arguments(parser) -> None:
    """The study's own flags; --model, --seeds, --concept, --epochs, --samples, --dataset
    and --queue are run_analysis's, shared with the other kinds of run."""
    study = parser.add_argument_group(
        "study",
        "With `study`: --model (a built-in model), --seeds (count, at least 3), --concept "
        "and these. Without --queue the study is saved and its jobs run in this process, "
        "exactly as workers run them (rounds, decisions and records are stored); with "
        "--queue it goes to the workers and its id and addresses are printed.",
    )
    study.add_argument("--rounds", type=int, help="rounds after the base model (1-10, default 4)")
    study.add_argument(
        "--budget-fraction",
        type=float,
        help="parameters a round may add, as a share of the current model's (default 0.10)",
    )
    study.add_argument(
        "--rule", help=f"the guided track's rule: {', '.join(GUIDED_RULES)} (default the first)"
    )
    study.add_argument(
        "--tracks",
        nargs="+",
        metavar="TRACK",
        help=f"tracks to compare, from {' '.join(TRACKS)} (default all; guided is required)",
    )
    study.add_argument("--random-seed", type=int, help="seed of the random track's draws")
    study.add_argument(
        "--head-role",
        help=f"transformers: the head role that guides the search, {', '.join(HEAD_ROLES)} "
        "(default induction)",
    )
    study.add_argument(
        "--threshold",
        type=float,
        help="transformers: the score at which a head plays the role (0-1, default 0.5)",
    )


def refuse_study_flags(options: dict) -> None:
    """For the other kinds of run: a study flag is refused, not silently dropped."""
    given = [name for name in STUDY_ONLY if options.get(name) is not None]
    if given:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in given)
        raise CommandError(f"{flags} applies to studies only.")


def study_settings(options: dict) -> dict:
    """The study settings the flags set; study_request checks them (the one validator)."""
    settings: dict = {}
    if dataset := _dataset(options):
        settings["dataset"] = dataset
    train = {key: options[key] for key in ("epochs", "steps") if options.get(key) is not None}
    if train:
        settings["train"] = train
    for name in ("seeds", "concept", "probe_size", *STUDY_ONLY):
        if options.get(name) is not None:
            settings[name] = options[name]
    return settings


def _dataset(options: dict) -> dict:
    """The image dataset (a CNN's) or sequence task (a transformer's) the flags set, {} for
    none. Task options without --dataset name their own task."""
    given = {option: options[option] for task_options in TASK_OPTIONS.values()
             for option in task_options if options.get(option) is not None}  # fmt: skip
    if options.get("dataset") is None and options.get("samples") is None and not given:
        return {}
    name = options.get("dataset") or next(
        (task for task, task_options in TASK_OPTIONS.items() if set(given) & set(task_options)),
        "shapes",
    )
    dataset = {"name": name, **given}
    # --samples is refused before this for a transformer, whose sequence task has no size
    # (handle_study). On a CNN a sequence task's name is refused by the study's validator
    # under dataset.name, so the sample count is left out for it to say so.
    if options.get("samples") is not None and name in DATASET_SIZE_OPTION:
        dataset[DATASET_SIZE_OPTION[name]] = options["samples"]
    return dataset


def field_messages(error: ValidationError) -> list[str]:
    """One line per field: "rounds (--rounds): must be a whole number from 1 to 10, got 0." """
    if not hasattr(error, "error_dict"):
        return error.messages
    return [
        f"{field}{f' ({FLAGS[field]})' if field in FLAGS else ''}: {' '.join(messages)}"
        for field, messages in error.message_dict.items()
    ]


def handle_study(command: BaseCommand, options: dict) -> Study:
    """Request the study (nothing is written when a flag is refused), then run it here or
    leave it to the workers (--queue). Returns the study as it ended (or as queued)."""
    model = _model(options.get("model"))
    uses = STUDY_USES["transformer" if model.is_transformer else "cnn"]
    given = [
        f"--{name.replace('_', '-')}"
        for name, value in options.items()
        if name not in (*uses, *COMMAND_OPTIONS) and value not in (None, False)
    ]
    if given:
        raise CommandError(f"{', '.join(sorted(given))} does not apply to studies.")
    try:
        study = study_request(
            actor=None, model=model, settings=study_settings(options), dispatch=options["queue"]
        )
    except ValidationError as error:
        raise CommandError("; ".join(field_messages(error))) from None
    config = study.config
    command.stdout.write(
        f"Study {study.pk} of model {model.pk} ({model.name}): {config['rounds']} rounds, "
        f"tracks {', '.join(config['tracks'])}, {len(config['seeds'])} seeds"
    )
    if options["queue"]:
        command.stdout.write(
            f"Queued for the workers. Page: {study.get_absolute_url()}  API: "
            f"{reverse('api:study-detail', args=[study.pk])}"
        )
        return study
    ProgressBar(command, study.pk).follow(lambda: study_run_here(study))
    study.refresh_from_db()
    write_report(command, study)
    return study


def _model(pk: int | None) -> SubjectModel:
    if pk is None:
        raise CommandError("--model is required")
    try:
        return SubjectModel.objects.get(pk=pk)
    except SubjectModel.DoesNotExist:
        raise CommandError(f"No model with id {pk}.") from None


def study_run_here(study: Study) -> None:
    """Run the study's unfinished jobs in this process, in the order they were planned (the
    guided track's first in each planning), until it finishes. Each job goes through
    execute_job, as on a worker: the job that completes a row decides it and plans whatever
    that allows, whose jobs the next pass picks up. A study requested with dispatch=False
    sends no job to the task queue; should a worker hold a job all the same (the study was
    resumed from a page, say), it is waited for."""
    from analysis.execution import execute_job  # loads torch: only when running here

    while True:
        study.refresh_from_db(fields=["status"])
        if study.is_finished:
            return
        keys = _unfinished_jobs(study)
        if not keys:
            # Its jobs all finished before their rows were decided (a resumed study, say).
            study_advance(run_id=study.pk)
            study.refresh_from_db(fields=["status"])
            if not study.is_finished and not _unfinished_jobs(study):
                raise CommandError(
                    f"Study {study.pk} has no job left to run but is {study.status}."
                )
            continue
        outcomes = [execute_job(run_id=study.pk, key=key) for key in keys]
        if all(outcome == "held" for outcome in outcomes):
            time.sleep(POLL_SECONDS)  # a worker holds the rest: wait for it


def _unfinished_jobs(study: Study) -> list[str]:
    """The study's unfinished jobs in the order they were planned (keys sort r10 before r2)."""
    return list(
        study.jobs.exclude(status=AnalysisJob.Status.DONE)
        .order_by("pk")
        .values_list("key", flat=True)
    )


class ProgressBar:
    """Draws the study's progress (each track's round, jobs done) from another thread while
    `work` runs."""

    def __init__(self, command: BaseCommand, study_id: int) -> None:
        self.command, self.study_id = command, study_id

    def follow(self, work) -> None:
        done = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(done,), daemon=True)
        watcher.start()
        try:
            work()
        finally:
            done.set()
            watcher.join()
        self.draw(AnalysisRun.objects.get(pk=self.study_id))
        self.command.stdout.write("")

    def _watch(self, done: threading.Event) -> None:
        try:
            while not done.wait(POLL_SECONDS):
                self.draw(AnalysisRun.objects.get(pk=self.study_id))
        finally:
            connection.close()  # this thread's own connection

    def draw(self, study: AnalysisRun) -> None:
        filled = BAR_WIDTH * study.progress_percent // 100
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        line = f"\r[{bar}] {study.progress_percent:3d}% {study.progress_message[:60]:<60}"
        self.command.stdout.write(line, ending="")
        sys.stdout.flush()


def write_report(command: BaseCommand, study: Study) -> None:
    """The final report in words: each track's final model and guided against the controls;
    a study that did not succeed is a CommandError with its error."""
    if study.status != AnalysisRun.Status.SUCCEEDED:
        raise CommandError(f"Study {study.pk} {study.status}: {study.error}")
    report = study.result
    command.stdout.write(command.style.SUCCESS(f"Study {study.pk} succeeded."))
    for track, final in report["final"].items():
        if final is None:
            command.stdout.write(f"  {track:<8} no values")
            continue
        command.stdout.write(
            f"  {track:<8} {report['metric']} mean {_fmt(final['mean'])} (95% CI "
            f"{_fmt(final['ci_low'])} to {_fmt(final['ci_high'])}), {final['parameters']:,} "
            f"parameters, from round {final['round']}"
        )
    for name, comparison in report["comparisons"].items():
        if comparison is None:
            continue
        command.stdout.write(
            f"  {name}: difference {_fmt(comparison['difference'])} (CI "
            f"{_fmt(comparison['ci_low'])} to {_fmt(comparison['ci_high'])}, p "
            f"{_fmt(comparison['p_value'])}): {comparison['verdict']}"
        )
    win_rate = report.get("win_rate")
    if win_rate:
        command.stdout.write(f"  guided beat random: {_win_rate_words(win_rate)}")


def _win_rate_words(win_rate: dict) -> str:
    return (
        f"{win_rate['wins']} of {win_rate['rounds']} rounds (share {_fmt(win_rate['share'])}, "
        f"Wilson CI {_fmt(win_rate['ci_low'])} to {_fmt(win_rate['ci_high'])})"
    )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
