"""Browser: an admin activates an un-activated HSM from its Security domain tab (custodian
certificate files, quorum), watches the job reach the end, downloads the security domain
once, then a custodian proves custody with a challenge signed by their private key."""
import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import Encoding
from playwright.sync_api import expect

from dr_app.models_sd import Custodian
from tests.dr_app import test_security_domain as sd
from tests.e2e.conftest import sign_in
from tests.factories import PASSWORD

sd_emulator, sd_settings = sd.sd_emulator, sd.sd_settings


@pytest.fixture
def vault(transactional_db, sd_settings, sd_emulator):
    from portal.gateway.models import HsmInstance

    sd_emulator.provision("source")
    return HsmInstance.objects.create(name="source", uri=sd_emulator.endpoints["hsms"]["source"],
                                      region="emulator")


@pytest.mark.e2e
def test_admin_activates_an_hsm_and_a_custodian_proves_custody(page, admin, vault, tmp_path,
                                                               celery_worker):
    from tests.support.sd_custodian import make_custodians

    people = make_custodians(3, prefix="keeper")
    files = []
    for person in people:
        path = tmp_path / f"{person.name}.cer"
        path.write_bytes(person.certificate.public_bytes(Encoding.PEM))
        files.append(path)

    sign_in(page, admin.username, PASSWORD)
    page.goto(f"/hsms/{vault.name}/security-domain/")
    expect(page.locator("#sd-activation")).to_have_text("Not activated")
    page.get_by_role("link", name="Activate (download security domain)").click()
    page.get_by_label("Quorum").fill("2")
    for index, (person, path) in enumerate(zip(people, files, strict=True)):
        page.get_by_label(f"Custodian {index + 1}", exact=True).fill(person.name)
        page.locator(f"#id_certificate_{index}").set_input_files(str(path))
    page.get_by_role("button", name="Activate and download").click()
    page.wait_for_url("**/jobs/*/")
    progress = page.locator("#job-progress")
    expect(progress).to_have_attribute("data-status", "succeeded", timeout=60_000)
    expect(progress).to_contain_text("downloads it once")

    page.goto(f"/hsms/{vault.name}/security-domain/")
    expect(page.locator("#sd-activation")).to_have_text("Active")
    expect(page.locator("#sd-quorum")).to_have_text("2 custodians")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download security domain (once)").click()
    document = json.loads(download.value.path().read_text())
    assert {"SharedKeys", "EncData"} <= set(document)
    page.goto(f"/hsms/{vault.name}/security-domain/")
    expect(page.locator("#sd-download-ready")).to_have_count(0)

    # keeper1 proves custody: challenge downloaded, signed offline, both files uploaded.
    page.get_by_role("link", name="keeper1").click()
    expect(page.locator("#custody-state")).to_have_text("Never proven")
    with page.expect_download() as challenge:
        page.get_by_role("button", name="Download a challenge").click()
    text = challenge.value.path().read_bytes()
    signature = tmp_path / "challenge.sig"
    signature.write_bytes(people[1].private_key.sign(text, padding.PKCS1v15(), hashes.SHA256()))
    page.get_by_label("Challenge file (as downloaded)").set_input_files(
        str(challenge.value.path()))
    page.get_by_label("Signature file").set_input_files(str(signature))
    page.get_by_role("button", name="Check the signature").click()
    expect(page.get_by_text("keeper1 proved custody of their key.")).to_be_visible()
    expect(page.locator("#custody-state")).to_have_text("Proven")
    assert Custodian.objects.get(name="keeper1").last_proven is not None
    assert page.csp_errors == []


@pytest.fixture
def target(transactional_db, sd_settings, sd_emulator):
    from portal.gateway.models import HsmInstance

    sd_emulator.provision("target")
    return HsmInstance.objects.create(name="target", uri=sd_emulator.endpoints["hsms"]["target"],
                                      region="emulator")


@pytest.mark.e2e
def test_recovery_wizard_upload_is_approved_by_another_person(browser, live_server, page, admin,
                                                              approver, vault, target, tmp_path,
                                                              celery_worker):
    import time

    from dr_app import security_domain as services
    from portal.jobs.models import Job
    from tests.support.sd_custodian import make_custodians, restore_blob

    # The saved security domain of the HSM that was lost (activated here, then "lost").
    people = make_custodians(3, prefix="keeper")
    job = services.security_domain_activate_start(
        hsm=vault, quorum=2, actor=admin, request_id="r",
        custodians=[{"name": p.name, "certificate": p.certificate.public_bytes(Encoding.PEM)}
                    for p in people])
    deadline = time.monotonic() + 60
    while not Job.objects.get(pk=job.pk).is_finished:
        assert time.monotonic() < deadline, "the activation job did not finish"
        time.sleep(0.2)
    saved, _name = services.security_domain_download_fetch(hsm=vault, job_id=job.pk, actor=admin,
                                                           request_id="r")

    sign_in(page, admin.username, PASSWORD)
    page.goto(f"/hsms/{target.name}/security-domain/recover/")
    with page.expect_download() as exchange:
        page.get_by_role("button", name="Download exchange key (PEM)").click()
    blob = tmp_path / "restore-blob.json"
    blob.write_text(restore_blob(saved.decode(), exchange.value.path().read_text(), people[:2]))
    page.get_by_label("Security domain prepared by the custodians").set_input_files(str(blob))
    page.get_by_label("Justification").fill("Region lost: recover into target")
    page.get_by_label("Saved from HSM (optional)").select_option(vault.name)
    page.get_by_role("button", name="Upload for approval").click()
    page.wait_for_url("**/approvals/*/")
    expect(page.get_by_text("needs approval")).to_be_visible()
    request_url = page.url

    approver_context = browser.new_context(base_url=live_server.url)
    approver_page = approver_context.new_page()
    try:
        sign_in(approver_page, approver.username, PASSWORD)
        approver_page.goto(request_url)
        approver_page.get_by_role("button", name="Approve").click()
        expect(approver_page.get_by_text("it runs now")).to_be_visible()
    finally:
        approver_context.close()

    deadline = time.monotonic() + 90
    while not Job.objects.filter(kind=services.UPLOAD_KIND, status="succeeded").exists():
        failed = Job.objects.filter(status="failed").values_list("kind", "error").first()
        assert failed is None, failed
        assert time.monotonic() < deadline, "the upload did not finish"
        time.sleep(0.2)
    page.goto(f"/hsms/{target.name}/security-domain/")
    expect(page.locator("#sd-activation")).to_have_text("Active")
    # The custodians of the saved domain are now this HSM's custodians, with its quorum.
    expect(page.locator("#sd-quorum")).to_have_text("2 custodians")
    for person in people:
        expect(page.locator("#table-sd-custodians")).to_contain_text(person.name)
    assert page.csp_errors == []
