"""Analysis runs: every analysis is a row here before it is a Celery message."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from simple_history.models import HistoricalRecords


class AnalysisRun(models.Model):
    """One requested analysis: what to run, on what, its progress, and its stored result.

    Status moves queued -> running -> succeeded/failed/cancelled. A worker claims a run with
    a conditional UPDATE on the status, so a message delivered twice does the work once.
    `dispatched_at` stays empty while the broker has not taken the run's jobs (it was down
    when the run was requested); the workers' sweeper sends such runs once it answers.
    """

    class Kind(models.TextChoices):
        PROFILE = "profile", "Activation profiling"
        ABLATION = "ablation", "Ablation"
        CHANGE_EXPERIMENT = "change_experiment", "Change experiment"
        STUDY = "study", "Guided-search study"

    class Failure(models.TextChoices):
        NONE = "", "None"
        BAD_REQUEST = "bad_request", "The request cannot run"
        INTERNAL = "internal", "Internal error"
        TIME_LIMIT = "time_limit", "Ran past its time limit"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINISHED_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    kind = models.CharField(max_length=24, choices=Kind.choices)
    subject_model = models.ForeignKey(
        "kb.SubjectModel", on_delete=models.PROTECT, related_name="runs", null=True, blank=True
    )
    finding = models.ForeignKey(
        "kb.Finding", on_delete=models.PROTECT, related_name="runs", null=True, blank=True
    )
    change = models.ForeignKey(
        "kb.ArchitectureChange",
        on_delete=models.PROTECT,
        related_name="runs",
        null=True,
        blank=True,
    )
    config = models.JSONField(
        default=dict,
        blank=True,
        help_text="Everything the run measures, resolved and frozen when it was requested.",
    )
    config_digest = models.CharField(
        max_length=64, blank=True, help_text="SHA-256 of the frozen config, to find reruns."
    )
    reproduces = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        related_name="reproductions",
        null=True,
        blank=True,
        help_text="An earlier succeeded run with the same frozen config that this one repeats.",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress_percent = models.PositiveSmallIntegerField(default=0)
    progress_message = models.CharField(max_length=200, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    failure = models.CharField(
        max_length=16, choices=Failure.choices, default=Failure.NONE, blank=True
    )
    environment = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    dispatched_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the broker took its jobs; empty while it could not be reached.",
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    history = HistoricalRecords(
        excluded_fields=["progress_percent", "progress_message", "dispatched_at"]
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status"], name="run_status_idx"),
            models.Index(fields=["kind", "status"], name="run_kind_status_idx"),
            models.Index(fields=["config_digest"], name="run_config_digest_idx"),
            # The sweeper's question, asked every few seconds by every worker.
            models.Index(
                fields=["status"],
                condition=Q(dispatched_at__isnull=True),
                name="run_not_dispatched_idx",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                name="run_progress_is_percent",
                condition=Q(progress_percent__gte=0, progress_percent__lte=100),
                violation_error_message="Progress is a percentage from 0 to 100.",
            ),
            models.CheckConstraint(
                name="run_target_matches_kind",
                condition=Q(kind="profile", subject_model__isnull=False)
                | Q(kind="ablation", finding__isnull=False)
                | Q(kind="change_experiment", change__isnull=False)
                | Q(kind="study", subject_model__isnull=False),
                violation_error_message=(
                    "A profiling run needs a model, an ablation a finding, an experiment a "
                    "change, a study a model."
                ),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("run-detail", args=[self.pk])

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED_STATUSES

    @property
    def waiting_for_queue(self) -> bool:
        """True while the run is saved but the broker has not taken its jobs yet."""
        return not self.is_finished and self.dispatched_at is None


class AnalysisJob(models.Model):
    """One unit of work of a run: the whole of a profiling or ablation run, or one (arm, seed)
    of a change experiment. Jobs are claimed with a conditional UPDATE and hold a lease that
    their progress keeps fresh, so a job whose worker died can be claimed again once the
    lease runs out, while a duplicate delivery of a live job does nothing. `claimed_by` names
    the worker that claimed it, so that worker, started again, gives back what its previous
    life held without waiting for the lease."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    run = models.ForeignKey(AnalysisRun, on_delete=models.CASCADE, related_name="jobs")
    key = models.CharField(max_length=64, help_text="e.g. 'main' or 'variant:3'.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    progress = models.FloatField(default=0.0)
    attempts = models.PositiveIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(
        max_length=200, blank=True, help_text="The worker (Celery node name) that claimed it."
    )
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    environment = models.JSONField(
        default=dict,
        blank=True,
        help_text="Where this job ran: torch and numpy versions, device, code revision, host.",
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "key"]
        indexes = [
            # The sweeper's search for running jobs whose lease ran out.
            models.Index(fields=["status", "heartbeat_at"], name="job_status_heartbeat_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["run", "key"], name="job_unique_key_per_run"),
            models.CheckConstraint(
                name="job_progress_is_fraction",
                condition=Q(progress__gte=0, progress__lte=1),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.run_id}/{self.key} ({self.status})"


class StudyManager(models.Manager):
    def get_queryset(self):
        return super().get_queryset().filter(kind=AnalysisRun.Kind.STUDY)


class Study(AnalysisRun):
    """A guided-search study: an AnalysisRun of kind "study", so it is claimed, leased, swept,
    cancelled and retried by the same machinery as every run. Its frozen design is the run's
    `config`; its rounds are StudyRound rows; its jobs are "r{round}:{track}:s{seed}"."""

    objects = StudyManager()

    class Meta:
        proxy = True
        verbose_name_plural = "studies"

    def get_absolute_url(self) -> str:
        return reverse("study-detail", args=[self.pk])


class StudyRound(models.Model):
    """One track's candidate in one round of a study, and what the study decided about it.

    Round 0 holds the base model (track "base"), trained over the seeds once: it is every
    track's current model at the start. In round k >= 1 each track proposes a candidate from
    its current model (guided: a rule applied to the profile; random: any change within the
    round's budget; uniform: every layer widened alike), trains it over the seeds, and keeps
    it when the study's keep rule says it beat the current model. A row is written when the
    round is planned (spec, change, parameters) and completed once when it is decided
    (values, summary, decision, records); `decided_at` marks the second write.
    """

    class Track(models.TextChoices):
        BASE = "base", "Base model"
        GUIDED = "guided", "Guided"
        RANDOM = "random", "Random"
        UNIFORM = "uniform", "Uniform"

    study = models.ForeignKey(AnalysisRun, on_delete=models.CASCADE, related_name="study_rounds")
    index = models.PositiveSmallIntegerField(help_text="0 is the base model; rounds count from 1.")
    track = models.CharField(max_length=8, choices=Track.choices)
    spec = models.JSONField(default=dict, help_text="The candidate's architecture spec.")
    plan = models.JSONField(
        default=dict,
        blank=True,
        help_text="How the track chose its candidate: the rule or policy, its inputs and choice.",
    )
    parameters = models.PositiveIntegerField(help_text="The candidate's parameter count.")
    params_added = models.IntegerField(default=0)
    values = models.JSONField(
        null=True, blank=True, help_text="The metric per seed, in the study's seed order."
    )
    summary = models.JSONField(
        null=True, blank=True, help_text="Mean and 95% interval of the values; nulls if undefined."
    )
    mechanism = models.JSONField(null=True, blank=True)
    decision = models.JSONField(
        null=True, blank=True, help_text="The keep rule applied to this candidate."
    )
    kept = models.BooleanField(null=True, blank=True)
    finding = models.ForeignKey(
        "kb.Finding", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    insight = models.ForeignKey(
        "kb.Insight", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    change = models.ForeignKey(
        "kb.ArchitectureChange",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="study_rounds",
    )
    outcome = models.OneToOneField(
        "kb.Outcome",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="study_round",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["study", "index", "track"]
        constraints = [
            models.UniqueConstraint(
                fields=["study", "index", "track"], name="study_round_unique_track"
            ),
            models.CheckConstraint(
                name="study_round_base_is_round_zero",
                condition=Q(index=0, track="base") | (Q(index__gte=1) & ~Q(track="base")),
                violation_error_message="Round 0 is the base model; rounds 1+ are tracks.",
            ),
        ]

    def __str__(self) -> str:
        return f"study {self.study_id} round {self.index} {self.track}"
