"""The custody ledger: custodians and their wrapping certificates, proof of possession (a
challenge signed offline with the private key, verified against the certificate), stale
custody and quorum warnings, both doors and the audit trail."""
import base64
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from django.utils import timezone

from dr_app import security_domain as services
from dr_app.models_sd import Custodian, CustodyChallenge
from dr_app.security_domain_selectors import custody_findings
from portal.audit.models import AuditEvent
from portal.errors import BadInput
from portal.gateway.models import HsmInstance
from tests.support.sd_custodian import make_custodians
from tests.support.sessions import signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def vault(db):
    """A registered HSM (custody is portal data: no call reaches the HSM here)."""
    return HsmInstance.objects.create(name="vault", uri="https://vault.managedhsm.azure.net",
                                      region="westeurope")


@pytest.fixture
def people():
    return make_custodians(3, prefix="keeper")


def pem(person) -> str:
    return person.certificate.public_bytes(serialization.Encoding.PEM).decode()


def add(vault, person, admin) -> Custodian:
    return services.custodian_add(hsm=vault, name=person.name, certificate=pem(person),
                                  actor=admin, request_id="r")


def sign(person, text: bytes, *, pss: bool = False) -> bytes:
    pad = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH) \
        if pss else padding.PKCS1v15()
    return person.private_key.sign(text, pad, hashes.SHA256())


def test_custody_is_proven_with_the_right_key_and_refused_with_another(client, admin, vault,
                                                                      people):
    keeper, stranger = people[0], people[1]
    custodian = add(vault, keeper, admin)
    api = signed_in(client, admin)
    base = f"/api/v1/hsms/{vault.name}/custodians/{custodian.pk}/"

    challenge = api.post(base + "challenges/").json()
    text = challenge["text"].encode()
    assert f"certificate-sha256: {custodian.fingerprint_sha256}" in challenge["text"]
    # Signed with someone else's key: refused, audited as failed, nothing proven.
    wrong = api.post(base + "prove/", {"challenge": challenge["id"], "signature": base64.b64encode(
        sign(stranger, text)).decode()}, content_type="application/json")
    assert wrong.status_code == 400
    assert wrong.json()["error"]["code"] == "custody_not_proven"
    custodian.refresh_from_db()
    assert custodian.last_proven is None
    # Signed with the custodian's key (as openssl dgst -sha256 -sign does): proven.
    right = api.post(base + "prove/", {"challenge": challenge["id"], "signature": base64.b64encode(
        sign(keeper, text)).decode()}, content_type="application/json")
    assert right.status_code == 200, right.content
    assert right.json()["custody"] == "Proven" and right.json()["stale"] is False
    custodian.refresh_from_db()
    assert custodian.last_proven is not None
    # A challenge is used once.
    again = api.post(base + "prove/", {"challenge": challenge["id"], "signature": base64.b64encode(
        sign(keeper, text)).decode()}, content_type="application/json")
    assert again.status_code == 400 and "used already" in again.json()["error"]["message"]
    outcomes = list(AuditEvent.objects.filter(action="custody.prove").order_by("seq")
                    .values_list("outcome", flat=True))
    assert outcomes == ["intent", "failed", "intent", "succeeded", "intent", "failed"]


def test_a_pss_signature_and_the_page_upload_prove_custody(client, admin, vault, people):
    keeper = people[0]
    custodian = add(vault, keeper, admin)
    page = signed_in(client, admin)
    base = f"/hsms/{vault.name}/security-domain/custodians/{custodian.pk}/"
    challenge_file = page.post(base + "challenge/")
    assert challenge_file.status_code == 200
    assert challenge_file["Content-Disposition"].startswith("attachment;")
    text = challenge_file.content
    from django.core.files.uploadedfile import SimpleUploadedFile

    done = page.post(base + "prove/", {
        "challenge_file": SimpleUploadedFile("custody-challenge.txt", text),
        "signature": SimpleUploadedFile("challenge.sig", sign(keeper, text, pss=True))})
    assert done.status_code == 302
    custodian.refresh_from_db()
    assert custodian.last_proven is not None
    assert CustodyChallenge.objects.get(custodian=custodian).used is not None


def test_a_tampered_challenge_does_not_verify(admin, vault, people):
    keeper = people[0]
    custodian = add(vault, keeper, admin)
    challenge = services.custody_challenge_issue(custodian=custodian, actor=admin, request_id="r")
    signature = sign(keeper, services.challenge_text(challenge) + b"extra")
    with pytest.raises(BadInput):
        services.custody_prove(custodian=custodian, challenge_id=challenge.pk,
                               signature=signature, actor=admin, request_id="r")
    expired = services.custody_challenge_issue(custodian=custodian, actor=admin, request_id="r")
    good = sign(keeper, services.challenge_text(expired))
    CustodyChallenge.objects.filter(pk=expired.pk).update(expires=timezone.now())
    with pytest.raises(BadInput, match="expired"):
        services.custody_prove(custodian=custodian, challenge_id=expired.pk, signature=good,
                               actor=admin, request_id="r")


def test_stale_custody_and_quorum_at_risk_are_warnings(client, settings, admin, auditor, vault,
                                                      people):
    settings.PORTAL_CUSTODY_PROOF_DAYS = 180
    custodians = [add(vault, person, admin) for person in people]
    services.quorum_record(hsm=vault, quorum=2, actor=admin, request_id="r")
    now = timezone.now()
    Custodian.objects.filter(pk=custodians[0].pk).update(last_proven=now - timedelta(days=10))
    Custodian.objects.filter(pk=custodians[1].pk).update(last_proven=now - timedelta(days=200))

    problems = {(f.custodian_name, f.problem) for f in custody_findings(hsm=vault)}
    assert problems == {("keeper1", "stale"), ("keeper2", "never_proven"), ("", "quorum_at_risk")}
    # Proven again recently: the quorum is met, only the never-proven one remains.
    Custodian.objects.filter(pk=custodians[1].pk).update(last_proven=now - timedelta(days=1))
    assert {f.problem for f in custody_findings(hsm=vault)} == {"never_proven"}
    # The auditor reads the same warnings through the API and on the HSM's tab.
    signed_in(client, auditor)
    findings = client.get("/api/v1/custody-findings/", {"hsm": vault.name}).json()
    assert [f["custodian_name"] for f in findings] == ["keeper2"]
    ledger = client.get(f"/api/v1/hsms/{vault.name}/custodians/").json()
    assert {row["name"]: row["stale"] for row in ledger} == {
        "keeper0": False, "keeper1": False, "keeper2": True}


def test_ledger_writes_are_admin_only_and_audited(client, admin, approver, auditor, vault, people):
    url = f"/api/v1/hsms/{vault.name}/custodians/"
    for user in (approver, auditor):
        signed_in(client, user)
        assert client.post(url, {"name": "x", "certificate": pem(people[0])},
                           content_type="application/json").status_code == 403
        assert client.get(url).status_code == 200
    signed_in(client, admin)
    created = client.post(url, {"name": "keeper0", "certificate": pem(people[0])},
                          content_type="application/json")
    assert created.status_code == 201
    duplicate = client.post(url, {"name": "another", "certificate": pem(people[0])},
                            content_type="application/json")
    assert duplicate.status_code == 409
    retire = client.post(f"{url}{created.json()['id']}/retire/")
    assert retire.status_code == 200 and retire.json()["status"] == "retired"
    assert list(AuditEvent.objects.filter(action__startswith="custody.").order_by("seq")
                .values_list("action", flat=True)) == ["custody.add", "custody.retire"]
    quorum = client.put(f"/api/v1/hsms/{vault.name}/security-domain/quorum/", {"quorum": 11},
                        content_type="application/json")
    assert quorum.status_code == 400


def test_the_security_domain_overview_lists_every_hsm_with_its_custody(client, auditor, admin,
                                                                       vault, people):
    HsmInstance.objects.create(name="spare", uri="https://spare.managedhsm.azure.net")
    keeper = add(vault, people[0], admin)
    add(vault, people[1], admin)
    services.quorum_record(hsm=vault, quorum=2, actor=admin, request_id="r")
    Custodian.objects.filter(pk=keeper.pk).update(last_proven=timezone.now())
    page = signed_in(client, auditor).get("/security-domain/")
    assert page.status_code == 200
    text = page.content.decode()
    assert 'href="/security-domain/" aria-current="page"><span class="nav-label">Security domain' \
        in text  # its navigation entry, current
    rows = {row.hsm.name: row for row in page.context["table"].rows}
    assert set(rows) == {"vault", "spare"}
    assert (rows["vault"].custodians, rows["vault"].proven) == (2, 1)
    assert {w.problem for w in rows["vault"].warnings} == {"never_proven", "quorum_at_risk"}
    assert rows["spare"].warnings == [] and rows["spare"].custodians == 0
    assert "2 warnings" in text


def test_retire_and_quorum_from_the_pages(client, admin, auditor, vault, people):
    custodian = add(vault, people[0], admin)
    page = signed_in(client, admin)
    base = f"/hsms/{vault.name}/security-domain/"
    wrong = page.post(f"{base}custodians/{custodian.pk}/retire/", {"confirm_name": "someone"},
                      follow=True)
    assert "Type the custodian's name" in wrong.content.decode()
    custodian.refresh_from_db()
    assert custodian.status == "active"
    done = page.post(f"{base}custodians/{custodian.pk}/retire/", {"confirm_name": "keeper0"})
    assert done.status_code == 302 and done["Location"] == base
    custodian.refresh_from_db()
    assert custodian.status == "retired"
    assert page.post(f"{base}quorum/", {"quorum": "3"}).status_code == 302
    bad = page.post(f"{base}quorum/", {"quorum": "1"}, follow=True)
    assert "from 2 to 10" in bad.content.decode()
    from dr_app.models_sd import SecurityDomainState

    assert SecurityDomainState.objects.get(hsm=vault).quorum == 3
    # An auditor reads the custodian's page but has no proof, retire or quorum forms.
    text = signed_in(client, auditor).get(f"{base}custodians/{custodian.pk}/").content.decode()
    assert "Custodian keeper0" in text and "Retire custodian" not in text
    assert signed_in(client, auditor).post(f"{base}quorum/", {"quorum": "2"}).status_code == 403


def test_the_openssl_command_the_page_shows_proves_custody(client, admin, vault, people,
                                                          tmp_path):
    """The custodian follows the page: `openssl dgst -sha256 -sign` on the challenge file."""
    import shutil
    import subprocess

    from django.core.files.uploadedfile import SimpleUploadedFile

    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed for this test"
    _cer, key = people[0].write(tmp_path)
    custodian = add(vault, people[0], admin)
    page = signed_in(client, admin)
    base = f"/hsms/{vault.name}/security-domain/custodians/{custodian.pk}/"
    challenge = tmp_path / "custody-challenge.txt"
    challenge.write_bytes(page.post(base + "challenge/").content)
    assert "openssl dgst -sha256 -sign" in page.get(base).content.decode()
    signature = tmp_path / "challenge.sig"
    subprocess.run([openssl, "dgst", "-sha256", "-sign", str(key), "-out", str(signature),
                    str(challenge)], check=True, capture_output=True, timeout=30)
    page.post(base + "prove/", {
        "challenge_file": SimpleUploadedFile("custody-challenge.txt", challenge.read_bytes()),
        "signature": SimpleUploadedFile("challenge.sig", signature.read_bytes())})
    custodian.refresh_from_db()
    assert custodian.last_proven is not None
