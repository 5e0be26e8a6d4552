"""Rotation policies: parsing and validating them as Managed HSM does, before any HSM call.

A policy here is a plain dict: {"expires_after": "P2Y" | None, "lifetime_actions":
[{"action": "Rotate" | "Notify", "time_after_create": "P90D"} or {..., "time_before_expiry": ...}]}.
"""
import re
from datetime import timedelta

from portal.errors import BadInput

# ISO-8601 durations as Key Vault accepts them: years, months, days (no time part).
_DURATION = re.compile(r"^P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?$")
MIN_EXPIRY = timedelta(days=28)
MIN_TRIGGER = timedelta(days=7)
# The longest duration accepted anywhere in a policy (a year counts 365 days, a month 30).
MAX_DURATION = timedelta(days=36500)
MAX_DURATION_TEXT = "P100Y (36500 days)"


def duration_days(text: str, *, field: str) -> timedelta:
    """An ISO-8601 duration (P1Y, P6M, P90D, P2W) as an approximate timedelta, or BadInput.

    Durations are at most MAX_DURATION; longer ones are refused before any arithmetic.
    """
    match = _DURATION.match(text or "") if isinstance(text, str) else None
    if not match:
        shown = text[:40] if isinstance(text, str) else text
        raise BadInput(f"{field}: '{shown}' is not an ISO-8601 duration such as P90D, P6M or P1Y.",
                       fields={field: ["Use an ISO-8601 duration such as P90D, P6M or P1Y."]})
    too_long = BadInput(f"{field}: a duration is at most {MAX_DURATION_TEXT}.",
                        fields={field: [f"At most {MAX_DURATION_TEXT}."]})
    if any(len(group or "") > 6 for group in match.groups()):
        raise too_long
    years, months, weeks, days = (int(group or 0) for group in match.groups())
    total = years * 365 + months * 30 + weeks * 7 + days
    if total > MAX_DURATION.days:
        raise too_long
    return timedelta(days=total)


def policy_validate(policy: dict) -> dict:
    """A normalised copy of the policy, or BadInput naming the first rule it breaks."""
    if not isinstance(policy, dict):
        raise BadInput("A rotation policy must be an object.")
    expires_after = policy.get("expires_after") or None
    expiry = duration_days(expires_after, field="expires_after") if expires_after else None
    if expiry is not None and expiry < MIN_EXPIRY:
        raise BadInput("expires_after must be at least 28 days (P28D).",
                       fields={"expires_after": ["At least P28D."]})
    actions = policy.get("lifetime_actions") or []
    if not isinstance(actions, list) or not actions:
        raise BadInput("A rotation policy needs at least one lifetime action.",
                       fields={"lifetime_actions": ["Add a Rotate or Notify action."]})
    normalised, seen = [], set()
    for index, item in enumerate(actions):
        field = f"lifetime_actions[{index}]"
        if not isinstance(item, dict):
            raise BadInput(f"{field} must be an object.")
        action = str(item.get("action", "")).capitalize()
        if action not in ("Rotate", "Notify"):
            raise BadInput(f"{field}: action must be Rotate or Notify.", fields={field: ["Rotate or Notify."]})
        if action in seen:
            raise BadInput(f"{field}: only one {action} action is allowed.")
        seen.add(action)
        after, before = item.get("time_after_create"), item.get("time_before_expiry")
        if bool(after) == bool(before):
            raise BadInput(f"{field}: give exactly one of time_after_create and time_before_expiry.",
                           fields={field: ["Exactly one trigger."]})
        if after:
            delta = duration_days(after, field=f"{field}.time_after_create")
            if delta < MIN_TRIGGER:
                raise BadInput(f"{field}: time_after_create must be at least 7 days (P7D).")
            if expiry is not None and delta > expiry - MIN_TRIGGER:
                raise BadInput(f"{field}: time_after_create must be at least 7 days before expiry.")
            normalised.append({"action": action, "time_after_create": after})
        else:
            delta = duration_days(before, field=f"{field}.time_before_expiry")
            if delta < MIN_TRIGGER:
                raise BadInput(f"{field}: time_before_expiry must be at least 7 days (P7D).")
            if expiry is None:
                raise BadInput(f"{field}: time_before_expiry needs expires_after in the policy.",
                               fields={"expires_after": ["Required with time_before_expiry."]})
            if delta > expiry - MIN_TRIGGER:
                raise BadInput(f"{field}: time_before_expiry must leave at least 7 days after creation.")
            normalised.append({"action": action, "time_before_expiry": before})
    return {"expires_after": expires_after, "lifetime_actions": normalised}
