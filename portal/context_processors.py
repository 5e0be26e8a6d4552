"""Template context for the console shell every page lives in.

The left navigation is data: SECTIONS lists the task groups, each with its entries (a URL
name and the permission the target view declares); a user sees only what their role may
use, and only the groups that have something for them. Domain apps add entries with
`nav_register` from AppConfig.ready (portal never imports them), and counts shown as
badges with `badge_register`. Everything here is computed once per request.
"""
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.urls import NoReverseMatch, Resolver404, resolve, reverse
from django.utils import timezone

from portal.permissions import SIGNED_IN, declared_permission, user_may, user_role, view_serves


@dataclass(frozen=True)
class NavEntry:
    """One link of the left navigation."""

    label: str
    url_name: str
    permission: str
    # URL namespaces or names whose pages mark this entry as the current one (besides its own).
    active_for: tuple[str, ...] = ()
    # Name of a count registered with badge_register, shown next to the label when > 0.
    badge: str = ""


@dataclass
class NavSection:
    title: str
    entries: list[NavEntry] = field(default_factory=list)


# The task groups, in the order the navigation shows them. Groups without entries (their
# pages do not exist yet) are not shown.
SECTIONS: list[NavSection] = [
    NavSection("Overview", [
        NavEntry("Dashboard", "dashboard", SIGNED_IN),
        NavEntry("HSMs", "gateway:hsm-list", "gateway.view_hsminstance", active_for=("gateway",)),
    ]),
    NavSection("Keys"),
    NavSection("Access"),
    NavSection("Approvals"),
    NavSection("Recovery"),
    NavSection("Encryption"),
    NavSection("Audit & compliance", [
        NavEntry("Audit trail", "audit:event-list", "audit.view_auditevent", active_for=("audit",)),
    ]),
    NavSection("Jobs", [
        NavEntry("Jobs", "jobs:job-list", "jobs.view_job", active_for=("jobs",),
                 badge="failed_jobs"),
    ]),
]


def nav_register(label: str, url_name: str, permission: str, *, section: str,
                 active_for: tuple[str, ...] = (), badge: str = "") -> None:
    """Add a navigation entry to a task group (domain apps call this from AppConfig.ready)."""
    target = next((s for s in SECTIONS if s.title == section), None)
    if target is None:  # a typo fails at start-up, not as a missing link
        raise ValueError(f"No navigation group {section!r}; groups: "
                         f"{', '.join(s.title for s in SECTIONS)}")
    if any(entry.url_name == url_name for s in SECTIONS for entry in s.entries):
        return
    target.entries.append(NavEntry(label, url_name, permission, active_for, badge))


# Badge counts by name: (function of the user -> int, permission needed to see it,
# what the number means, for screen readers and the tooltip).
BADGES: dict[str, tuple[Callable, str, str]] = {}


def badge_register(name: str, count: Callable, *, permission: str, meaning: str) -> None:
    """Register a count shown as a badge on the nav entries that name it (cheap, indexed)."""
    BADGES[name] = (count, permission, meaning)


def failed_jobs_count(user) -> int:
    """Jobs that failed in the last 24 hours."""
    from portal.jobs.models import Job

    since = timezone.now() - dt.timedelta(hours=24)
    # The (status, kind) index serves status = 'failed'; failures are few.
    return Job.objects.filter(status=Job.Status.FAILED, finished__gte=since).count()


badge_register("failed_jobs", failed_jobs_count, permission="jobs.view_job",
               meaning="failed in the last 24 hours")
# "pending_approvals" (requests waiting for the user's decision) is registered by
# portal.approvals from its AppConfig.ready.


# The HSM switcher keeps the page: objects named in the URL are checked on the other HSM
# with a function registered here, keyed by (URL namespace, kwarg). Unchecked objects, or
# ones that do not exist there, send the switch to the nearest page above them.
OBJECT_CHECKS: dict[tuple[str, str], Callable[[str, str], bool]] = {}


def switcher_object_register(namespace: str, kwarg: str, exists: Callable[[str, str], bool]) -> None:
    """Tell the HSM switcher how to check that `kwarg` names an object on HSM `hsm_name`."""
    OBJECT_CHECKS[(namespace, kwarg)] = exists


# Breadcrumb words for URL segments that are not names of objects.
CRUMB_WORDS = {"hsms": "HSMs", "new": "Create", "import": "Import or restore",
               "audit": "Audit trail", "api": "API", "dr-drills": "DR drills",
               "cmk": "Customer-managed keys", "resource": "Azure resource"}


def navigation(request) -> dict:
    """Navigation, badges, HSM switcher, breadcrumbs and session facts for base.html."""
    cached = getattr(request, "_portal_shell", None)
    if cached is not None:
        return cached
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        context = {"nav": [], "portal_role": "", "hsm_switcher": None, "crumbs": [],
                   "session_ends": None}
    else:
        match = getattr(request, "resolver_match", None)
        context = {
            "nav": _navigation(user, match, request.path),
            "portal_role": user_role(user) or "no role",
            "hsm_switcher": _hsm_switcher(user, match, request.path),
            "crumbs": _breadcrumbs(user, request.path),
            "session_ends": _session_ends(request),
        }
    request._portal_shell = context
    return context


def _navigation(user, match, path: str) -> list[dict]:
    counts: dict[str, int] = {}
    sections = []
    for section in SECTIONS:
        entries = []
        for entry in section.entries:
            if not user_may(user, entry.permission):
                continue
            try:
                url = reverse(entry.url_name)
            except NoReverseMatch:
                continue
            badge = None
            if entry.badge in BADGES:
                count, permission, meaning = BADGES[entry.badge]
                if user_may(user, permission):
                    if entry.badge not in counts:
                        counts[entry.badge] = count(user)
                    badge = {"count": counts[entry.badge], "meaning": meaning}
            entries.append({"label": entry.label, "url": url, "badge": badge,
                            "active": _is_active(entry, match, url, path)})
        if entries:
            sections.append({"title": section.title, "entries": entries})
    return sections


def _is_active(entry: NavEntry, match, url: str, path: str) -> bool:
    if path == url:
        return True
    if match is None:
        return False
    return match.view_name == entry.url_name or any(
        name in (match.namespace, match.view_name) for name in entry.active_for)


def _hsm_switcher(user, match, path: str) -> dict | None:
    """Links to the same page on each HSM (or the nearest page above it that exists there)."""
    if not user_may(user, "gateway.view_hsminstance"):
        return None
    from portal.gateway.selectors import hsm_list

    names = list(hsm_list().values_list("name", flat=True))
    if not names:
        return None
    current = match.kwargs.get("hsm_id") if match is not None else None
    if current not in names:
        current = None
    links = []
    for name in names:
        url = path if name == current else _switch_url(user, match, path, name)
        links.append({"name": name, "url": url, "current": name == current})
    return {"current": current, "links": links}


def _switch_url(user, match, path: str, target: str) -> str:
    if match is not None and "hsm_id" in match.kwargs:
        segments = path.strip("/").split("/")
        # The route says which segment is the HSM (hsms/<str:hsm_id>/keys/...).
        index = next(i for i, part in enumerate(match.route.strip("/").split("/"))
                     if "hsm_id>" in part)
        segments[index] = target
        while len(segments) > index:
            candidate = "/" + "/".join(segments) + "/"
            if _page_exists(user, candidate, target):
                return candidate
            segments.pop()
    return _hsm_home(target)


def _page_exists(user, path: str, hsm_name: str) -> bool:
    """Whether path is a page the user may open (GET) whose objects exist on that HSM."""
    try:
        match = resolve(path)
    except Resolver404:
        return False
    view = getattr(match.func, "view_class", None)
    if view is None or not view_serves(view, "GET"):
        return False
    if not user_may(user, declared_permission(view, "GET")):
        return False
    for kwarg, value in match.kwargs.items():
        if kwarg == "hsm_id":
            continue
        check = OBJECT_CHECKS.get((match.namespace, kwarg))
        if check is None or not check(hsm_name, value):
            return False
    return True


def _hsm_home(name: str) -> str:
    """Where switching to an HSM lands when the page has no equivalent there: its keys."""
    try:
        return reverse("keys:key-list", kwargs={"hsm_id": name})
    except NoReverseMatch:
        return reverse("gateway:hsm-list")


def _breadcrumbs(user, path: str) -> list[dict]:
    """Home, then each step of the path; steps that are pages are links."""
    crumbs = [{"label": "Home", "url": reverse("dashboard")}]
    segments = [s for s in path.split("/") if s]
    for depth, segment in enumerate(segments, start=1):
        prefix = "/" + "/".join(segments[:depth]) + "/"
        try:
            match = resolve(prefix)
        except Resolver404:
            match = None
        if match is not None and segment in {str(v) for v in match.kwargs.values()}:
            # An object's name as it is; a row number (jobs/12/) as #12.
            label = f"#{segment}" if segment.isdigit() else segment
        else:
            label = CRUMB_WORDS.get(segment, segment.replace("-", " ").capitalize())
        view = getattr(match.func, "view_class", None) if match is not None else None
        linkable = (view is not None and view_serves(view, "GET")
                    and user_may(user, declared_permission(view, "GET")))
        crumbs.append({"label": label, "url": prefix if linkable else ""})
    if len(crumbs) > 1 or path == "/":
        crumbs[-1]["url"] = ""
        crumbs[-1]["current"] = True
    return crumbs


def _session_ends(request) -> dict | None:
    """When this session ends: the idle timeout from now, and its absolute end
    (PORTAL_SESSION_SECONDS after sign-in, enforced by the idle middleware)."""
    from portal.accounts.middleware import SIGNED_IN_AT

    session = getattr(request, "session", None)
    if session is None:
        return None
    # This page request is activity (the idle middleware stamps it after the response).
    idle_at = dt.datetime.fromtimestamp(time.time() + settings.PORTAL_SESSION_IDLE_SECONDS,
                                        tz=dt.UTC)
    started = session.get(SIGNED_IN_AT)
    ends_at = (dt.datetime.fromtimestamp(started + settings.SESSION_COOKIE_AGE, tz=dt.UTC)
               if started is not None else None)
    return {"idle_at": idle_at, "idle_minutes": settings.PORTAL_SESSION_IDLE_SECONDS // 60,
            "ends_at": ends_at}
