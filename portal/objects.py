"""Object pages (an HSM, a key): their tabs and their Essentials facts, as data.

A tab is (slug, label, URL name, permission or None): one line in a page's tab list adds a
tab, and a tab the user may not use is not shown. A fact is one line of the Essentials
panel; templates/_essentials.html renders it by its kind.
"""
from dataclasses import dataclass
from typing import Any

from django.urls import reverse


@dataclass(frozen=True)
class Tab:
    slug: str
    label: str
    url_name: str
    permission: str | None = None


def object_tabs(*, user, tabs: list[Tab], current: str, **url_kwargs) -> list[dict]:
    """The tabs the user may use, each with its URL and whether it is the current one."""
    return [{"slug": tab.slug, "label": tab.label, "current": tab.slug == current,
             "url": reverse(tab.url_name, kwargs=url_kwargs)}
            for tab in tabs if tab.permission is None or user.has_perm(tab.permission)]


@dataclass(frozen=True)
class Fact:
    """One line of Essentials. kind: text, code (monospace with copy), time (UTC with the
    local time on hover), tags, or status (tone: ok, warn, bad, muted)."""

    label: str
    value: Any
    kind: str = "text"
    url: str = ""
    id: str = ""
    tone: str = ""
    note: str = ""
