"""Wait for a condition by polling it with a deadline, never by sleeping a fixed time."""

from __future__ import annotations

import time


def wait_for(condition, *, timeout: float = 60.0, interval: float = 0.2, what: str = ""):
    """Poll `condition` until it returns something truthy (returned), or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
