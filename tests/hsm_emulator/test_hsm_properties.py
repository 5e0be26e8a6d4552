"""ARM-owned HSM properties (retention, purge protection) and optional throttling."""

import datetime

import pytest
from azure.core.exceptions import HttpResponseError
from azure.keyvault.keys import KeyClient

from tests.support.emulator import EmulatorError, EmulatorProcess


@pytest.fixture(scope="module")
def solo(tmp_path_factory):
    with EmulatorProcess(tmp_path_factory.mktemp("solo"), hsms=("solo",)) as process:
        yield process


def test_retention_and_purge_protection_shape_keys_and_block_purge(solo):
    client = KeyClient(solo.hsm_url("solo"), solo.credential(), **solo.client_options())
    assert solo.set_properties("solo", retention_days=90, purge_protection=True) == {
        "retention_days": 90, "purge_protection": True}
    key = client.create_ec_key("protected")
    assert key.properties.recoverable_days == 90 and key.properties.recovery_level == "Recoverable"
    deleted = client.begin_delete_key("protected").result()
    assert deleted.scheduled_purge_date - deleted.deleted_date == datetime.timedelta(days=90)
    with pytest.raises(HttpResponseError) as info:
        client.purge_deleted_key("protected")
    assert info.value.status_code == 403
    with pytest.raises(EmulatorError):
        solo.set_properties("solo", purge_protection=False)
    with pytest.raises(EmulatorError):
        solo.set_properties("solo", retention_days=3)


def test_throttle_answers_429_beyond_published_capacity(tmp_path):
    with EmulatorProcess(tmp_path, hsms=("solo",), extra_args=("--throttle",)) as throttled:
        client = KeyClient(throttled.hsm_url("solo"), throttled.credential(),
                           **throttled.client_options(retry_total=0))
        client.create_ec_key("first")
        with pytest.raises(HttpResponseError) as info:
            client.create_ec_key("second")  # key creation is limited to one per second
        assert info.value.status_code == 429 and info.value.error.code == "Throttled"
        assert info.value.response.headers["Retry-After"] == "1"
        patient = KeyClient(throttled.hsm_url("solo"), throttled.credential(), **throttled.client_options())
        assert patient.create_ec_key("second").name == "second"  # the SDK honours Retry-After
