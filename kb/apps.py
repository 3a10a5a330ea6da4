from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _ensure_roles(sender, **kwargs) -> None:
    from kb.roles import roles_ensure

    roles_ensure()


class KnowledgeBaseConfig(AppConfig):
    name = "kb"
    verbose_name = "Knowledge base"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Permissions exist only after every app migrated, hence post_migrate of the last app.
        post_migrate.connect(_ensure_roles, dispatch_uid="kb.ensure_roles")
