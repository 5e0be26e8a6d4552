"""The left navigation a role should see, read from the registry (portal.context_processors
SECTIONS, filled by every app's nav_register) and the role table (ROLE_PERMISSIONS), so the
shell tests follow new groups without a hand-kept list. Tests pair it with fixed facts
(who must and must not see what), so a wrong role table still fails them."""
from django.urls import NoReverseMatch, reverse


def expected_nav(role: str | None) -> dict[str, list[str]]:
    """{group title: [entry labels]} in navigation order, for a user holding `role`."""
    from portal.context_processors import SECTIONS
    from portal.permissions import ROLE_PERMISSIONS, SIGNED_IN

    held = ROLE_PERMISSIONS.get(role, set()) if role else set()
    nav: dict[str, list[str]] = {}
    for section in SECTIONS:
        entries = []
        for entry in section.entries:
            if entry.permission != SIGNED_IN and entry.permission not in held:
                continue
            try:
                reverse(entry.url_name)
            except NoReverseMatch:  # registered, but its pages are not routed
                continue
            entries.append(entry.label)
        if entries:
            nav[section.title] = entries
    return nav


def expected_nav_labels(role: str | None) -> list[str]:
    """The same, as the flat list of labels the page shows."""
    return [label for labels in expected_nav(role).values() for label in labels]
