"""The hash chain: how a row's hash is computed, and how the whole chain is verified."""
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

GENESIS_HASH = "0" * 64
HASHED_FIELDS = ("seq", "time", "actor_id", "actor_name", "role", "request_id", "action",
                 "target", "outcome", "detail", "prev_hash")
# Hashed only when not empty: rows written before the field existed keep their hashes,
# and setting, changing or clearing it on any row still breaks that row's hash.
OPTIONAL_HASHED_FIELDS = ("client_request_id",)


def _canonical_time(value: datetime) -> str:
    # Microseconds are what both PostgreSQL and SQLite keep, so the text round-trips.
    return value.isoformat(timespec="microseconds")


def event_hash(fields: dict) -> str:
    """SHA-256 over the canonical JSON of a row's hashed fields (prev_hash included)."""
    payload = {name: fields[name] for name in HASHED_FIELDS}
    payload.update({name: fields[name] for name in OPTIONAL_HASHED_FIELDS if fields.get(name)})
    payload["time"] = _canonical_time(payload["time"])
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    """The result of a verification: ok, or the first bad seq and why."""

    checked: int
    first_bad_seq: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.first_bad_seq is None


def verify_rows(rows, head_seq: int, head_hash: str) -> ChainReport:
    """Walk rows (dicts, in seq order) and name the first seq that breaks the chain.

    Detects modified rows (hash mismatch), deleted rows (a gap), inserted rows (a seq past
    the head, or a prev_hash that does not link), and swapped rows (both).
    """
    expected_seq, prev_hash, checked = 1, GENESIS_HASH, 0
    for row in rows:
        seq = row["seq"]
        if seq != expected_seq:
            if seq > expected_seq:
                return ChainReport(checked, expected_seq, f"seq {expected_seq} is missing")
            return ChainReport(checked, seq, f"seq {seq} appears out of order")
        if row["prev_hash"] != prev_hash:
            return ChainReport(checked, seq, "prev_hash does not link to the previous row")
        if event_hash(row) != row["hash"]:
            return ChainReport(checked, seq, "the row's content does not match its hash")
        prev_hash, expected_seq, checked = row["hash"], expected_seq + 1, checked + 1
    last_seq = expected_seq - 1
    if last_seq < head_seq:
        return ChainReport(checked, last_seq + 1, f"rows after seq {last_seq} are missing")
    if last_seq > head_seq:
        return ChainReport(checked, head_seq + 1, f"seq {head_seq + 1} lies past the chain head")
    if head_seq and prev_hash != head_hash:
        return ChainReport(checked, head_seq, "the last row's hash differs from the chain head")
    return ChainReport(checked)
