"""HSM settings through KeyVaultSettingsClient."""

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.administration import KeyVaultSetting, KeyVaultSettingsClient

SETTING = "AllowKeyManagementOperationsThroughARM"


def test_list_get_and_update(settings_client):
    settings = list(settings_client.list_settings())
    assert [(s.name, s.setting_type, s.value) for s in settings] == [(SETTING, "boolean", "false")]
    assert settings_client.get_setting(SETTING).getboolean() is False
    updated = settings_client.update_setting(KeyVaultSetting(name=SETTING, value=True))
    assert updated.value == "true" and settings_client.get_setting(SETTING).getboolean()
    assert settings_client.update_setting(KeyVaultSetting(name=SETTING, value=False)).value == "false"


def test_unknown_setting_is_not_found(settings_client):
    with pytest.raises(ResourceNotFoundError):
        settings_client.get_setting("NoSuchSetting")


def test_non_boolean_value_is_refused(settings_client):
    with pytest.raises(HttpResponseError) as info:
        settings_client.update_setting(KeyVaultSetting(name=SETTING, value="maybe"))
    assert info.value.status_code == 400


def test_settings_need_the_administrator_role(emulator, principal_with):
    user = principal_with("Crypto User", "Crypto Officer")
    client = KeyVaultSettingsClient(emulator.hsm_url(), emulator.credential(user), **emulator.client_options())
    with pytest.raises(HttpResponseError) as info:
        client.get_setting(SETTING)
    assert info.value.status_code == 403
