"""Every admin changelist, add, change and history page answers 200 for a superuser, and the
admin actions start and stop runs through the services."""

from io import StringIO

from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import RequestFactory, TestCase
from django.urls import reverse

from analysis.models import AnalysisRun
from kb.models import ArchitectureChange, Event, Researcher, Survey
from kb.services.invitations import invitation_create

REGISTERED = sorted(
    (model._meta.app_label, model._meta.model_name)
    for model in admin.site._registry
    if model._meta.app_label in {"kb", "analysis"}
)


class AdminPagesTest(TestCase):
    """The demo is seeded once for the class; each test runs in a rolled-back transaction."""

    @classmethod
    def setUpTestData(cls) -> None:
        call_command("seed_demo", stdout=StringIO())
        cls.staff = get_user_model().objects.create_superuser("sam", password="pw-sam")

    def setUp(self) -> None:
        self.client.force_login(self.staff)

    def test_every_knowledge_base_model_is_registered(self) -> None:
        expected = {
            (m._meta.app_label, m._meta.model_name)
            for app in ("kb", "analysis")
            for m in apps.get_app_config(app).get_models()
            if not m.__name__.startswith("Historical") and not m._meta.auto_created
        }
        self.assertEqual(expected - set(REGISTERED), set())

    def test_admin_pages_answer_200(self) -> None:
        request = RequestFactory().get("/")
        request.user = self.staff
        for app_label, model_name in REGISTERED:
            with self.subTest(model=f"{app_label}.{model_name}"):
                base = f"admin:{app_label}_{model_name}"
                model = apps.get_model(app_label, model_name)
                changelist = reverse(f"{base}_changelist")
                self.assertEqual(self.client.get(changelist).status_code, 200)
                self.assertEqual(self.client.get(changelist, {"q": "curve"}).status_code, 200)
                if admin.site._registry[model].has_add_permission(request):
                    self.assertEqual(self.client.get(reverse(f"{base}_add")).status_code, 200)
                record = model.objects.first()
                if record is not None:
                    for page in ("change", "history"):
                        url = reverse(f"{base}_{page}", args=[record.pk])
                        self.assertEqual(self.client.get(url).status_code, 200, url)

    def test_event_log_is_read_only_in_admin(self) -> None:
        event = Event.objects.first()
        self.assertEqual(self.client.get(reverse("admin:kb_event_add")).status_code, 403)
        delete = reverse("admin:kb_event_delete", args=[event.pk])
        self.assertEqual(self.client.post(delete, {"post": "yes"}).status_code, 403)
        self.assertTrue(Event.objects.filter(pk=event.pk).exists())

    def test_action_starts_an_experiment_and_refuses_a_manual_change(self) -> None:
        runnable = ArchitectureChange.objects.get(operation="widen_layer")
        manual = ArchitectureChange.objects.filter(operation="manual").first()
        url = reverse("admin:kb_architecturechange_changelist")
        with self.captureOnCommitCallbacks() as callbacks:
            response = self.client.post(
                url,
                {"action": "start_experiment", "_selected_action": [runnable.pk, manual.pk]},
                follow=True,
            )
        shown = [str(message) for message in response.context["messages"]]
        run = AnalysisRun.objects.get(change=runnable)
        self.assertIn(f"{runnable}: run {run.pk} queued.", shown)
        self.assertIn(f"{manual}: Only built-in models can be analysed by the engine.", shown)
        self.assertEqual(len(callbacks), 1)
        self.assertEqual(run.config["seeds"], [0, 1, 2, 3, 4])
        self.assertEqual(run.jobs.count(), 15)

    def test_action_cancels_a_queued_run(self) -> None:
        change = ArchitectureChange.objects.get(operation="widen_layer")
        self.client.post(
            reverse("admin:kb_architecturechange_changelist"),
            {"action": "start_experiment", "_selected_action": [change.pk]},
        )
        run = AnalysisRun.objects.get(change=change)
        self.client.post(
            reverse("admin:analysis_analysisrun_changelist"),
            {"action": "cancel_runs", "_selected_action": [run.pk]},
        )
        run.refresh_from_db()
        self.assertEqual(run.status, "cancelled")

    def test_invitations_show_their_state_and_never_their_link(self) -> None:
        survey, researcher = Survey.objects.first(), Researcher.objects.first()
        invitation, token = invitation_create(actor=None, survey=survey, researcher=researcher)
        pages = [
            self.client.get(reverse("admin:kb_surveyinvitation_changelist")),
            self.client.get(reverse("admin:kb_surveyinvitation_change", args=[invitation.pk])),
        ]
        self.assertContains(pages[0], '<td class="field-state">waiting</td>', html=True)
        for page in pages:
            self.assertNotContains(page, token)
