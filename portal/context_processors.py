"""Template context: the navigation a signed-in user's role may use."""
from django.urls import reverse

from portal.permissions import SIGNED_IN, user_may, user_role

# (label, URL name, permission). Domain apps append with nav_register().
NAVIGATION: list[tuple[str, str, str]] = [
    ("Dashboard", "dashboard", SIGNED_IN),
    ("HSMs", "gateway:hsm-list", "gateway.view_hsminstance"),
    ("Jobs", "jobs:job-list", "jobs.view_job"),
    ("Audit trail", "audit:event-list", "audit.view_auditevent"),
    ("API", "api-docs", SIGNED_IN),
]


def nav_register(label: str, url_name: str, permission: str, *, before: str = "Jobs") -> None:
    """Add a navigation entry (domain apps call this from AppConfig.ready)."""
    if any(entry[1] == url_name for entry in NAVIGATION):
        return
    index = next((i for i, entry in enumerate(NAVIGATION) if entry[0] == before), len(NAVIGATION))
    NAVIGATION.insert(index, (label, url_name, permission))


def navigation(request) -> dict:
    """Nav entries for this user, and their role for the header."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav": [], "portal_role": ""}
    nav = [{"label": label, "url": reverse(name), "active": request.path == reverse(name)}
           for label, name, perm in NAVIGATION if user_may(user, perm)]
    return {"nav": nav, "portal_role": user_role(user) or "no role"}
