"""The security domain through the unmodified ``SecurityDomainClient`` (sync and async).

An emulator of its own serves ``primary`` (activated, as at start) and two HSMs that start
un-activated, ``fresh`` and ``recovery``; ``emulator.provision(name)`` makes one newly
provisioned again, so each test starts from the state it needs. The custodians' side
(their key pairs, the restore blob) is ``tests/support/sd_custodian.py``: the HSM never
sees a private key.
"""

import asyncio
import base64
import json

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.keyvault.administration import KeyVaultAccessControlClient, KeyVaultBackupClient, KeyVaultSettingsClient
from azure.keyvault.keys import KeyClient
from azure.keyvault.securitydomain import SecurityDomainClient
from azure.keyvault.securitydomain.aio import SecurityDomainClient as AsyncSecurityDomainClient
from cryptography import x509

from tests.support.emulator import EmulatorProcess
from tests.support.sd_custodian import certificate_info, make_custodians, restore_blob
from tests.support.waiting import wait_for

DEFINITION_PREFIX = "Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/"
CRYPTO_USER = "21dbd100-6940-42c2-9190-5d6cb909625b"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    process = EmulatorProcess(tmp_path_factory.mktemp("sd-emulator"), hsms=("primary",),
                              unactivated=("fresh", "recovery"), extra_args=("--no-storage",)).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def custodians():
    return make_custodians(4)


@pytest.fixture(scope="module")
def credential(emulator):
    return emulator.credential()


@pytest.fixture
def client(emulator, credential):
    def make(hsm: str, cls=SecurityDomainClient, **kwargs):
        return cls(emulator.hsm_url(hsm), credential, **emulator.client_options(**kwargs))
    return make


@pytest.fixture
def keys(emulator, credential):
    return lambda hsm: KeyClient(emulator.hsm_url(hsm), credential, **emulator.client_options(retry_total=0))


@pytest.fixture
def fresh(emulator):
    """``fresh`` and ``recovery`` as newly provisioned HSMs."""
    emulator.provision("fresh")
    emulator.provision("recovery")
    return "fresh"


def _activate(client, custodians, hsm="fresh", required=2, count=3):
    poller = client(hsm).begin_download(certificate_info(custodians[:count], required))
    security_domain = poller.result().value
    assert poller.status().lower() == "success"
    return security_domain


def test_an_unactivated_hsm_refuses_the_data_plane_until_its_security_domain_is_downloaded(
        fresh, client, keys, custodians, emulator, credential):
    options = emulator.client_options(retry_total=0)
    for call in (lambda: keys(fresh).create_rsa_key("before"),
                 lambda: list(keys(fresh).list_properties_of_keys()),
                 lambda: list(KeyVaultAccessControlClient(emulator.hsm_url(fresh), credential, **options)
                              .list_role_assignments("/")),
                 lambda: KeyVaultSettingsClient(emulator.hsm_url(fresh), credential, **options).list_settings(),
                 lambda: KeyVaultBackupClient(emulator.hsm_url(fresh), credential, **options)
                 .begin_backup("https://127.0.0.1:10000/devstoreaccount1/backups", sas_token="sv=x")):
        with pytest.raises(HttpResponseError) as refused:
            call()
        assert refused.value.status_code == 403
        body = refused.value.response.json()["error"]
        assert body["code"] == "Forbidden" and body["innererror"] == {"code": "HsmNotActivated"}
        assert "not activated" in body["message"]

    sd = client(fresh)
    assert sd.get_download_status().status == "NotStarted"
    poller = sd.begin_download(certificate_info(custodians[:3], required=2), skip_activation_polling=True)
    security_domain = poller.result().value
    # Activation runs on after the 202, as on the service: the status says so.
    assert sd.get_download_status().status == "InProgress"
    wait_for(lambda: sd.get_download_status().status == "Success", timeout=15, interval=0.1)
    assert keys(fresh).create_rsa_key("after").key.kty == "RSA-HSM"

    document = json.loads(security_domain)
    assert document["SharedKeys"]["required"] == 2
    assert document["SharedKeys"]["key_algorithm"] == "shamir_share"
    assert [s["x5t_256"] for s in document["SharedKeys"]["enc_shares"]] == [c.fingerprint for c in custodians[:3]]
    assert document["EncData"]["kdf"] == "sp108_kdf" and document["EncData"]["data"]


def test_download_polls_activation_to_success_and_a_second_download_is_refused(fresh, client, custodians):
    sd = client(fresh)
    poller = sd.begin_download(certificate_info(custodians[:3], required=3))
    assert json.loads(poller.result().value)["SharedKeys"]["required"] == 3
    assert poller.status().lower() == "success"
    assert sd.get_download_status().status == "Success"
    with pytest.raises(ResourceExistsError) as refused:
        sd.begin_download(certificate_info(custodians[:3], required=2))
    assert refused.value.status_code == 409
    assert "already activated" in refused.value.message


@pytest.mark.parametrize("count, required, message", [
    (2, 2, "Between 3 and 10 certificates"),
    (11, 2, "Between 3 and 10 certificates"),
    (3, 1, "quorum 'required' must be from 2 to the number of certificates (3); it was 1"),
    (3, 4, "quorum 'required' must be from 2 to the number of certificates (3); it was 4"),
])
def test_download_needs_3_to_10_certificates_and_a_quorum_within_them(fresh, client, custodians, count, required,
                                                                      message):
    certificates = certificate_info(custodians, required)["certificates"]
    body = {"certificates": (certificates * 3)[:count], "required": required}
    with pytest.raises(HttpResponseError) as refused:
        client(fresh).begin_download(body)
    assert refused.value.status_code == 400
    assert refused.value.error.code == "BadParameter"
    assert message in refused.value.message
    assert client(fresh).get_download_status().status == "NotStarted"


def test_ten_certificates_with_a_quorum_of_ten_need_all_ten_custodians(fresh, client, keys):
    custodians = make_custodians(10, prefix="ten")
    security_domain = _activate(client, custodians, required=10, count=10)
    transfer = client("recovery").get_transfer_key()
    with pytest.raises(ValueError, match="Insufficient shares"):
        restore_blob(security_domain, transfer, custodians[:9])
    assert client("recovery").begin_upload(
        {"value": restore_blob(security_domain, transfer, custodians[::-1])}).result() is None
    assert keys("recovery").create_rsa_key("ten").name == "ten"


def test_provision_makes_an_hsm_new_again(fresh, client, keys, custodians, emulator, credential):
    _activate(client, custodians)
    keys(fresh).create_rsa_key("old-key")
    access = KeyVaultAccessControlClient(emulator.hsm_url(fresh), credential, **emulator.client_options())
    other = emulator.create_principal("sd-provision-other")
    access.create_role_assignment("/", DEFINITION_PREFIX + CRYPTO_USER, other["object_id"])

    assert emulator.provision(fresh) == {"hsm": fresh, "activated": False}
    with pytest.raises(HttpResponseError) as refused:
        keys(fresh).get_key("old-key")
    assert refused.value.response.json()["error"]["innererror"]["code"] == "HsmNotActivated"
    assert client(fresh).get_download_status().status == "NotStarted"

    _activate(client, custodians)
    assert [k.name for k in keys(fresh).list_properties_of_keys()] == []
    principals = {a.properties.principal_id for a in access.list_role_assignments("/")}
    assert principals == {emulator.principals["bootstrap-admin"]["object_id"]}


def test_download_refuses_a_certificate_given_twice_or_without_an_rsa_2048_key(fresh, client, custodians):
    certificates = certificate_info(custodians, 2)["certificates"]
    with pytest.raises(HttpResponseError, match="given twice"):
        client(fresh).begin_download({"certificates": [certificates[0], *certificates[:2]], "required": 2})
    (small,) = make_custodians(1, prefix="small", bits=1024)
    with pytest.raises(HttpResponseError, match="at least 2048 bits"):
        client(fresh).begin_download({"certificates": [*certificates[:2], small.jwk()], "required": 2})
    no_x5c = dict(certificates[2], x5c=[])
    with pytest.raises(HttpResponseError, match="no valid x5c"):
        client(fresh).begin_download({"certificates": [*certificates[:2], no_x5c], "required": 2})


def test_recovery_uploads_a_blob_the_custodians_prepared_and_shares_the_source_domain(
        fresh, client, keys, custodians):
    security_domain = _activate(client, custodians, required=2, count=3)
    source_backup = keys(fresh).backup_key(keys(fresh).create_ec_key("carried").name)

    recovery = client("recovery")
    assert recovery.get_upload_status().status == "NotStarted"
    transfer = recovery.get_transfer_key()
    assert transfer.key_format == "jwk"
    jwk = json.loads(transfer["transfer_key"])  # JSON text, as the service sends it (the CLI json.loads it)
    certificate = x509.load_der_x509_certificate(base64.b64decode(jwk["x5c"][0]))
    assert certificate.public_key().key_size == 2048 and jwk["kty"] == "RSA"
    assert recovery.get_transfer_key()["transfer_key"] == transfer["transfer_key"]  # one key per recovery

    # Custodians 0 and 2 (any quorum) prepare the blob offline, for this transfer key.
    blob = restore_blob(security_domain, transfer, [custodians[0], custodians[2]])
    with pytest.raises(HttpResponseError):
        keys("recovery").create_rsa_key("too-early")
    assert recovery.begin_upload({"value": blob}).result() is None
    assert recovery.get_upload_status().status == "Success"

    # Same domain: the source's key backup restores; the primary's (another domain) does not.
    assert keys("recovery").restore_key_backup(source_backup).name == "carried"
    primary_backup = keys("primary").backup_key(keys("primary").create_rsa_key("elsewhere").name)
    with pytest.raises(HttpResponseError):
        keys("recovery").restore_key_backup(primary_backup)
    with pytest.raises(ResourceExistsError, match="already activated"):
        recovery.get_transfer_key()


def test_a_blob_for_another_transfer_key_is_refused(fresh, client, custodians, emulator):
    security_domain = _activate(client, custodians)
    stale_transfer = client("recovery").get_transfer_key()
    emulator.provision("recovery")  # a new recovery: a new transfer key
    current = client("recovery").get_transfer_key()
    assert current["transfer_key"] != stale_transfer["transfer_key"]
    blob = restore_blob(security_domain, stale_transfer, custodians[:2])
    with pytest.raises(HttpResponseError) as refused:
        client("recovery").begin_upload({"value": blob})
    assert refused.value.status_code == 400
    assert "prepared for another transfer key" in refused.value.message
    assert client("recovery").get_upload_status().status == "NotStarted"


def test_shares_below_the_quorum_restore_nothing(fresh, client, custodians, keys):
    security_domain = _activate(client, custodians, required=3, count=4)
    transfer = client("recovery").get_transfer_key()
    # The custodians' tool itself refuses to recombine fewer shares than the quorum ...
    with pytest.raises(ValueError, match="Insufficient shares"):
        restore_blob(security_domain, transfer, custodians[:2])
    # ... and a blob made from too few shares anyway does not activate the HSM.
    blob = restore_blob(security_domain, transfer, custodians[:2], insufficient=True)
    with pytest.raises(HttpResponseError) as failed:
        client("recovery").begin_upload({"value": blob}).result()
    assert "does not decrypt to a security domain" in str(failed.value)
    status = client("recovery").get_upload_status()
    assert status.status == "Failed" and "quorum" in status.status_details
    with pytest.raises(HttpResponseError) as refused:
        keys("recovery").create_rsa_key("still-refused")
    assert refused.value.status_code == 403
    # The HSM stays in recovery: the right blob still works.
    good = restore_blob(security_domain, transfer, custodians[1:4])
    assert client("recovery").begin_upload({"value": good}).result() is None
    assert client("recovery").get_upload_status().status == "Success"


def test_upload_needs_a_transfer_key_first_and_an_unactivated_hsm(fresh, client, custodians):
    with pytest.raises(HttpResponseError) as refused:
        client("recovery").begin_upload({"value": "{}"})
    assert refused.value.status_code == 400 and "no transfer key" in refused.value.message
    with pytest.raises(ResourceExistsError):
        client("primary").begin_upload({"value": "{}"})
    client("recovery").get_transfer_key()
    with pytest.raises(HttpResponseError, match="not valid"):
        client("recovery").begin_upload({"value": "not json"})


def test_only_an_administrator_may_download(fresh, client, custodians, emulator):
    principal = emulator.create_principal("sd-crypto-user")
    KeyVaultAccessControlClient(emulator.hsm_url("primary"), emulator.credential(), **emulator.client_options())\
        .create_role_assignment("/", DEFINITION_PREFIX + CRYPTO_USER, principal["object_id"])
    user_client = SecurityDomainClient(emulator.hsm_url(fresh), emulator.credential(principal),
                                       **emulator.client_options())
    with pytest.raises(HttpResponseError) as refused:
        user_client.begin_download(certificate_info(custodians[:3], 2))
    assert refused.value.status_code == 403 and refused.value.error.code == "AccessDenied"


def test_async_client_activates_and_recovers(fresh, emulator, custodians):
    async def scenario():
        credential = emulator.async_credential()
        async with credential, \
                AsyncSecurityDomainClient(emulator.hsm_url(fresh), credential, **emulator.client_options()) as sd, \
                AsyncSecurityDomainClient(emulator.hsm_url("recovery"), credential,
                                          **emulator.client_options()) as recovery:
            poller = await sd.begin_download(certificate_info(custodians[:3], 2))
            security_domain = (await poller.result()).value
            transfer = await recovery.get_transfer_key()
            blob = restore_blob(security_domain, transfer, custodians[:2])
            upload = await recovery.begin_upload({"value": blob})
            assert await upload.result() is None
            return (await sd.get_download_status()).status, (await recovery.get_upload_status()).status
    assert asyncio.run(scenario()) == ("Success", "Success")


def test_concurrent_downloads_activate_once_and_concurrent_transfer_key_reads_get_one_key(
        fresh, emulator, custodians):
    async def scenario():
        credential = emulator.async_credential()
        async with credential:
            clients = [AsyncSecurityDomainClient(emulator.hsm_url(hsm), credential, **emulator.client_options())
                       for hsm in (fresh, fresh, "recovery", "recovery")]
            try:
                downloads = await asyncio.gather(
                    *(c.begin_download(certificate_info(custodians[:3], 2)) for c in clients[:2]),
                    return_exceptions=True)
                transfer_keys = await asyncio.gather(*(c.get_transfer_key() for c in clients[2:]))
                for poller in downloads:
                    if not isinstance(poller, BaseException):
                        await poller.result()
            finally:
                for c in clients:
                    await c.close()
        return downloads, transfer_keys
    downloads, transfer_keys = asyncio.run(scenario())
    refused = [d for d in downloads if isinstance(d, BaseException)]
    assert len(refused) == 1 and isinstance(refused[0], ResourceExistsError)
    assert "in progress" in refused[0].message
    assert transfer_keys[0]["transfer_key"] == transfer_keys[1]["transfer_key"]


def test_activation_and_the_restored_domain_survive_a_restart(tmp_path, custodians):
    options = {"hsms": ("primary",), "unactivated": ("fresh", "recovery"), "ephemeral": False,
               "extra_args": ("--no-storage",)}
    with EmulatorProcess(tmp_path, **options) as first:
        opts = first.client_options()
        sd = SecurityDomainClient(first.hsm_url("fresh"), first.credential(), **opts)
        security_domain = sd.begin_download(certificate_info(custodians[:3], 2)).result().value
        recovery = SecurityDomainClient(first.hsm_url("recovery"), first.credential(), **opts)
        transfer = recovery.get_transfer_key()
    with EmulatorProcess(tmp_path, **options) as second:
        opts = second.client_options(retry_total=0)
        # Same transfer key after the restart: the blob prepared for it uploads.
        recovery = SecurityDomainClient(second.hsm_url("recovery"), second.credential(), **opts)
        again = json.loads(recovery.get_transfer_key()["transfer_key"])
        assert again["x5t#S256"] == json.loads(transfer["transfer_key"])["x5t#S256"]
        recovery.begin_upload({"value": restore_blob(security_domain, transfer, custodians[:2])}).result()
        fresh_keys = KeyClient(second.hsm_url("fresh"), second.credential(), **opts)
        backup = fresh_keys.backup_key(fresh_keys.create_rsa_key("persisted").name)
    with EmulatorProcess(tmp_path, **options) as third:
        recovered = KeyClient(third.hsm_url("recovery"), third.credential(), **third.client_options(retry_total=0))
        assert recovered.restore_key_backup(backup).name == "persisted"


