"""Interviewees. Names, affiliations and contact details here are personal data."""

from django.db import models
from django.db.models import Q
from django.urls import reverse
from simple_history.models import HistoricalRecords


class Researcher(models.Model):
    """A person interviewed or surveyed about interpretability.

    `pseudonym` is what pages, exports and logs show; `full_name`, `affiliation` and
    `contact_email` are personal data, visible only to the researcher role and staff.
    A researcher is never deleted while interviews refer to them: anonymise instead.
    """

    class Role(models.TextChoices):
        INTERPRETABILITY = "interpretability", "Interpretability researcher"
        ML_ENGINEER = "ml_engineer", "ML engineer"
        RESEARCH_LEAD = "research_lead", "Research lead"
        ML_RESEARCHER = "ml_researcher", "ML researcher"
        OTHER = "other", "Other"

    class Seniority(models.TextChoices):
        STUDENT = "student", "Student"
        JUNIOR = "junior", "Junior"
        SENIOR = "senior", "Senior"
        PRINCIPAL = "principal", "Principal / lead"

    class ConsentScope(models.TextChoices):
        NONE = "none", "No consent"
        INTERNAL = "internal", "Internal analysis only"
        QUOTES = "quotes", "Anonymised quotes may be published"
        NAMED = "named", "May be quoted by name"

    pseudonym = models.CharField(max_length=80, unique=True)
    full_name = models.CharField(max_length=200, blank=True)
    affiliation = models.CharField(max_length=200, blank=True)
    role = models.CharField(max_length=32, choices=Role.choices)
    seniority = models.CharField(max_length=16, choices=Seniority.choices)
    research_area = models.CharField(max_length=200, blank=True)
    consent_given = models.BooleanField(default=False)
    consent_date = models.DateField(null=True, blank=True)
    consent_scope = models.CharField(
        max_length=16, choices=ConsentScope.choices, default=ConsentScope.NONE
    )
    contact_email = models.EmailField(blank=True)
    anonymised_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords(excluded_fields=["full_name", "contact_email", "affiliation"])

    class Meta:
        ordering = ["pseudonym"]
        indexes = [models.Index(fields=["role"], name="researcher_role_idx")]
        constraints = [
            models.CheckConstraint(
                name="researcher_consent_has_date_and_scope",
                condition=Q(consent_given=False, consent_scope="none")
                | (Q(consent_given=True, consent_date__isnull=False) & ~Q(consent_scope="none")),
                violation_error_message=(
                    "Consent needs a date and a scope; without consent the scope must be none."
                ),
            ),
        ]

    def __str__(self) -> str:
        return self.pseudonym

    def get_absolute_url(self) -> str:
        return reverse("researcher-detail", args=[self.pk])
