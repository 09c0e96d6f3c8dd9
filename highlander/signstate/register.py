"""The sign-state register protocol, without any I/O.

Per signing key a replica keeps a :class:`Record`: the highest ballot it has
promised, and the high-water mark ``hwm`` — the last (height, round, step)
accepted — with the digest of the bytes signed there.

A ballot is a counter *and the node it was promised to*: ``(7, node-b)``.
Ballots order by counter, then by node name, so two nodes never hold the
same one, and only the node that owns a ballot may send requests at it (a
replica checks the sender's TLS name with :func:`check_sender`; a node's
coordinator forwards a signer's advance only at the ballot its own node was
promised). A superseded signer therefore cannot borrow the new owner's
ballot, and a node cannot skip promotion at somebody else's.

- :func:`promise` (phase 1 of a promotion): a replica promises ballot B only
  if B is greater than anything it promised before, and answers with its
  record so the promoter learns the highest mark of a majority.
- :func:`advance` (before every signature, and the promoter's read repair):
  a replica accepts iff B is not older than its promise and the mark moves
  forward, or stays with the same digest (a retry).

Nothing may brick the register: a ballot is accepted only a bounded step
(:data:`BALLOT_STEP`) above what a replica has promised, and counters,
heights and rounds stay below documented maxima (:data:`MAX_COUNTER`,
:data:`MAX_HEIGHT`, :data:`MAX_ROUND`), far beyond any real chain yet
exactly representable by every JSON reader. A mark pushed up by a faulty
signer is lowered only by :func:`reset`, which the daemon runs for root
behind a fresh promotion of a majority.

:class:`Promotion` and :class:`Advance` are the coordinator's side: they
count replies and decide, so the same code runs in the daemon and in the
deterministic simulation that checks the protocol. Why it is safe: an
advance that completed lives on a majority; a promotion reads a majority
and writes the highest mark back to a majority before signing; two
majorities of three always share a replica. That holds only for replicas
that kept everything they answered: a replica that lost or rolled back its
disk is *recovering* and takes no part until it has been rejoined from every
other replica (:func:`merge`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

# Replica and coordinator verdicts.
OK = "OK"
REFUSED = "REFUSED"  # promise: the ballot is not greater than one promised before, or too far above it
STALE_EPOCH = "STALE_EPOCH"  # advance: a newer ballot was promised; the signer is superseded
REGRESSION = "REGRESSION"  # advance: the mark is behind the replica's
CONFLICT = "CONFLICT"  # advance: same mark, different digest: a double sign was attempted
RECOVERING = "RECOVERING"  # the replica lost state and answers nothing until it has been rejoined
NO_QUORUM = "NO_QUORUM"  # coordinator: a majority did not answer in time

STEPS = {1: "propose", 2: "prevote", 3: "precommit"}

# The largest integer every JSON reader keeps exactly (a double's mantissa):
# signers in any language use the socket API.
MAX_HEIGHT = 2**53 - 1
MAX_ROUND = 2**31 - 1  # CometBFT's rounds are 32-bit
MAX_COUNTER = 2**53 - 1
# How far above its promise a replica accepts a ballot. A coordinator always
# asks for one above the highest it has seen, so this only limits a faulty or
# hostile node; at this step a ballot needs billions of promotions to reach
# MAX_COUNTER. A replica that missed more promotions than this must be rejoined.
BALLOT_STEP = 1000


class HRS(NamedTuple):
    """A position in consensus; tuples order it lexicographically."""

    height: int
    round: int
    step: int

    def __str__(self) -> str:
        return f"{self.height}/{self.round}/{self.step}"


ZERO = HRS(0, 0, 0)


class Ballot(NamedTuple):
    """A promotion's number and the node it belongs to; ordered counter first."""

    counter: int
    owner: str

    def __str__(self) -> str:
        return f"{self.counter}@{self.owner}" if self.owner else str(self.counter)


NO_BALLOT = Ballot(0, "")


class KeyId(NamedTuple):
    """One signing key: the chain it signs for and its name on that chain."""

    chain_id: str
    key_id: str

    def __str__(self) -> str:
        return f"{self.chain_id}/{self.key_id}"


class Record(NamedTuple):
    """What a replica holds for one key."""

    promised: Ballot
    hwm: HRS
    digest: str  # hex of the sign bytes at hwm; "" before the first signature


EMPTY = Record(NO_BALLOT, ZERO, "")


class Reply(NamedTuple):
    """A replica's answer: its verdict and its record after handling."""

    status: str
    record: Record


def check_mark(hrs: HRS, digest: str, floor: bool = False) -> str | None:
    """Why ``hrs``/``digest`` cannot be signed, or None when they can.

    A *floor* is a mark without a digest: nothing known was signed there, but
    nothing may be signed at or below it (a reset, or an imported state file
    without sign bytes, sets one). Only a promotion's read repair sends one.
    """
    if hrs.height < 1 or hrs.round < 0 or hrs.height > MAX_HEIGHT or hrs.round > MAX_ROUND:
        return f"height must be 1 to {MAX_HEIGHT} and round 0 to {MAX_ROUND}, got {hrs}"
    if hrs.step not in STEPS:
        return f"step must be 1 (propose), 2 (prevote) or 3 (precommit), got {hrs.step}"
    if not digest and not floor:
        return "digest must be 1 to 128 lower-case hex digits"
    return check_digest(digest)


NODE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")


def check_ballot(ballot: Ballot) -> str | None:
    """Why ``ballot`` can never be valid, or None."""
    owner = ballot.owner
    if not 1 <= ballot.counter <= MAX_COUNTER or not 1 <= len(owner) <= 253 or not NODE_CHARS.issuperset(owner):
        return f"a ballot is a counter from 1 to {MAX_COUNTER} and the node it belongs to, got {ballot}"
    return None


HEX = frozenset("0123456789abcdef")


def check_digest(digest: str) -> str | None:
    """Why ``digest`` is not the hex of sign bytes (or "" for none), or None."""
    if len(digest) > 128 or not HEX.issuperset(digest):
        return "digest must be 1 to 128 lower-case hex digits"
    return None


def check_sender(ballot: Ballot, sender: str) -> str | None:
    """Why ``sender`` may not make requests at ``ballot``, or None.

    Only the node a ballot was promised to advances at it: a node that was
    superseded cannot take the new owner's ballot, and a node holding a
    valid certificate cannot act at another node's.
    """
    if ballot.owner != sender:
        return f"ballot {ballot} belongs to {ballot.owner or 'nobody'}, not to {sender}"
    return None


def _too_far(record: Record, ballot: Ballot) -> bool:
    return ballot.counter > record.promised.counter + BALLOT_STEP


def promise(record: Record, ballot: Ballot) -> tuple[Record, Reply]:
    """Phase 1: promise ``ballot`` if it is newer than any promised before
    (and not implausibly far above it)."""
    if ballot <= record.promised or _too_far(record, ballot):
        return record, Reply(REFUSED, record)
    promised = record._replace(promised=ballot)
    return promised, Reply(OK, promised)


def advance(record: Record, ballot: Ballot, hrs: HRS, digest: str) -> tuple[Record, Reply]:
    """Accept ``hrs``/``digest`` at ``ballot`` or say why not.

    An advance at a newer ballot than the one promised also raises the
    promise: the replica missed that promotion, and from now on it must
    refuse the older ballots as the others do.
    """
    if ballot < record.promised:
        return record, Reply(STALE_EPOCH, record)
    if _too_far(record, ballot):
        return record, Reply(REFUSED, record)
    if hrs < record.hwm:
        return record, Reply(REGRESSION, record)
    if hrs == record.hwm and digest != record.digest:
        return record, Reply(CONFLICT, record)
    accepted = Record(max(record.promised, ballot), hrs, digest)
    return accepted, Reply(OK, accepted)


def reset(record: Record, ballot: Ballot, hrs: HRS) -> tuple[Record, Reply]:
    """Set the mark to ``hrs`` even below the current one, at a ballot that is current.

    The one way down: for a mark a faulty signer pushed to where nothing can
    follow. Lowering a mark below a real signature is how a validator signs
    twice, so the daemon runs it only for root, after promoting a fresh
    ballot, and reports it only when a majority applied it.
    """
    if ballot < record.promised:
        return record, Reply(STALE_EPOCH, record)
    if _too_far(record, ballot):
        return record, Reply(REFUSED, record)
    lowered = Record(max(record.promised, ballot), hrs, "")
    return lowered, Reply(OK, lowered)


def merge(records: Iterable[Record]) -> Record:
    """The least record that is at least each of ``records``: the highest
    promise and the highest mark (import and rejoin only ever raise)."""
    records = list(records)
    if not records:
        return EMPTY
    hwm, digest = max((r.hwm, r.digest) for r in records)
    return Record(max(r.promised for r in records), hwm, digest)


def majority(replicas: int) -> int:
    return replicas // 2 + 1


def next_ballot(seen: Ballot, node: str) -> Ballot:
    """A ballot of ``node`` above every one seen."""
    return Ballot(seen.counter + 1, node)


# Which verdict to report when several failures make a majority impossible:
# the most alarming first; NO_QUORUM when none of these was answered.
SEVERITY = (CONFLICT, STALE_EPOCH, REGRESSION, REFUSED)


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
        return next((s for s in SEVERITY if s in seen), NO_QUORUM)

    def give_up(self) -> str:
        """Time is up: decide with the replies there are."""
        if self.outcome is None:
            self.outcome = self._failed() or NO_QUORUM
        return self.outcome

    def missing(self) -> list[str]:
        return sorted(self.replicas - set(self.replies))

    @property
    def highest_ballot(self) -> Ballot:
        """The highest ballot any replica reported: a new one must go above it."""
        return max((r.record.promised for r in self.replies.values()), default=NO_BALLOT)


class Promotion(_Tally):
    """Phase 1 of making a node active at ``ballot``.

    Done when a majority promised (``outcome == OK``; then :attr:`best` is
    the highest mark among them, to be written back with a :class:`Repair`
    before anything is signed), or when a majority refused.
    """

    def __init__(self, key: KeyId, ballot: Ballot, replicas: Iterable[str]) -> None:
        super().__init__(replicas)
        self.key = key
        self.ballot = ballot

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


class Advance(_Tally):
    """One mark at one ballot, sent to every replica.

    OK once a majority accepted; STALE_EPOCH as soon as any replica reports
    a newer promise (the signer has been superseded and must stop even if a
    majority could still be reached); otherwise the most alarming failure
    once a majority is out of reach.
    """

    def __init__(self, key: KeyId, ballot: Ballot, hrs: HRS, digest: str, replicas: Iterable[str]) -> None:
        super().__init__(replicas)
        self.key = key
        self.ballot = ballot
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
