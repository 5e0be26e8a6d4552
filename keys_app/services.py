"""Key lifecycle: every action here is audited (intent, then outcome), goes to the HSM
first and then refreshes the inventory cache, and is shared by the page and the API.

Dangerous actions (delete, purge, disable, clearing a rotation policy) take the key's
name typed again as `confirm_name`, and are registered as approvable operations.
"""
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from keys_app.models import KeyNameClaim, KeyRecord, KeyVersionRecord
from keys_app.selectors import key_get
from keys_app.spec import (KeySpec, date_bounded, dates_validate, import_spec_build,
                           name_validate, ops_validate, standards_violations, tags_validate)
from keys_app import rotation
from portal import gateway
from portal.approvals.models import ApprovalRequest
from portal.approvals.services import approval_require
from portal.audit.models import AuditEvent
from portal.audit.services import AuditOutcomeUnrecorded, audit_record, audit_result
from portal.errors import AuditUnavailable, BadInput, Conflict, NotFound, PortalError
from portal.gateway import convert
from portal.gateway.models import HsmInstance
from portal.gateway.selectors import hsm_resolve
from portal.jobs.models import Job

logger = logging.getLogger(__name__)

DELETED_NAME_TAKEN = ("A deleted key named {name} exists on {hsm}: recover it or purge it "
                      "first (Deleted keys).")
NAME_TAKEN = "A key named {name} already exists on {hsm}; rotate it to make a new version."
# Longer than any web request may run (gunicorn's timeout): only a crashed process leaves
# a claim this old, and the name is free again after it.
CLAIM_LEASE = timezone.timedelta(minutes=10)


class InventoryNotUpdated(PortalError):
    """The HSM acted and the outcome is audited, but the inventory cache could not be
    written: a 503 that says the action is done (the next sync catches the cache up)."""

    status, code = 503, "inventory_not_updated"


def key_target(hsm: HsmInstance, name: str) -> str:
    """The audit target text of a key."""
    return f"hsm:{hsm.name}/key:{name}"


# What depends on a key, from other apps (cmk_app: the Azure resources that use it as their
# customer-managed key): fn(hsm, name) -> [{"name", "kind_label", "id", "version",
# "versionless"}]. Disabling, deleting, purging and clearing the rotation policy name them.
_DEPENDENTS: list[Callable] = []


def key_dependents_register(fn: Callable) -> None:
    """Register a function that lists what depends on a key (from AppConfig.ready)."""
    if fn not in _DEPENDENTS:
        _DEPENDENTS.append(fn)


def key_dependents(hsm: HsmInstance, name: str) -> list[dict]:
    """Everything registered apps know to depend on this key now."""
    return [item for fn in _DEPENDENTS for item in fn(hsm, name)]


def dependents_warning(dependents: list[dict]) -> str:
    """The pre-flight sentence naming the resources that use a key."""
    if not dependents:
        return ""
    names = ", ".join(f"{d.get('kind_label', 'resource')} {d['name']}" for d in dependents)
    return (f"In use by {len(dependents)} resource{'s' if len(dependents) != 1 else ''}: "
            f"{names}. They lose access to their data while the key is unusable.")


def _approval_gate(*, operation: str, hsm: HsmInstance, name: str, actor, request_id: str,
                   approval, justification: str, ticket: str,
                   payload: dict) -> ApprovalRequest | None:
    """Maker-checker for a dangerous key action: a pending request to return instead of
    acting, or None when `approval` is the approved request for exactly this action. The
    request's context names the resources that use the key (the pre-flight warning)."""
    context = {"hsm": hsm.name, "scope": f"/keys/{name}"}
    dependents = key_dependents(hsm, name) if approval is None else []
    if dependents:
        context["dependents"] = [{"name": d["name"], "kind": d.get("kind_label", ""),
                                  "id": d.get("id", ""), "version": d.get("version", "")}
                                 for d in dependents]
        context["warning"] = dependents_warning(dependents)
    return approval_require(operation=operation, actor=actor,
                            payload={"hsm": hsm.name, "name": name, **payload},
                            target=key_target(hsm, name), request_id=request_id,
                            approval=approval, justification=justification, ticket=ticket,
                            context=context)


def _correlation(approval) -> dict:
    """The approval's correlation id for the action's audit rows (the request's chain)."""
    return {"correlation_id": approval.correlation_id, "approval_id": approval.pk}


def confirm(name: str, confirm_name: str | None) -> None:
    """Dangerous actions need the key's name typed again, exactly."""
    if confirm_name != name:
        raise BadInput(f"Type the key name ({name}) to confirm.", code="confirmation_required",
                       fields={"confirm_name": [f"Type {name} to confirm."]})


def _all(intent: AuditEvent | list[AuditEvent]) -> list[AuditEvent]:
    return intent if isinstance(intent, list) else [intent]


def _hsm(intent: AuditEvent | list[AuditEvent], call: Callable, *,
         conflict_message: str | None = None, refused_message: str | None = None):
    """Run one HSM call; a failure is audited as each intent's outcome and re-raised.

    conflict_message and refused_message replace the HSM's wording of a 409 and a 400.
    """
    try:
        with gateway.translated_errors():
            return call()
    except PortalError as exc:
        if conflict_message and isinstance(exc, Conflict):
            exc = Conflict(conflict_message, code=exc.code)
        elif refused_message and isinstance(exc, BadInput):
            exc = BadInput(refused_message, code=exc.code)
        for each in _all(intent):
            audit_result(each, ok=False, detail={"error": exc.code, "message": exc.message[:300]})
        raise exc from exc.__cause__
    except BaseException as exc:
        # Not an answer from the HSM (a bug, an interrupted worker): no intent stays open,
        # and the outcome says that whether the HSM acted is not known. Then it goes on.
        try:
            for each in _all(intent):
                audit_result(each, ok=False, detail={
                    "error": "internal_error", "exception": exc.__class__.__name__,
                    "message": "The call ended without an answer from the HSM; whether the "
                               "HSM acted is not known."})
        except Exception:
            logger.exception("Could not close audit intent(s) %s",
                             [each.seq for each in _all(intent)])
        raise


def _intent(*, actor, action: str, hsm: HsmInstance, name: str, request_id: str,
            detail: dict | None = None) -> AuditEvent:
    # audit_record is its own transaction here: the intent commits before the HSM call.
    return audit_record(actor=actor, action=action, target=key_target(hsm, name),
                        request_id=request_id, detail=detail)


@contextmanager
def _name_claim(hsm: HsmInstance, name: str, request_id: str) -> Iterator[None]:
    """Hold the claim on a new key name for the duration of its create or import.

    The claim row commits before the HSM is asked (a second claim of the same name, from
    any process or web node, fails on the unique constraint: 409) and is deleted when the
    call is over, whatever happened. Serialising only this name's creators keeps other
    creates on the HSM running in parallel, and no transaction waits on the network.
    """
    lowered = name.lower()
    KeyNameClaim.objects.filter(hsm=hsm, name=lowered,
                                claimed_at__lt=timezone.now() - CLAIM_LEASE).delete()
    try:
        with transaction.atomic():
            claim = KeyNameClaim.objects.create(hsm=hsm, name=lowered,
                                                request_id=(request_id or "")[:64])
    except IntegrityError as exc:
        raise Conflict(f"A key named {name} is being created on {hsm.name} by another request "
                       f"right now; refresh the key list in a moment.",
                       code="name_being_created") from exc
    try:
        yield
    finally:
        KeyNameClaim.objects.filter(pk=claim.pk).delete()


def _refuse_existing_name(hsm: HsmInstance, name: str) -> None:
    """Creating or importing onto a live name would add a version: refuse it (asks the HSM,
    the source of truth, not the cache). A deleted key's name is refused by the HSM itself."""
    with gateway.translated_errors():
        exists = gateway.key_exists(hsm, name)
    if exists:
        raise Conflict(NAME_TAKEN.format(name=name, hsm=hsm.name), code="key_exists")


def _audit_text(value):
    return value.isoformat() if isinstance(value, datetime) else value


def _tags_text(tags: dict) -> str:
    return "\n".join(f"{key}={value}" for key, value in sorted(tags.items()))


def key_record_upsert(*, hsm: HsmInstance, snapshot: dict, versions: list[dict] | None = None,
                      rotation_policy: dict | None | bool = False, drift_note: str = "",
                      deleted: dict | None = None, record: KeyRecord | None = None) -> KeyRecord:
    """Write one key's snapshot into the cache (call inside a transaction).

    rotation_policy False leaves the cached policy as it is; versions None leaves versions.
    record is the key's cached row when the caller has just read it (saves a read).
    """
    fields = {name: snapshot.get(name) for name in (
        "version", "kty", "key_size", "curve", "key_ops", "enabled", "not_before", "expires",
        "created_on", "updated_on", "tags", "exportable", "has_release_policy",
        "recoverable_days", "recovery_level") if name in snapshot}
    fields["tags_text"] = _tags_text(snapshot.get("tags") or {})
    fields["curve"] = fields.get("curve") or ""
    fields["synced_at"] = timezone.now()
    fields["drift"] = bool(drift_note)
    fields["drift_note"] = drift_note
    if deleted is not None:
        fields.update(state=KeyRecord.State.DELETED, deleted_on=deleted.get("deleted_on"),
                      scheduled_purge_on=deleted.get("scheduled_purge_on"))
    else:
        fields.update(state=KeyRecord.State.ACTIVE, deleted_on=None, scheduled_purge_on=None)
    if rotation_policy is not False:
        fields.update(rotation_policy=rotation_policy,
                      has_rotation_policy=convert.policy_rotates(rotation_policy))
    # Key names are case-insensitive in the service; the HSM's spelling is kept.
    if record is None or record.name.lower() != snapshot["name"].lower():
        record = KeyRecord.objects.filter(hsm=hsm, name__iexact=snapshot["name"]).first()
    if record is None:
        record = KeyRecord.objects.create(hsm=hsm, name=snapshot["name"], **fields)
    else:
        fields["name"] = snapshot["name"]
        KeyRecord.objects.filter(pk=record.pk).update(**fields)
        for name, value in fields.items():
            setattr(record, name, value)
    if versions is not None:
        record.versions.exclude(version__in=[v["version"] for v in versions]).delete()
        version_rows_upsert(record, versions)
    return record


VERSION_FIELDS = ("enabled", "not_before", "expires", "created_on", "updated_on")


def version_rows_upsert(record: KeyRecord, versions: list[dict]) -> None:
    """Insert or update version rows (one statement) and recount the key's versions."""
    KeyVersionRecord.objects.bulk_create(
        [KeyVersionRecord(key=record, version=item["version"],
                          **{name: item.get(name) for name in VERSION_FIELDS})
         for item in versions],
        update_conflicts=True, unique_fields=["key", "version"], update_fields=VERSION_FIELDS)
    # Count and store in one statement (RETURNING: PostgreSQL, and SQLite since 3.35).
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {KeyRecord._meta.db_table} SET version_count = (SELECT COUNT(*) FROM "
            f"{KeyVersionRecord._meta.db_table} WHERE key_id = %s) WHERE id = %s "
            f"RETURNING version_count", [record.pk, record.pk])
        record.version_count = cursor.fetchone()[0]


def _versions(hsm: HsmInstance, name: str) -> list[dict]:
    return [convert.properties_snapshot(props)
            for props in gateway.keys(hsm).list_properties_of_key_versions(name)]


def _refresh(intent: AuditEvent | list[AuditEvent], hsm: HsmInstance, key, *, policy=False,
             detail=None, reload_versions: bool = False, outcome_target: str | None = None,
             actor=None, record: KeyRecord | None = None) -> KeyRecord:
    """After a successful write: update the cache from the returned key, audit success.

    The returned bundle is the version written (create, rotate, import, update), so only
    that version's row changes; restore and recover reload every version from the HSM (if
    that read fails, the write still happened: the outcome says so and the next sync reads
    the versions). outcome_target (with the actor) writes the success on another target
    than the intent's: a restore's key, known only once the HSM has answered.
    """
    snapshot = convert.key_snapshot(key)
    detail = {"version": snapshot["version"], **(detail or {})}
    versions = None
    if reload_versions:
        versions = _read_after(lambda: _versions(hsm, snapshot["name"]), detail, "versions")

    def cache():
        row = key_record_upsert(hsm=hsm, snapshot=snapshot, versions=versions,
                                rotation_policy=policy, record=record)
        if versions is None:
            version_rows_upsert(row, [snapshot])
        return row

    return _after_hsm(intent, cache=cache, detail=detail, outcome_target=outcome_target,
                      actor=actor)


def _read_after(call: Callable, detail: dict, what: str):
    """A read that completes the cache after the HSM acted; None (noted in the outcome's
    detail) if it fails, since the write itself succeeded."""
    try:
        with gateway.translated_errors():
            return call()
    except PortalError as exc:
        detail.setdefault("not_cached", []).append(f"{what}: {exc.code}")
        return None


def _after_hsm(intent: AuditEvent | list[AuditEvent], *, ok: bool = True,
               cache: Callable | None = None, detail: dict | None = None,
               outcome_target: str | None = None, actor=None):
    """Record what happened after the HSM acted: the cache write and the outcome row(s) in
    one transaction, returning what cache() returns.

    If that transaction fails, the outcome alone is tried again (the next sync repairs the
    cache), and the caller hears the truth: the HSM acted, and either the audit outcome
    (AuditOutcomeUnrecorded) or the inventory (InventoryNotUpdated) is behind. Never
    "nothing was done".
    """
    intents = _all(intent)

    def outcomes():
        for each in intents:
            done = f"The HSM carried out {each.action} on {outcome_target or each.target}"
            if not outcome_target:
                audit_result(each, ok=ok, detail=detail, done=done)
                continue
            try:
                audit_record(actor=actor, action=each.action, target=outcome_target,
                             request_id=each.request_id,
                             outcome=AuditEvent.Outcome.SUCCEEDED if ok else
                             AuditEvent.Outcome.FAILED,
                             detail={"intent_seq": each.seq, **(detail or {})})
            except AuditUnavailable as exc:
                raise AuditOutcomeUnrecorded(
                    f"{done}, but the audit trail could not record the outcome (intent "
                    f"#{each.seq}). Do not repeat it: check its current state and tell an "
                    f"administrator so the trail can be completed.",
                    intent_seq=each.seq, acted=ok) from exc

    try:
        with transaction.atomic():
            result = cache() if cache is not None else None
            outcomes()
        return result
    except Exception:  # the database or the audit trail failed after the HSM acted
        logger.exception("Recording the outcome of intent(s) %s failed",
                         [each.seq for each in intents])
    outcomes()  # raises AuditOutcomeUnrecorded if the trail is still unavailable
    done = ", ".join(f"{each.action} on {outcome_target or each.target}" for each in intents)
    raise InventoryNotUpdated(f"The HSM carried out {done}, and it is audited, but the key "
                              f"inventory could not be updated; refresh the inventory to see it.")


def key_create(*, hsm: HsmInstance, spec: KeySpec, actor, request_id: str) -> KeyRecord:
    """Create a key (and its rotation policy) in the HSM, then cache it. Audited.

    Refuses a name that already exists (creating would add a version: use rotate) and a
    name held by a deleted key (recover or purge first). Exactly once per name: concurrent
    creators of one name are serialised by a claim row in the database (_name_claim).
    """
    with _name_claim(hsm, spec.name, request_id):
        _refuse_existing_name(hsm, spec.name)
        return _key_create(hsm=hsm, spec=spec, actor=actor, request_id=request_id)


def _key_create(*, hsm: HsmInstance, spec: KeySpec, actor, request_id: str) -> KeyRecord:
    intent = _intent(actor=actor, action="key.create", hsm=hsm, name=spec.name,
                     request_id=request_id, detail={"kty": spec.kty, "key_size": spec.key_size,
                                                    "curve": spec.curve, "key_ops": list(spec.key_ops),
                                                    "tags": spec.tags})
    client = gateway.keys(hsm)
    options = {"hardware_protected": True, "enabled": spec.enabled, "tags": spec.tags or None,
               "not_before": spec.not_before, "expires_on": spec.expires,
               "key_operations": list(spec.key_ops) or None}
    if spec.exportable:
        options["exportable"] = True

    def create():
        if spec.kty == "RSA-HSM":
            return client.create_rsa_key(spec.name, size=spec.key_size,
                                         public_exponent=spec.public_exponent, **options)
        if spec.kty == "EC-HSM":
            return client.create_ec_key(spec.name, curve=spec.curve, **options)
        return client.create_oct_key(spec.name, size=spec.key_size, **options)

    key = _hsm(intent, create, conflict_message=DELETED_NAME_TAKEN.format(name=spec.name, hsm=hsm.name))
    policy = None
    if spec.rotation_policy:
        try:
            with gateway.translated_errors():
                policy = convert.rotation_policy_snapshot(client.update_key_rotation_policy(
                    spec.name, convert.rotation_policy_for_sdk(spec.rotation_policy)))
        except PortalError as exc:
            # The key exists: its creation succeeded, without the policy asked for.
            _refresh(intent, hsm, key, policy=None,
                     detail={"rotation_policy": f"refused by the HSM ({exc.code})"})
            raise BadInput(f"The key was created, but the HSM refused its rotation policy: "
                           f"{exc.message}") from exc
    return _refresh(intent, hsm, key, policy=policy)


def key_import(*, hsm: HsmInstance, name: str, jwk: dict, enabled: bool = True,
               not_before: datetime | None = None, expires: datetime | None = None,
               tags: dict | None = None, actor, request_id: str) -> KeyRecord:
    """Import (BYOK) a key from a JWK, which may carry a wrapped key blob (key_hsm). Audited;
    the key material goes to the HSM only, never to the audit trail, logs or database.

    The rules of create apply: the service's types, sizes, curves and operations (a
    key-exchange key is made in the HSM, never imported), the key standards, the default
    expiry, and no import onto an existing name (that would add a version).
    """
    name = name_validate(name)
    if not isinstance(jwk, dict) or not isinstance(jwk.get("kty"), str) or not jwk["kty"]:
        raise BadInput("The upload must be a JSON Web Key with a 'kty' member.",
                       fields={"key": ["Upload a JSON Web Key (JWK) file."]})
    try:  # decoded before the intent: a bad upload is a 400 with nothing audited
        sdk_key = convert.json_web_key(jwk)
    except ValueError as exc:
        raise BadInput(f"The key is not a usable JSON Web Key: {exc}",
                       fields={"key": [str(exc)]}) from exc
    key_size = len(sdk_key.n) * 8 if sdk_key.n else len(sdk_key.k) * 8 if sdk_key.k else None
    spec = import_spec_build(name=name, kty=jwk["kty"], key_size=key_size,
                             curve=sdk_key.crv or None, key_ops=jwk.get("key_ops"),
                             enabled=enabled, not_before=not_before, expires=expires, tags=tags)
    sdk_key.key_ops = list(spec.key_ops) or None
    with _name_claim(hsm, name, request_id):
        _refuse_existing_name(hsm, name)
        intent = _intent(actor=actor, action="key.import", hsm=hsm, name=name,
                         request_id=request_id, detail={
                             "kty": spec.kty, "key_size": spec.key_size, "curve": spec.curve,
                             "key_ops": list(spec.key_ops), "byok": "key_hsm" in jwk,
                             "tags": spec.tags, "expires": _audit_text(spec.expires)})
        key = _hsm(intent, lambda: gateway.keys(hsm).import_key(
            name, sdk_key, hardware_protected=True, enabled=spec.enabled,
            not_before=spec.not_before, expires_on=spec.expires, tags=spec.tags or None),
            conflict_message=DELETED_NAME_TAKEN.format(name=name, hsm=hsm.name))
        return _refresh(intent, hsm, key)


_UNSET = object()
_DATE_ATTRIBUTES = {"not_before": "not_before", "expires": "expires_on"}  # ours -> the SDK's


def _same_time(asked: datetime, current: datetime | None) -> bool:
    """Whether a date asked for is the key's current one. The HSM keeps whole seconds, and
    the page's date field shows minutes, so a minute-precise date matching the current
    date's minute is the current date sent back unchanged."""
    if current is None:
        return False
    asked = asked.replace(microsecond=0)
    if asked == current:
        return True
    return asked.second == 0 and asked == current.replace(second=0, microsecond=0)


def key_update(*, hsm: HsmInstance | str, name: str, actor, request_id: str, enabled=_UNSET,
               not_before=_UNSET, expires=_UNSET, key_ops=_UNSET, tags=_UNSET,
               confirm_name: str | None = None, approval=None, justification: str = "",
               ticket: str = "") -> KeyRecord | ApprovalRequest:
    """Update a key's attributes, tags or operations (latest version). Audited.

    Compared with the key as the HSM holds it now, only what differs is sent and audited:
    an attribute change is `key.update`, enabling and disabling are `key.enable` and
    `key.disable` (their own intents and outcomes, applied in the same HSM call), and a
    request that changes nothing is refused as such with nothing audited. The HSM cannot
    remove an activation or expiry date, so asking to (None) is refused. Disabling needs the
    typed confirmation. The change may not add a breach of the key standards. Disabling a
    key that resources use (key_dependents) needs approval (`key.disable`): without one it
    returns the pending ApprovalRequest, whose context names them.
    """
    hsm = hsm_resolve(hsm)
    record = key_get(hsm=hsm, name=name)
    name = record.name
    asked_dates = {field: date_bounded(value, field_name=field)
                   for field, value in (("not_before", not_before), ("expires", expires))
                   if value is not _UNSET}
    if key_ops is not _UNSET and key_ops is not None:
        key_ops = ops_validate(record.kty, key_ops)
        if not key_ops:
            raise BadInput("A key needs at least one operation.",
                           fields={"key_ops": ["Choose at least one operation."]})
    if tags is not _UNSET and tags is not None:
        tags = tags_validate(tags)
    with gateway.translated_errors():
        current = convert.key_snapshot(gateway.keys(hsm).get_key(name))

    changes, before = {}, {}  # our field names -> new and current values
    for field, value in asked_dates.items():
        if value is None:
            if current[field] is not None:
                label = "activation" if field == "not_before" else "expiry"
                raise BadInput(f"The HSM cannot remove a key's {label} date once set; give a "
                               f"different date instead.",
                               fields={field: [f"The {label} date cannot be removed."]})
        elif not _same_time(value, current[field]):
            changes[field], before[field] = value, current[field]
    if key_ops is not _UNSET and key_ops is not None and set(key_ops) != set(current["key_ops"]):
        if "import" in current["key_ops"] or "import" in key_ops:
            raise BadInput("A key-exchange key allows import only, and only a key created as "
                           "one is: its operations cannot change.",
                           fields={"key_ops": ["A key-exchange key's operations are fixed."]})
        changes["key_ops"], before["key_ops"] = list(key_ops), current["key_ops"]
    if tags is not _UNSET and tags is not None and tags != current["tags"]:
        changes["tags"], before["tags"] = tags, current["tags"]
    toggle = None
    if enabled is not _UNSET and enabled is not None and bool(enabled) != current["enabled"]:
        toggle = bool(enabled)
        if not toggle:
            confirm(name, confirm_name)
    if not changes and toggle is None:
        raise BadInput(f"Nothing changed: {name} already has these values.", code="no_change")
    if toggle is False and (approval is not None or key_dependents(hsm, name)):
        if changes:
            raise BadInput(f"{name} is in use: disable it on its own (it needs approval), "
                           "without other changes.", code="disable_alone")
        pending = _approval_gate(operation="key.disable", hsm=hsm, name=name, actor=actor,
                                 request_id=request_id, approval=approval,
                                 justification=justification, ticket=ticket,
                                 payload={"enabled": False, "confirm_name": name})
        if pending is not None:
            return pending

    if changes:
        new_nbf = changes.get("not_before", current["not_before"])
        new_exp = changes.get("expires", current["expires"])
        if "not_before" in changes or "expires" in changes:
            dates_validate(new_nbf, new_exp)
        spec = dict(name=name, kty=record.kty, key_size=record.key_size,
                    curve=record.curve or None)
        old = standards_violations(KeySpec(**spec, tags=current["tags"],
                                           not_before=current["not_before"],
                                           expires=current["expires"]))
        added = [v for v in standards_violations(KeySpec(
            **spec, tags=changes.get("tags", current["tags"]), not_before=new_nbf,
            expires=new_exp)) if v not in old]
        if added:
            raise BadInput("The change breaks the key standards: " + " ".join(added),
                           code="key_standards", fields={"standards": added})

    intents = []
    if changes:
        intents.append(_intent(actor=actor, action="key.update", hsm=hsm, name=name,
                               request_id=request_id, detail={
                                   "changes": {k: _audit_text(v) for k, v in changes.items()},
                                   "before": {k: _audit_text(v) for k, v in before.items()}}))
    if toggle is not None:
        intents.append(_intent(actor=actor, action="key.enable" if toggle else "key.disable",
                               hsm=hsm, name=name, request_id=request_id,
                               detail=_correlation(approval) if approval is not None else None))
    sdk_changes = {_DATE_ATTRIBUTES.get(k, "key_operations" if k == "key_ops" else k): v
                   for k, v in changes.items()}
    if toggle is not None:
        sdk_changes["enabled"] = toggle
    # One HSM call applies both; update_key_properties returns the updated version's bundle.
    key = _hsm(intents, lambda: gateway.keys(hsm).update_key_properties(name, **sdk_changes))
    # The trail records what the HSM reports, not what was asked: check it took everything.
    now = convert.key_snapshot(key)
    missed = [field for field, value in changes.items() if not (
        set(now[field]) == set(value) if field == "key_ops" else
        _same_time(value, now[field]) if field in _DATE_ATTRIBUTES else now[field] == value)]
    if toggle is not None and now["enabled"] != toggle:
        missed.append("enabled")
    if missed:
        _after_hsm(intents, ok=False, cache=lambda: key_record_upsert(hsm=hsm, snapshot=now),
                   detail={"error": "not_applied", "fields": missed})
        raise Conflict(f"The HSM did not apply the change of {', '.join(missed)} to {name}; "
                       f"the key shows what the HSM holds now.", code="not_applied")
    return _refresh(intents, hsm, key, record=record)


def key_version_enabled_set(*, hsm: HsmInstance, name: str, version: str, enabled: bool,
                            actor, request_id: str, confirm_name: str | None = None) -> KeyRecord:
    """Enable or disable one version of a key (key.enable / key.disable, the version in the
    intent's detail). Audited; disabling needs the typed confirmation; a version already in
    that state is refused with nothing audited. The current version's change updates the
    key's row, an older version's only its version row.
    """
    record = key_get(hsm=hsm, name=name)
    name = record.name
    row = record.versions.filter(version=version).first()
    if row is None:
        raise NotFound(f"{name} has no version {version[:64]} in the inventory (refresh the "
                       f"inventory if it was made outside the portal).")
    if not enabled:
        confirm(name, confirm_name)
        _version_in_use_guard(hsm, name, version)
    with gateway.translated_errors():
        current = gateway.keys(hsm).get_key(name, version).properties.enabled
    if bool(current) == enabled:
        raise BadInput(f"Nothing changed: version {version} of {name} is already "
                       f"{'enabled' if enabled else 'disabled'}.", code="no_change")
    intent = _intent(actor=actor, action="key.enable" if enabled else "key.disable", hsm=hsm,
                     name=name, request_id=request_id, detail={"version": version})
    key = _hsm(intent, lambda: gateway.keys(hsm).update_key_properties(
        name, version, enabled=enabled))
    snapshot = convert.key_snapshot(key)
    if snapshot["enabled"] != enabled:
        _after_hsm(intent, ok=False, detail={"error": "not_applied", "fields": ["enabled"]},
                   cache=lambda: version_rows_upsert(record, [snapshot]))
        raise Conflict(f"The HSM did not apply the change to version {version} of {name}.",
                       code="not_applied")
    if version == record.version:
        return _refresh(intent, hsm, key, record=record)

    def cache():
        version_rows_upsert(record, [snapshot])
        return record

    return _after_hsm(intent, cache=cache, detail={"version": version})


def _version_in_use_guard(hsm: HsmInstance, name: str, version: str) -> None:
    """After a rotation the old version stays enabled until every resource uses the new one:
    refuse (409) to disable a version a dependent still uses, naming it and what to do."""
    users = [d for d in key_dependents(hsm, name) if d.get("version") == version]
    if not users:
        return
    pinned = [d["name"] for d in users if not d.get("versionless")]
    following = [d["name"] for d in users if d.get("versionless")]
    parts = []
    if pinned:
        parts.append(f"{', '.join(pinned)} {'is' if len(pinned) == 1 else 'are'} pinned to it: "
                     "point them at the new version (or at the key without a version) first")
    if following:
        parts.append(f"{', '.join(following)} still {'uses' if len(following) == 1 else 'use'}"
                     " it: resources that follow the key move to the new version by themselves;"
                     " wait until the key's Usage tab shows the new version")
    raise Conflict(f"Version {version} of {name} is still in use: " + "; ".join(parts) + ".",
                   code="version_in_use")


def key_rotate(*, hsm: HsmInstance, name: str, actor, request_id: str) -> KeyRecord:
    """Rotate a key in the HSM (a new version), then refresh its inventory row. Audited."""
    record = key_get(hsm=hsm, name=name)
    name = record.name
    intent = _intent(actor=actor, action="key.rotate", hsm=hsm, name=name, request_id=request_id)
    key = _hsm(intent, lambda: gateway.keys(hsm).rotate_key(name))
    return _refresh(intent, hsm, key, record=record)


def key_rotation_policy_set(*, hsm: HsmInstance | str, name: str, policy: dict | None, actor,
                            request_id: str, confirm_name: str | None = None, approval=None,
                            justification: str = "", ticket: str = ""
                            ) -> KeyRecord | ApprovalRequest:
    """Set (or with policy None, clear) a key's rotation policy. Audited; clearing it, or
    a policy that stops a rotating key's automatic rotation, needs the typed confirmation
    (through either door). Clearing needs approval (`key.rotation_policy.clear`): without
    one it returns the pending ApprovalRequest instead of acting."""
    hsm = hsm_resolve(hsm)
    record = key_get(hsm=hsm, name=name)
    name = record.name
    if policy is not None:
        policy = rotation.policy_validate(policy)
    if policy is None or (record.has_rotation_policy and not convert.policy_rotates(policy)):
        confirm(name, confirm_name)
    detail = {"policy": policy}
    if policy is None:
        pending = _approval_gate(operation="key.rotation_policy.clear", hsm=hsm, name=name,
                                 actor=actor, request_id=request_id, approval=approval,
                                 justification=justification, ticket=ticket,
                                 payload={"policy": None, "confirm_name": name})
        if pending is not None:
            return pending
        detail.update(_correlation(approval))
    intent = _intent(actor=actor, action="key.rotation_policy.clear" if policy is None else
                     "key.rotation_policy.set", hsm=hsm, name=name, request_id=request_id,
                     detail=detail)
    stored = _hsm(intent, lambda: gateway.keys(hsm).update_key_rotation_policy(
        name, convert.rotation_policy_for_sdk(policy)))

    def cache():
        record.rotation_policy = convert.rotation_policy_snapshot(stored)
        record.has_rotation_policy = convert.policy_rotates(record.rotation_policy)
        record.save(update_fields=["rotation_policy", "has_rotation_policy"])
        return record

    return _after_hsm(intent, cache=cache)


def key_backup(*, hsm: HsmInstance, name: str, actor, request_id: str) -> bytes:
    """A single-key backup blob (encrypted by the HSM; restorable only into an HSM of the
    same security domain). Audited; the blob is handed to the caller, never stored."""
    name = key_get(hsm=hsm, name=name).name
    intent = _intent(actor=actor, action="key.backup", hsm=hsm, name=name, request_id=request_id)
    blob = _hsm(intent, lambda: gateway.keys(hsm).backup_key(name))
    _after_hsm(intent, detail={"bytes": len(blob)})
    return blob


def key_restore(*, hsm: HsmInstance, blob: bytes, actor, request_id: str) -> KeyRecord:
    """Restore a single-key backup blob into this HSM. Audited.

    The blob is opaque (encrypted by the HSM), so the key's name is known only from the
    HSM's answer: the intent targets the HSM, and the outcome row targets the restored key
    (linked to its intent by intent_seq), so the key's Activity and target filters find it.
    The cache takes the restored key's versions and rotation policy from the HSM.
    """
    if not blob or len(blob) > 1024 * 1024:
        raise BadInput("Upload a key backup file (at most 1 MiB).", fields={"backup": ["Required."]})
    intent = audit_record(actor=actor, action="key.restore", target=f"hsm:{hsm.name}",
                          request_id=request_id, detail={"bytes": len(blob)})
    key = _hsm(intent, lambda: gateway.keys(hsm).restore_key_backup(blob), conflict_message=(
        "A key with this backup's name already exists (or is deleted) on this HSM: delete and "
        "purge it first, or restore into another HSM."), refused_message=(
        "This file is not a key backup this HSM can restore: it is damaged, is not a key "
        "backup, or was taken from an HSM of another security domain."))
    detail = {}
    policy = _read_after(lambda: convert.rotation_policy_snapshot(
        gateway.keys(hsm).get_key_rotation_policy(key.name)), detail, "rotation policy")
    return _refresh(intent, hsm, key, policy=False if "not_cached" in detail else policy,
                    detail=detail, reload_versions=True,
                    outcome_target=key_target(hsm, key.name), actor=actor)


def key_delete(*, hsm: HsmInstance | str, name: str, actor, request_id: str,
               confirm_name: str | None, approval=None, justification: str = "",
               ticket: str = "") -> KeyRecord | ApprovalRequest:
    """Soft-delete a key (recoverable for the HSM's retention days). Audited; needs the
    typed confirmation and approval (`key.delete`): without one it returns the pending
    ApprovalRequest instead of acting."""
    hsm = hsm_resolve(hsm)
    record = key_get(hsm=hsm, name=name)
    name = record.name
    confirm(name, confirm_name)
    pending = _approval_gate(operation="key.delete", hsm=hsm, name=name, actor=actor,
                             request_id=request_id, approval=approval,
                             justification=justification, ticket=ticket,
                             payload={"confirm_name": name})
    if pending is not None:
        return pending
    intent = _intent(actor=actor, action="key.delete", hsm=hsm, name=name, request_id=request_id,
                     detail=_correlation(approval))
    deleted = _hsm(intent, lambda: gateway.keys(hsm).begin_delete_key(name).result())
    snapshot = convert.deleted_snapshot(deleted)
    return _after_hsm(intent, cache=lambda: key_record_upsert(
        hsm=hsm, snapshot={**snapshot, "name": name}, deleted=snapshot),
        detail={"scheduled_purge_on": str(snapshot.get("scheduled_purge_on") or "")})


def key_recover(*, hsm: HsmInstance, name: str, actor, request_id: str) -> KeyRecord:
    """Recover a soft-deleted key. Audited."""
    name = name_validate(name)
    intent = _intent(actor=actor, action="key.recover", hsm=hsm, name=name, request_id=request_id)
    key = _hsm(intent, lambda: gateway.keys(hsm).begin_recover_deleted_key(name).result())
    detail = {}
    policy = _read_after(lambda: convert.rotation_policy_snapshot(
        gateway.keys(hsm).get_key_rotation_policy(name)), detail, "rotation policy")
    return _refresh(intent, hsm, key, policy=False if "not_cached" in detail else policy,
                    detail=detail, reload_versions=True)


def key_purge(*, hsm: HsmInstance | str, name: str, actor, request_id: str,
              confirm_name: str | None, approval=None, justification: str = "",
              ticket: str = "") -> ApprovalRequest | None:
    """Permanently delete a soft-deleted key. Audited; needs the typed confirmation and
    approval (`key.purge`): without one it returns the pending ApprovalRequest instead of
    acting. Refused by the HSM for a live key or under purge protection."""
    hsm = hsm_resolve(hsm)
    name = name_validate(name)
    record = KeyRecord.objects.filter(hsm=hsm, name__iexact=name).first()
    name = record.name if record is not None else name
    confirm(name, confirm_name)
    if record is not None and record.state == KeyRecord.State.ACTIVE:
        raise Conflict(f"{name} is not deleted: delete it first, then purge it.")
    pending = _approval_gate(operation="key.purge", hsm=hsm, name=name, actor=actor,
                             request_id=request_id, approval=approval,
                             justification=justification, ticket=ticket,
                             payload={"confirm_name": name})
    if pending is not None:
        return pending
    intent = _intent(actor=actor, action="key.purge", hsm=hsm, name=name, request_id=request_id,
                     detail=_correlation(approval))
    _hsm(intent, lambda: gateway.keys(hsm).purge_deleted_key(name))
    _after_hsm(intent, cache=lambda: KeyRecord.objects.filter(hsm=hsm, name__iexact=name).delete())


def key_public(*, hsm: HsmInstance, name: str, fmt: str,
               version: str | None = None) -> tuple[bytes, str]:
    """The key's public part, fetched from the HSM: JWK JSON or PEM (read-only); the
    current version's, or that of the version given.

    A symmetric (oct) key has none, in either format: that is a 400, not an empty answer.
    """
    import json

    if fmt not in ("jwk", "pem"):
        raise BadInput("The public key format must be jwk or pem.",
                       fields={"fmt": ["Choose jwk or pem."]})
    record = key_get(hsm=hsm, name=name)
    no_public_part = BadInput(f"{record.name} is a symmetric (oct-HSM) key: it has no public "
                              f"part to download.", code="no_public_key")
    if record.kty.startswith("oct"):
        raise no_public_part
    with gateway.translated_errors():
        key = gateway.keys(hsm).get_key(record.name, version or None)
    pem = convert.public_pem(key)
    if pem is None:  # the cache was behind: the HSM's key is symmetric
        raise no_public_part
    if fmt == "jwk":
        return json.dumps(convert.public_jwk(key), indent=2).encode(), "application/jwk+json"
    return pem, "application/x-pem-file"


# ---------------------------------------------------------------- inventory sync

SYNC_LEASE = timezone.timedelta(minutes=15)
SYNC_FETCHERS = 8   # concurrent HSM reads while syncing (each key needs three)
SYNC_BATCH = 100    # keys written per transaction and per progress report


def inventory_sync_start(*, hsm: HsmInstance, actor, request_id: str = "",
                         full: bool = False) -> Job:
    """Queue an inventory sync of one HSM (a Job). Audited."""
    from keys_app.tasks import inventory_sync_run as inventory_sync_run_task
    from portal.jobs.services import job_create, job_enqueue_on_commit, job_target

    with transaction.atomic():
        job = job_create(kind="keys.inventory_sync", actor=actor, hsm=hsm, params={"full": full})
        audit_record(actor=actor, action="inventory.sync.request", target=job_target(job),
                     request_id=request_id, outcome=AuditEvent.Outcome.RECORDED,
                     detail={"hsm": hsm.name, "full": full})
        job_enqueue_on_commit(job=job, task=inventory_sync_run_task)
    return job


def _lease(hsm: HsmInstance, job_id: int) -> bool:
    """Take the HSM's sync lease (a conditional UPDATE); False if another sync holds it."""
    from keys_app.models import InventoryState
    from django.db.models import Q

    InventoryState.objects.get_or_create(hsm=hsm)
    now = timezone.now()
    return bool(InventoryState.objects.filter(hsm=hsm).filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now) | Q(lease_job_id=job_id)
    ).update(lease_job_id=job_id, lease_until=now + SYNC_LEASE))


def _cache_is_current(record: KeyRecord | None, props, since) -> bool:
    """Whether the cached row already matches a listed key (so the sync can skip it)."""
    if record is None or record.state != KeyRecord.State.ACTIVE:
        return False
    same = (record.updated_on == props.updated_on and record.tags == (props.tags or {})
            and record.enabled == bool(props.enabled) and record.expires == props.expires_on)
    # Times have one-second resolution: a key updated in the second the previous sync
    # started may hide a change, so it is read again.
    recent = since is None or props.updated_on is None or props.updated_on >= since
    return same and not recent


def _drift_note(record: KeyRecord | None, snapshot: dict, policy: dict | None, *,
                first_sync: bool) -> str:
    """Why the HSM's key differs from the cache ('' when it does not, or on a first sync)."""
    if record is None:
        return "" if first_sync else "created outside the portal"
    if record.state == KeyRecord.State.DELETED:
        return "recovered outside the portal"
    compared = ("version", "updated_on", "tags", "enabled", "expires", "not_before")
    if any(getattr(record, name) != snapshot.get(name) for name in compared) or \
            sorted(record.key_ops or []) != snapshot["key_ops"]:
        return "changed outside the portal"
    if record.rotation_policy != policy:
        return "rotation policy changed outside the portal"
    return ""


def inventory_sync_run(*, job_id: int) -> None:
    """Sync one HSM's keys into the cache; incremental unless the job asks for full.

    Safe to run twice at once: a lease per HSM lets one run and the other finish at once.
    Marks drift: keys created, changed or purged outside the portal since the last sync.
    """
    from keys_app.models import InventoryState
    from portal.jobs.models import Job
    from portal.jobs.services import job_finish, job_progress

    job = Job.objects.select_related("hsm").get(pk=job_id)
    hsm, full = job.hsm, bool(job.params.get("full"))
    if not _lease(hsm, job_id):
        job_finish(job_id=job_id, ok=True, result={"skipped": "another sync of this HSM is running"})
        return
    state = InventoryState.objects.get(hsm=hsm)
    first_sync = state.last_synced_at is None
    since = state.last_synced_at - timezone.timedelta(seconds=1) if state.last_synced_at else None
    started = timezone.now()
    counts = {"seen": 0, "fetched": 0, "deleted": 0, "removed": 0, "drift": 0}
    try:
        with gateway.translated_errors():
            client = gateway.keys(hsm)
            job_progress(job_id=job_id, percent=2, step="Listing keys")
            items = list(client.list_properties_of_keys())
            cached = {r.name: r for r in KeyRecord.objects.filter(hsm=hsm)}
            counts["seen"] = len(items)
            stale = [props for props in items
                     if full or not _cache_is_current(cached.get(props.name), props, since)]

            def fetch(props):
                # Runs in a pool thread: HSM calls only, no database.
                try:
                    with gateway.translated_errors():
                        key = client.get_key(props.name)
                        versions = [convert.properties_snapshot(v) for v in
                                    client.list_properties_of_key_versions(props.name)]
                        policy = convert.rotation_policy_snapshot(
                            client.get_key_rotation_policy(props.name))
                except NotFound:
                    return None  # deleted since the listing; the next sync sees it
                return convert.key_snapshot(key), versions, policy

            with ThreadPoolExecutor(SYNC_FETCHERS) as pool:
                for first in range(0, len(stale), SYNC_BATCH):
                    batch = stale[first:first + SYNC_BATCH]
                    with transaction.atomic():
                        for fetched in pool.map(fetch, batch):
                            if fetched is None:
                                continue
                            snapshot, versions, policy = fetched
                            record = cached.get(snapshot["name"])
                            note = _drift_note(record, snapshot, policy, first_sync=first_sync)
                            counts["fetched"] += 1
                            counts["drift"] += bool(note)
                            key_record_upsert(hsm=hsm, snapshot=snapshot, versions=versions,
                                              rotation_policy=policy, drift_note=note or (
                                                  record.drift_note if record else ""))
                    done = first + len(batch)
                    job_progress(job_id=job_id, percent=5 + int(80 * done / len(stale)),
                                 step=f"Read {done} of {len(stale)} changed keys "
                                      f"({len(items)} in the HSM)")
            job_progress(job_id=job_id, percent=88, step="Listing deleted keys")
            deleted_names = set()
            for deleted in client.list_deleted_keys():
                deleted_names.add(deleted.name)
                record = cached.get(deleted.name)
                if record is not None and record.state == KeyRecord.State.DELETED and not full:
                    continue
                snapshot = convert.deleted_snapshot(deleted)
                with transaction.atomic():
                    key_record_upsert(hsm=hsm, snapshot={**snapshot, "name": deleted.name},
                                      deleted=snapshot,
                                      drift_note="deleted outside the portal" if record else "")
                counts["deleted"] += 1
        live = {props.name for props in items}
        gone = [name for name in cached if name not in live and name not in deleted_names]
        # Only rows this sync saw before it started: a key the portal created meanwhile stays.
        counts["removed"] = KeyRecord.objects.filter(hsm=hsm, name__in=gone,
                                                     synced_at__lt=started).delete()[0]
    except Exception as exc:  # any failure ends the job visibly and frees the lease
        InventoryState.objects.filter(hsm=hsm, lease_job_id=job_id).update(lease_until=None)
        job_finish(job_id=job_id, ok=False, error=exc.message if isinstance(exc, PortalError)
                   else f"Sync failed ({exc.__class__.__name__}).")
        if not isinstance(exc, PortalError):
            raise
        return
    # The start time, not the end: the next sync re-reads whatever changed after it.
    InventoryState.objects.filter(hsm=hsm).update(
        last_synced_at=started, lease_until=None,
        **({"last_full_sync_at": started} if full else {}))
    audit_record(actor=None, action="inventory.sync", target=f"hsm:{hsm.name}",
                 outcome=AuditEvent.Outcome.SUCCEEDED, detail={"job": job_id, **counts})
    job_finish(job_id=job_id, ok=True, result=counts)


def inventory_sync_all() -> list[int]:
    """Queue an incremental sync of every HSM (Celery beat). Returns the job ids."""
    return [inventory_sync_start(hsm=hsm, actor=None).pk for hsm in HsmInstance.objects.all()]
