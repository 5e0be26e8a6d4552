"""The console shell's context: navigation by role, badges, the HSM switcher, breadcrumbs,
and the session's end times, as base.html gets them for a request."""
import datetime as dt
import re

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.test import RequestFactory
from django.urls import resolve
from django.utils import timezone

from keys_app.models import KeyRecord
from portal.context_processors import navigation
from portal.gateway.models import HsmInstance
from portal.jobs.models import Job
from tests.support.nav import expected_nav


@pytest.fixture
def two_hsms(db):
    primary = HsmInstance.objects.create(name="primary", uri="https://primary.managedhsm.azure.net")
    secondary = HsmInstance.objects.create(name="secondary", role="secondary",
                                           uri="https://secondary.managedhsm.azure.net")
    KeyRecord.objects.create(hsm=primary, name="app-key", kty="RSA-HSM")
    KeyRecord.objects.create(hsm=primary, name="shared-key", kty="RSA-HSM")
    KeyRecord.objects.create(hsm=secondary, name="shared-key", kty="RSA-HSM")
    return primary, secondary


def shell_for(user, path: str) -> dict:
    request = RequestFactory().get(path)
    request.user = user
    request.session = SessionStore()
    request.resolver_match = resolve(path)
    return navigation(request)


def labels(context) -> dict:
    return {section["title"]: [entry["label"] for entry in section["entries"]]
            for section in context["nav"]}


def test_each_role_sees_only_the_groups_and_pages_it_may_use(personas):
    shown = {role: labels(shell_for(user, "/")) for role, user in personas.items()}
    # What the registry and the role table say each role may use, in the groups' order ...
    for role in ("admin", "approver", "auditor"):
        assert shown[role] == expected_nav(role), role
    # ... and facts no later registration may change.
    assert shown["outsider"] == {"Overview": ["Dashboard"]}
    for role in ("admin", "approver", "auditor"):
        assert shown[role]["Overview"] == ["Dashboard", "HSMs"], role
        assert "Keys" in shown[role]["Keys"], role
        assert {"Backups", "DR drills", "Security domain"} <= set(shown[role]["Recovery"]), role
        assert "Customer-managed keys" in shown[role]["Encryption"], role
        assert {"My requests", "All requests", "Policies"} <= set(shown[role]["Approvals"]), role
    assert list(shown["admin"])[0] == "Overview" and list(shown["admin"])[-1] == "Jobs"
    assert shown["admin"]["Jobs"] == shown["auditor"]["Jobs"] == ["Jobs"]
    assert "Audit trail" in shown["admin"]["Audit & compliance"]
    assert "Audit trail" in shown["auditor"]["Audit & compliance"]
    # Only those who decide see the inbox; the approver sees no jobs and no audit trail.
    assert "Approval inbox" in shown["admin"]["Approvals"]
    assert "Approval inbox" in shown["approver"]["Approvals"]
    assert "Approval inbox" not in shown["auditor"]["Approvals"]
    assert "Jobs" not in shown["approver"]
    assert "Audit trail" not in shown["approver"].get("Audit & compliance", [])


def active(context) -> list[str]:
    return [entry["label"] for section in context["nav"] for entry in section["entries"]
            if entry["active"]]


def test_the_current_area_is_marked(admin, two_hsms):
    assert active(shell_for(admin, "/")) == ["Dashboard"]
    assert active(shell_for(admin, "/hsms/primary/keys/app-key/")) == ["Keys"]
    assert active(shell_for(admin, "/hsms/primary/deleted-keys/")) == ["Keys"]
    assert active(shell_for(admin, "/hsms/primary/settings/")) == ["HSMs"]
    assert active(shell_for(admin, "/audit/")) == ["Audit trail"]


def jobs_badge(context):
    return next(entry["badge"] for section in context["nav"] for entry in section["entries"]
                if entry["label"] == "Jobs")


def test_the_jobs_entry_counts_jobs_failed_in_the_last_24_hours(admin, auditor):
    now = timezone.now()
    for status, finished in [(Job.Status.FAILED, now - dt.timedelta(hours=1)),
                             (Job.Status.FAILED, now - dt.timedelta(hours=23)),
                             (Job.Status.FAILED, now - dt.timedelta(hours=25)),
                             (Job.Status.SUCCEEDED, now - dt.timedelta(hours=1)),
                             (Job.Status.RUNNING, None)]:
        Job.objects.create(kind="system.selfcheck", status=status, finished=finished)
    assert jobs_badge(shell_for(admin, "/"))["count"] == 2
    assert jobs_badge(shell_for(auditor, "/"))["count"] == 2


def test_the_badge_is_rendered_only_when_something_failed(client, admin):
    client.force_login(admin)
    assert 'class="nav-badge"' not in client.get("/").content.decode()
    Job.objects.create(kind="system.selfcheck", status=Job.Status.FAILED, finished=timezone.now())
    html = client.get("/").content.decode()
    assert re.search(r'class="nav-badge"[^>]*>1<span class="visually-hidden"> failed in the last '
                     r'24 hours</span>', html)


def test_counts_are_computed_once_per_request(admin, django_assert_num_queries, two_hsms):
    request = RequestFactory().get("/")
    request.user = admin
    request.session = SessionStore()
    request.resolver_match = resolve("/")
    first = navigation(request)
    with django_assert_num_queries(0):
        assert navigation(request) is first


def switch(context) -> dict:
    return {link["name"]: link["url"] for link in context["hsm_switcher"]["links"]}


def test_the_hsm_switcher_keeps_the_page(admin, two_hsms):
    # The same key on the other HSM, when it has one by that name.
    context = shell_for(admin, "/hsms/primary/keys/shared-key/versions/")
    assert context["hsm_switcher"]["current"] == "primary"
    assert switch(context) == {"primary": "/hsms/primary/keys/shared-key/versions/",
                               "secondary": "/hsms/secondary/keys/shared-key/versions/"}
    # Its key list when the key is not there.
    assert switch(shell_for(admin, "/hsms/primary/keys/app-key/"))["secondary"] == \
        "/hsms/secondary/keys/"
    # A page of the HSM itself, and a list.
    assert switch(shell_for(admin, "/hsms/primary/settings/"))["secondary"] == \
        "/hsms/secondary/settings/"
    assert switch(shell_for(admin, "/hsms/secondary/deleted-keys/"))["primary"] == \
        "/hsms/primary/deleted-keys/"


def test_the_switcher_lands_on_the_key_list_from_pages_of_no_hsm(admin, two_hsms):
    context = shell_for(admin, "/audit/")
    assert context["hsm_switcher"]["current"] is None
    assert switch(context) == {"primary": "/hsms/primary/keys/",
                               "secondary": "/hsms/secondary/keys/"}


def test_the_switcher_never_offers_a_page_the_role_may_not_open(approver, two_hsms):
    # The approver may not create keys: switching from create (reached anyway) goes up.
    assert switch(shell_for(approver, "/hsms/primary/keys/new/"))["secondary"] == \
        "/hsms/secondary/keys/"


def test_no_switcher_for_a_user_without_a_role(outsider, two_hsms):
    assert shell_for(outsider, "/")["hsm_switcher"] is None


def test_breadcrumbs_follow_the_url(admin, two_hsms):
    crumbs = shell_for(admin, "/hsms/primary/keys/app-key/versions/")["crumbs"]
    assert [(c["label"], c["url"]) for c in crumbs] == [
        ("Home", "/"), ("HSMs", "/hsms/"), ("primary", "/hsms/primary/"),
        ("Keys", "/hsms/primary/keys/"), ("app-key", "/hsms/primary/keys/app-key/"),
        ("Versions", "")]
    assert crumbs[-1]["current"] is True
    # A step that is no page is text, not a link.
    crumbs = shell_for(admin, "/hsms/primary/keys/new/")["crumbs"]
    assert [(c["label"], c["url"]) for c in crumbs][-1] == ("Create", "")
    crumbs = shell_for(admin, "/jobs/12/")["crumbs"]
    assert [(c["label"], c["url"]) for c in crumbs] == [("Home", "/"), ("Jobs", "/jobs/"),
                                                       ("#12", "")]


def test_the_header_tells_when_the_session_ends(client, admin, settings):
    settings.PORTAL_SESSION_IDLE_SECONDS = 600
    client.force_login(admin)
    before = timezone.now()
    html = client.get("/").content.decode()
    idle = re.search(r'Session ends <time datetime="([^"]+)"', html).group(1)
    idle_at = dt.datetime.fromisoformat(idle)
    assert before + dt.timedelta(seconds=599) <= idle_at <= timezone.now() + dt.timedelta(seconds=601)
    assert "Signed out after 10 minutes without activity" in html
    limit = re.search(r'<time datetime="([^"]+)" id="session-limit"', html).group(1)
    limit_at = dt.datetime.fromisoformat(limit)
    age = dt.timedelta(seconds=settings.SESSION_COOKIE_AGE)
    assert before + age - dt.timedelta(seconds=2) <= limit_at <= timezone.now() + age
    assert 'id="who"' in html and admin.username in html and ">admin</span>" in html


def test_later_work_adds_an_entry_and_its_count_in_one_line_each(admin, monkeypatch):
    import copy

    from portal import context_processors as shell
    from portal.permissions import SIGNED_IN

    monkeypatch.setattr(shell, "SECTIONS", copy.deepcopy(shell.SECTIONS))
    monkeypatch.setattr(shell, "BADGES", dict(shell.BADGES))
    # A group with no entries is not shown (this copy's Encryption group is emptied first).
    next(s for s in shell.SECTIONS if s.title == "Encryption").entries.clear()
    assert "Encryption" not in labels(shell_for(admin, "/"))

    shell.badge_register("cmk_waiting", lambda user: 0, permission=SIGNED_IN,
                         meaning="waiting")
    shell.nav_register("Requests", "api-docs", SIGNED_IN, section="Encryption",
                       badge="cmk_waiting")
    context = shell_for(admin, "/")
    entry = next(s for s in context["nav"] if s["title"] == "Encryption")["entries"][0]
    assert (entry["label"], entry["badge"]["count"]) == ("Requests", 0)

    shell.badge_register("cmk_waiting", lambda user: 3, permission=SIGNED_IN,
                         meaning="waiting for approval")
    entry = next(s for s in shell_for(admin, "/")["nav"] if s["title"] == "Encryption")["entries"][0]
    assert entry["badge"] == {"count": 3, "meaning": "waiting for approval"}
    with pytest.raises(ValueError, match="No navigation group 'Aprovals'"):
        shell.nav_register("Typo", "dashboard", SIGNED_IN, section="Aprovals")
