"""HSM refusals come back as sentences naming the HSM and key: never the service's error
codes (KeyNotFound, BadParameter...), its URLs or activity ids. Real refusals from the
emulator through the official SDK; throttling and outages from its fault controls."""
import re

import pytest

from portal import gateway
from portal.errors import BadInput, Conflict, HsmUnavailable, NotAllowed, NotFound, Throttled
from portal.gateway.models import HsmInstance

SDK_CODES = re.compile(r"KeyNotFound|NotFound\b|BadParameter|Forbidden|AccessDenied|Conflict|"
                       r"Throttled|ServiceUnavailable|ObjectIsDeleted|Activity ID|https?://|"
                       r"127\.0\.0\.1")


def _refusal(call):
    with pytest.raises(Exception) as info, gateway.translated_errors():
        call()
    return info.value


def _clean(error):
    assert not SDK_CODES.search(error.message), error.message
    assert not SDK_CODES.search(error.code), error.code
    return error


def test_not_found_names_the_key_and_the_hsm(hsm, emulator):
    error = _clean(_refusal(lambda: gateway.keys(hsm).get_key("no-such-key")))
    assert isinstance(error, NotFound)
    assert error.message == "Key no-such-key was not found on HSM primary."
    error = _clean(_refusal(lambda: gateway.keys(hsm).get_deleted_key("no-such-key")))
    assert error.message == "No deleted key named no-such-key is on HSM primary."


def test_not_found_through_the_api_is_a_sentence(api_as, admin, hsm):
    response = api_as(admin).post(f"/api/v1/hsms/{hsm.name}/keys/missing-key/rotate/")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "not_found" and not SDK_CODES.search(error["message"])
    assert "missing-key" in error["message"] and "primary" in error["message"]


def test_bad_parameter_keeps_the_reason_without_the_code(hsm):
    error = _clean(_refusal(lambda: gateway.keys(hsm).create_rsa_key(
        "bad-size", size=1000, hardware_protected=True)))
    assert isinstance(error, BadInput)
    assert error.message.startswith("HSM primary refused the request: ")


def test_conflict_is_a_sentence_without_the_codes(hsm, key_name):
    client = gateway.keys(hsm)
    client.create_oct_key(key_name, size=256, hardware_protected=True)
    client.begin_delete_key(key_name).wait()
    error = _clean(_refusal(lambda: client.create_oct_key(key_name, size=256,
                                                          hardware_protected=True)))
    assert isinstance(error, Conflict)
    assert key_name in error.message and "deleted" in error.message


def test_an_identity_without_a_role_gets_a_forbidden_sentence(hsm, emulator, azure_settings):
    nobody = emulator.create_principal("portal-without-roles")
    azure_settings.AZURE_CLIENT_ID = nobody["client_id"]
    azure_settings.AZURE_CLIENT_SECRET = nobody["client_secret"]
    error = _clean(_refusal(lambda: gateway.keys(hsm).get_key("any-key")))
    assert isinstance(error, NotAllowed)
    assert error.message.startswith("HSM primary refused this: the portal's identity has no role")


def test_a_forbidden_fault_keeps_the_service_sentence(hsm, emulator):
    emulator.fail("GET", "/keys/*", status=403)
    error = _clean(_refusal(lambda: gateway.keys(hsm).get_key("any-key")))
    assert isinstance(error, NotAllowed)
    assert error.message == "HSM primary refused this: The request was refused by an injected fault."


def test_throttling_and_outages_name_the_hsm(hsm, emulator):
    emulator.fail("GET", "/keys/*", status=429, retry_after=0)
    error = _clean(_refusal(lambda: gateway.keys(hsm).get_key("any-key")))
    assert isinstance(error, Throttled)
    assert error.message == "HSM primary is throttling requests; try again shortly."
    emulator.clear_faults()
    emulator.fail("GET", "/keys/*", status=503)
    error = _clean(_refusal(lambda: gateway.keys(hsm).get_key("any-key")))
    assert isinstance(error, HsmUnavailable)
    assert error.message == "HSM primary is unavailable (it answered 503); try again shortly."


def test_an_unreachable_hsm_is_named_when_the_caller_says_which(azure_settings, db):
    azure_settings.HSM_EMULATOR_HOSTS = ["127.0.0.1:1"]  # nothing listens on port 1
    dead = HsmInstance.objects.create(name="dead", uri="https://127.0.0.1:1")
    with pytest.raises(HsmUnavailable) as info:
        gateway.hsm_ping(dead)
    assert info.value.message == "HSM dead could not be reached from the portal's network."
