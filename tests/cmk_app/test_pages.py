"""The CMK pages through Django's test client: who may use them, the wizard's form, the
replica-region note, and the HSM resource tab's forms."""
import pytest
from django.test import Client

from cmk_app.models import CmkBinding
from portal.approvals.models import ApprovalRequest
from portal.jobs.models import Job
from tests.cmk_app.conftest import make_pg

pytestmark = pytest.mark.django_db


def as_user(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_who_may_see_and_use_the_pages(hsm, personas, cmk_key):
    for role in ("admin", "approver", "auditor"):
        client = as_user(personas[role])
        assert client.get("/cmk/").status_code == 200
        assert client.get(f"/hsms/{hsm.name}/resource/").status_code == 200
        assert client.get(f"/hsms/{hsm.name}/keys/{cmk_key.name}/usage/").status_code == 200
    assert as_user(personas["auditor"]).get("/cmk/attach/").status_code == 403
    assert as_user(personas["auditor"]).post(f"/hsms/{hsm.name}/resource/replicas/",
                                             {"region": "northeurope"}).status_code == 403
    assert as_user(personas["outsider"]).get("/cmk/").status_code == 403


def test_wizard_form_starts_the_job_and_refuses_bad_input(hsm, admin, cmk_key, sdk,
                                                          django_capture_on_commit_callbacks):
    server = make_pg(sdk)
    client = as_user(admin)
    page = client.get(f"/cmk/attach/?hsm={hsm.name}&key={cmk_key.name}").content.decode()
    assert server.name in page and f'value="{cmk_key.name}" selected' in page
    bad = client.post("/cmk/attach/", {"hsm": hsm.name, "key_name": cmk_key.name,
                                       "resource_id": server.id, "identity_mode": "existing",
                                       "grant": "on"})
    assert bad.status_code == 400 and "Pick the identity to use." in bad.content.decode()
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post("/cmk/attach/", {
            "hsm": hsm.name, "key_name": cmk_key.name, "resource_id": server.id,
            "identity_mode": "create", "identity_name": "", "grant": "on"})
    job = Job.objects.get(kind="cmk.attach", params__resource_id=server.id)
    assert response.status_code == 302 and response.url == job.get_absolute_url()
    assert CmkBinding.objects.get(resource_id=server.id).status == "attaching"


def test_a_consumer_where_the_hsm_has_only_a_replica_is_told(
        hsm, admin, cmk_key, sdk, django_capture_on_commit_callbacks):
    from cmk_app import services
    from tests.cmk_app.test_attach import attach

    services.hsm_replica_add(hsm=hsm, region="northeurope", actor=admin, request_id="r")
    try:
        server = make_pg(sdk, location="northeurope", group="rg-dr")
        page = as_user(admin).get(f"/cmk/attach/?hsm={hsm.name}").content.decode()
        assert "has only a replica in northeurope" in page
        job = attach(django_capture_on_commit_callbacks, hsm=hsm, key=cmk_key.name,
                     resource_id=server.id, actor=admin)
        assert job.status == "succeeded", job.error
        assert any("A replica is invisible to data services" in n for n in job.result["notes"])
        usage = as_user(admin).get(f"/hsms/{hsm.name}/keys/{cmk_key.name}/usage/").content.decode()
        assert "Replica only" in usage and "needs an HSM of its own in northeurope" in usage
    finally:
        services.hsm_replica_remove(hsm=hsm, region="northeurope", actor=admin, request_id="r")


def test_resource_tab_forms(hsm, admin, sdk, emulator):
    client = as_user(admin)
    page = client.get(f"/hsms/{hsm.name}/resource/").content.decode()
    assert "Private endpoint connections" in page and "Azure RBAC on the HSM resource" in page
    response = client.post(f"/hsms/{hsm.name}/resource/network/",
                           {"public_network_access": "Disabled", "justification": "lock down"})
    request = ApprovalRequest.objects.get(operation="hsm.public_network_access")
    assert response.status_code == 302 and response.url == request.get_absolute_url()
    assert request.payload == {"hsm": hsm.name, "enabled": False}
    bad = client.post(f"/hsms/{hsm.name}/resource/replicas/", {"region": "north europe!"},
                      follow=True)
    assert "Name an Azure region" in bad.content.decode()


def test_disabling_a_key_in_use_from_its_page_asks_for_approval(hsm, admin, cmk_key, sdk):
    CmkBinding.objects.create(hsm=hsm, key_name=cmk_key.name, resource_id="/subscriptions/s/"
                              "resourceGroups/g/providers/Microsoft.Storage/storageAccounts/sty",
                              kind="storage", resource_name="sty", status="active")
    client = as_user(admin)
    page = client.get(f"/hsms/{hsm.name}/keys/{cmk_key.name}/").content.decode()
    assert "Why (for the approver: resources use this key)" in page
    response = client.post(f"/hsms/{hsm.name}/keys/{cmk_key.name}/disable/",
                           {"confirm_name": cmk_key.name, "justification": "suspected leak"})
    request = ApprovalRequest.objects.get(operation="key.disable")
    assert response.status_code == 302 and response.url == request.get_absolute_url()
    assert request.justification == "suspected leak"
    assert sdk["keys"].get_key(cmk_key.name).properties.enabled is True
