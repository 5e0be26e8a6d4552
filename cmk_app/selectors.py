"""Reads for the CMK pages and API: bindings, a key's dependents, replica-region notes."""
from django.db.models import Count, QuerySet

from cmk_app.models import CmkBinding
from portal.errors import NotFound
from portal.gateway.models import HsmInstance

IN_USE = (CmkBinding.Status.ACTIVE, CmkBinding.Status.DETACHING)


def binding_list(*, hsm: HsmInstance | None = None, key_name: str = "",
                 include_detached: bool = False) -> QuerySet[CmkBinding]:
    """Bindings, newest first within a key; detached ones only when asked."""
    rows = CmkBinding.objects.select_related("hsm", "job")
    if hsm is not None:
        rows = rows.filter(hsm=hsm)
    if key_name:
        rows = rows.filter(key_name__iexact=key_name)
    if not include_detached:
        rows = rows.exclude(status=CmkBinding.Status.DETACHED)
    return rows.order_by("hsm__name", "key_name", "resource_name")


def binding_get(*, binding_id: int) -> CmkBinding:
    """One binding by id, or NotFound."""
    row = CmkBinding.objects.select_related("hsm", "job").filter(pk=binding_id).first()
    if row is None:
        raise NotFound(f"No customer-managed key binding #{binding_id}.")
    return row


def key_dependents(hsm: HsmInstance, name: str) -> list[dict]:
    """The resources that use this key now (as the last attach or scan saw them):
    [{"name", "kind", "kind_label", "id", "version", "versionless"}]. keys_app calls this
    before disabling, deleting or purging a key, or clearing its rotation policy."""
    rows = CmkBinding.objects.filter(hsm=hsm, key_name__iexact=name, status__in=IN_USE)
    return [{"name": row.resource_name, "kind": row.kind, "kind_label": row.get_kind_display(),
             "id": row.resource_id, "version": row.version_in_use,
             "versionless": row.versionless} for row in rows.order_by("resource_name")]


def usage_counts(*, hsm: HsmInstance) -> dict[str, int]:
    """{lower-case key name: number of resources using it} for one HSM (the key list)."""
    rows = (CmkBinding.objects.filter(hsm=hsm, status__in=IN_USE).values("key_name")
            .annotate(n=Count("id")))
    return {row["key_name"].lower(): row["n"] for row in rows}


def replica_notes(*, hsm: HsmInstance, locations: list[str], regions: list[dict]) -> dict:
    """For each consumer location where the HSM has only a replica: the sentence to show.

    A replica serves the HSM's own clients after a failover; Azure data services in that
    region cannot point their CMK at a replica: they need an HSM of their own there.
    """
    primary = next((r["name"] for r in regions if r.get("is_primary")), "")
    replicas = {r["name"].lower() for r in regions if not r.get("is_primary")}
    notes = {}
    for location in locations:
        loc = (location or "").replace(" ", "").lower()
        if loc in replicas:
            notes[location] = (
                f"HSM {hsm.name} has only a replica in {location} (its primary is in "
                f"{primary or 'another region'}). A replica is invisible to data services: "
                f"a resource in {location} that must keep working if {primary or 'the primary'} "
                f"is lost needs an HSM of its own in {location}.")
    return notes

