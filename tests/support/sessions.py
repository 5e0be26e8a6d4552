"""A test client as a browser session signed in at a chosen time (step-up and session ages)."""

from __future__ import annotations

import time

from portal.accounts.middleware import SIGNED_IN_AT


def signed_in(client, user=None, seconds_ago: int = 0):
    """The client's session signed in `seconds_ago` (0: just now, so step-up is satisfied);
    with `user`, signed in as that user first (force_login). The client, for chaining."""
    if user is not None:
        client.force_login(user)
    session = client.session
    session[SIGNED_IN_AT] = int(time.time()) - seconds_ago
    session.save()
    return client
