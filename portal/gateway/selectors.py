"""Reads of registered HSMs."""
from django.db import models
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


def hsm_resolve(hsm: HsmInstance | str) -> HsmInstance:
    """The HSM row itself, or the registered HSM of that name (an approved run names its HSM
    in the payload, JSON; the direct path passes the row); NotFound when it is gone."""
    if isinstance(hsm, HsmInstance):
        return hsm
    found = HsmInstance.objects.filter(name=hsm).first()
    if found is None:
        raise NotFound(f"HSM {hsm} is no longer registered.")
    return found


def hsm_usage(*, hsm: HsmInstance) -> dict:
    """What deregistering would remove (rows cascading from the HSM) and what it keeps.

    Read through the model's relations, since portal never imports the domain apps:
    {"removed": [(label, count), ...], "kept": [(label, count), ...]}, zero counts left out.
    """
    removed, kept = [], []
    for relation in HsmInstance._meta.related_objects:
        model = relation.related_model
        count = model._default_manager.filter(**{relation.field.name: hsm}).count()
        if not count:
            continue
        label = str(model._meta.verbose_name if count == 1 else model._meta.verbose_name_plural)
        (removed if relation.on_delete is models.CASCADE else kept).append((label, count))
    return {"removed": removed, "kept": kept}


# Facts other apps add to an HSM's Essentials (portal never imports them: they register).
_SUMMARY_SOURCES: list = []


def hsm_summary_register(source) -> None:
    """Add a source of Essentials facts for an HSM: source(hsm=...) -> list[portal.objects.Fact]."""
    if source not in _SUMMARY_SOURCES:
        _SUMMARY_SOURCES.append(source)


def hsm_summary(*, hsm: HsmInstance) -> list:
    """The registered apps' facts about one HSM (its keys, its inventory), in order."""
    return [fact for source in _SUMMARY_SOURCES for fact in source(hsm=hsm)]
