"""Object pages in a browser: a key's and an HSM's tabs, Essentials, versions, the danger
zone, durations and tag rows, keyboard and focus. Each step saves a screenshot to
var/screenshots/objects-*.png to look at; axe-core (node_modules, run in the page through
the DevTools protocol, CSP on) must find nothing serious or critical in the states the
whole-site walk does not reach (errors, a disabled version, a confirmation page)."""
import re
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import expect

from keys_app import services
from keys_app.models import KeyRecord
from keys_app.spec import spec_from_request
from portal import gateway
from tests.e2e.conftest import sign_in
from tests.factories import PASSWORD

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = ROOT / "var" / "screenshots"
WIDE = {"width": 1280, "height": 800}


def make_key(hsm, actor, name: str, **extra) -> KeyRecord:
    spec = spec_from_request({"name": name, "preset": "cmk-wrapping",
                              "tags": {"owner": "payments", "app": "ledger"}, **extra})
    return services.key_create(hsm=hsm, spec=spec, actor=actor, request_id=uuid.uuid4().hex)


def watched(page) -> list[str]:
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
            if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(f"uncaught: {exc}"))
    return problems


def check(page, shot: str) -> list[str]:
    """No sideways scroll at 1280 px, no serious or critical axe finding; a screenshot."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    problems = []
    scroll, client = page.evaluate("() => [document.scrollingElement.scrollWidth, "
                                   "document.scrollingElement.clientWidth]")
    if scroll > client:
        problems.append(f"{shot}: scrolls sideways ({scroll} > {client})")
    page.evaluate("() => window.scrollTo(0, 0)")  # the sticky top bar stays at the top
    page.screenshot(path=str(SHOTS / f"objects-{shot}.png"), full_page=True)
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE.read_text())
    results = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    problems += [f"{shot}: axe {v['impact']} {v['id']}: {v['help']} "
                 f"{[' '.join(n['target']) for n in v['nodes'][:3]]}"
                 for v in results["violations"] if v["impact"] in ("serious", "critical")]
    return problems


@pytest.fixture
def wide(page):
    page.set_viewport_size(WIDE)
    page.problems = watched(page)
    return page


@pytest.mark.e2e
def test_a_key_page_reads_like_a_resource_blade(wide, admin, hsm, key_name):
    page = wide
    record = make_key(hsm, admin, key_name)
    services.key_rotate(hsm=hsm, name=key_name, actor=admin, request_id="r")
    sign_in(page, admin.username, PASSWORD)
    page.goto(f"/hsms/{hsm.name}/keys/{key_name}/")
    problems = check(page, "key-overview")
    tabs = page.get_by_role("navigation", name=f"Key {key_name}")
    expect(tabs.locator("[aria-current=page]")).to_have_text("Overview")
    essentials = page.locator("#essentials")
    expect(essentials).to_contain_text("RSA-HSM 3072")
    # The Essentials panel has two columns: facts sit side by side at 1280 px.
    lefts = {round(box["x"]) for box in essentials.locator(".fact").evaluate_all(
        "nodes => nodes.map(n => n.getBoundingClientRect().toJSON())")}
    assert len(lefts) == 2, lefts
    # Times show UTC; hovering shows the local time (forms.js sets the title).
    created = essentials.locator("time").first
    expect(created).to_have_attribute("title", re.compile(r"your local time"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", created.inner_text())
    # The command bar holds what an admin may do.
    for name in ("Rotate now", "Download backup"):
        expect(page.get_by_role("button", name=name)).to_be_visible()
    expect(page.get_by_role("heading", name="Danger zone")).to_be_visible()

    tabs.get_by_role("link", name="Versions").click()
    expect(page).to_have_url(re.compile(f"/keys/{key_name}/versions/$"))
    expect(tabs.locator("[aria-current=page]")).to_have_text("Versions")
    expect(page.locator("#versions tbody tr")).to_have_count(2)
    problems += check(page, "key-versions")

    # Disable the older version: a page that says what it affects, then the typed name.
    old = record.version
    page.get_by_role("link", name=f"Disable version {old}…").click()
    expect(page.locator(".danger-zone")).to_contain_text("is not affected")
    box = page.get_by_label("Type the key name to disable this version")
    box.fill("wrong")
    page.get_by_role("button", name="Disable version").click()
    expect(box).to_have_js_property("validity.valid", False)  # refused in place
    problems += check(page, "key-version-disable")
    box.fill(key_name)
    page.get_by_role("button", name="Disable version").click()
    expect(page.locator(".flash-success")).to_contain_text(f"Disabled version {old}")
    row = page.locator("#versions tbody tr", has_text=old)
    expect(row).to_contain_text("Disabled")
    assert gateway.keys(hsm).get_key(key_name, old).properties.enabled is False
    problems += check(page, "key-versions-one-disabled")
    row.get_by_role("button", name=f"Enable version {old}").click()
    expect(page.locator("#versions tbody tr", has_text=old)).to_contain_text("Enabled")

    tabs.get_by_role("link", name="Activity").click()
    expect(page.locator("#activity")).to_contain_text("key.disable")
    problems += check(page, "key-activity")
    tabs.get_by_role("link", name="Rotation").click()
    problems += check(page, "key-rotation")
    assert problems + page.problems + page.csp_errors == []


@pytest.mark.e2e
def test_forms_take_durations_as_numbers_and_tags_as_rows(wide, admin, hsm, key_name):
    page = wide
    sign_in(page, admin.username, PASSWORD)
    page.goto(f"/hsms/{hsm.name}/keys/new/")
    page.locator("#id_name").fill(key_name)
    # Without a value typed yet there is one empty row; Add tag gives another, Remove drops it.
    expect(page.locator("[data-tag-row]")).to_have_count(1)
    page.get_by_label("Tag 1 name").fill("owner")
    page.get_by_label("Tag 1 value").fill("payments")
    page.get_by_role("button", name="Add tag").click()
    expect(page.get_by_label("Tag 2 name")).to_be_focused()
    page.get_by_label("Tag 2 name").fill("app")
    page.get_by_label("Tag 2 value").fill("ledger")
    page.get_by_role("button", name="Add tag").click()
    page.get_by_label("Tag 3 name").fill("temp")
    page.get_by_role("button", name="Remove tag 3").click()
    expect(page.locator("[data-tag-row]")).to_have_count(2)
    page.get_by_label("Rotate after creation", exact=True).fill("3")
    page.get_by_label("Rotate after creation: unit").select_option("months")
    page.get_by_label("Expires after", exact=True).fill("1")
    page.get_by_label("Expires after: unit").select_option("years")
    problems = check(page, "key-create")
    page.get_by_role("button", name="Create key").click()
    expect(page.locator(".flash-success")).to_contain_text(f"Created {key_name}")
    assert gateway.keys(hsm).get_key(key_name).properties.tags == {"owner": "payments",
                                                                   "app": "ledger"}
    policy = gateway.keys(hsm).get_key_rotation_policy(key_name)
    assert (policy.expires_in, [a.time_after_create for a in policy.lifetime_actions]) == (
        "P1Y", ["P3M"])

    # A rule broken is said in the form's words, on the field, with what was typed kept.
    page.get_by_role("navigation", name=f"Key {key_name}").get_by_role(
        "link", name="Rotation").click()
    form = page.locator("#policy-form")
    form.get_by_label("Rotate after creation", exact=True).fill("2")
    form.get_by_label("Rotate after creation: unit").select_option("days")
    form.get_by_role("button", name="Save policy").click()
    expect(form).to_contain_text("Rotate after creation must be at least 7 days.")
    expect(form.get_by_label("Rotate after creation", exact=True)).to_have_value("2")
    expect(form).not_to_contain_text("time_after_create")
    problems += check(page, "key-rotation-error")
    # The refused form is answered 400 on purpose; the browser logs that status, nothing else.
    expected = "console error: Failed to load resource: the server responded with a status of 400"
    assert [p for p in page.problems if not p.startswith(expected)] == []
    assert problems + page.csp_errors == []


@pytest.mark.e2e
def test_object_pages_work_from_the_keyboard_with_visible_focus(wide, admin, hsm, key_name):
    page = wide
    make_key(hsm, admin, key_name)
    sign_in(page, admin.username, PASSWORD)
    page.goto(f"/hsms/{hsm.name}/keys/{key_name}/")
    versions = page.get_by_role("navigation", name=f"Key {key_name}").get_by_role(
        "link", name="Versions")
    for _ in range(80):  # tab through the page until the Versions tab has the focus
        page.keyboard.press("Tab")
        if versions.evaluate("el => el === document.activeElement"):
            break
    else:
        pytest.fail("The Versions tab cannot be reached with the keyboard.")
    outline = versions.evaluate("el => getComputedStyle(el).outlineStyle + ' ' + "
                                "getComputedStyle(el).outlineWidth")
    assert outline.split()[0] != "none" and outline.split()[1] != "0px", outline
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile("/versions/$"))


@pytest.mark.e2e
def test_readers_and_the_hsm_page(wide, admin, auditor, hsm, key_name):
    page = wide
    make_key(hsm, admin, key_name)
    sign_in(page, auditor.username, PASSWORD)
    page.goto(f"/hsms/{hsm.name}/keys/{key_name}/")
    expect(page.get_by_role("button", name="Rotate now")).to_have_count(0)
    expect(page.locator(".danger-zone")).to_have_count(0)
    problems = check(page, "key-overview-auditor")
    page.goto(f"/hsms/{hsm.name}/")
    tabs = page.get_by_role("navigation", name=f"HSM {hsm.name}")
    expect(tabs.locator("[aria-current=page]")).to_have_text("Overview")
    expect(page.locator("#essentials")).to_contain_text(hsm.uri)
    problems += check(page, "hsm-overview-auditor")
    tabs.get_by_role("link", name="Settings").click()
    expect(page.locator("#hsm-settings")).to_be_visible()
    problems += check(page, "hsm-settings-auditor")
    tabs.get_by_role("link", name="Keys", exact=True).click()
    expect(page.get_by_role("navigation", name=f"HSM {hsm.name}").locator(
        "[aria-current=page]")).to_have_text("Keys")
    assert problems + page.problems + page.csp_errors == []
