"""Injected faults: the SDK's retry policy meets 429/503 and latency as from the service."""

import time

import pytest
from azure.core.exceptions import HttpResponseError
from azure.keyvault.keys import KeyClient


def test_429_with_retry_after_is_retried_by_the_sdk(emulator, key_client, name):
    key_client.create_ec_key(name)
    emulator.fail("GET", f"/keys/{name}/", status=429, count=2, retry_after=1)
    started = time.monotonic()
    assert key_client.get_key(name).name == name
    assert time.monotonic() - started >= 2  # the SDK waited Retry-After twice


def test_503_without_retries_surfaces_as_http_response_error(emulator, admin_credential, name):
    client = KeyClient(emulator.hsm_url(), admin_credential, **emulator.client_options(retry_total=0))
    emulator.fail("POST", f"/keys/{name}/create", status=503)
    with pytest.raises(HttpResponseError) as info:
        client.create_rsa_key(name)
    assert info.value.status_code == 503 and info.value.error.code == "ServiceUnavailable"
    emulator.clear_faults()
    assert client.create_rsa_key(name).name == name


def test_regex_paths_latency_and_other_hsms(emulator, admin_credential, secondary_key_client, name):
    secondary_key_client.create_ec_key(name)
    emulator.fail("GET", r"/keys/[^/]+/", status=None, latency_ms=300, count=1, hsm="secondary")
    started = time.monotonic()
    secondary_key_client.get_key(name)
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    secondary_key_client.get_key(name)
    assert time.monotonic() - started < 0.3


def test_fault_on_primary_does_not_touch_secondary(emulator, admin_credential, secondary_key_client, name):
    primary = KeyClient(emulator.hsm_url(), admin_credential, **emulator.client_options(retry_total=0))
    emulator.fail("*", "/keys/*", status=500)
    with pytest.raises(HttpResponseError) as info:
        primary.create_ec_key(name)
    assert info.value.status_code == 500
    assert secondary_key_client.create_ec_key(name).name == name
