"""Interviewees. Names, affiliations and contact details here are personal data."""

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models
from django.db.models import Q
from django.urls import reverse
from simple_history.models import HistoricalRecords

CONSENT_RULE = "Consent needs a date and a scope; without consent the scope must be none."
CONSENT_FIELDS = ("consent_given", "consent_date", "consent_scope")


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
                violation_error_message=CONSENT_RULE,
            ),
        ]

    def __str__(self) -> str:
        return self.pseudonym

    def get_absolute_url(self) -> str:
        return reverse("researcher-detail", args=[self.pk])

    def validate_constraints(self, exclude=None) -> None:
        """The table's checks, with the consent rule's error keyed by the field to fix, so
        that pages, the admin and the API show it beside that field."""
        try:
            super().validate_constraints(exclude=exclude)
        except ValidationError as error:
            raise ValidationError(self._consent_error_on_its_field(error.error_dict)) from None

    def consent_validate(self) -> None:
        """The consent rule alone, whatever the other fields hold: forms and the API check it
        together with every other field, so all their errors show at once. Raises
        ValidationError keyed by the consent field to fix."""
        others = {field.name for field in self._meta.fields} - set(CONSENT_FIELDS)
        self.validate_constraints(exclude=others)

    def _consent_error_on_its_field(self, errors: dict) -> dict:
        # Consent given without a date: the date is missing; otherwise the scope is wrong.
        general = errors.pop(NON_FIELD_ERRORS, [])
        consent = [error for error in general if error.message == CONSENT_RULE]
        if others := [error for error in general if error.message != CONSENT_RULE]:
            errors[NON_FIELD_ERRORS] = others
        if consent:
            missing_date = self.consent_given and self.consent_date is None
            field = "consent_date" if missing_date else "consent_scope"
            errors.setdefault(field, []).extend(consent)
        return errors
