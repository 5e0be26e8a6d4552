"""The posture and evidence pages: who sees what, run now, what flipped, generate and
download (the download audited), and the OpenAPI entries."""
import pytest
from django.test import Client

from compliance_app import tasks
from compliance_app.models import EvidencePack, PostureRun
from portal.audit.models import AuditEvent
from portal.jobs.models import Job
from tests.compliance_app.conftest import run_posture

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_posture_page_shows_results_evidence_fix_and_what_flipped(hsm, admin, auditor, emulator):
    emulator.set_properties("primary", retention_days=30)
    try:
        first = run_posture(admin)
        emulator.set_properties("primary", retention_days=90)
        second = run_posture(admin)
    finally:
        emulator.set_properties("primary", retention_days=90)
    page = client_for(auditor).get("/compliance/posture/")
    assert page.status_code == 200
    html = page.content.decode()
    assert f"Run {second.pk}" in html and "Changed since the previous run" in html
    assert "Soft-delete retention is 90 days" in html and "(was fail)" in html
    assert "softDeleteRetentionInDays" in html  # the evidence
    assert f'href="/hsms/{hsm.name}/backups/"' in html  # a fix link (no backup yet)
    assert "Run the checks now" in html  # auditors may run the checks
    from compliance_app.selectors import posture_failing_count

    assert posture_failing_count() == second.failed > 0
    assert (f'title="{second.failed} posture checks failing in the latest run"') in html

    older = client_for(auditor).get(f"/compliance/posture/?run={first.pk}").content.decode()
    assert f"Run {first.pk}" in older and "Deleted keys are kept 30 days." in older
    bad = client_for(auditor).get("/compliance/posture/?run=abc")
    assert bad.status_code == 200 and "A run is chosen by its number." in bad.content.decode()


def test_run_now_queues_a_job_and_approvers_only_read(hsm, admin, approver, outsider,
                                                     django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        response = client_for(admin).post("/compliance/posture/")
    job = Job.objects.get(kind="compliance.posture")
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert PostureRun.objects.get(job=job).trigger == "demand"
    page = client_for(admin).get("/compliance/posture/").content.decode()
    assert "is in progress" in page and f"job {job.pk}</a>: queued" in page
    from portal.jobs.services import job_finish

    job_finish(job_id=job.pk, ok=False, error="The worker stopped.")  # a run that never finished
    page = client_for(admin).get("/compliance/posture/").content.decode()
    assert "is in progress" not in page and f"job {job.pk}</a>: failed" in page
    assert client_for(approver).get("/compliance/posture/").status_code == 200
    assert "Run the checks now" not in client_for(approver).get("/compliance/posture/").content.decode()
    assert client_for(approver).post("/compliance/posture/").status_code == 403
    assert client_for(outsider).get("/compliance/posture/").status_code == 403
    assert client_for(approver).get("/compliance/evidence/").status_code == 403


def test_evidence_page_generates_and_downloads_a_pack(hsm, auditor,
                                                      django_capture_on_commit_callbacks):
    client = client_for(auditor)
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post("/compliance/evidence/")
    assert response.status_code == 302
    pack = EvidencePack.objects.get()
    page = client.get("/compliance/evidence/").content.decode()
    assert f"Pack {pack.pk}" in page and "Queued" in page
    early = client.get(f"/compliance/evidence/{pack.pk}/pdf/")
    assert early.status_code == 302  # back to the list with a sentence

    tasks.evidence_pack_run.apply(args=[pack.job_id], task_id=f"test-{pack.job_id}")
    page = client.get("/compliance/evidence/").content.decode()
    assert f'href="/compliance/evidence/{pack.pk}/pdf/"' in page
    pdf = client.get(f"/compliance/evidence/{pack.pk}/pdf/")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    assert f"evidence-pack-{pack.pk}-" in pdf["Content-Disposition"]
    assert AuditEvent.objects.filter(action="evidence.download", target=f"evidence-pack:{pack.pk}",
                                     detail__format="pdf").count() == 1


def test_the_api_is_in_the_openapi_schema_with_the_error_envelope(admin, api_as):
    schema = api_as(admin).get("/api/schema/?format=json").json()
    for path in ("/api/v1/posture/", "/api/v1/posture/runs/", "/api/v1/posture/runs/{run_id}/",
                 "/api/v1/evidence-packs/", "/api/v1/evidence-packs/{pack_id}/",
                 "/api/v1/evidence-packs/{pack_id}/{fmt}/"):
        assert path in schema["paths"], path
        for operation in schema["paths"][path].values():
            assert "403" in operation["responses"] and "404" in operation["responses"]


def test_the_hsm_posture_tab_shows_this_hsms_checks_and_their_last_runs(hsm, admin, auditor,
                                                                        approver, emulator):
    empty = client_for(auditor).get(f"/hsms/{hsm.name}/posture/")
    assert empty.status_code == 200 and "No posture run has finished yet." in empty.content.decode()
    emulator.set_properties("primary", retention_days=30)
    try:
        run_posture(admin)
        emulator.set_properties("primary", retention_days=90)
        last = run_posture(admin)
    finally:
        emulator.set_properties("primary", retention_days=90)
    html = client_for(approver).get(f"/hsms/{hsm.name}/posture/").content.decode()
    assert f"From run {last.pk}" in html and 'aria-current' in html
    row = html[html.index("Soft-delete retention is 90 days"):]
    row = row[:row.index("</tr>")]
    # The latest result, then the last runs newest first: pass, then the failing one.
    assert row.count('class="pill pill-ok"') == 2 and row.count('class="pill pill-bad"') == 1
    history = row[row.rindex("<td>"):]
    assert history.index("pill-ok") < history.index("pill-bad")
    detail = client_for(auditor).get(f"/hsms/{hsm.name}/").content.decode()
    assert f'href="/hsms/{hsm.name}/posture/"' in detail  # the tab on the HSM page


def test_the_posture_api_filters_by_hsm(hsm, secondary_hsm, admin, auditor, api_as):
    run_posture(admin)
    client = api_as(auditor)
    everything = client.get("/api/v1/posture/").json()["run"]["results"]
    assert {r["hsm"] for r in everything} == {"primary", "secondary"}
    only = client.get("/api/v1/posture/?hsm=secondary").json()["run"]["results"]
    assert only and {r["hsm"] for r in only} == {"secondary"}
    unknown = client.get("/api/v1/posture/?hsm=" + "x" * 500)
    assert unknown.status_code == 404 and "error" in unknown.json()
