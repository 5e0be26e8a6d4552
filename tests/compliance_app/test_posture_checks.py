"""Each posture check flips when the emulator's state changes: changed through Resource
Manager (azure-mgmt-keyvault, diagnostic settings over HTTPS), the emulator's own control for
what Azure only sets at creation (retention), and the portal's own services (keys, backups,
drills, role assignments). Nothing is mocked."""
import time
import uuid

import pytest
from azure.mgmt.keyvault.models import (ManagedHsm, ManagedHsmProperties,
                                        MHSMGeoReplicatedRegion)

from compliance_app.checks import CHECKS
from portal.audit.models import AuditEvent
from portal.jobs.models import Job
from tests.compliance_app.conftest import (DIAGNOSTICS_API, result, run_posture,
                                           storage_account_create)

pytestmark = pytest.mark.django_db


def update_hsm(keyvault_mgmt, emulator, name="primary", **properties):
    keyvault_mgmt.managed_hsms.begin_update(
        emulator.endpoints["resource_group"], name,
        ManagedHsm(location="westeurope", properties=ManagedHsmProperties(**properties))).result()


def test_every_check_answers_for_every_hsm_with_evidence_and_the_run_is_a_job(hsm, admin):
    run = run_posture(admin)

    job = Job.objects.get(pk=run.job_id)
    assert job.status == Job.Status.SUCCEEDED and job.result["run_id"] == run.pk
    answered = {(r.check_id, r.hsm_name) for r in run.results.all()}
    assert answered == {(c, "primary") for c in CHECKS}
    for r in run.results.all():
        assert r.status in ("pass", "fail", "na", "unknown")
        assert r.summary
        if r.status == "fail":
            assert r.fix and r.fix_url.startswith("/"), r.check_id
    assert run.passed + run.failed + run.other == len(CHECKS)
    assert AuditEvent.objects.filter(action="posture.run", target=f"job:{job.pk}:compliance.posture",
                                     actor_name=admin.username).exists()


def test_purge_protection_flips_on_through_resource_manager(admin, azure_settings, emulator,
                                                            keyvault_mgmt):
    from portal.gateway.models import HsmInstance

    spare = HsmInstance.objects.create(name="spare", uri=emulator.endpoints["hsms"]["spare"],
                                       arm_resource_id=emulator.endpoints["hsm_resource_ids"]["spare"])
    before = result(run_posture(admin), "purge_protection", "spare")
    assert before.status == "fail"
    assert before.evidence["enablePurgeProtection"] is False
    assert "properties.enablePurgeProtection" in before.evidence["source"]
    assert before.fix_url == f"/hsms/{spare.name}/resource/"

    update_hsm(keyvault_mgmt, emulator, "spare", enable_purge_protection=True)
    after = result(run_posture(admin), "purge_protection", "spare")
    assert after.status == "pass" and after.evidence["enablePurgeProtection"] is True
    assert after.previous_status == "fail" and after.flipped


def test_soft_delete_retention_of_90_days(hsm, admin, emulator):
    emulator.set_properties("primary", retention_days=7)
    try:
        short = result(run_posture(admin), "soft_delete_retention")
        assert short.status == "fail" and short.evidence["softDeleteRetentionInDays"] == 7
        emulator.set_properties("primary", retention_days=90)
        assert result(run_posture(admin), "soft_delete_retention").status == "pass"
    finally:
        emulator.set_properties("primary", retention_days=90)


def test_public_network_access_needs_it_disabled_and_an_approved_private_endpoint(
        hsm, admin, emulator, keyvault_mgmt):
    from azure.mgmt.keyvault import models as m

    group = emulator.endpoints["resource_group"]
    update_hsm(keyvault_mgmt, emulator, public_network_access="Enabled")
    first = result(run_posture(admin), "public_network_access")
    assert first.status == "fail" and first.evidence["publicNetworkAccess"] == "Enabled"

    update_hsm(keyvault_mgmt, emulator, public_network_access="Disabled")
    closed = result(run_posture(admin), "public_network_access")
    assert closed.status == "fail"  # no private endpoint is approved yet
    assert "no private endpoint connection is approved" in closed.summary

    pending = next(iter(keyvault_mgmt.mhsm_private_endpoint_connections.list_by_resource(group, "primary")))
    keyvault_mgmt.mhsm_private_endpoint_connections.put(
        group, "primary", pending.name, m.MHSMPrivateEndpointConnection(
            properties=m.MHSMPrivateEndpointConnectionProperties(
                private_link_service_connection_state=m.MHSMPrivateLinkServiceConnectionState(
                    status="Approved", description="posture test"))))
    done = result(run_posture(admin), "public_network_access")
    assert done.status == "pass", done.summary
    assert done.evidence["approvedPrivateEndpoints"] == [pending.name]

    update_hsm(keyvault_mgmt, emulator, public_network_access="Enabled")
    assert result(run_posture(admin), "public_network_access").status == "fail"


def test_diagnostic_logs_flip_with_a_diagnostic_setting(hsm, admin, emulator, arm_http):
    url = f"{hsm.arm_resource_id}/providers/Microsoft.Insights/diagnosticSettings/posture"
    assert result(run_posture(admin), "diagnostic_logs").status == "fail"

    account = storage_account_create(emulator, f"logs{uuid.uuid4().hex[:10]}")
    put = arm_http.put(url, params={"api-version": DIAGNOSTICS_API}, json={"properties": {
        "storageAccountId": account, "logs": [{"category": "AuditEvent", "enabled": True}]}})
    assert put.status_code in (200, 201), put.text
    try:
        on = result(run_posture(admin), "diagnostic_logs")
        assert on.status == "pass" and "posture" in on.summary
        assert on.evidence["settings"] == [{"name": "posture", "audit_events": True,
                                            "destinations": [account]}]
    finally:
        assert arm_http.delete(url, params={"api-version": DIAGNOSTICS_API}).status_code in (200, 204)
    assert result(run_posture(admin), "diagnostic_logs").status == "fail"


def test_backup_and_drill_age_flip_when_a_backup_and_a_drill_run(hsm, secondary_hsm, admin, settings):
    from dr_app import services as dr_services
    from dr_app import tasks as dr_tasks

    first = run_posture(admin)
    assert result(first, "backup_fresh").status == "fail"
    assert result(first, "drill_fresh").status == "fail"
    assert result(first, "backup_fresh").fix_url == f"/hsms/{hsm.name}/backups/"

    container = f"t{uuid.uuid4().hex[:20]}"
    drill = dr_services.drill_start(primary=hsm, secondary=secondary_hsm, actor=admin,
                                    request_id="r-posture-drill", container=container,
                                    confirm_name="secondary")
    dr_tasks.drill_run.apply(args=[drill.job_id], task_id=f"test-{drill.job_id}")
    drill.refresh_from_db()
    assert drill.passed is True, Job.objects.get(pk=drill.job_id).error

    second = run_posture(admin)
    backup = result(second, "backup_fresh")
    assert backup.status == "pass" and backup.previous_status == "fail"
    assert backup.evidence["age_hours"] < 1
    drilled = result(second, "drill_fresh")
    assert drilled.status == "pass" and drilled.evidence["drill_id"] == drill.pk
    # The secondary took part in the drill too (its safety backup is a successful backup).
    assert result(second, "drill_fresh", "secondary").status == "pass"

    settings.POSTURE_DRILL_MAX_DAYS = 1
    from dr_app.models import DrDrill
    from django.utils import timezone
    from datetime import timedelta

    DrDrill.objects.filter(pk=drill.pk).update(finished=timezone.now() - timedelta(days=2))
    assert result(run_posture(admin), "drill_fresh").status == "fail"


def test_a_key_without_rotation_policy_or_expiry_fails_until_it_gets_a_policy(hsm, admin, key_name):
    from keys_app import services as key_services
    from keys_app import tasks as key_tasks
    from portal import gateway

    # The portal's own create path applies the key standards (an expiry, a default policy):
    # a bare key is one made beside the portal, which the inventory sync then reads.
    gateway.keys(hsm).create_ec_key(key_name, curve="P-256")
    job = key_services.inventory_sync_start(hsm=hsm, actor=admin, request_id="r-posture-sync",
                                            full=True)
    key_tasks.inventory_sync_run.apply(args=[job.pk], task_id=f"test-{job.pk}")
    run = run_posture(admin)
    bare = result(run, "keys_rotation_or_expiry")
    assert bare.status == "fail" and key_name in bare.evidence["without_policy_or_expiry"]
    assert result(run, "rotation_interval").status in ("na", "pass")

    key_services.key_rotation_policy_set(
        hsm=hsm, name=key_name, actor=admin, request_id="r-posture-policy",
        policy={"expires_after": "P4Y", "lifetime_actions": [
            {"action": "Rotate", "time_after_create": "P3Y"}]})
    run = run_posture(admin)
    fixed = result(run, "keys_rotation_or_expiry")
    assert key_name not in fixed.evidence["without_policy_or_expiry"]
    assert fixed.status == "pass" or key_name not in fixed.summary
    slow = result(run, "rotation_interval")
    assert slow.status == "fail" and slow.evidence["longer_than_2_years"][key_name] == 1095

    key_services.key_rotation_policy_set(
        hsm=hsm, name=key_name, actor=admin, request_id="r-posture-policy2",
        policy={"expires_after": "P2Y", "lifetime_actions": [
            {"action": "Rotate", "time_before_expiry": "P30D"}]})
    interval = result(run_posture(admin), "rotation_interval")
    assert key_name not in interval.evidence["longer_than_2_years"]


def test_crypto_user_at_root_for_a_person_and_a_standing_administrator_fail(hsm, admin, emulator):
    from access_app.services import rbac_sync
    from portal.gateway import rbac

    sync = lambda: rbac_sync(hsm=hsm, actor=admin, request_id="r-posture-sync")  # noqa: E731
    never = result(run_posture(admin), "crypto_roles_individuals")
    assert never.status == "unknown" and never.fix_url == f"/hsms/{hsm.name}/access/"
    sync()
    run = run_posture(admin)
    # The emulator's bootstrap grants go to the portal's own identity, an application.
    assert result(run, "crypto_roles_individuals").status == "pass"
    assert result(run, "standing_admins").status == "pass"

    person = emulator.create_user(f"posture-{uuid.uuid4().hex[:6]}@contoso.example")
    definitions = {d["role_name"]: d["id"] for d in rbac.role_definitions_list(hsm)}
    user_grant = rbac.role_assignment_create(hsm, scope="/", principal_id=person["object_id"],
                                             definition_id=definitions["Managed HSM Crypto User"],
                                             name=str(uuid.uuid4()))
    admin_grant = rbac.role_assignment_create(hsm, scope="/", principal_id=person["object_id"],
                                              definition_id=definitions["Managed HSM Administrator"],
                                              name=str(uuid.uuid4()))
    sync()
    run = run_posture(admin)
    crypto = result(run, "crypto_roles_individuals")
    assert crypto.status == "fail" and crypto.previous_status == "pass"
    assert any(a["principal_id"] == person["object_id"] and a["kind"] == "user"
               for a in crypto.evidence["assignments_at_root"])
    standing = result(run, "standing_admins")
    assert standing.status == "fail" and person["object_id"] in standing.summary

    rbac.role_assignment_delete(hsm, scope="/", name=user_grant["name"])
    rbac.role_assignment_delete(hsm, scope="/", name=admin_grant["name"])
    sync()
    run = run_posture(admin)
    assert result(run, "crypto_roles_individuals").status == "pass"
    assert result(run, "standing_admins").status == "pass"


def test_custody_fails_until_a_quorum_of_custodians_proves_custody(hsm, admin):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.serialization import Encoding

    from dr_app import security_domain as sd
    from tests.support.sd_custodian import make_custodians

    empty = result(run_posture(admin), "custody")
    assert empty.status == "fail" and empty.evidence["custodians"] == 0
    assert empty.fix_url == f"/hsms/{hsm.name}/security-domain/"

    people = make_custodians(2, prefix="posture-keeper")
    custodians = [sd.custodian_add(hsm=hsm, name=p.name, certificate=p.certificate.public_bytes(
        Encoding.PEM), actor=admin, request_id=f"r-add-{i}") for i, p in enumerate(people)]
    sd.quorum_record(hsm=hsm, quorum=2, actor=admin, request_id="r-quorum")
    unproven = result(run_posture(admin), "custody")
    assert unproven.status == "fail" and unproven.evidence["quorum"] == 2
    assert {f["problem"] for f in unproven.evidence["findings"]} >= {"never_proven", "quorum_at_risk"}

    for person, custodian in zip(people, custodians, strict=True):
        challenge = sd.custody_challenge_issue(custodian=custodian, actor=admin, request_id="r-ch")
        signature = person.private_key.sign(sd.challenge_text(challenge), padding.PKCS1v15(),
                                            hashes.SHA256())
        sd.custody_prove(custodian=custodian, challenge_id=challenge.pk, signature=signature,
                         actor=admin, request_id="r-prove")
    proven = result(run_posture(admin), "custody")
    assert proven.status == "pass" and proven.previous_status == "fail"
    assert proven.evidence["findings"] == []


def test_data_residency_flips_with_a_replica_outside_the_allowed_regions(
        hsm, admin, emulator, keyvault_mgmt, settings):
    settings.PORTAL_ALLOWED_REGIONS = []
    assert result(run_posture(admin), "data_residency").status == "na"

    settings.PORTAL_ALLOWED_REGIONS = ["westeurope", "North Europe"]
    unknown = result(run_posture(admin), "data_residency")
    # The backup account (Azurite's) is not a Resource Manager storage account yet.
    assert unknown.status == "unknown" and settings.AZURE_STORAGE_ACCOUNT_NAME in unknown.summary
    storage_account_create(emulator, settings.AZURE_STORAGE_ACCOUNT_NAME, "northeurope")
    inside = result(run_posture(admin), "data_residency")
    assert inside.status == "pass", inside.summary
    assert inside.evidence["regions"] == {"HSM": "westeurope",
                                          f"backup storage {settings.AZURE_STORAGE_ACCOUNT_NAME}": "northeurope"}

    update_hsm(keyvault_mgmt, emulator, regions=[MHSMGeoReplicatedRegion(name="westeurope"),
                                                 MHSMGeoReplicatedRegion(name="eastus")])
    try:
        outside = result(run_posture(admin), "data_residency")
        assert outside.status == "fail" and "replica eastus in eastus" in outside.summary
        assert outside.previous_status == "pass"
    finally:
        # The replica provisions in the background; it can be removed once it settled.
        regions_settled(keyvault_mgmt, emulator, 2)
        update_hsm(keyvault_mgmt, emulator, regions=[MHSMGeoReplicatedRegion(name="westeurope")])
        regions_settled(keyvault_mgmt, emulator, 1)


def regions_settled(keyvault_mgmt, emulator, count: int, timeout: float = 60.0) -> None:
    """Poll the HSM resource until it lists `count` regions, all provisioned."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hsm = keyvault_mgmt.managed_hsms.get(emulator.endpoints["resource_group"], "primary")
        regions = hsm.properties.regions or []
        if len(regions) == count and all(r.provisioning_state == "Succeeded" for r in regions):
            return
        time.sleep(0.2)
    raise AssertionError(f"the HSM's regions did not settle at {count} within {timeout} s")


def test_a_check_that_cannot_read_says_unknown_with_the_reason(admin, azure_settings, emulator):
    from portal.gateway.models import HsmInstance

    HsmInstance.objects.create(name="primary", uri=emulator.endpoints["hsms"]["primary"])
    run = run_posture(admin)
    purge = result(run, "purge_protection")
    assert purge.status == "unknown" and "no Azure resource id" in purge.summary
    keys = result(run, "keys_rotation_or_expiry")
    assert keys.status == "unknown" and keys.fix_url == "/hsms/primary/keys/"


def test_when_the_directory_cannot_say_who_holds_a_crypto_role_the_check_says_unknown(
        hsm, admin, emulator):
    from access_app.services import rbac_sync
    from portal.gateway import directory

    rbac_sync(hsm=hsm, actor=admin, request_id="r-posture-sync")
    directory.clear_cache()
    emulator.fail_graph("POST", "/v1.0/directoryObjects/getByIds", status=503)
    try:
        crypto = result(run_posture(admin), "crypto_roles_individuals")
    finally:
        emulator.clear_graph_faults()
        directory.clear_cache()
    assert crypto.status == "unknown" and "directory could not say" in crypto.summary
    assert {a["kind"] for a in crypto.evidence["assignments_at_root"]} == {"unknown"}


def test_the_beat_runs_the_checks_as_a_system_job(hsm, admin):
    from django.conf import settings as django_settings

    from compliance_app import tasks
    from compliance_app.models import PostureRun

    entry = django_settings.CELERY_BEAT_SCHEDULE["posture-run"]
    assert entry["task"] == "compliance_app.tasks.posture_run_scheduled" and entry["schedule"] >= 300
    tasks.posture_run_scheduled.apply()
    run = PostureRun.objects.get()
    assert run.trigger == "schedule" and run.finished and run.actor_name == "system"
    assert Job.objects.get(pk=run.job_id).status == Job.Status.SUCCEEDED
    assert run.results.count() == len(CHECKS)
    assert AuditEvent.objects.filter(action="posture.run", detail__trigger="schedule").exists()


def test_a_check_added_by_another_app_runs_and_a_broken_one_stops_nothing(hsm, admin):
    from compliance_app.checks import PASS, Finding, check_register

    calls = []

    @check_register("test_extra", "An app's own check", per_hsm=False)
    def extra(*, hsm, ctx):
        calls.append(hsm)
        return Finding(PASS, "Fine.", {"source": "test"})

    @check_register("test_broken", "A broken check")
    def broken(*, hsm, ctx):
        raise ZeroDivisionError

    try:
        run = run_posture(admin)
    finally:
        CHECKS.pop("test_extra")
        CHECKS.pop("test_broken")
    assert calls == [None]  # estate-wide: once, without an HSM
    assert result(run, "test_extra", "").status == "pass"
    broken_result = result(run, "test_broken")
    assert broken_result.status == "unknown" and "ZeroDivisionError" in broken_result.summary
    assert run.results.count() == len(CHECKS) + 2
