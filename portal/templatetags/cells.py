"""Table cells every list renders many times a page: ids and timestamps, built in Python.

Built in Python rather than included per cell (an include per cell cost a 50-row key list
about 60 ms). Registered as template builtins in settings: pages use them without {% load %}.
"""
import datetime as dt

from django import template
from django.template.defaultfilters import date as date_filter
from django.utils.html import format_html
from django.utils.safestring import mark_safe

register = template.Library()

_COPY_ICON = mark_safe(
    '<svg viewBox="0 0 16 16" width="14" height="14" aria-hidden="true" focusable="false">'
    '<rect x="5" y="5" width="9" height="9" rx="1.5" fill="none" stroke="currentColor" '
    'stroke-width="1.4"/><path d="M3 11V3a1 1 0 0 1 1-1h7" fill="none" '
    'stroke="currentColor" stroke-width="1.4"/></svg>')


@register.simple_tag
def id_cell(value="", url="", what="value"):
    """A name or id: one line, monospace, truncated with the full value on hover, and a
    copy button (table.js)."""
    shown = format_html('<a href="{}">{}</a>', url, value) if url else format_html("{}", value)
    return format_html(
        '<span class="dt-id"><span class="mono trunc" title="{}">{}</span>'
        '<button type="button" class="dt-copy" data-copy="{}" aria-label="Copy {} {}" '
        'title="Copy">{}</button></span>', value, shown, value, what or "value", value, _COPY_ICON)


# Django date formats the cells use, as strftime patterns: Django's date filter costs
# about 30 µs a call, and a 50-row list makes hundreds of them.
_STRFTIME = {"Y": "%Y", "m": "%m", "d": "%d", "H": "%H", "i": "%M", "s": "%S", "M": "%b",
             "-": "-", ":": ":", " ": " "}


def _utc_text(value, fmt: str) -> str:
    if isinstance(value, dt.datetime) and all(char in _STRFTIME for char in fmt):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return value.strftime("".join(_STRFTIME[char] for char in fmt))
    return date_filter(value, fmt)


@register.simple_tag
def time_cell(value=None, format="Y-m-d H:i"):  # noqa: A002 - the include's parameter name
    """A timestamp in UTC (forms.js puts the local time in the title), or a muted dash."""
    if not value:
        return mark_safe('<span class="muted">—</span>')
    iso = value.astimezone(dt.UTC).isoformat() if isinstance(value, dt.datetime) and \
        value.tzinfo is not None else date_filter(value, "c")
    return format_html('<time datetime="{}" class="dt-time" title="{} UTC">{}</time>',
                       iso, _utc_text(value, "Y-m-d H:i:s"), _utc_text(value, format or "Y-m-d H:i"))
