# Coding rounds, blind coding and consensus highlights (issue 15).

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("kb", "0007_highlight_coder"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="highlight",
            name="is_consensus",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="historicalhighlight",
            name="is_consensus",
            field=models.BooleanField(default=False),
        ),
        migrations.CreateModel(
            name="CodingRound",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),  # noqa: E501
                ("name", models.CharField(max_length=120)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("closed_at", models.DateTimeField(blank=True, null=True)),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="coding_rounds_started",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "interviews",
                    models.ManyToManyField(related_name="coding_rounds", to="kb.interview"),
                ),
            ],
            options={"ordering": ["-created_at", "-id"]},
        ),
        migrations.CreateModel(
            name="CodingRoundCoder",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),  # noqa: E501
                ("done_at", models.DateTimeField(blank=True, null=True)),
                (
                    "coder",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="coding_round_parts",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "coding_round",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="coders",
                        to="kb.codinground",
                    ),
                ),
            ],
            options={"ordering": ["coding_round", "coder__username"]},
        ),
        migrations.AddIndex(
            model_name="codinground",
            index=models.Index(fields=["closed_at"], name="codinground_closed_at"),
        ),
        migrations.AddIndex(
            model_name="codingroundcoder",
            index=models.Index(fields=["coder", "done_at"], name="codingroundcoder_coder_done"),
        ),
        migrations.AddField(
            model_name="highlight",
            name="coding_round",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="consensus_highlights",
                to="kb.codinground",
            ),
        ),
        migrations.AddField(
            model_name="historicalhighlight",
            name="coding_round",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="kb.codinground",
            ),
        ),
        migrations.AddConstraint(
            model_name="highlight",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("is_consensus", True), ("coding_round__isnull", True), _connector="OR"
                ),
                name="highlight_round_only_on_consensus",
                violation_error_message="Only a consensus highlight belongs to a coding round.",
            ),
        ),
        migrations.AddConstraint(
            model_name="codingroundcoder",
            constraint=models.UniqueConstraint(
                fields=("coding_round", "coder"),
                name="codingroundcoder_once_per_round",
                violation_error_message="This user is already a coder in this round.",
            ),
        ),
    ]
