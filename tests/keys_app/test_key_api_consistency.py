"""One key reads the same whichever call returned it; refusals are sentences, not empty 200s."""
import base64

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from portal.audit.models import AuditEvent

OWNER = {"owner": "payments"}


@pytest.fixture
def aes_key(api_as, admin, hsm, key_name):
    response = api_as(admin).post(f"/api/v1/hsms/{hsm.name}/keys/",
                                  {"name": key_name, "preset": "aes", "tags": OWNER}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_recovery_level_is_the_same_text_after_create_patch_and_get(api_as, admin, hsm, key_name,
                                                                    aes_key):
    client = api_as(admin)
    url = f"/api/v1/hsms/{hsm.name}/keys/{key_name}/"
    patched = client.patch(url, {"tags": {**OWNER, "app": "x"}}, format="json").json()
    read = client.get(url).json()
    levels = {aes_key["recovery_level"], patched["recovery_level"], read["recovery_level"]}
    assert levels == {"CustomizedRecoverable+Purgeable"}


def test_a_garbage_restore_blob_is_a_400_sentence_through_both_doors(api_as, client, admin, hsm):
    response = api_as(admin).post(f"/api/v1/hsms/{hsm.name}/keys/restore/",
                                  {"value": base64.b64encode(b"not a backup").decode()},
                                  format="json")
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert message.startswith("This file is not a key backup this HSM can restore")
    client.force_login(admin)
    page = client.post(f"/hsms/{hsm.name}/keys/restore/", {
        "backup_file": SimpleUploadedFile("x.keybackup", b"not a backup")}, follow=True)
    assert b"This file is not a key backup this HSM can restore" in page.content
    assert list(AuditEvent.objects.filter(action="key.restore").values_list(
        "outcome", flat=True).order_by("seq")) == ["intent", "failed"] * 2


@pytest.mark.parametrize("fmt", ["jwk", "pem"])
def test_a_symmetric_key_has_no_public_key_in_either_format(api_as, client, admin, hsm, key_name,
                                                            aes_key, fmt):
    response = api_as(admin).get(f"/api/v1/hsms/{hsm.name}/keys/{key_name}/public-key/",
                                 {"fmt": fmt})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "no_public_key"
    assert "symmetric" in response.json()["error"]["message"]
    client.force_login(admin)
    page = client.get(f"/hsms/{hsm.name}/keys/{key_name}/public.{fmt}")
    assert page.status_code == 400 and b"symmetric" in page.content


def test_an_unknown_public_key_format_is_a_400(api_as, admin, hsm, key_name, aes_key):
    response = api_as(admin).get(f"/api/v1/hsms/{hsm.name}/keys/{key_name}/public-key/",
                                 {"fmt": "der"})
    assert response.status_code == 400 and "jwk or pem" in response.json()["error"]["message"]
