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
