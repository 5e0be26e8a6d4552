"""How the key actions that need approval are shown to approvers: the change, and the key
as the inventory knows it now, side by side (registered from KeysAppConfig.ready)."""
from keys_app.models import KeyRecord

ACTIONS = {
    "key.delete": ("Delete a key", "Soft-delete the key: every application using it fails at "
                   "once; recoverable until its purge date."),
    "key.purge": ("Purge a deleted key", "Permanently destroy the deleted key and all its "
                  "versions; it can never be recovered."),
    "key.rotation_policy.clear": ("Clear a key's rotation policy", "Remove the rotation "
                                  "policy: the key stops rotating automatically."),
    "key.disable": ("Disable a key in use", "Disable the key's current version: the "
                    "resources that use it can no longer unwrap their data keys."),
}


def describer(operation: str):
    """describe(payload) for one key operation."""
    label, effect = ACTIONS[operation]

    def describe(payload: dict) -> dict:
        hsm, name = payload.get("hsm", ""), payload.get("name", "")
        record = (KeyRecord.objects.filter(hsm__name=hsm, name__iexact=name).first()
                  if hsm and name else None)
        change = [("Action", label), ("HSM", hsm), ("Key", name), ("Effect", effect)]
        if record is None:
            context = [("In the inventory", "Not found (purged, or not synced yet)")]
        else:
            context = [
                ("State", record.get_state_display()),
                ("Enabled", "Yes" if record.enabled else "No"),
                ("Type", f"{record.kty} {record.key_size or record.curve or ''}".strip()),
                ("Versions", record.version_count),
                ("Automatic rotation", "Yes" if record.has_rotation_policy else "No"),
                ("Tags", ", ".join(f"{k}={v}" for k, v in sorted(record.tags.items())) or "None"),
            ]
            if record.state == KeyRecord.State.DELETED:
                context.append(("Scheduled purge", f"{record.scheduled_purge_on:%Y-%m-%d %H:%M} UTC"
                                if record.scheduled_purge_on else "Unknown"))
        if record is not None:
            from keys_app.services import dependents_warning, key_dependents

            used = key_dependents(record.hsm, record.name)
            context.append(("Used by", dependents_warning(used) if used else
                            "No resource the portal knows of"))
        return {"title": f"{label}: {name} on {hsm}", "change": change, "context": context}

    return describe
