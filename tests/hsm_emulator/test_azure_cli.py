"""The real Azure CLI (pinned, in its own virtual environment) against the emulator.

A custom cloud names the emulator's authority and Resource Manager; ``az login
--service-principal`` signs in with the bootstrap admin (the CLI asks for
``https://management.core.windows.net//.default`` and lists subscriptions), then the
keyvault commands reach the HSM by ``--hsm-name <host:port>`` (the cloud has no Managed
HSM DNS suffix, so the CLI's ``https://<name><suffix>`` is the HSM's URL) or by ``--id``.
The CLI lives in ``.venv-azcli/`` (``make azcli``): its own pins of azure-* packages
conflict with the portal's.
"""

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

AZ = Path(__file__).resolve().parents[2] / ".venv-azcli" / "bin" / "az"


@pytest.fixture(scope="module")
def az(emulator, tmp_path_factory):
    """Run one ``az`` command with a private configuration directory; its JSON output, parsed."""
    if not AZ.exists():
        pytest.fail(f"The Azure CLI is not installed at {AZ.relative_to(AZ.parents[2])}: run `make azcli`.")
    home = tmp_path_factory.mktemp("azcli")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "AZURE_CONFIG_DIR": str(home / "config"),
        "AZURE_EXTENSION_DIR": str(home / "extensions"),
        # Nothing leaves the machine: no telemetry upload, no instance discovery at Microsoft.
        "AZURE_CORE_COLLECT_TELEMETRY": "false",
        "AZURE_CORE_INSTANCE_DISCOVERY": "false",
        "AZURE_CORE_SURVEY_MESSAGE": "false",
        "AZURE_CORE_NO_COLOR": "true",
        "AZURE_CORE_ONLY_SHOW_ERRORS": "true",
        "REQUESTS_CA_BUNDLE": emulator.ca_bundle,
    }
    timings: list[tuple[str, float]] = []

    def run(*args: str):
        started = time.perf_counter()
        result = subprocess.run([str(AZ), *args, "--output", "json"], env=env, capture_output=True, text=True,
                                timeout=120)
        timings.append((" ".join(args[:3]), time.perf_counter() - started))
        assert result.returncode == 0, f"az {' '.join(args[:3])} failed: {result.stderr}"
        return json.loads(result.stdout) if result.stdout.strip() else None

    yield run
    print("az timings:", ", ".join(f"{name} {seconds:.1f}s" for name, seconds in timings))


@pytest.fixture(scope="module")
def signed_in(az, emulator):
    """A custom cloud registered against the emulator, the bootstrap admin signed in."""
    endpoints = emulator.endpoints
    cloud = {
        "endpoints": {
            "activeDirectory": endpoints["authority"],
            "activeDirectoryResourceId": "https://management.core.windows.net/",
            "management": "https://management.core.windows.net/",
            "resourceManager": endpoints["resource_manager"] + "/",
            # The CLI sends Graph requests to this address and asks for tokens for it:
            # the emulator's Graph (principal look-ups for role assignments).
            "microsoftGraphResourceId": endpoints["graph"] + "/",
        },
        # keyvaultDns must be set (the CLI reads it for every keyvault command); no
        # mhsmDns, so --hsm-name takes the HSM's host:port as it is.
        "suffixes": {"keyvaultDns": ".vault.azure.net"},
    }
    az("cloud", "register", "--name", "hsm-emulator", "--cloud-config", json.dumps(cloud),
       "--skip-endpoint-discovery")
    az("cloud", "set", "--name", "hsm-emulator")
    admin = endpoints["principals"]["bootstrap-admin"]
    accounts = az("login", "--service-principal", "--username", admin["client_id"],
                  # As one word: a secret may start with "-", which argparse would take
                  # for an option (Entra secrets can, as the emulator's random ones do).
                  f"--password={admin['client_secret']}", "--tenant", endpoints["tenant_id"],
                  "--allow-no-subscriptions")
    return accounts


def test_az_login_with_a_service_principal_against_the_emulator_cloud(signed_in, emulator):
    (account,) = signed_in
    assert account["cloudName"] == "hsm-emulator"
    assert account["tenantId"] == emulator.endpoints["tenant_id"]
    assert account["user"] == {"name": emulator.endpoints["principals"]["bootstrap-admin"]["client_id"],
                               "type": "servicePrincipal"}


def test_az_keyvault_key_lifecycle_and_settings(signed_in, az, emulator, key_client):
    hsm_url = emulator.hsm_url()
    hsm = ["--hsm-name", hsm_url.removeprefix("https://")]
    name = f"cli-{uuid.uuid4().hex[:12]}"

    created = az("keyvault", "key", "create", *hsm, "--name", name, "--kty", "RSA-HSM", "--size", "2048")
    assert created["key"]["kid"].startswith(f"{hsm_url}/keys/{name}/")
    assert key_client.get_key(name).key.n == _b64(created["key"]["n"])

    shown = az("keyvault", "key", "show", "--id", f"{hsm_url}/keys/{name}")
    assert shown["key"]["kid"] == created["key"]["kid"]
    assert name in {item["name"] for item in az("keyvault", "key", "list", *hsm)}

    rotated = az("keyvault", "key", "rotate", *hsm, "--name", name)
    assert rotated["key"]["kid"] != created["key"]["kid"]
    assert len(list(key_client.list_properties_of_key_versions(name))) == 2

    deleted = az("keyvault", "key", "delete", *hsm, "--name", name)
    assert deleted["recoveryId"] == f"{hsm_url}/deletedkeys/{name}"
    assert key_client.get_deleted_key(name).name == name

    recovered = az("keyvault", "key", "recover", *hsm, "--name", name)
    assert recovered["key"]["kid"] == rotated["key"]["kid"]
    assert key_client.get_key(name).id == rotated["key"]["kid"]

    settings = az("keyvault", "setting", "list", *hsm)
    assert {"name": "AllowKeyManagementOperationsThroughARM", "settingType": "boolean",
            "value": "false"} in settings


def test_az_keyvault_role_assignment_create_and_list_resolve_principals_through_graph(signed_in, az, emulator,
                                                                                     access_client):
    hsm = ["--hsm-name", emulator.hsm_url().removeprefix("https://")]
    tag = uuid.uuid4().hex[:8]
    user = emulator.create_user(f"cli.{tag}@contoso.test", display_name=f"CLI user {tag}")
    app = emulator.create_principal(f"cli-app-{tag}")
    scope = f"/keys/cli-{tag}"

    by_upn = az("keyvault", "role", "assignment", "create", *hsm, "--role", "Managed HSM Crypto User",
                "--scope", scope, "--assignee", user["user_principal_name"])
    assert (by_upn["principalId"], by_upn["principalName"], by_upn["principalType"]) == (
        user["object_id"], user["user_principal_name"], "User")
    assert by_upn["roleName"] == "Managed HSM Crypto User"
    # A service principal by one of its servicePrincipalNames (its identifier URI).
    by_spn = az("keyvault", "role", "assignment", "create", *hsm, "--role", "Managed HSM Crypto Auditor",
                "--scope", scope, "--assignee", f"api://{app['client_id']}")
    assert (by_spn["principalId"], by_spn["principalName"], by_spn["principalType"]) == (
        app["object_id"], app["client_id"], "ServicePrincipal")
    # An object id is taken as it is; the answer still names the principal (getByIds).
    by_oid = az("keyvault", "role", "assignment", "create", *hsm, "--role", "Managed HSM Crypto Officer",
                "--scope", scope, "--assignee", user["object_id"])
    assert by_oid["principalName"] == user["user_principal_name"]

    on_hsm = {(a.properties.principal_id, a.properties.scope) for a in access_client.list_role_assignments(scope)}
    assert {(user["object_id"], scope), (app["object_id"], scope)} <= on_hsm

    listed = az("keyvault", "role", "assignment", "list", *hsm, "--scope", scope,
                "--assignee", user["user_principal_name"])
    assert sorted(a["roleName"] for a in listed) == ["Managed HSM Crypto Officer", "Managed HSM Crypto User"]
    assert {a["principalName"] for a in listed} == {user["user_principal_name"]}
    everyone = az("keyvault", "role", "assignment", "list", *hsm, "--scope", scope)
    names = {a["principalId"]: (a["principalName"], a["principalType"]) for a in everyone}
    assert names[app["object_id"]] == (app["client_id"], "ServicePrincipal")

    az("keyvault", "role", "assignment", "delete", *hsm, "--scope", scope, "--role", "Managed HSM Crypto User",
       "--assignee", user["user_principal_name"])
    left = {(a.properties.principal_id, a.properties.role_definition_id.rsplit("/", 1)[-1])
            for a in access_client.list_role_assignments(scope)}
    assert (user["object_id"], "21dbd100-6940-42c2-9190-5d6cb909625b") not in left  # Crypto User
    assert (user["object_id"], "515eb02d-2335-4d2d-92f2-b1cbdf9c3778") in left  # Crypto Officer stays


def test_az_ad_reads_users_and_service_principals_from_the_emulators_graph(signed_in, az, emulator):
    tag = uuid.uuid4().hex[:8]
    user = emulator.create_user(f"ad.{tag}@contoso.test", display_name=f"Directory reader {tag}")
    app = emulator.create_principal(f"ad-app-{tag}", app_roles=["admin"])

    shown = az("ad", "user", "show", "--id", user["user_principal_name"])
    assert (shown["id"], shown["displayName"]) == (user["object_id"], f"Directory reader {tag}")
    listed = az("ad", "user", "list", "--display-name", f"Directory reader {tag}")
    assert [u["userPrincipalName"] for u in listed] == [user["user_principal_name"]]
    sp = az("ad", "sp", "show", "--id", app["client_id"])
    assert (sp["id"], sp["appId"]) == (app["object_id"], app["client_id"])
    assert [r["value"] for r in sp["appRoles"]] == ["admin"]
    sps = az("ad", "sp", "list", "--display-name", f"ad-app-{tag}")
    assert [s["id"] for s in sps] == [app["object_id"]]


def _b64(text: str) -> bytes:
    """The CLI prints JWK members in standard base64."""
    import base64

    return base64.b64decode(text + "=" * (-len(text) % 4))
