"""The HSM registry: duplicates are 409, deregistration (typed name, audited, cache goes
with it, jobs kept), and the register form's help text."""
import pytest

from keys_app.models import InventoryState, KeyRecord
from portal import gateway
from portal.audit.models import AuditEvent
from portal.gateway.models import HsmInstance
from portal.jobs.models import Job


def _register(client, name, uri):
    return client.post("/api/v1/hsms/", {"name": name, "uri": uri}, format="json")


def test_registering_a_taken_name_or_url_is_a_409(api_as, admin, client):
    api = api_as(admin)
    assert _register(api, "prod", "https://prod.managedhsm.azure.net").status_code == 201
    same_name = _register(api, "prod", "https://other.managedhsm.azure.net")
    assert same_name.status_code == 409
    assert same_name.json()["error"]["message"] == "An HSM named prod is already registered."
    # The same URL spelled differently is the same HSM.
    same_url = _register(api, "prod2", "https://PROD.managedhsm.azure.net/")
    assert same_url.status_code == 409
    assert "registered as HSM prod" in same_url.json()["error"]["message"]
    assert same_url.json()["error"]["fields"] == {"uri": ["Already registered as prod."]}
    client.force_login(admin)
    page = client.post("/hsms/", {"name": "prod", "uri": "https://third.managedhsm.azure.net",
                                  "role": "primary"})
    assert page.status_code == 409
    assert "An HSM named prod is already registered." in page.content.decode()
    assert HsmInstance.objects.count() == 1
    assert AuditEvent.objects.filter(action="hsm.register").count() == 1


def test_register_form_shows_the_url_pattern_literally(client, admin, settings):
    client.force_login(admin)
    html = client.get("/hsms/").content.decode()
    # Escaped, so the browser shows <name> instead of swallowing it as a tag.
    assert "https://&lt;name&gt;.managedhsm.azure.net" in html
    settings.AZURE_HSM_DNS_SUFFIX = "managedhsm.azure.cn"
    assert "https://&lt;name&gt;.managedhsm.azure.cn" in client.get("/hsms/").content.decode()


@pytest.fixture
def cached_hsm(hsm, api_as, admin, key_name):
    """The emulator's primary HSM with one key made through the portal (so it has a cache)."""
    response = api_as(admin).post(f"/api/v1/hsms/{hsm.name}/keys/",
                                  {"name": key_name, "preset": "aes", "tags": {"owner": "payments"}},
                                  format="json")
    assert response.status_code == 201, response.content
    InventoryState.objects.get_or_create(hsm=hsm)
    return hsm


def test_api_deregisters_an_hsm_with_its_cache_and_keeps_its_jobs(api_as, admin, cached_hsm,
                                                                   key_name):
    hsm = cached_hsm
    done = Job.objects.create(kind="keys.inventory_sync", hsm=hsm, actor_name="system",
                              status=Job.Status.SUCCEEDED)
    queued = Job.objects.create(kind="keys.inventory_sync", hsm=hsm, actor_name="system")
    api = api_as(admin)
    url = f"/api/v1/hsms/{hsm.name}/"
    for body in ({}, {"confirm_name": "PRIMARY"}):
        refused = api.delete(url, body, format="json")
        assert refused.status_code == 400
        assert HsmInstance.objects.filter(pk=hsm.pk).exists()
    response = api.delete(url, {"confirm_name": hsm.name}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["jobs_kept"] == 2 and response.json()["queued_jobs_failed"] == 1
    assert not HsmInstance.objects.filter(pk=hsm.pk).exists()
    assert not KeyRecord.objects.exists() and not InventoryState.objects.exists()
    done.refresh_from_db()
    queued.refresh_from_db()
    assert done.hsm is None and done.status == Job.Status.SUCCEEDED
    assert queued.hsm is None and queued.status == Job.Status.FAILED
    assert "deregistered" in queued.error
    events = list(AuditEvent.objects.filter(action="hsm.deregister")
                  .order_by("seq").values_list("target", "outcome"))
    assert events == [("hsm:primary", "intent"), ("hsm:primary", "succeeded")]
    # The HSM itself is untouched: the key is still there.
    again = HsmInstance(name="primary", uri=hsm.uri)
    assert gateway.keys(again).get_key(key_name).name == key_name
    assert api.get(url).status_code == 404


def test_deregistering_is_refused_while_a_job_runs_on_the_hsm(api_as, admin, hsm):
    running = Job.objects.create(kind="keys.inventory_sync", hsm=hsm, actor_name="system",
                                 status=Job.Status.RUNNING)
    response = api_as(admin).delete(f"/api/v1/hsms/{hsm.name}/", {"confirm_name": hsm.name},
                                    format="json")
    assert response.status_code == 409
    assert f"Job {running.pk}" in response.json()["error"]["message"]
    assert HsmInstance.objects.filter(pk=hsm.pk).exists()
    outcomes = list(AuditEvent.objects.filter(action="hsm.deregister")
                    .order_by("seq").values_list("outcome", flat=True))
    assert outcomes == ["intent", "failed"]


def test_page_deregisters_after_the_name_is_typed(client, admin, approver, cached_hsm):
    hsm = cached_hsm
    client.force_login(approver)
    assert client.get(f"/hsms/{hsm.name}/deregister/").status_code == 403
    assert client.post(f"/hsms/{hsm.name}/deregister/",
                       {"confirm_name": hsm.name}).status_code == 403
    client.force_login(admin)
    listing = client.get("/hsms/").content.decode()
    assert f'href="/hsms/{hsm.name}/deregister/"' in listing
    page = client.get(f"/hsms/{hsm.name}/deregister/").content.decode()
    assert "Removed with it: 1 key record" in page and "Type <code>primary</code>" in page
    wrong = client.post(f"/hsms/{hsm.name}/deregister/", {"confirm_name": "secondary"})
    assert wrong.status_code == 400
    assert "Type primary to confirm." in wrong.content.decode()
    assert HsmInstance.objects.filter(pk=hsm.pk).exists()
    done = client.post(f"/hsms/{hsm.name}/deregister/", {"confirm_name": hsm.name}, follow=True)
    assert done.redirect_chain[-1][0] == "/hsms/"
    assert "Deregistered HSM primary" in done.content.decode()
    assert not HsmInstance.objects.filter(pk=hsm.pk).exists()
    assert not KeyRecord.objects.exists()
