"""The security-domain pages: the HSM's Security domain tab for every role, activation
through the form (certificate files), the download offered once on the tab, the recovery
wizard (exchange key file, upload needing a recent sign-in and approval), custodian pages."""
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from dr_app.models_sd import Custodian, SecurityDomainFile
from dr_app.security_domain_tasks import security_domain_activate_run
from portal.approvals.models import ApprovalRequest
from portal.jobs.models import Job
from tests.dr_app import test_security_domain as sd
from tests.support.sd_custodian import restore_blob

pytestmark = pytest.mark.django_db

# The emulator with un-activated HSMs and the custodians, shared with the API tests.
sd_emulator, sd_settings, source, target, custodians = (
    sd.sd_emulator, sd.sd_settings, sd.source, sd.target, sd.custodians)
pem, signed_in = sd.pem, sd.signed_in


def test_the_security_domain_tab_for_each_role(client, personas, source):
    url = f"/hsms/{source.name}/security-domain/"
    for role in ("admin", "approver", "auditor"):
        page = signed_in(client, personas[role]).get(url)
        assert page.status_code == 200, role
        text = page.content.decode()
        assert 'aria-current="page">Security domain</a>' in text
        assert "Not activated" in text and "Custody ledger" in text
        assert ("Activate (download security domain)" in text) == (role == "admin")
    assert signed_in(client, personas["outsider"]).get(url).status_code == 403
    # The HSM's other pages show the tab too, and its Essentials the state last seen.
    overview = signed_in(client, personas["auditor"]).get(f"/hsms/{source.name}/")
    assert "Security domain</a>" in overview.content.decode()
    facts = {fact.label: fact for fact in overview.context["facts"]}
    assert facts["Security domain"].value == "Not activated"
    assert facts["Security domain"].url == url


def test_activation_from_the_form_then_one_download_from_the_tab(client, admin, source,
                                                                 custodians):
    signed_in(client, admin)
    form = {"quorum": "2"}
    for index, person in enumerate(custodians):
        form[f"name_{index}"] = person.name
        form[f"certificate_{index}"] = SimpleUploadedFile(f"{person.name}.cer",
                                                          pem(person).encode())
    started = client.post(f"/hsms/{source.name}/security-domain/activate/", form)
    assert started.status_code == 302
    job = Job.objects.get(kind="security_domain.activate")
    assert started["Location"] == job.get_absolute_url()
    security_domain_activate_run.apply(args=[job.pk], task_id=f"page-{job.pk}")

    tab = client.get(f"/hsms/{source.name}/security-domain/").content.decode()
    assert "ready for you to download, once" in tab
    assert tab.count("pill-warn\">Never proven") == 3  # recorded, not yet proven
    file = client.post(f"/hsms/{source.name}/security-domain/activate/{job.pk}/download/")
    assert file.status_code == 200
    assert file["Content-Disposition"] == f'attachment; filename="{source.name}-security-domain.json"'
    assert b"SharedKeys" in file.content
    again = client.post(f"/hsms/{source.name}/security-domain/activate/{job.pk}/download/",
                        follow=True)
    assert "downloaded already" in again.content.decode()
    assert "ready for you to download" not in client.get(
        f"/hsms/{source.name}/security-domain/").content.decode()


def test_activation_form_marks_a_bad_certificate(client, admin, source, custodians):
    signed_in(client, admin)
    form = {"quorum": "2"}
    for index, person in enumerate(custodians):
        form[f"name_{index}"] = person.name
        form[f"certificate_{index}"] = SimpleUploadedFile("x.cer", b"not a certificate"
                                                          if index == 1 else pem(person).encode())
    page = client.post(f"/hsms/{source.name}/security-domain/activate/", form)
    assert page.status_code == 400
    assert "not a PEM certificate" in page.content.decode()
    assert not Job.objects.exists() and not Custodian.objects.exists()


def test_recovery_wizard_exchange_key_then_upload_for_approval(client, settings, admin, source,
                                                               target, custodians):
    signed_in(client, admin)
    job = sd.activate(client, source, custodians)
    saved = client.post(f"/api/v1/hsms/{source.name}/security-domain/download/{job.pk}/").content
    wizard = client.get(f"/hsms/{target.name}/security-domain/recover/")
    assert wizard.status_code == 200 and "Do step 1 first." in wizard.content.decode()

    key = client.post(f"/hsms/{target.name}/security-domain/recover/exchange-key/",
                      {"format": "pem"})
    assert key.status_code == 200
    assert key["Content-Disposition"] == f'attachment; filename="{target.name}-exchange-key.pem"'
    blob = restore_blob(saved.decode(), key.content.decode(), custodians[1:])
    upload = {"file": SimpleUploadedFile("restore-blob.json", blob.encode()),
              "justification": "region lost"}
    # An old sign-in: re-authenticate first, nothing is kept.
    signed_in(client, admin, seconds_ago=settings.PORTAL_STEP_UP_SECONDS + 5)
    stale = client.post(f"/hsms/{target.name}/security-domain/recover/upload/", upload,
                        HTTP_REFERER=f"http://testserver/hsms/{target.name}/security-domain/recover/")
    assert stale.status_code == 302 and "reauthenticate" in stale["Location"]
    assert not SecurityDomainFile.objects.filter(purpose="upload").exists()
    signed_in(client, admin)
    upload["file"].seek(0)
    pending = client.post(f"/hsms/{target.name}/security-domain/recover/upload/", upload)
    request = ApprovalRequest.objects.get(operation="security_domain.upload")
    assert pending.status_code == 302 and pending["Location"] == request.get_absolute_url()
    assert request.justification == "region lost"
