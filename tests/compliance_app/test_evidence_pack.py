"""The evidence pack: made by a job from real rows (a key on the emulator, a backup, a
posture run), a PDF whose text (pdftotext) has every section and whose fonts are embedded,
a JSON file with the same content, audited generation and downloads, no secrets."""
import hashlib
import json
import subprocess
import time
import uuid

import pytest

from compliance_app import tasks
from compliance_app.evidence import SECTIONS
from compliance_app.models import EvidencePack
from portal.audit.models import AuditEvent
from tests.compliance_app.conftest import run_posture

pytestmark = pytest.mark.django_db


def pdf_text(pdf: bytes, tmp_path) -> str:
    path = tmp_path / "pack.pdf"
    path.write_bytes(pdf)
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True,
                          capture_output=True, text=True, timeout=60).stdout


def pdf_fonts(pdf: bytes, tmp_path) -> list[list[str]]:
    path = tmp_path / "fonts.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(["pdffonts", str(path)], check=True, capture_output=True, text=True,
                         timeout=60).stdout
    return [line.split() for line in out.splitlines()[2:] if line.strip()]


@pytest.fixture
def estate(hsm, admin, key_name):
    """A key made outside the portal (no policy, no expiry), its inventory, a real backup,
    and a posture run: what the pack reports."""
    from dr_app import services as dr_services
    from dr_app import tasks as dr_tasks
    from keys_app import services as key_services
    from keys_app import tasks as key_tasks
    from portal import gateway

    gateway.keys(hsm).create_ec_key(key_name, curve="P-256")
    job = key_services.inventory_sync_start(hsm=hsm, actor=admin, request_id="r-pack-sync", full=True)
    key_tasks.inventory_sync_run.apply(args=[job.pk], task_id=f"test-{job.pk}")
    backup = dr_services.backup_start(hsm=hsm, actor=admin, request_id="r-pack-backup",
                                      container=f"t{uuid.uuid4().hex[:20]}")
    dr_tasks.backup_run.apply(args=[backup.pk], task_id=f"test-{backup.pk}")
    run_posture(admin)
    return {"key": key_name}


def make_pack(client) -> dict:
    response = client.post("/api/v1/evidence-packs/")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued" and body["pdf_url"] is None
    tasks.evidence_pack_run.apply(args=[body["job"]], task_id=f"test-{body['job']}")
    return client.get(f"/api/v1/evidence-packs/{body['id']}/").json()


def test_the_pdf_has_every_section_and_the_json_the_same_content(estate, auditor, api_as, tmp_path,
                                                                  settings):
    client = api_as(auditor)
    pack = make_pack(client)
    assert pack["status"] == "ready", pack["error"]

    pdf = client.get(pack["pdf_url"])
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-")
    assert hashlib.sha256(pdf.content).hexdigest() == pack["pdf_sha256"]
    text = pdf_text(pdf.content, tmp_path)
    for section in SECTIONS:
        assert section in text, section
    assert "Key age histogram" in text and "Successful backups per day" in text
    assert estate["key"] in text
    assert "Purge protection is on" in text  # the posture run's check titles

    raw = client.get(pack["json_url"])
    assert raw.status_code == 200 and raw["Content-Type"] == "application/json"
    assert hashlib.sha256(raw.content).hexdigest() == pack["json_sha256"]
    document = json.loads(raw.content)
    assert document["pack"]["sections"] == list(SECTIONS)
    keys = {k["name"]: k for k in document["inventory"]["keys"]}
    assert keys[estate["key"]]["rotation_policy"] is False and keys[estate["key"]]["expires"] is None
    assert f"primary/{estate['key']}" in document["rotation"]["without_policy_or_expiry"]
    assert sum(b["keys"] for b in document["inventory"]["age_histogram"]) == len(keys)
    assert sum(d["backups"] for d in document["recovery"]["successful_backups_per_day"]) >= 1
    assert {r["check"] for r in document["posture"]["results"]} >= {"purge_protection", "backup_fresh"}
    backup_result = next(r for r in document["posture"]["results"] if r["check"] == "backup_fresh")
    assert backup_result["status"] == "pass"
    assert "audit_chain" in document
    # The PDF says what the JSON holds: the same run and its counts, every key.
    run = document["posture"]["run"]
    assert (f"Run {run['id']} finished {run['finished']} UTC: {run['passed']} passed, "
            f"{run['failed']} failed") in " ".join(text.split())
    for name in keys:
        assert name in text

    # Neither file holds a secret the portal knows.
    secrets = [s for s in (settings.AZURE_CLIENT_SECRET, settings.AZURE_STORAGE_ACCOUNT_KEY) if s]
    assert secrets
    for secret in secrets:
        assert secret not in text and secret.encode() not in raw.content and secret.encode() not in pdf.content
    assert b"PRIVATE KEY" not in raw.content and '"d":' not in raw.content.decode()

    # The fonts are reportlab's own Vera, embedded (nothing fetched, nothing substituted).
    fonts = pdf_fonts(pdf.content, tmp_path)
    assert fonts and all("Vera" in row[0] for row in fonts)
    assert all("yes" == row[-5] for row in fonts), fonts  # the "emb" column

    # Generation and each download are in the audit trail, with the files' hashes.
    target = f"evidence-pack:{pack['id']}"
    rows = list(AuditEvent.objects.filter(target=target).order_by("seq")
                .values_list("action", "outcome", "actor_name"))
    assert rows == [("evidence.generate", "intent", auditor.username),
                    ("evidence.generate", "succeeded", auditor.username),
                    ("evidence.download", "recorded", auditor.username),
                    ("evidence.download", "recorded", auditor.username)]
    outcome = AuditEvent.objects.get(target=target, outcome="succeeded")
    assert outcome.detail["pdf_sha256"] == pack["pdf_sha256"]


def test_a_pack_that_is_not_ready_cannot_be_downloaded_and_bad_formats_are_404(
        admin, api_as, azure_settings):
    from compliance_app.services import evidence_pack_start

    pack = evidence_pack_start(actor=admin, request_id="r-not-ready")
    client = api_as(admin)
    early = client.get(f"/api/v1/evidence-packs/{pack.pk}/pdf/")
    assert early.status_code == 409 and early.json()["error"]["code"] == "pack_not_ready"
    assert client.get(f"/api/v1/evidence-packs/{pack.pk}/exe/").status_code == 404
    missing = client.get("/api/v1/evidence-packs/999999/pdf/")
    assert missing.status_code == 404 and "error" in missing.json()
    huge = "9" * 30  # beyond a bigint: still a 404 sentence, never a database error
    assert client.get(f"/api/v1/evidence-packs/{huge}/").status_code == 404
    assert client.get(f"/api/v1/evidence-packs/{huge}/json/").status_code == 404
    assert client.get(f"/api/v1/posture/runs/{huge}/").status_code == 404


def test_who_may_make_and_read_packs(approver, outsider, auditor, api_as, azure_settings):
    assert api_as(approver).post("/api/v1/evidence-packs/").status_code == 403
    assert api_as(approver).get("/api/v1/evidence-packs/").status_code == 403
    assert api_as(outsider).get("/api/v1/posture/").status_code == 403
    assert api_as(approver).get("/api/v1/posture/").status_code == 200
    assert api_as(approver).post("/api/v1/posture/runs/").status_code == 403
    assert EvidencePack.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_makes_the_pack_and_the_posture_run(celery_worker, admin, api_as, hsm):
    client = api_as(admin)
    job = client.post("/api/v1/posture/runs/").json()
    pack = client.post("/api/v1/evidence-packs/").json()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = client.get(f"/api/v1/evidence-packs/{pack['id']}/").json()
        run = client.get(f"/api/v1/jobs/{job['id']}/").json()
        if done["status"] != "queued" and run["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.2)
    assert done["status"] == "ready", done
    assert run["status"] == "succeeded", run
    overview = client.get("/api/v1/posture/").json()["run"]
    assert overview["id"] == run["result"]["run_id"]
    assert {r["hsm"] for r in overview["results"]} == {"primary"}
    assert client.get(done["pdf_url"]).content.startswith(b"%PDF-")


def test_the_pack_reports_the_last_audit_chain_verification(hsm, admin, api_as, tmp_path):
    from portal.audit.checkpoints import audit_verification_run

    verification = audit_verification_run(trigger="command", actor_name=admin.username,
                                           check_checkpoints=False)
    assert verification.ok is True
    pack = make_pack(api_as(admin))
    document = json.loads(api_as(admin).get(pack["json_url"]).content)
    chain = document["audit_chain"]["verification"]
    assert chain["ok"] is True and chain["rows"] == verification.rows
    assert chain["head_seq"] == verification.head_seq
    text = " ".join(pdf_text(api_as(admin).get(pack["pdf_url"]).content, tmp_path).split())
    assert f"{verification.rows} rows checked up to seq {verification.head_seq}" in text
    assert "intact" in text


def test_the_pack_names_who_asked_and_who_approved(hsm, admin, approver, api_as, tmp_path, key_name,
                                                   django_capture_on_commit_callbacks):
    from keys_app import services as key_services
    from portal.approvals.services import approval_decide

    from keys_app.spec import spec_from_request

    key_services.key_create(hsm=hsm, spec=spec_from_request(
        {"name": key_name, "kty": "EC", "curve": "P-256", "tags": {"owner": "pack-test"}}),
        actor=admin, request_id="r-create")
    request = key_services.key_delete(hsm=hsm, name=key_name, actor=admin, request_id="r-del",
                                      confirm_name=key_name, justification="Retired.",
                                      ticket="CHG-7")
    with django_capture_on_commit_callbacks(execute=False):  # the delete itself is not the point
        approval_decide(approval_id=request.pk, actor=approver, decision="approve",
                        comment="Checked the ledger.", request_id="r-ok")
    pack = make_pack(api_as(admin))
    document = json.loads(api_as(admin).get(pack["json_url"]).content)
    row = next(a for a in document["access"]["approvals"] if a["id"] == request.pk)
    assert row["requester"] == admin.username and row["operation"] == "key.delete"
    assert [(d["by"], d["decision"]) for d in row["decisions"]] == [(approver.username, "approve")]
    text = " ".join(pdf_text(api_as(admin).get(pack["pdf_url"]).content, tmp_path).split())
    assert "Approvals (maker-checker)" in text and f"approve by {approver.username}" in text
