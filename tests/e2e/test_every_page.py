"""Every page of the portal, as each role, at 1280x800 and 1920x1080, in light and dark.

The pages are found by walking the URLconf: every route whose view serves GET and is not
the API, filled with real objects (an HSM of the emulator with a key, a second HSM, a
failed job, the audit rows these left). On each page: no horizontal scroll, no console
error (CSP violations are console errors), and axe-core, run inside the page through the
DevTools protocol (CSP stays on), finds nothing serious or critical. Each page's
screenshot is saved as var/screenshots/<role>-<size>-<page>.png to look at.
"""
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from keys_app import services as key_services
from keys_app.spec import spec_from_request
from portal.jobs.services import job_create, job_finish
from portal.permissions import declared_permission, user_may, view_serves
from tests.e2e.conftest import sign_in
from tests.factories import PASSWORD

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = ROOT / "var" / "screenshots"
SIZES = {"1280": {"width": 1280, "height": 800}, "1920": {"width": 1920, "height": 1080}}

# Routes that serve GET but are not pages, and why. Anything else that serves GET is
# visited, so a new page is checked without anyone adding it here.
NOT_PAGES = {
    "healthz": "JSON for load balancers",
    "audit:event-export": "a CSV download",
    "trail:timeline-export": "a timeline's CSV or JSON download",
    "keys:key-public": "a public-key file download",
    "keys:key-version-public": "a public-key file download",
    "access:campaign-evidence": "an access review's evidence as a JSON download",
    "compliance:evidence-download": "an evidence pack's PDF or JSON download",
    "keys-home": "a redirect to the first HSM's key list (visited as keys:key-list)",
    "accounts:login": "the sign-in page: visited signed out, in its own test",
    "accounts:entra-start": "a redirect to the directory's sign-in (test_entra_sign_in.py)",
    "accounts:entra-callback": "the directory's answer: a redirect, or the refusal page "
                               "(checked in test_entra_sign_in.py)",
}


@dataclass(frozen=True)
class Route:
    name: str  # namespace:name
    route: str  # the pattern text, e.g. hsms/<str:hsm_id>/keys/<keyname:name>/
    view: type


def _routes(resolvers=None, prefix: str = "", namespace: str = ""):
    for entry in resolvers if resolvers is not None else get_resolver().url_patterns:
        if isinstance(entry, URLResolver):
            ns = ":".join(filter(None, [namespace, entry.namespace]))
            yield from _routes(entry.url_patterns, prefix + str(entry.pattern), ns)
        elif isinstance(entry, URLPattern) and entry.name:
            view = getattr(entry.callback, "view_class", None) or getattr(entry.callback, "cls", None)
            name = ":".join(filter(None, [namespace, entry.name]))
            yield Route(name, prefix + str(entry.pattern), view)


def page_routes() -> list[Route]:
    """Every GET route that is a page: not the API, not a download or redirect.

    /api/docs/ is under the API too: it is Swagger UI's own page, not the console's (axe
    finds nested controls and low-contrast text in Swagger UI's markup, which is vendored
    as it comes).
    """
    pages = []
    for route in _routes():
        if route.route.startswith("api/") or route.name in NOT_PAGES:
            continue
        if route.view is None or not view_serves(route.view, "GET"):
            continue  # POST-only actions, sign-out
        pages.append(route)
    return pages


def test_the_walk_finds_the_pages_and_skips_actions():
    names = {route.name for route in page_routes()}
    # Pages of each area are found; POST-only actions, downloads and the API are not.
    assert {"dashboard", "gateway:hsm-list", "keys:key-list", "keys:key-detail",
            "jobs:job-detail", "audit:event-list"} <= names
    assert not names & {"keys:key-rotate", "keys:key-delete", "accounts:logout",
                        "keys:key-public", "api:hsm-list", "api-docs"}


def seed(hsm, secondary_hsm, admin) -> dict:
    """Real objects for every kwarg a page route takes: an HSM with a key, a failed job."""
    name = f"k-{uuid.uuid4().hex[:12]}"
    spec = spec_from_request({"name": name, "preset": "cmk-wrapping",
                              "tags": {"owner": "payments", "env": "prod"}})
    record = key_services.key_create(hsm=hsm, spec=spec, actor=admin,
                                     request_id=uuid.uuid4().hex)
    job = job_create(kind="keys.sync", actor=admin, hsm=hsm)
    job_finish(job_id=job.pk, ok=False, error="The HSM answered 503; try again shortly.")
    from tests.access_app.seed import seed_access
    from tests.support.hsm_audit import seed_hsm_events

    seed_hsm_events(hsm, name)  # the key's and the HSM's Timeline tabs have HSM events
    return {**seed_access(hsm, admin), "hsm_id": hsm.name, "name": name,
            "principal": f"local:{admin.pk}",
            "version": record.versions.first().version,
            "job_id": job.pk, "custodian_id": seed_custodian(hsm, admin).pk,
            "approval_id": key_services.key_delete(  # a pending request (maker-checker)
                hsm=hsm, name=name, actor=admin, request_id=uuid.uuid4().hex,
                confirm_name=name, justification="Retired with the old ledger.",
                ticket="CHG-1042").pk,
            "drill_id": seed_drill(hsm, secondary_hsm, admin).pk,
            "binding_id": seed_cmk_binding(hsm, name).pk,
            "restore_id": seed_restore(secondary_hsm, admin).pk}


def seed_cmk_binding(hsm, key_name):
    """A storage account that uses the key (as the usage scan records one)."""
    from cmk_app.models import CmkBinding

    rid = (f"/subscriptions/{uuid.uuid4()}/resourceGroups/rg-payments-weu/providers/"
           f"Microsoft.Storage/storageAccounts/stpay{uuid.uuid4().hex[:8]}")
    return CmkBinding.objects.create(hsm=hsm, key_name=key_name, resource_id=rid, kind="storage",
                                     resource_name=rid.rsplit("/", 1)[-1],
                                     resource_group="rg-payments-weu", location="westeurope",
                                     status="active", origin="scan", version_in_use="")


def seed_restore(hsm, admin):
    """A selective restore stopped by its readiness gate (the folder was missing)."""
    job = job_create(kind="dr.restore", actor=admin, hsm=hsm, params={
        "hsm_id": hsm.name, "folder": "mhsm-primary-2026113009151234",
        "container": "mhsm-backups", "key_name": "app-key", "auth_mode": "sas",
        "mode": "selective", "gate": [
            {"check": "Target reachable and activated", "ok": True,
             "detail": f"HSM {hsm.name} answered an authenticated data-plane call."},
            {"check": "Storage reachable", "ok": True, "detail": "The storage account answered."},
            {"check": "Folder exists and is complete", "ok": False,
             "detail": "Folder mhsm-primary-2026113009151234 does not exist in container "
                       "mhsm-backups."}]})
    job_finish(job_id=job.pk, ok=False, error="Not ready to restore — Folder exists and is "
                                             "complete: it does not exist.")
    return job


def seed_drill(hsm, secondary_hsm, admin):
    """A finished DR drill with its report (as drill_run leaves it), and a catalog row."""
    from dr_app.models import BackupRecord, DrDrill

    job = job_create(kind="dr.drill", actor=admin, hsm=secondary_hsm)
    job_finish(job_id=job.pk, ok=True, result={"passed": True}, step="Report ready")
    folder = f"mhsm-{hsm.name}-2026113009151234"
    BackupRecord.objects.create(hsm=hsm, source_hsm_name=hsm.name, container="mhsm-backups",
                                folder=folder, status="succeeded", key_count=3,
                                size_bytes=20480, blob_count=3, job=job)
    comparison = {"keys_primary": 3, "keys_secondary": 3, "versions_primary": 4,
                  "versions_secondary": 4, "role_assignments_primary": 2,
                  "role_assignments_secondary": 2, "keys_missing": [], "keys_extra": [],
                  "keys_versions_differ": [], "keys_state_differs": [],
                  "role_assignments_missing": [], "role_assignments_extra": []}
    return DrDrill.objects.create(primary=hsm, secondary=secondary_hsm, primary_name=hsm.name,
                                  secondary_name=secondary_hsm.name, container="mhsm-backups",
                                  job=job, passed=True, rto_seconds=12.5, rpo_seconds=3.1,
                                  report={"passed": True, "rto_seconds": 12.5,
                                          "rpo_seconds": 3.1, "source_folder": folder,
                                          "comparison": comparison})


def seed_custodian(hsm, admin):
    """A custodian of the HSM's security domain (a fresh self-signed certificate)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from dr_app.security_domain import custodian_add
    from tests.support.sd_custodian import make_custodians

    person = make_custodians(1, prefix="page-keeper")[0]
    return custodian_add(hsm=hsm, name=person.name, email="keeper@example.test",
                         certificate=person.certificate.public_bytes(Encoding.PEM),
                         actor=admin, request_id=uuid.uuid4().hex)


def url_for(route: Route, values: dict) -> str:
    kwargs = {kwarg: values[kwarg] for kwarg in re.findall(r"<(?:\w+:)?(\w+)>", route.route)}
    return reverse(route.name, kwargs=kwargs)


def page_slug(route: Route) -> str:
    return route.name.replace(":", "-")


def watch(page) -> list[str]:
    """Console errors and uncaught exceptions of this page, as they come."""
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
            if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(f"uncaught: {exc}"))
    return problems


def check_page(page, label: str, shot: str, *, axe_source: str, rules: tuple = ()) -> list[str]:
    """No horizontal scroll and no serious or critical axe finding (of `rules`, or all);
    saves a screenshot."""
    problems = []
    widths = page.evaluate("() => [document.scrollingElement.scrollWidth, "
                           "document.scrollingElement.clientWidth]")
    if widths[0] > widths[1]:
        problems.append(f"{label}: scrolls sideways ({widths[0]} > {widths[1]} px)")
    # Nothing (a hidden table, a stray popup) scrolls on past the footer into blank space.
    heights = page.evaluate("() => [document.scrollingElement.scrollHeight, Math.ceil("
                            "document.querySelector('body > footer').getBoundingClientRect()"
                            ".bottom + scrollY)]")
    if heights[0] > max(heights[1], page.viewport_size["height"]):
        problems.append(f"{label}: scrolls {heights[0] - heights[1]} px past the footer")
    page.screenshot(path=str(SHOTS / f"{shot}.png"), full_page=True)
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(axe_source)
    options = {"resultTypes": ["violations"]}
    if rules:
        options["runOnly"] = {"type": "rule", "values": list(rules)}
    results = page.evaluate("options => axe.run(document, options)", options)
    for violation in results["violations"]:
        if violation["impact"] in ("serious", "critical"):
            targets = [" ".join(node["target"]) for node in violation["nodes"][:3]]
            problems.append(f"{label}: axe {violation['impact']} {violation['id']}: "
                            f"{violation['help']} at {targets}")
    return problems


def read_axe() -> str:
    assert AXE.exists(), "axe-core is not installed: run make node-deps (npm ci)"
    return AXE.read_text()


def open_page(browser, live_server):
    """A new context and page at 1280, with its console watched."""
    # Reduced motion: no colour transitions half-way when the theme switches.
    context = browser.new_context(base_url=live_server.url, viewport=SIZES["1280"],
                                  reduced_motion="reduce")
    page = context.new_page()
    return context, page, watch(page)


def check_every_size(page, label: str, slug: str, axe: str) -> list[str]:
    """Check the open page at every size, then in the dark theme at 1280 (which changes
    colours only: its contrast is what can fail). slug has a {} for the size."""
    problems = []
    for size, viewport in SIZES.items():
        page.set_viewport_size(viewport)
        problems += check_page(page, f"{label} at {size}", slug.format(size), axe_source=axe)
    # Reduced motion whatever the caller's context: no colour transition is half-way while
    # axe measures the dark theme's contrast.
    page.emulate_media(color_scheme="dark", reduced_motion="reduce")
    page.set_viewport_size(SIZES["1280"])
    problems += check_page(page, f"{label} at 1280 dark", slug.format("1280-dark"),
                           axe_source=axe, rules=("color-contrast",))
    page.emulate_media(color_scheme="light")
    return problems


def visit_as(browser, live_server, user, role: str, routes, values) -> list[str]:
    context, page, console = open_page(browser, live_server)
    axe = read_axe()
    problems = []
    try:
        sign_in(page, user.username, PASSWORD)
        for route in routes:
            if not user_may(user, declared_permission(route.view, "GET")):
                continue
            url = url_for(route, values)
            response = page.goto(url)
            if response is None or response.status != 200:
                problems.append(f"{role} {url}: answered {response and response.status}")
                continue
            problems += check_every_size(page, f"{role} {url}",
                                         f"{role}-{{}}-{page_slug(route)}", axe)
            problems += [f"{role} {url}: {line}" for line in console]
            console.clear()
    finally:
        context.close()
    return problems


@pytest.mark.e2e
@pytest.mark.parametrize("role", ["admin", "approver", "auditor"])
def test_every_page_reads_well_for_each_role(role, browser, live_server, personas, hsm,
                                             secondary_hsm):
    SHOTS.mkdir(parents=True, exist_ok=True)
    values = seed(hsm, secondary_hsm, personas["admin"])
    routes = page_routes()
    problems = visit_as(browser, live_server, personas[role], role, routes, values)
    assert problems == [], "\n".join(problems)


@pytest.mark.e2e
def test_the_sign_in_page_reads_well_signed_out(browser, live_server):
    SHOTS.mkdir(parents=True, exist_ok=True)
    context, page, console = open_page(browser, live_server)
    try:
        page.goto(reverse("accounts:login"))
        problems = check_every_size(page, "signed out", "anonymous-{}-accounts-login", read_axe())
    finally:
        context.close()
    assert problems + console == [], "\n".join(problems + console)


@pytest.mark.e2e
def test_the_shell_works_from_the_keyboard(page, admin, hsm, secondary_hsm):
    from playwright.sync_api import expect

    values = seed(hsm, secondary_hsm, admin)  # the key exists on primary only
    sign_in(page, admin.username, PASSWORD)
    page.goto(f"/hsms/primary/keys/{values['name']}/")

    # The first Tab shows the skip link; Enter moves focus to the page's content.
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to main content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main"

    # The HSM switcher opens with Enter, shows its focus, closes with Escape.
    switcher = page.locator("#hsm-switcher")
    summary = switcher.locator("summary")
    summary.focus()
    assert summary.evaluate("el => getComputedStyle(el).outlineStyle") == "solid"
    page.keyboard.press("Enter")
    expect(switcher).to_have_attribute("open", "")
    page.keyboard.press("Escape")
    expect(switcher).not_to_have_attribute("open", "")
    expect(summary).to_be_focused()

    # Switching keeps the page where it can: this key is not on secondary, so its key list.
    # (exact: "Customer-managed keys" is a navigation link too.)
    page.keyboard.press("Enter")
    switcher.get_by_role("link", name="secondary").click()
    page.wait_for_url("**/hsms/secondary/keys/")
    expect(page.get_by_role("navigation", name="Portal").get_by_role("link", name="Keys", exact=True)) \
        .to_have_attribute("aria-current", "page")
    expect(page.locator("#hsm-switcher .menu-value")).to_have_text("secondary")
    assert page.csp_errors == []
