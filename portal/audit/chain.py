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


class ChainWalker:
    """Verifies rows fed in seq order, batch by batch (a million rows never sit in memory).

    Starts at `start_seq` whose row must link to `start_prev_hash` (seq 1 and the genesis
    hash, or the oldest kept row after a retention purge and the hash its signed anchor
    attests). `attested` maps seq -> hash from valid signed checkpoints: a row that differs
    from its checkpoint is a rewrite even when the rewriter re-chained every hash after it.
    """

    def __init__(self, *, start_seq: int = 1, start_prev_hash: str = GENESIS_HASH,
                 attested: dict[int, str] | None = None):
        self.expected_seq, self.prev_hash, self.checked = start_seq, start_prev_hash, 0
        self.attested = attested or {}
        self.failure: ChainReport | None = None

    def feed(self, rows) -> bool:
        """Check rows; False once the chain is broken (feeding more changes nothing)."""
        if self.failure:
            return False
        for row in rows:
            seq = row["seq"]
            if seq != self.expected_seq:
                if seq > self.expected_seq:
                    reason = f"seq {self.expected_seq} is missing"
                    self.failure = ChainReport(self.checked, self.expected_seq, reason)
                else:
                    self.failure = ChainReport(self.checked, seq, f"seq {seq} appears out of order")
                return False
            if row["prev_hash"] != self.prev_hash:
                self.failure = ChainReport(self.checked, seq,
                                           "prev_hash does not link to the previous row")
                return False
            if event_hash(row) != row["hash"]:
                self.failure = ChainReport(self.checked, seq,
                                           "the row's content does not match its hash")
                return False
            if seq in self.attested and self.attested[seq] != row["hash"]:
                self.failure = ChainReport(self.checked, seq,
                                           "the row differs from the signed checkpoint at its seq")
                return False
            self.prev_hash, self.expected_seq, self.checked = row["hash"], seq + 1, self.checked + 1
        return True

    def finish(self, head_seq: int, head_hash: str) -> ChainReport:
        """The verdict once every row was fed: the head and the checkpoints past the rows."""
        if self.failure:
            return self.failure
        last_seq = self.expected_seq - 1
        beyond = sorted(seq for seq in self.attested if seq > last_seq)
        if beyond:
            return ChainReport(self.checked, last_seq + 1,
                               f"a signed checkpoint attests seq {beyond[-1]}, but the last row "
                               f"is seq {last_seq}: the tail of the trail was removed")
        if last_seq < head_seq:
            return ChainReport(self.checked, last_seq + 1, f"rows after seq {last_seq} are missing")
        if last_seq > head_seq:
            return ChainReport(self.checked, head_seq + 1, f"seq {head_seq + 1} lies past the chain head")
        if head_seq and self.prev_hash != head_hash:
            return ChainReport(self.checked, head_seq, "the last row's hash differs from the chain head")
        return ChainReport(self.checked)


def verify_rows(rows, head_seq: int, head_hash: str) -> ChainReport:
    """Walk rows (dicts, in seq order) and name the first seq that breaks the chain.

    Detects modified rows (hash mismatch), deleted rows (a gap), inserted rows (a seq past
    the head, or a prev_hash that does not link), and swapped rows (both).
    """
    walker = ChainWalker()
    walker.feed(rows)
    return walker.finish(head_seq, head_hash)
