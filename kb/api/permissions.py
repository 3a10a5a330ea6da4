"""Who may call what: the role's Django model permissions, exactly as on the web pages.

Reading needs `view_<model>` (DRF's stock class lets anyone signed in read), writing needs
add/change/delete. Actions that start or steer analysis runs name their own permissions.
Which rows a permitted caller sees is decided by the viewsets' querysets, not here.
"""

from rest_framework.permissions import DjangoModelPermissions

VIEW = ["%(app_label)s.view_%(model_name)s"]


class RolePermission(DjangoModelPermissions):
    perms_map = {
        **DjangoModelPermissions.perms_map,
        "GET": VIEW,
        "HEAD": VIEW,
        "OPTIONS": VIEW,
    }

    def has_permission(self, request, view) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        # Actions such as run-experiment need a permission on another model (a run).
        action_perms = getattr(view, "action_permissions", {}).get(getattr(view, "action", None))
        if action_perms is not None:
            return request.user.has_perms(action_perms)
        return super().has_permission(request, view)


def permissions_required(*perms: str):
    """For plain API views (statistics, export): a permission class that needs `perms`."""

    class Required(DjangoModelPermissions):
        def has_permission(self, request, view) -> bool:
            user = request.user
            return bool(user and user.is_authenticated and user.has_perms(perms))

    Required.__name__ = "Requires_" + "_".join(p.split(".")[-1] for p in perms)
    return Required
