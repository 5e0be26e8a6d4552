"""Reads of registered HSMs."""
from django.db.models import QuerySet

from portal.errors import NotFound
from portal.gateway.models import HsmInstance


def hsm_list() -> QuerySet[HsmInstance]:
    """Every registered HSM, by name."""
    return HsmInstance.objects.order_by("name")


def hsm_get_for_user(*, user, hsm_id: str) -> HsmInstance:
    """One HSM by short name, or NotFound (every portal role may see every HSM)."""
    hsm = HsmInstance.objects.filter(name=hsm_id).first()
    if hsm is None:
        raise NotFound(f"No HSM named {hsm_id} is registered.")
    return hsm
