"""Which HSM URLs the portal accepts, and that only named emulator hosts skip the SDK's
challenge-resource check (so the portal's token never goes to a host it should not)."""
from urllib.parse import urlsplit

import pytest
from azure.keyvault.keys import KeyClient

from portal import gateway
from portal.audit.models import AuditEvent
from portal.errors import HsmUnavailable
from portal.gateway import clients
from portal.gateway.models import HsmInstance

BAD_URLS = [
    ("http://prod.managedhsm.azure.net", "https://"),
    ("https://10.1.2.3", "IP address"),
    ("https://[fd00::1]", "IP address"),
    ("https://127.0.0.1", "IP address"),
    ("https://admin:secret@prod.managedhsm.azure.net", "user name or password"),
    ("https://prod.managedhsm.azure.net/#x", "fragment"),
    ("https://prod.managedhsm.azure.net/?api-version=1", "query"),
    ("https://prod.managedhsm.azure.net/keys/x", "without a path"),
    ("https://prod.managedhsm.azure.net:8443", "port 443 only"),
    ("https://attacker/", "Managed HSMs of this cloud"),
    ("https://attacker.example.com", "Managed HSMs of this cloud"),
    ("https://prod.managedhsm.azure.net.attacker.example.com", "Managed HSMs of this cloud"),
    ("https://x.prod.managedhsm.azure.net", "Managed HSMs of this cloud"),
    ("https://a.managedhsm.azure.net", "3-24 letters"),
    ("not a url at all", "https://"),
]


@pytest.mark.parametrize("uri,sentence", BAD_URLS, ids=[u for u, _ in BAD_URLS])
def test_api_refuses_each_kind_of_bad_hsm_url_with_a_sentence(api_as, admin, uri, sentence):
    response = api_as(admin).post("/api/v1/hsms/", {"name": "bad", "uri": uri}, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert sentence in error["message"]
    assert [sentence in text for text in error["fields"]["uri"]] == [True]
    assert not HsmInstance.objects.exists()
    assert not AuditEvent.objects.filter(action="hsm.register").exists()


@pytest.mark.parametrize("uri,sentence", BAD_URLS, ids=[u for u, _ in BAD_URLS])
def test_page_refuses_each_kind_of_bad_hsm_url_with_a_sentence(client, admin, uri, sentence):
    client.force_login(admin)
    response = client.post("/hsms/", {"name": "bad", "uri": uri, "role": "primary"})
    assert response.status_code == 400
    assert sentence in response.content.decode()
    assert not HsmInstance.objects.exists()


def test_urls_are_stored_in_one_canonical_form(api_as, admin):
    response = api_as(admin).post("/api/v1/hsms/", {
        "name": "prod", "uri": "https://Prod-WEU.ManagedHSM.azure.net:443/"}, format="json")
    assert response.status_code == 201
    assert HsmInstance.objects.get(name="prod").uri == "https://prod-weu.managedhsm.azure.net"


def test_a_sovereign_cloud_has_its_own_suffix(api_as, admin, settings):
    settings.AZURE_HSM_DNS_SUFFIX = "managedhsm.usgovcloudapi.net"
    client = api_as(admin)
    public = client.post("/api/v1/hsms/", {"name": "pub", "uri": "https://pub.managedhsm.azure.net"},
                         format="json")
    assert public.status_code == 400
    assert "https://<name>.managedhsm.usgovcloudapi.net" in public.json()["error"]["message"]
    gov = client.post("/api/v1/hsms/", {"name": "gov",
                                        "uri": "https://gov-hsm.managedhsm.usgovcloudapi.net"},
                      format="json")
    assert gov.status_code == 201


def _port(url: str) -> int:
    return urlsplit(url).port


def test_a_named_emulator_host_registers_and_is_used(api_as, admin, azure_settings, emulator):
    url = emulator.hsm_url("secondary")
    response = api_as(admin).post("/api/v1/hsms/", {"name": "emu", "uri": url}, format="json")
    assert response.status_code == 201, response.content
    hsm = HsmInstance.objects.get(name="emu")
    gateway.hsm_ping(hsm)  # a real authenticated call: the token reached the emulator
    # The same emulator on a port that is not named is an IP literal like any other.
    other = f"https://127.0.0.1:{_port(url) + 1 if _port(url) < 65535 else _port(url) - 1}"
    response = api_as(admin).post("/api/v1/hsms/", {"name": "emu2", "uri": other}, format="json")
    assert response.status_code == 400
    assert "IP address" in response.json()["error"]["message"]


def test_a_row_stored_before_the_rule_gets_no_client(azure_settings, emulator, db):
    # Only localhost:<port> is named as the emulator; the same server as 127.0.0.1 is not.
    port = _port(emulator.hsm_url())
    azure_settings.HSM_EMULATOR_HOSTS = [f"localhost:{port}"]
    named = HsmInstance.objects.create(name="named", uri=f"https://localhost:{port}")
    gateway.hsm_ping(named)  # the certificate names localhost too: this works
    unnamed = HsmInstance.objects.create(name="unnamed", uri=f"https://127.0.0.1:{port}")
    attacker = HsmInstance.objects.create(name="attacker", uri="https://attacker.example.test/")
    for hsm in (unnamed, attacker):
        with pytest.raises(HsmUnavailable) as info:
            gateway.keys(hsm)
        assert info.value.code == "hsm_url_refused"
        assert f"HSM {hsm.name}" in info.value.message and hsm.uri not in info.value.message
        with pytest.raises(HsmUnavailable):
            gateway.hsm_ping(hsm)


def _verifies_challenge(client: KeyClient) -> bool:
    return client._client._config.authentication_policy._verify_challenge_resource


def test_only_named_emulator_hosts_skip_challenge_verification(azure_settings, emulator):
    # The old process-wide switch no longer exists: setting it changes nothing.
    azure_settings.HSM_VERIFY_CHALLENGE_RESOURCE = False
    real = HsmInstance(name="prod", uri="https://prod.managedhsm.azure.net")
    emu = HsmInstance(name="primary", uri=emulator.hsm_url())
    assert _verifies_challenge(gateway.keys(real)) is True
    assert _verifies_challenge(gateway.keys(emu)) is False


def test_with_a_real_hosts_options_the_sdk_does_not_send_the_token_elsewhere(azure_settings,
                                                                             emulator):
    # The options the gateway gives a real Managed HSM host, used against the emulator
    # (whose challenge names managedhsm.azure.net, not its own host): the SDK refuses to
    # answer the challenge, so no bearer token is sent; the emulator's own options work.
    options = clients._client_options("https://prod.managedhsm.azure.net")
    guarded = KeyClient(emulator.hsm_url(), gateway.credential(), **options)
    with pytest.raises(ValueError, match="challenge resource"):
        next(iter(guarded.list_properties_of_keys()), None)
    trusted = KeyClient(emulator.hsm_url(), gateway.credential(),
                        **clients._client_options(emulator.hsm_url()))
    next(iter(trusted.list_properties_of_keys()), None)
