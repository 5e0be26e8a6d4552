"""HSM audit events: recorded for every data-plane request, written to storage while a
diagnostic setting (Resource Manager, ``Microsoft.Insights/diagnosticSettings``) asks.

Calls go through the official SDK clients; the events are read back from the emulator's
Azurite with azure-storage-blob, as a log pipeline reads an ``insights-logs-auditevent``
container.
"""

import base64
import json
import time
import uuid

import ssl

import httpx
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.administration import KeyVaultAccessControlClient
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm
from azure.mgmt.storage import StorageManagementClient
from azure.mgmt.storage import models as storage_models
from azure.storage.blob import ContainerClient

from hsm_emulator.audit import OPERATIONS
from hsm_emulator.server import Emulator, Options
from tests.support.emulator import EmulatorProcess
from tests.support.waiting import wait_for

ARM_SCOPE = "https://management.azure.com/.default"
API = "2021-05-01-preview"
HSMS = ("audited", "quiet", "stopped")


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    process = EmulatorProcess(tmp_path_factory.mktemp("audit-events"), hsms=HSMS).start()
    yield process
    process.stop()


def tls(emulator):
    return ssl.create_default_context(cafile=emulator.ca_bundle)


@pytest.fixture(scope="module")
def arm(emulator):
    token = emulator.credential().get_token(ARM_SCOPE).token
    with httpx.Client(base_url=emulator.endpoints["arm"], verify=tls(emulator),
                      headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def storage_account_id(emulator):
    client = StorageManagementClient(emulator.credential(), emulator.endpoints["subscription_id"],
                                     base_url=emulator.endpoints["arm"], credential_scopes=[ARM_SCOPE],
                                     connection_verify=emulator.ca_bundle)
    account = client.storage_accounts.begin_create(
        emulator.endpoints["resource_group"], f"hsmlogs{uuid.uuid4().hex[:8]}",
        storage_models.StorageAccountCreateParameters(location="westeurope", kind="StorageV2",
                                                      sku=storage_models.Sku(name="Standard_LRS"))).result()
    return account.id


@pytest.fixture(scope="module")
def container(emulator):
    storage = emulator.endpoints["storage"]
    return ContainerClient(storage["blob_endpoint"], "insights-logs-auditevent",
                           credential={"account_name": storage["account_name"], "account_key": storage["account_key"]},
                           connection_verify=emulator.ca_bundle)


def setting_url(emulator, hsm, name=None):
    url = f"{emulator.endpoints['hsm_resource_ids'][hsm]}/providers/Microsoft.Insights/diagnosticSettings"
    return f"{url}/{name}" if name else url


def put_setting(arm, emulator, hsm, name, body):
    return arm.put(setting_url(emulator, hsm, name), params={"api-version": API}, json=body)


def audit_body(storage_account_id, **logs):
    return {"properties": {"storageAccountId": storage_account_id,
                           "logs": [{"category": "AuditEvent", "enabled": True, **logs}]}}


def blob_events(emulator, container, hsm):
    """Every event line of ``hsm``'s blobs, oldest first (blob names sort by hour)."""
    prefix = f"resourceId={emulator.endpoints['hsm_resource_ids'][hsm].upper()}/"
    events = []
    try:
        for blob in sorted(container.list_blobs(name_starts_with=prefix), key=lambda b: b.name):
            text = container.download_blob(blob.name).readall().decode()
            assert text.endswith("\n")
            events += [json.loads(line) for line in text.splitlines()]
    except ResourceNotFoundError:  # no container yet: nothing was ever written
        return []
    return events



def expected_operation(method, path):
    """The operationName Managed HSM logs for the SDK calls these tests make."""
    if path.endswith("/create"):
        return "KeyCreate"
    if path.endswith("/sign"):
        return "KeySign"
    if path.endswith("/roleAssignments"):
        return "RoleAssignmentList"
    if method == "GET" and path.startswith("/keys/"):
        return "KeyGet"
    raise AssertionError(f"no expectation for {method} {path}")


class Attempts:
    """Every HTTP attempt an SDK client makes (the challenge retry too): request id, method, path, status."""

    def __init__(self):
        self.seen = []

    def request(self, request):
        http = request.http_request
        self.seen.append({"id": http.headers["x-ms-client-request-id"], "method": http.method,
                          "path": httpx.URL(http.url).path})

    def response(self, response):
        self.seen[-1]["status"] = response.http_response.status_code

    def options(self, emulator):
        return emulator.client_options(raw_request_hook=self.request, raw_response_hook=self.response)


# -- Resource Manager: the diagnostic settings resource ------------------------------------


def test_diagnostic_settings_put_get_list_delete(emulator, arm, storage_account_id):
    hsm_id = emulator.endpoints["hsm_resource_ids"]["quiet"]
    created = put_setting(arm, emulator, "quiet", "to-storage", audit_body(storage_account_id))
    assert created.status_code == 200, created.text
    doc = created.json()
    assert doc["name"] == "to-storage" and doc["type"] == "Microsoft.Insights/diagnosticSettings"
    assert doc["id"].lower() == f"{hsm_id}/providers/microsoft.insights/diagnosticSettings/to-storage".lower()
    assert doc["properties"]["storageAccountId"] == storage_account_id
    assert doc["properties"]["logs"][0]["category"] == "AuditEvent" and doc["properties"]["logs"][0]["enabled"]
    assert emulator.audit("quiet")["delivering"] is True

    got = arm.get(setting_url(emulator, "quiet", "TO-STORAGE"), params={"api-version": API})
    assert got.status_code == 200 and got.json() == doc
    listed = arm.get(setting_url(emulator, "quiet"), params={"api-version": API})
    assert [s["name"] for s in listed.json()["value"]] == ["to-storage"]
    categories = arm.get(f"{hsm_id}/providers/Microsoft.Insights/diagnosticSettingsCategories",
                         params={"api-version": API}).json()
    assert {c["name"]: c["properties"]["categoryType"] for c in categories["value"]} == {
        "AuditEvent": "Logs", "AllMetrics": "Metrics"}

    assert arm.delete(setting_url(emulator, "quiet", "to-storage"), params={"api-version": API}).status_code == 200
    assert arm.get(setting_url(emulator, "quiet", "to-storage"), params={"api-version": API}).status_code == 404
    assert arm.get(setting_url(emulator, "quiet"), params={"api-version": API}).json() == {"value": []}
    assert arm.delete(setting_url(emulator, "quiet", "to-storage"), params={"api-version": API}).status_code == 204
    assert emulator.audit("quiet")["delivering"] is False


@pytest.mark.parametrize("body, status, code", [
    ({"properties": {"logs": [{"category": "AuditEvent", "enabled": True}]}}, 400, "BadRequest"),
    ({"properties": {"storageAccountId": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/"
                                         "storageAccounts/nosuchaccount",
                     "logs": [{"category": "AuditEvent", "enabled": True}]}}, 400, "ResourceNotFound"),
    ({"properties": {"storageAccountId": "not-an-id", "logs": [{"category": "AuditEvent", "enabled": True}]}},
     400, "LinkedInvalidPropertyId"),
    ("SA", 400, "BadRequest"),  # unknown category
    ("SA-days", 400, "BadRequest"),  # retention out of range
    ({}, 400, "InvalidRequestContent"),
])
def test_diagnostic_setting_refusals_change_nothing(emulator, arm, storage_account_id, body, status, code):
    if body == "SA":
        body = {"properties": {"storageAccountId": storage_account_id,
                               "logs": [{"category": "AzurePolicyEvaluationDetails", "enabled": True}]}}
    elif body == "SA-days":
        body = audit_body(storage_account_id, retentionPolicy={"enabled": True, "days": 366})
    response = put_setting(arm, emulator, "quiet", "refused", body)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert arm.get(setting_url(emulator, "quiet"), params={"api-version": API}).json() == {"value": []}
    assert emulator.audit("quiet")["delivering"] is False


def test_one_storage_account_cannot_take_audit_events_from_two_settings(emulator, arm, storage_account_id):
    assert put_setting(arm, emulator, "quiet", "first", audit_body(storage_account_id)).status_code == 200
    try:
        second = put_setting(arm, emulator, "quiet", "second", audit_body(storage_account_id))
        assert second.status_code == 409 and "already used" in second.json()["error"]["message"]
        # Replacing the same setting is not a conflict.
        assert put_setting(arm, emulator, "quiet", "first", audit_body(storage_account_id)).status_code == 200
    finally:
        arm.delete(setting_url(emulator, "quiet", "first"), params={"api-version": API})


def test_resource_manager_refuses_an_unknown_hsm_and_a_missing_token(emulator, arm, storage_account_id):
    rid = emulator.endpoints["hsm_resource_ids"]["quiet"].replace("/quiet", "/nosuchhsm")
    missing = arm.put(f"{rid}/providers/Microsoft.Insights/diagnosticSettings/x", params={"api-version": API},
                      json=audit_body(storage_account_id))
    assert missing.status_code == 404
    anonymous = httpx.get(emulator.endpoints["arm"] + setting_url(emulator, "quiet"), params={"api-version": API},
                          verify=tls(emulator))
    assert anonymous.status_code == 401


# -- events ---------------------------------------------------------------------------------


def test_every_call_is_one_event_in_storage_with_its_operation_result_caller_and_correlation(
        emulator, arm, storage_account_id, container):
    hsm = "audited"
    admin_oid = emulator.principals["bootstrap-admin"]["object_id"]
    mark = emulator.audit(hsm)["seq"]
    assert put_setting(arm, emulator, hsm, "audit-to-storage", audit_body(storage_account_id)).status_code == 200

    attempts = Attempts()
    url = emulator.hsm_url(hsm)
    keys = KeyClient(url, emulator.credential(), **attempts.options(emulator))
    name = f"audited-{uuid.uuid4().hex[:8]}"
    key = keys.create_rsa_key(name, size=2048, hardware_protected=True)
    keys.get_key(name)
    crypto = CryptographyClient(key, emulator.credential(), **attempts.options(emulator))
    signature = crypto.sign(SignatureAlgorithm.rs256, b"\x01" * 32).signature
    with pytest.raises(ResourceNotFoundError):
        keys.get_key("no-such-key")
    outsider = emulator.create_principal(f"outsider-{uuid.uuid4().hex[:6]}")
    refused_keys = KeyClient(url, emulator.credential(outsider), **attempts.options(emulator))
    with pytest.raises(HttpResponseError) as refused:
        refused_keys.get_key(name)
    assert refused.value.status_code == 403
    roles = KeyVaultAccessControlClient(url, emulator.credential(), **attempts.options(emulator))
    list(roles.list_role_assignments("/"))

    statuses = [a["status"] for a in attempts.seen]
    # The first client meets the challenge (401, bodiless) before it sends a token.
    assert statuses[0] == 401 and {200, 403, 404} <= set(statuses)

    activity = emulator.audit(hsm, since=mark)
    assert activity["count"] == len(attempts.seen)
    emulator.flush_audit(hsm)
    events = blob_events(emulator, container, hsm)
    # Count for count: every request since the setting was made is in storage, once, in order.
    assert len(events) == activity["count"] == emulator.audit(hsm)["written"]
    assert [e["correlationId"] for e in events] == [a["id"] for a in attempts.seen]
    assert [e["properties"]["httpStatusCode"] for e in events] == statuses
    assert [{k: v for k, v in e.items() if k != "_seq"} for e in activity["value"]] == events

    resource_id = emulator.endpoints["hsm_resource_ids"][hsm].upper()
    for attempt, event in zip(attempts.seen, events, strict=True):
        assert event["category"] == "AuditEvent"
        assert event["resourceId"] == resource_id
        assert event["operationVersion"] and event["callerIpAddress"] == "127.0.0.1"
        assert event["properties"]["requestUri"].startswith(url + attempt["path"])
        assert "azsdk-python-keyvault" in event["properties"]["clientInfo"]
        assert event["time"].endswith("Z") and int(event["durationMs"]) >= 0
        if attempt["status"] == 401:
            assert event["operationName"] == "Authentication"
            assert event["identity"] is None and event["resultSignature"] == "Unauthorized"
            continue
        assert event["operationName"] == expected_operation(attempt["method"], attempt["path"]), attempt
        caller = event["identity"]["claim"]["oid"]
        if attempt["status"] == 403:
            assert caller == outsider["object_id"]
            assert event["resultSignature"] == "Forbidden" and event["resultType"] == "Success"
            assert event["properties"]["isRbacAuthorized"] is False and event["resultDescription"]
        else:
            assert caller == admin_oid
            assert event["properties"]["isRbacAuthorized"] is True
        if attempt["status"] == 404:
            assert event["resultSignature"] == "NotFound" and event["resultDescription"]
    names = [e["operationName"] for e in events]
    for operation in ("KeyCreate", "KeyGet", "KeySign", "RoleAssignmentList"):
        assert operation in names

    # Never key material, signatures or tokens.
    text = "\n".join(json.dumps(e) for e in events)
    token = emulator.credential().get_token("https://managedhsm.azure.net/.default").token
    assert token not in text and token.split(".")[1] not in text
    assert base64.urlsafe_b64encode(key.key.n).decode().rstrip("=")[:40] not in text
    assert base64.urlsafe_b64encode(signature).decode().rstrip("=")[:40] not in text


def test_events_reach_storage_within_a_second_without_a_flush(emulator, arm, storage_account_id, container):
    hsm = "audited"
    assert put_setting(arm, emulator, hsm, "audit-to-storage", audit_body(storage_account_id)).status_code == 200
    keys = KeyClient(emulator.hsm_url(hsm), emulator.credential(), **emulator.client_options())
    request_id = str(uuid.uuid4())
    with pytest.raises(ResourceNotFoundError):
        keys.get_key("not-here-either", request_id=request_id)
    started = time.monotonic()
    event = wait_for(lambda: next((e for e in blob_events(emulator, container, hsm)
                                   if e["correlationId"] == request_id and e["properties"]["httpStatusCode"] == 404),
                                  None), timeout=5, interval=0.05)
    assert time.monotonic() - started < 3
    assert event["operationName"] == "KeyGet"


def test_no_events_in_storage_without_a_setting_but_the_activity_is_counted(emulator, container):
    hsm = "quiet"
    mark = emulator.audit(hsm)["seq"]
    keys = KeyClient(emulator.hsm_url(hsm), emulator.credential(), **emulator.client_options())
    keys.create_ec_key(f"quiet-{uuid.uuid4().hex[:6]}", hardware_protected=True)
    activity = emulator.audit(hsm, since=mark)
    assert activity["count"] == 2 and activity["delivering"] is False  # the challenge and the create
    assert [e["operationName"] for e in activity["value"]] == ["Authentication", "KeyCreate"]
    emulator.flush_audit(hsm)
    assert blob_events(emulator, container, hsm) == []
    assert emulator.audit(hsm)["written"] == 0


def test_deleting_the_setting_stops_writing(emulator, arm, storage_account_id, container):
    hsm = "stopped"
    assert put_setting(arm, emulator, hsm, "temporary", audit_body(storage_account_id)).status_code == 200
    keys = KeyClient(emulator.hsm_url(hsm), emulator.credential(), **emulator.client_options())
    name = f"stopped-{uuid.uuid4().hex[:6]}"
    keys.create_ec_key(name, hardware_protected=True)
    emulator.flush_audit(hsm)
    before = blob_events(emulator, container, hsm)
    assert [e["operationName"] for e in before] == ["Authentication", "KeyCreate"]

    assert arm.delete(setting_url(emulator, hsm, "temporary"), params={"api-version": API}).status_code == 200
    mark = emulator.audit(hsm)["seq"]
    keys.get_key(name)
    keys.get_key(name)
    assert emulator.audit(hsm, since=mark)["count"] == 2
    emulator.flush_audit(hsm)
    assert blob_events(emulator, container, hsm) == before
    assert emulator.audit(hsm)["written"] == 2

    # A new setting starts writing again, into the same hour's blob.
    assert put_setting(arm, emulator, hsm, "again", audit_body(storage_account_id)).status_code == 200
    keys.get_key(name)
    emulator.flush_audit(hsm)
    after = blob_events(emulator, container, hsm)
    assert after[:2] == before and len(after) == 3 and after[2]["operationName"] == "KeyGet"


def test_a_category_group_setting_delivers_and_a_disabled_one_does_not(emulator, arm, storage_account_id):
    hsm = "quiet"
    disabled = {"properties": {"storageAccountId": storage_account_id,
                               "logs": [{"category": "AuditEvent", "enabled": False}]}}
    try:
        assert put_setting(arm, emulator, hsm, "off", disabled).status_code == 200
        assert emulator.audit(hsm)["delivering"] is False
        grouped = {"properties": {"storageAccountId": storage_account_id,
                                  "logs": [{"categoryGroup": "audit", "enabled": True}]}}
        assert put_setting(arm, emulator, hsm, "off", grouped).status_code == 200
        assert emulator.audit(hsm)["delivering"] is True
    finally:
        arm.delete(setting_url(emulator, hsm, "off"), params={"api-version": API})
    assert emulator.audit(hsm)["delivering"] is False


def test_faults_unknown_paths_bad_requests_and_bad_tokens_are_events_too(emulator):
    hsm = "quiet"
    url = emulator.hsm_url(hsm)
    token = emulator.credential().get_token("https://managedhsm.azure.net/.default").token
    expired = emulator.mint_token({"exp": int(time.time()) - 3600, "nbf": int(time.time()) - 7200,
                                   "iat": int(time.time()) - 7200})
    emulator.fail("GET", "/keys/faulty", status=503, count=1, hsm=hsm)
    mark = emulator.audit(hsm)["seq"]
    calls = [
        ("GET", "/keys/faulty?api-version=7.6", token, 503, "KeyGet", "Failure", "ServiceUnavailable"),
        ("GET", "/nothing-here?api-version=7.6", token, 404, "UnknownOperation", "Success", "NotFound"),
        ("GET", "/keys", token, 400, "KeyList", "Success", "BadRequest"),
        ("GET", "/keys?api-version=7.6", expired, 401, "Authentication", "Success", "Unauthorized"),
    ]
    with httpx.Client(base_url=url, verify=tls(emulator)) as client:
        for method, path, bearer, status, *_ in calls:
            request_id = str(uuid.uuid4())
            response = client.request(method, path, headers={"Authorization": f"Bearer {bearer}",
                                                             "x-ms-client-request-id": request_id})
            assert response.status_code == status, response.text
    events = emulator.audit(hsm, since=mark)["value"]
    assert [(e["properties"]["httpStatusCode"], e["operationName"], e["resultType"], e["resultSignature"])
            for e in events] == [(status, op, result, signature) for _, _, _, status, op, result, signature in calls]
    assert events[2]["operationVersion"] == "" and "api-version" in events[2]["resultDescription"]
    assert events[3]["identity"] is None and "not valid" in events[3]["resultDescription"]
    assert all(token not in json.dumps(e) and expired not in json.dumps(e) for e in events)


def test_client_headers_are_kept_bounded(emulator):
    hsm = "quiet"
    token = emulator.credential().get_token("https://managedhsm.azure.net/.default").token
    mark = emulator.audit(hsm)["seq"]
    response = httpx.get(emulator.hsm_url(hsm) + "/keys?api-version=7.6", verify=tls(emulator),
                         headers={"Authorization": f"Bearer {token}", "User-Agent": "u" * 5000,
                                  "x-ms-client-request-id": "r" * 5000})
    assert response.status_code == 200
    (event,) = emulator.audit(hsm, since=mark)["value"]
    assert event["properties"]["clientInfo"] == "u" * 1024 and event["correlationId"] == "r" * 1024


@pytest.mark.parametrize("hsm", ["audited"])
def test_concurrent_calls_are_each_one_event_in_storage(emulator, arm, storage_account_id, container, hsm):
    import asyncio

    from azure.keyvault.keys.aio import KeyClient as AsyncKeyClient

    assert put_setting(arm, emulator, hsm, "audit-to-storage", audit_body(storage_account_id)).status_code == 200
    sync_keys = KeyClient(emulator.hsm_url(hsm), emulator.credential(), **emulator.client_options())
    name = f"busy-{uuid.uuid4().hex[:6]}"
    sync_keys.create_ec_key(name, hardware_protected=True)
    request_ids = [str(uuid.uuid4()) for _ in range(200)]
    mark = emulator.audit(hsm)["seq"]

    async def run():
        credential = emulator.async_credential()
        async with credential, AsyncKeyClient(emulator.hsm_url(hsm), credential, **emulator.client_options()) as keys:
            await asyncio.gather(*(keys.get_key(name, request_id=rid) for rid in request_ids))

    asyncio.run(run())
    activity = emulator.audit(hsm, since=mark, limit=1000)
    emulator.flush_audit(hsm)
    stored = [e for e in blob_events(emulator, container, hsm)
              if e["correlationId"] in set(request_ids) and e["properties"]["httpStatusCode"] == 200]
    assert sorted(e["correlationId"] for e in stored) == sorted(request_ids)
    assert {e["operationName"] for e in stored} == {"KeyGet"}
    assert activity["count"] == len([e for e in activity["value"] if e["correlationId"] in set(request_ids)])


def test_the_audit_control_needs_the_control_secret_and_bounds_its_parameters(emulator):
    url = emulator.hsm_url("quiet") + "/_emulator/audit"
    assert httpx.get(url, verify=tls(emulator)).status_code == 401
    headers = {"X-Emulator-Control": emulator.endpoints["control_secret"]}
    assert httpx.get(url, params={"since": "-1"}, headers=headers, verify=tls(emulator)).status_code == 400
    assert httpx.get(url, params={"limit": "100001"}, headers=headers, verify=tls(emulator)).status_code == 400
    limited = httpx.get(url, params={"limit": "1"}, headers=headers, verify=tls(emulator)).json()
    assert len(limited["value"]) == 1 and limited["count"] > 1 and limited["truncated"] is True


def test_every_data_plane_route_has_an_operation_name(tmp_path):
    emulator = Emulator(Options(state_dir=tmp_path, ephemeral=True, storage="none"))
    try:
        for hsm in emulator.hsms.values():
            missing = [(r.method, r.pattern) for r in hsm._routes if (r.method, r.pattern) not in OPERATIONS]
            assert missing == []
    finally:
        for sock in emulator.sockets:
            sock.close()
        emulator.executor.shutdown(wait=False)
        emulator.store.close()


def test_settings_survive_a_restart_and_events_buffered_at_shutdown_are_written(tmp_path):
    state = tmp_path / "durable"
    first = EmulatorProcess(state, hsms=("durable",), ephemeral=False).start()
    try:
        account_id = StorageManagementClient(
            first.credential(), first.endpoints["subscription_id"], base_url=first.endpoints["arm"],
            credential_scopes=[ARM_SCOPE], connection_verify=first.ca_bundle,
        ).storage_accounts.begin_create(first.endpoints["resource_group"], "durablelogs",
                                        storage_models.StorageAccountCreateParameters(
                                            location="westeurope", kind="StorageV2",
                                            sku=storage_models.Sku(name="Standard_LRS"))).result().id
        token = first.credential().get_token(ARM_SCOPE).token
        with httpx.Client(base_url=first.endpoints["arm"], verify=tls(first),
                          headers={"Authorization": f"Bearer {token}"}) as arm:
            assert put_setting(arm, first, "durable", "kept", audit_body(account_id)).status_code == 200
        first.hold_audit_writer(True, hsm="durable")
        keys = KeyClient(first.hsm_url("durable"), first.credential(), **first.client_options())
        keys.create_ec_key("durable-key", hardware_protected=True)
        activity = first.audit("durable")
        recorded = activity["seq"]
        assert activity["pending"] == 2 and activity["written"] == 0  # the challenge and the create
    finally:
        first.stop()  # SIGTERM: the writer writes what it holds before Azurite stops

    second = EmulatorProcess(state, hsms=("durable",), ephemeral=False).start()
    try:
        storage = second.endpoints["storage"]
        container = ContainerClient(storage["blob_endpoint"], "insights-logs-auditevent",
                                    credential={"account_name": storage["account_name"],
                                                "account_key": storage["account_key"]},
                                    connection_verify=second.ca_bundle)
        before = blob_events(second, container, "durable")
        # Written by the first process as it stopped (held, so nothing was written before).
        assert len(before) == recorded and before[-1]["operationName"] == "KeyCreate"
        assert second.audit("durable")["delivering"] is True
        keys = KeyClient(second.hsm_url("durable"), second.credential(), **second.client_options())
        keys.get_key("durable-key")
        second.flush_audit("durable")
        after = blob_events(second, container, "durable")
        assert after[: len(before)] == before and after[-1]["operationName"] == "KeyGet"
    finally:
        second.stop()
