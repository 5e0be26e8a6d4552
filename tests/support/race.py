"""Race calls against each other: one thread each, released together, own database connection."""

from __future__ import annotations

import threading
from typing import Any, Callable, Sequence

from django.db import connection


def at_once(calls: Sequence[Callable[[], Any]], *, timeout: float = 120) -> list:
    """Run every call in its own thread, all released at once by a barrier, and wait for them
    (at most ``timeout`` s each): what each returned, or the exception it raised, in the
    order of ``calls``. Each thread closes its database connection when done.

    Whatever a call needs before the race (a signed-in client, a row) is made by the caller
    beforehand, so that only the call itself races."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = call()
        except Exception as exc:  # noqa: BLE001 - handed to the test, which asserts on it
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return results
