"""The sign-state register protocol, without any I/O.

Per signing key a replica keeps a :class:`Record`: the highest epoch it has
promised, and the high-water mark ``hwm`` — the last (height, round, step)
accepted — with the digest of the bytes signed there.

- :func:`promise` (phase 1 of a promotion): a replica promises epoch E only
  if E is greater than anything it promised before, and answers with its
  record so the promoter learns the highest mark of a majority.
- :func:`advance` (before every signature, and the promoter's read repair):
  a replica accepts iff E is not older than its promise and the mark moves
  forward, or stays with the same digest (a retry).

:class:`Promotion` and :class:`Advance` are the coordinator's side: they
count replies and decide, so the same code runs in the daemon and in the
deterministic simulation that checks the protocol. Why it is safe: an
advance that completed lives on a majority; a promotion reads a majority
and writes the highest mark back to a majority before signing; two
majorities of three always share a replica.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

# Replica and coordinator verdicts.
OK = "OK"
REFUSED = "REFUSED"  # promise: the epoch is not greater than one promised before
STALE_EPOCH = "STALE_EPOCH"  # advance: a newer epoch was promised; the signer is superseded
REGRESSION = "REGRESSION"  # advance: the mark is behind the replica's
CONFLICT = "CONFLICT"  # advance: same mark, different digest: a double sign was attempted
NO_QUORUM = "NO_QUORUM"  # coordinator: a majority did not answer in time

STEPS = {1: "propose", 2: "prevote", 3: "precommit"}


class HRS(NamedTuple):
    """A position in consensus; tuples order it lexicographically."""

    height: int
    round: int
    step: int

    def __str__(self) -> str:
        return f"{self.height}/{self.round}/{self.step}"


ZERO = HRS(0, 0, 0)


class KeyId(NamedTuple):
    """One signing key: the chain it signs for and its name on that chain."""

    chain_id: str
    key_id: str

    def __str__(self) -> str:
        return f"{self.chain_id}/{self.key_id}"


class Record(NamedTuple):
    """What a replica holds for one key."""

    promised_epoch: int
    hwm: HRS
    digest: str  # hex of the sign bytes at hwm; "" before the first signature


EMPTY = Record(0, ZERO, "")


class Reply(NamedTuple):
    """A replica's answer: its verdict and its record after handling."""

    status: str
    record: Record


def check_mark(hrs: HRS, digest: str) -> str | None:
    """Why ``hrs``/``digest`` cannot be signed, or None when they can."""
    if min(hrs) < 0 or hrs.height < 1:
        return f"height must be at least 1 and round non-negative, got {hrs}"
    if hrs.step not in STEPS:
        return f"step must be 1 (propose), 2 (prevote) or 3 (precommit), got {hrs.step}"
    if not digest or len(digest) > 128 or any(c not in "0123456789abcdef" for c in digest):
        return "digest must be 1 to 128 lower-case hex digits"
    return None


def promise(record: Record, epoch: int) -> tuple[Record, Reply]:
    """Phase 1: promise ``epoch`` if it is newer than any promised before."""
    if epoch <= record.promised_epoch:
        return record, Reply(REFUSED, record)
    promised = record._replace(promised_epoch=epoch)
    return promised, Reply(OK, promised)


def advance(record: Record, epoch: int, hrs: HRS, digest: str) -> tuple[Record, Reply]:
    """Accept ``hrs``/``digest`` at ``epoch`` or say why not.

    An advance at a newer epoch than the one promised also raises the
    promise: the replica missed that promotion, and from now on it must
    refuse the older epochs as the others do.
    """
    if epoch < record.promised_epoch:
        return record, Reply(STALE_EPOCH, record)
    if hrs < record.hwm:
        return record, Reply(REGRESSION, record)
    if hrs == record.hwm and digest != record.digest:
        return record, Reply(CONFLICT, record)
    accepted = Record(max(record.promised_epoch, epoch), hrs, digest)
    return accepted, Reply(OK, accepted)


def majority(replicas: int) -> int:
    return replicas // 2 + 1


# Which verdict to report when several failures make a majority impossible:
# the most alarming first.
SEVERITY = (CONFLICT, STALE_EPOCH, REGRESSION, REFUSED, NO_QUORUM)


class _Tally:
    """Counts replies from distinct replicas; duplicates count once."""

    def __init__(self, replicas: Iterable[str]) -> None:
        self.replicas = frozenset(replicas)
        self.needed = majority(len(self.replicas))
        self.replies: dict[str, Reply] = {}
        self.outcome: str | None = None

    def _record(self, replica: str, reply: Reply) -> bool:
        """Store a reply; False when it is a duplicate, unknown, or too late."""
        if self.outcome is not None or replica not in self.replicas or replica in self.replies:
            return False
        self.replies[replica] = reply
        return True

    def ok(self) -> list[Reply]:
        return [r for r in self.replies.values() if r.status == OK]

    def _failed(self) -> str | None:
        """The verdict when a majority of OKs can no longer be reached."""
        pending = len(self.replicas) - len(self.replies)
        if len(self.ok()) + pending >= self.needed:
            return None
        seen = {r.status for r in self.replies.values()}
        return next(s for s in SEVERITY if s in seen)

    def give_up(self) -> str:
        """Time is up: decide with the replies there are."""
        if self.outcome is None:
            self.outcome = self._failed() or NO_QUORUM
        return self.outcome

    def missing(self) -> list[str]:
        return sorted(self.replicas - set(self.replies))


class Promotion(_Tally):
    """Phase 1 of making a node active at ``epoch``.

    Done when a majority promised (``outcome == OK``; then :attr:`best` is
    the highest mark among them, to be written back with an
    :class:`Advance` before anything is signed), or when a majority refused.
    """

    def __init__(self, key: KeyId, epoch: int, replicas: Iterable[str]) -> None:
        super().__init__(replicas)
        self.key = key
        self.epoch = epoch

    def on_reply(self, replica: str, reply: Reply) -> str | None:
        if self._record(replica, reply):
            if len(self.ok()) >= self.needed:
                self.outcome = OK
            else:
                self.outcome = self._failed()
        return self.outcome

    @property
    def best(self) -> Record:
        """The highest mark a majority reported (conflicts are caught by the repair)."""
        return max((r.record for r in self.ok()), key=lambda rec: (rec.hwm, rec.digest), default=EMPTY)

    @property
    def highest_epoch(self) -> int:
        """The highest epoch any replica reported: a retry must go above it."""
        return max((r.record.promised_epoch for r in self.replies.values()), default=0)


class Advance(_Tally):
    """One mark at one epoch, sent to every replica.

    OK once a majority accepted; STALE_EPOCH as soon as any replica reports
    a newer promise (the signer has been superseded and must stop even if a
    majority could still be reached); otherwise the most alarming failure
    once a majority is out of reach.
    """

    def __init__(self, key: KeyId, epoch: int, hrs: HRS, digest: str, replicas: Iterable[str]) -> None:
        super().__init__(replicas)
        self.key = key
        self.epoch = epoch
        self.hrs = hrs
        self.digest = digest

    def on_reply(self, replica: str, reply: Reply) -> str | None:
        if self._record(replica, reply):
            if reply.status == STALE_EPOCH:
                self.outcome = STALE_EPOCH
            elif len(self.ok()) >= self.needed:
                self.outcome = OK
            else:
                self.outcome = self._failed()
        return self.outcome


class Repair(Advance):
    """A promotion's read repair: the highest mark a majority reported,
    written back to a majority before the new signer signs above it.

    A replica that answers CONFLICT at exactly that mark holds the mark
    already, with the digest of an advance that never reached a majority
    (a superseded signer's last, unsigned attempt: at most one digest per
    mark can ever reach a majority). It counts as holding the mark; treating
    it as a failure would block every failover on an unsigned leftover.
    """

    def on_reply(self, replica: str, reply: Reply) -> str | None:
        if reply.status == CONFLICT and reply.record.hwm == self.hrs:
            reply = Reply(OK, reply.record)
        return super().on_reply(replica, reply)


def next_epoch(seen: int) -> int:
    """An epoch above every one seen."""
    return seen + 1
