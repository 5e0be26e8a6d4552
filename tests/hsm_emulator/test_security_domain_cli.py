"""``az keyvault security-domain`` (the real, pinned Azure CLI) against the emulator.

download / wait activate an un-activated HSM with three custodians' certificates; init-recovery
fetches a new HSM's exchange key; restore-blob and upload do the custodians' offline part with
their private keys (the CLI's own code, not the test helper) and restore the security domain.
The sign-in fixtures are those of ``test_azure_cli.py``, on an emulator of this module's own.
"""

import json

import pytest
from azure.keyvault.keys import KeyClient
from cryptography import x509

from tests.hsm_emulator.test_azure_cli import az, signed_in  # noqa: F401 - fixtures
from tests.support.emulator import EmulatorProcess
from tests.support.sd_custodian import make_custodians


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    process = EmulatorProcess(tmp_path_factory.mktemp("sd-cli-emulator"), hsms=("primary",),
                              unactivated=("fresh", "recovery"), extra_args=("--no-storage",)).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Three custodians' ``.cer`` / ``.key`` PEM files (the second key password-protected)."""
    folder = tmp_path_factory.mktemp("custodians")
    custodians = make_custodians(3, prefix="cert_")
    paths = [c.write(folder, password=b"s3cret" if i == 1 else None) for i, c in enumerate(custodians)]
    return folder, [str(cer) for cer, _ in paths], [str(key) for _, key in paths]


def _hsm(emulator, name):
    return ["--hsm-name", emulator.hsm_url(name).removeprefix("https://")]


def _keys(emulator, name):
    return KeyClient(emulator.hsm_url(name), emulator.credential(), **emulator.client_options(retry_total=0))


def test_az_download_activates_and_upload_recovers_the_security_domain(signed_in, az, emulator, files):  # noqa: F811
    folder, certificates, private_keys = files
    sd_file = folder / "fresh-security-domain.json"

    # download --no-wait returns at once; wait watches activation.
    az("keyvault", "security-domain", "download", *_hsm(emulator, "fresh"), "--sd-wrapping-keys", *certificates,
       "--sd-quorum", "2", "--security-domain-file", str(sd_file), "--no-wait")
    waited = az("keyvault", "security-domain", "wait", *_hsm(emulator, "fresh"), "--target-operation", "download")
    assert waited["status"] == "Success"
    document = json.loads(sd_file.read_text())
    assert document["SharedKeys"]["required"] == 2 and len(document["SharedKeys"]["enc_shares"]) == 3
    source_backup = _keys(emulator, "fresh").backup_key(_keys(emulator, "fresh").create_rsa_key("from-cli").name)

    # init-recovery writes the recovery HSM's exchange key as a PEM certificate.
    exchange = folder / "recovery-exchange-key.cer"
    az("keyvault", "security-domain", "init-recovery", *_hsm(emulator, "recovery"), "--sd-exchange-key",
       str(exchange))
    assert x509.load_pem_x509_certificate(exchange.read_bytes()).public_key().key_size == 2048

    # upload with the wrapping keys: the CLI prepares the blob itself (custodians 1 and 2; 1's key has a
    # password, matched by position).
    uploaded = az("keyvault", "security-domain", "upload", *_hsm(emulator, "recovery"), "--sd-file", str(sd_file),
                  "--sd-exchange-key", str(exchange), "--sd-wrapping-keys", private_keys[1], private_keys[2],
                  "--passwords", "s3cret")
    assert uploaded["status"] == "Success"
    assert _keys(emulator, "recovery").restore_key_backup(source_backup).name == "from-cli"


def test_az_restore_blob_offline_then_upload_it(signed_in, az, emulator, files):  # noqa: F811
    folder, certificates, private_keys = files
    emulator.provision("fresh")
    emulator.provision("recovery")
    sd_file = folder / "second-security-domain.json"
    downloaded = az("keyvault", "security-domain", "download", *_hsm(emulator, "fresh"), "--sd-wrapping-keys",
                    *certificates, "--sd-quorum", "2", "--security-domain-file", str(sd_file))
    assert downloaded["status"] == "Success"

    exchange = folder / "second-exchange-key.cer"
    az("keyvault", "security-domain", "init-recovery", *_hsm(emulator, "recovery"), "--sd-exchange-key",
       str(exchange))
    blob = folder / "restore-blob.json"
    az("keyvault", "security-domain", "restore-blob", "--sd-file", str(sd_file), "--sd-exchange-key", str(exchange),
       "--sd-wrapping-keys", private_keys[0], private_keys[2], "--sd-file-restore-blob", str(blob))
    assert set(json.loads(blob.read_text())) == {"EncData", "WrappedKey"}

    az("keyvault", "security-domain", "upload", *_hsm(emulator, "recovery"), "--sd-file", str(blob),
       "--restore-blob", "--no-wait")
    waited = az("keyvault", "security-domain", "wait", *_hsm(emulator, "recovery"), "--target-operation", "upload")
    assert waited["status"] == "Success"
    assert _keys(emulator, "recovery").create_rsa_key("activated").name == "activated"
