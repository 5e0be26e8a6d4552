"""What approvers see beside a CMK or HSM-resource request: the change, and the state now."""
from cmk_app.models import CmkBinding


def describe_detach(payload: dict) -> dict:
    row = CmkBinding.objects.select_related("hsm").filter(pk=payload.get("binding_id")).first()
    if row is None:
        return {"title": "Detach a customer-managed key", "change": [("Binding", "Not found")]}
    return {"title": f"Detach {row.key_name} from {row.resource_name}",
            "change": [("Resource", f"{row.get_kind_display()} {row.resource_name}"),
                       ("Key", f"{row.key_name} on HSM {row.hsm.name}"),
                       ("After", "Encryption with Microsoft-managed keys; the role assignment "
                                 "the portal made is removed")],
            "context": [("Status now", row.get_status_display()),
                        ("Version in use", row.version_words),
                        ("Identity", row.identity_id or "—")]}


def describe_switch(payload: dict) -> dict:
    row = CmkBinding.objects.select_related("hsm").filter(
        resource_id__iexact=payload.get("resource_id", "")).first()
    name = payload.get("resource_id", "").rsplit("/", 1)[-1]
    return {"title": f"Switch {name} to key {payload.get('key_name')}",
            "change": [("Resource", name), ("New key", f"{payload.get('key_name')} on HSM "
                                                       f"{payload.get('hsm')}")],
            "context": [("Key now", f"{row.key_name} on HSM {row.hsm.name}" if row else "—"),
                        ("Version in use", row.version_words if row else "—")]}


def describe_network(payload: dict) -> dict:
    state = "Enabled" if payload.get("enabled") else "Disabled"
    return {"title": f"Public network access of HSM {payload.get('hsm')}: {state}",
            "change": [("HSM", payload.get("hsm")), ("Public network access", state)],
            "context": [("Effect", "Reachable from the internet (within its network rules)"
                         if payload.get("enabled") else
                         "Reachable only through private endpoints and trusted services")]}


def describe_private_endpoint(payload: dict) -> dict:
    return {"title": f"{payload.get('status')} private endpoint connection {payload.get('name')}",
            "change": [("HSM", payload.get("hsm")), ("Connection", payload.get("name")),
                       ("New state", payload.get("status")),
                       ("Description", payload.get("description") or "—")]}


def describe_purge_protection(payload: dict) -> dict:
    return {"title": f"Turn on purge protection of HSM {payload.get('hsm')}",
            "change": [("HSM", payload.get("hsm")), ("Purge protection", "On, for good")],
            "context": [("Effect", "Deleted keys cannot be purged before their retention ends; "
                                   "Azure services may use the HSM's keys as customer-managed "
                                   "keys. It can never be turned off.")]}
