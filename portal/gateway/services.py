"""Registering HSMs with the portal. Audited."""
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from portal.audit.models import AuditEvent
from portal.audit.services import audit_record
from portal.errors import BadInput, Conflict
from portal.gateway.models import HsmInstance


def hsm_register(*, actor, name: str, uri: str, arm_resource_id: str = "", region: str = "",
                 role: str = HsmInstance.Role.PRIMARY, request_id: str = "") -> HsmInstance:
    """Add an HSM to the portal (no call to it). The audit row commits with the row or neither."""
    hsm = HsmInstance(name=name, uri=uri.rstrip("/"), arm_resource_id=arm_resource_id,
                      region=region, role=role)
    try:
        hsm.full_clean()
    except ValidationError as exc:
        raise BadInput("The HSM's details are not valid.", fields=exc.message_dict) from exc
    if not hsm.uri.startswith("https://"):
        raise BadInput("An HSM URL must use https://.", fields={"uri": ["Use https://."]})
    try:
        with transaction.atomic():
            audit_record(actor=actor, action="hsm.register", target=f"hsm:{name}",
                         request_id=request_id, outcome=AuditEvent.Outcome.RECORDED,
                         detail={"uri": hsm.uri, "region": region, "role": role})
            hsm.save()
    except IntegrityError as exc:
        raise Conflict(f"An HSM named {name} or with that URL is already registered.") from exc
    return hsm


def hsm_upsert_system(*, name: str, uri: str, role: str, region: str = "") -> HsmInstance:
    """Register or re-point an HSM from configuration (make run, the emulator). Audited as system."""
    with transaction.atomic():
        hsm, created = HsmInstance.objects.update_or_create(
            name=name, defaults={"uri": uri.rstrip("/"), "role": role, "region": region})
        audit_record(actor=None, action="hsm.register" if created else "hsm.update",
                     target=f"hsm:{name}", outcome=AuditEvent.Outcome.RECORDED,
                     detail={"uri": hsm.uri, "role": role, "source": "configuration"})
    return hsm
