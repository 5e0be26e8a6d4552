"""Template tags other apps' pages use to show CMK facts (the pre-flight warning)."""
from django import template

from cmk_app.selectors import key_dependents as _key_dependents

register = template.Library()


@register.simple_tag
def key_dependents(hsm, key) -> list[dict]:
    """The resources that use this key now (for the danger zone's pre-flight warning)."""
    if hsm is None or key is None:
        return []
    return _key_dependents(hsm, key.name)


@register.inclusion_tag("cmk_app/_azure_rbac_panel.html")
def azure_rbac_panel(hsm) -> dict:
    """Azure RBAC on the HSM resource (management plane), for the Access tabs beside local
    RBAC: `{% load cmk_tags %}{% azure_rbac_panel hsm %}`. Read from Azure now; a failure is a
    sentence in the panel, never an error page."""
    from portal.errors import PortalError
    from portal.gateway import arm

    try:
        return {"azure_rbac": arm.hsm_azure_role_assignments(hsm)}
    except PortalError as exc:
        return {"azure_rbac_error": exc.message}
