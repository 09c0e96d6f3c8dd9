"""A deterministic simulation of the whole sign-state protocol.

Three durable replicas, two or three nodes that compete to promote and sign
for one or two keys, and a hostile network (loss, duplication, unbounded
delay, reordering of requests and replies), crashes of replicas, reboots of
nodes that forget everything volatile, coordinators that give up on a
pending tally, replicas whose disk is lost or restored from an old backup
(they are recovering until rejoined from the other two), and rogue nodes
that send requests at ballots other nodes own. Hypothesis generates the histories as lists of actions; the
:class:`Simulator` interprets them with the real coordinator code
(:class:`Promotion`, :class:`Advance`) and injectable replica functions, so
the same harness checks the real register and deliberately broken ones.

Every interesting moment is an :class:`Event` on one logical clock, and the
:class:`Checker` verifies the three safety invariants on every event (so at
least after every step of a history):

- **I1 no double sign**: for a key and a mark, at most one digest is ever
  signed (an Advance for a signature reaches OK). A read repair writes back
  a mark that is there already and signs nothing; it may find a superseded
  signer's unsigned leftover at that mark, and the new signer signs above it.
- **I2 superseded signers stay silent**: once a promotion at ballot B' has
  completed for a key, no Advance at a ballot below B' that was started
  after that moment reaches OK.
- **I3 nothing signed is lost**: the repaired mark of a completed promotion
  is at least the mark of every Advance that reached OK before that
  promotion started.
- **I4 only the owner signs at a ballot**: every signature that reaches OK
  at ballot B is by the node B was promised to.

A rejoin reads each of the other two replicas at its own moment (other
actions run in between), as the daemon's does, and installs what they
merge to.

Signers: each node's consensus engine asks for marks of its own, always
increasing, and the digest depends on (node, ballot, mark), so two signers at
one mark always conflict. An engine may lag behind the mark its promotion
repaired (a standby's engine asking for heights the old active already
signed): the register, not the signer, must refuse those. In a
``disciplined`` history engines instead jump above the repaired mark, as the
design's promoter rule says.

A checker that cannot fail proves nothing: the negative controls run the same
simulation against a replica without the epoch check (it must break I2), one
without the conflict check (it must break I1; that needs a lagging engine:
with disciplined engines only, the epoch check and the read repair alone
already keep I1), promises that hide the mark (I3), a replica that reads a
lost or restored disk as its state instead of recovering, a rejoin from one
replica only, and replicas that do not check who owns a ballot (I4).

Reproducibility: every property runs with ``derandomize=True`` and no example
database, and the simulator itself has no randomness, clock or I/O.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, Phase, event, find, given, settings, target
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample

from highlander.signstate.register import (
    CONFLICT,
    EMPTY,
    HRS,
    NO_BALLOT,
    OK,
    RECOVERING,
    REFUSED,
    REGRESSION,
    STALE_EPOCH,
    ZERO,
    Advance,
    Ballot,
    KeyId,
    Promotion,
    Record,
    Repair,
    Reply,
    advance,
    check_mark,
    check_sender,
    merge,
    next_ballot,
    promise,
)

PromiseFn = Callable[[Record, Ballot], tuple[Record, Reply]]
AdvanceFn = Callable[[Record, Ballot, HRS, str], tuple[Record, Reply]]
SenderCheck = Callable[[Ballot, str], str | None]

REPLICAS = ("r1", "r2", "r3")
NODES = ("a", "b", "c")
KEYS = (KeyId("sim", "k0"), KeyId("sim", "k1"))

# Node phases for one key.
IDLE = "idle"  # not promoted (never, or a promotion failed)
PROMOTING = "promoting"  # waiting for promises
REPAIRING = "repairing"  # promoted, writing the best mark back
SIGNING = "signing"  # promotion completed: may sign on an Advance OK
STOPPED = "stopped"  # heard STALE_EPOCH: superseded, silent until promoted again

# Why an Advance is sent.
SIGN = "sign"
REPAIR = "repair"

# How many deliveries a Flush may make: replies cause repairs, never loops, but bound it anyway.
FLUSH_LIMIT = 200


def digest_of(node: str, ballot: Ballot, hrs: HRS) -> str:
    """The sign bytes a node would sign at a mark.

    Depends on the node and the ballot, as a real block or vote differs
    between two validators' engines: two signers at one mark always conflict.
    """
    return hashlib.sha256(f"{node}/{ballot}/{hrs}".encode()).hexdigest()[:16]


def successor(hrs: HRS, how: int) -> HRS:
    """The next mark a consensus engine at ``hrs`` may ask for.

    ``how`` picks the next step, the next round or the next height, so
    histories explore both dense and sparse sequences (and engines on two
    nodes often reach the same marks, which is what makes conflicts likely).
    """
    if hrs.height == 0:
        return HRS(1, 0, 1)
    if how == 0:
        return HRS(hrs.height, hrs.round, hrs.step + 1) if hrs.step < 3 else HRS(hrs.height, hrs.round + 1, 1)
    if how == 1:
        return HRS(hrs.height, hrs.round + 1, 1)
    return HRS(hrs.height + 1, 0, 1)


# --- the actions a history is made of --------------------------------------------------
# Indices are taken modulo what exists when the action runs, so any list is a valid
# history and Hypothesis can shrink freely.


class Deliver(NamedTuple):
    """Deliver the i-th message in flight (reorders and delays everything else)."""

    i: int


class Drop(NamedTuple):
    """Lose the i-th message in flight."""

    i: int


class Duplicate(NamedTuple):
    """Copy the i-th message in flight: it may be delivered twice."""

    i: int


class Flush(NamedTuple):
    """A calm moment: deliver everything in flight, in order, until nothing is left."""


class Promote(NamedTuple):
    """The cluster manager promotes a node for a key (whatever it was doing)."""

    node: int
    key: int


class Sign(NamedTuple):
    """The engine of the i-th idle signer (promoted, nothing pending) asks for its next mark.

    Chosen among the sessions that can sign rather than by node, so that
    almost every Sign in a generated history does something.
    """

    i: int
    how: int


class Retry(NamedTuple):
    """The i-th pending tally resends its requests to every replica."""

    i: int


class GiveUp(NamedTuple):
    """The i-th pending tally times out."""

    i: int


class Crash(NamedTuple):
    """A replica stops: it neither receives nor answers, and loses nothing it answered."""

    replica: int


class Restart(NamedTuple):
    replica: int


class Reboot(NamedTuple):
    """A node loses everything volatile: sessions, ballots seen, its engine's position."""

    node: int


class Backup(NamedTuple):
    """An operator copies a replica's records aside (what a backup would hold)."""

    replica: int


class LoseDisk(NamedTuple):
    """A replica's disk is lost (``how`` 0) or restored from its last backup (1)."""

    replica: int
    how: int


class Rejoin(NamedTuple):
    """A recovering replica reads the next of the other replicas; with both read, it installs their merge."""

    replica: int


class Rogue(NamedTuple):
    """A node sends an advance at the newest ballot it has seen, whoever owns it
    (a superseded signer, or a node with a valid certificate acting for another)."""

    node: int
    key: int


Action = (
    Deliver
    | Drop
    | Duplicate
    | Flush
    | Promote
    | Sign
    | Retry
    | GiveUp
    | Crash
    | Restart
    | Reboot
    | Backup
    | LoseDisk
    | Rejoin
    | Rogue
)


class History(NamedTuple):
    """One generated run: the cast and the script."""

    nodes: int
    keys: int
    disciplined: bool  # engines jump above the promoted mark instead of asking for old marks
    actions: tuple[Action, ...]


# --- messages and the log --------------------------------------------------------------


class Request(NamedTuple):
    tally: int
    node: str  # the sender, as the replica's TLS check names it
    replica: str
    key: KeyId
    ballot: Ballot
    hrs: HRS | None  # None: a promise; a mark: an advance
    digest: str

    def __str__(self) -> str:
        if self.hrs is None:
            what = f"promise b{self.ballot}"
        else:
            what = f"advance b{self.ballot} {self.hrs} {self.digest[:6]}"
        return f"{self.node}->{self.replica} {self.key.key_id} {what} (t{self.tally})"


class Answer(NamedTuple):
    tally: int
    node: str
    replica: str
    reply: Reply

    def __str__(self) -> str:
        r = self.reply.record
        held = f"[b{r.promised} {r.hwm} {r.digest[:6]}]"
        return f"{self.replica}->{self.node} {self.reply.status} {held} (t{self.tally})"


Message = Request | Answer


class Event(NamedTuple):
    """A protocol fact the invariants are about; ``started`` is the clock its tally began."""

    clock: int
    kind: str  # promote, advance-start, advance-ok, promotion-complete
    node: str
    key: KeyId
    ballot: Ballot
    hrs: HRS
    digest: str
    purpose: str = ""
    started: int = 0


class Broken(NamedTuple):
    """What the checker found: which invariant, why, and the events that clash."""

    invariant: str
    message: str
    events: tuple[Event, ...]


class InvariantViolation(AssertionError):
    """An invariant failed; carries what broke and the log that led there."""

    def __init__(self, broken: Broken, log: Sequence[str]) -> None:
        super().__init__(f"{broken.invariant}: {broken.message}\n" + "\n".join(log))
        self.invariant = broken.invariant
        self.message = broken.message
        self.events = broken.events
        self.log = list(log)


# --- the invariants --------------------------------------------------------------------


class Checker:
    """Checks I1 to I4 incrementally, one event at a time.

    Incremental so that the check after every step stays linear in the
    history: thousands of histories must run in seconds.
    """

    def __init__(self) -> None:
        self.digests: dict[tuple[KeyId, HRS], dict[str, Event]] = defaultdict(dict)
        self.completed: dict[KeyId, list[Event]] = defaultdict(list)
        self.oks: dict[KeyId, list[Event]] = defaultdict(list)

    def observe(self, ev: Event) -> Broken | None:
        """The violated invariant and why, or None."""
        if ev.kind == "advance-ok":
            return self._advance_ok(ev)
        if ev.kind == "promotion-complete":
            return self._promotion_complete(ev)
        return None

    def _advance_ok(self, ev: Event) -> Broken | None:
        seen = self.digests[(ev.key, ev.hrs)]
        if ev.purpose == SIGN:
            seen.setdefault(ev.digest, ev)
        if len(seen) > 1:
            who = ", ".join(f"{d[:6]} by {e.node} b{e.ballot} ({e.purpose} @{e.clock})" for d, e in seen.items())
            why = f"{ev.key} {ev.hrs} reached OK with {len(seen)} digests: {who}"
            return Broken("I1", why, tuple(seen.values()))
        if ev.purpose == SIGN and ev.ballot.owner != ev.node:
            why = f"{ev.node} signed {ev.key} {ev.hrs} at ballot {ev.ballot}, which belongs to {ev.ballot.owner}"
            return Broken("I4", why, (ev,))
        for done in self.completed[ev.key]:
            if done.ballot > ev.ballot and done.clock < ev.started:
                why = (
                    f"{ev.node}'s {ev.purpose} at b{ev.ballot} {ev.hrs}, started @{ev.started}, reached OK "
                    f"although {done.node}'s promotion at b{done.ballot} completed @{done.clock}"
                )
                return Broken("I2", why, (done, ev))
        self.oks[ev.key].append(ev)
        return None

    def _promotion_complete(self, ev: Event) -> Broken | None:
        for ok in self.oks[ev.key]:
            if ok.clock < ev.started and ok.hrs > ev.hrs:
                why = (
                    f"{ev.node}'s promotion at b{ev.ballot} (started @{ev.started}) repaired {ev.hrs}, "
                    f"below {ok.hrs} that {ok.node} got OK for @{ok.clock}"
                )
                return Broken("I3", why, (ok, ev))
        self.completed[ev.key].append(ev)
        return None


# --- the cast --------------------------------------------------------------------------


@dataclass
class Session:
    """What one node does for one key; volatile, gone on reboot."""

    phase: str = IDLE
    ballot: Ballot = NO_BALLOT
    tally: Promotion | Advance | None = None
    tally_id: int = 0
    purpose: str = ""
    started: int = 0  # clock of the pending tally's start
    promotion_started: int = 0
    best: Record = EMPTY
    retried: bool = False  # this promotion is already the one retry after a refusal


@dataclass
class Node:
    name: str
    seen: Ballot = NO_BALLOT  # highest ballot seen: the next promotion goes above it
    position: dict[KeyId, HRS] = field(default_factory=dict)  # the consensus engine's last mark
    sessions: dict[KeyId, Session] = field(default_factory=dict)

    def session(self, key: KeyId) -> Session:
        return self.sessions.setdefault(key, Session())


@dataclass
class Stats:
    """What a history reached, so the property tests can show they explore the hard cases."""

    completed: int = 0
    signed: int = 0
    fenced: int = 0  # signers stopped by STALE_EPOCH
    clashes: int = 0  # signatures refused with CONFLICT or REGRESSION
    lost: int = 0  # disks lost or restored from a backup
    rejoined: int = 0
    statuses: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Variant:
    """The replicas' rules: the real ones, or one guard removed for a negative control."""

    promise_fn: PromiseFn = promise
    advance_fn: AdvanceFn = advance
    sender_check: SenderCheck = check_sender
    detect_loss: bool = True  # a lost or restored disk makes the replica recovering
    rejoin_reads: int = 2  # replicas a rejoin reads before it installs


REAL = Variant()


class Simulator:
    """Runs one history deterministically and checks the invariants on every event."""

    def __init__(self, nodes: int = 2, keys: int = 1, disciplined: bool = False, variant: Variant = REAL) -> None:
        self.variant = variant
        self.disciplined = disciplined
        self.nodes = [Node(name) for name in NODES[:nodes]]
        self.keys = KEYS[:keys]
        # Durable: a record is replaced only when the replica answers, and a crash keeps it.
        self.records: dict[str, dict[KeyId, Record]] = {r: {k: EMPTY for k in self.keys} for r in REPLICAS}
        self.up: dict[str, bool] = {r: True for r in REPLICAS}
        self.recovering: dict[str, bool] = {r: False for r in REPLICAS}
        self.backups: dict[str, dict[KeyId, Record]] = {}
        self.rejoin_read: dict[str, list[dict[KeyId, Record]]] = {r: [] for r in REPLICAS}
        self.network: list[Message] = []
        self.clock = 0
        self.tallies = 0
        self.log: list[str] = []
        self.checker = Checker()
        self.stats = Stats()

    # --- bookkeeping ---

    def note(self, text: str) -> None:
        self.clock += 1
        self.log.append(f"@{self.clock:<3} {text}")

    def emit(
        self, kind: str, node: Node, key: KeyId, ballot: Ballot, hrs: HRS = ZERO, digest: str = "", **kw: object
    ) -> None:
        """Record a protocol fact and check the invariants against it at once."""
        purpose = kw.get("purpose", "")
        self.note(f"{kind} {node.name} {key.key_id} b{ballot} {hrs} {digest[:6]} {purpose}".rstrip())
        ev = Event(self.clock, kind, node.name, key, ballot, hrs, digest, **kw)  # type: ignore[arg-type]
        broken = self.checker.observe(ev)
        if broken is not None:
            raise InvariantViolation(broken, self.log)

    # --- the script ---

    def run(self, actions: Sequence[Action]) -> None:
        for action in actions:
            self.step(action)

    def step(self, action: Action) -> None:
        match action:
            case Deliver(i):
                if self.network:
                    self.deliver(self.network.pop(i % len(self.network)))
            case Drop(i):
                if self.network:
                    self.note(f"lost {self.network.pop(i % len(self.network))}")
            case Duplicate(i):
                if self.network:
                    self.network.append(self.network[i % len(self.network)])
            case Flush():
                for _ in range(FLUSH_LIMIT):
                    if not self.network:
                        break
                    self.deliver(self.network.pop(0))
            case Promote(n, k):
                self.promote(self.node(n), self.key(k))
            case Sign(i, how):
                if signers := self.sessions(lambda s: s.phase == SIGNING and s.tally is None):
                    self.sign(*signers[i % len(signers)], how)
            case Retry(i):
                if pending := self.sessions(lambda s: s.tally is not None):
                    self.retry(*pending[i % len(pending)])
            case GiveUp(i):
                if pending := self.sessions(lambda s: s.tally is not None):
                    self.give_up(*pending[i % len(pending)])
            case Crash(r):
                self.up[REPLICAS[r % 3]] = False
                self.note(f"crash {REPLICAS[r % 3]}")
            case Restart(r):
                self.up[REPLICAS[r % 3]] = True
                self.note(f"restart {REPLICAS[r % 3]}")
            case Reboot(n):
                node = self.node(n)
                node.seen, node.position, node.sessions = NO_BALLOT, {}, {}
                self.note(f"reboot {node.name}")
            case Backup(r):
                replica = REPLICAS[r % 3]
                self.backups[replica] = dict(self.records[replica])
                self.note(f"backup {replica}")
            case LoseDisk(r, how):
                self.lose_disk(REPLICAS[r % 3], how % 2)
            case Rejoin(r):
                self.rejoin(REPLICAS[r % 3])
            case Rogue(n, k):
                self.rogue(self.node(n), self.key(k))

    def node(self, n: int) -> Node:
        return self.nodes[n % len(self.nodes)]

    def key(self, k: int) -> KeyId:
        return self.keys[k % len(self.keys)]

    def sessions(self, wanted: Callable[[Session], bool]) -> list[tuple[Node, KeyId]]:
        """The (node, key) sessions in a fixed order, for actions that pick the i-th one."""
        return [(n, k) for n in self.nodes for k in self.keys if k in n.sessions and wanted(n.sessions[k])]

    # --- the nodes: promoter and signer ---

    def promote(self, node: Node, key: KeyId, retried: bool = False) -> None:
        """Pick a ballot of this node above all seen and ask every replica to promise it."""
        s = node.session(key)
        ballot = next_ballot(node.seen, node.name)
        node.seen = ballot
        s.phase, s.ballot, s.best, s.retried = PROMOTING, ballot, EMPTY, retried
        self.emit("promote", node, key, ballot)
        s.promotion_started = self.clock
        self.start(node, key, s, Promotion(key, ballot, REPLICAS), "promise", None, "")

    def sign(self, node: Node, key: KeyId, how: int) -> None:
        """The engine asks for its next mark; the node signs only if an Advance reaches OK."""
        s = node.session(key)
        if s.phase != SIGNING or s.tally is not None:
            return
        hrs = successor(node.position.get(key, ZERO), how)
        if self.disciplined:
            while hrs <= s.best.hwm:
                hrs = successor(hrs, 2)
        assert check_mark(hrs, digest_of(node.name, s.ballot, hrs)) is None
        node.position[key] = hrs
        digest = digest_of(node.name, s.ballot, hrs)
        self.start(node, key, s, Advance(key, s.ballot, hrs, digest, REPLICAS), SIGN, hrs, digest)

    def rogue(self, node: Node, key: KeyId) -> None:
        """Sign the engine's next mark at the newest ballot seen, not asking who owns it."""
        s = node.session(key)
        if s.tally is not None or node.seen == NO_BALLOT or node.seen.owner == node.name:
            return
        s.phase, s.ballot = SIGNING, node.seen
        self.note(f"{node.name} goes rogue at b{node.seen}")
        self.sign(node, key, 0)

    def start(
        self,
        node: Node,
        key: KeyId,
        s: Session,
        tally: Promotion | Advance,
        purpose: str,
        hrs: HRS | None,
        digest: str,
    ) -> None:
        """Begin a tally (abandoning any pending one) and send its request to every replica."""
        self.tallies += 1
        s.tally, s.tally_id, s.purpose = tally, self.tallies, purpose
        if hrs is not None:
            self.emit("advance-start", node, key, s.ballot, hrs, digest, purpose=purpose)
        s.started = self.clock
        self.send(node, key, s)

    def send(self, node: Node, key: KeyId, s: Session) -> None:
        hrs = s.tally.hrs if isinstance(s.tally, Advance) else None
        digest = s.tally.digest if isinstance(s.tally, Advance) else ""
        for replica in REPLICAS:
            self.network.append(Request(s.tally_id, node.name, replica, key, s.ballot, hrs, digest))

    def retry(self, node: Node, key: KeyId) -> None:
        s = node.sessions.get(key)
        if s is not None and s.tally is not None:
            self.note(f"retry {node.name} {key.key_id} t{s.tally_id}")
            self.send(node, key, s)

    def give_up(self, node: Node, key: KeyId) -> None:
        s = node.sessions.get(key)
        if s is not None and s.tally is not None:
            self.note(f"give up {node.name} {key.key_id} t{s.tally_id}")
            self.decided(node, key, s, s.tally.give_up())

    def decided(self, node: Node, key: KeyId, s: Session, outcome: str) -> None:
        """React to a tally's outcome as the promoter and the signer must."""
        tally, s.tally = s.tally, None
        self.stats.statuses.add(outcome)
        self.note(f"{node.name} {key.key_id} t{s.tally_id} {s.purpose} -> {outcome}")
        if isinstance(tally, Promotion):
            node.seen = max(node.seen, tally.highest_ballot)
            if outcome == REFUSED and not s.retried:
                # Once more, above every ballot the refusals reported (what highest_ballot is for);
                # further attempts are up to the cluster manager, i.e. a later Promote.
                self.promote(node, key, retried=True)
                return
            if outcome != OK:
                s.phase = IDLE
                return
            s.best = tally.best
            if s.best.hwm == ZERO:
                self.completed(node, key, s)
            else:
                s.phase = REPAIRING
                repair = Repair(key, s.ballot, s.best.hwm, s.best.digest, REPLICAS)
                self.start(node, key, s, repair, REPAIR, s.best.hwm, s.best.digest)
            return
        assert isinstance(tally, Advance)
        if outcome == OK:
            ok = (node, key, s.ballot, tally.hrs, tally.digest)
            self.emit("advance-ok", *ok, purpose=s.purpose, started=s.started)
        if s.purpose == REPAIR:
            if outcome == OK:
                self.completed(node, key, s)
            else:
                s.phase = IDLE
        elif outcome == OK:
            self.stats.signed += 1
        elif outcome == STALE_EPOCH:
            s.phase = STOPPED  # superseded: never sign again at this ballot
            self.stats.fenced += 1
        elif outcome in (CONFLICT, REGRESSION):
            self.stats.clashes += 1  # refused, with an alarm on CONFLICT; the engine moves on
        # NO_QUORUM: not signed; the engine moves on too.

    def completed(self, node: Node, key: KeyId, s: Session) -> None:
        s.phase = SIGNING
        self.stats.completed += 1
        done = (node, key, s.ballot, s.best.hwm, s.best.digest)
        self.emit("promotion-complete", *done, started=s.promotion_started)

    # --- the network and the replicas ---

    def deliver(self, message: Message) -> None:
        self.note(f"deliver {message}")
        if isinstance(message, Request):
            self.at_replica(message)
        else:
            self.at_node(message)

    def at_replica(self, req: Request) -> None:
        """Handle a request durably, then answer; a crashed replica never sees it."""
        if not self.up[req.replica]:
            self.note(f"{req.replica} is down: lost")
            return
        if self.recovering[req.replica]:
            self.stats.statuses.add(RECOVERING)
            self.network.append(Answer(req.tally, req.node, req.replica, Reply(RECOVERING, EMPTY)))
            return
        problem = self.variant.sender_check(req.ballot, req.node)
        if problem:
            self.note(f"{req.replica} refuses: {problem}")  # an error answer: counts as missing
            return
        record = self.records[req.replica][req.key]
        if req.hrs is None:
            record, reply = self.variant.promise_fn(record, req.ballot)
        else:
            record, reply = self.variant.advance_fn(record, req.ballot, req.hrs, req.digest)
        self.records[req.replica][req.key] = record
        self.stats.statuses.add(reply.status)
        self.network.append(Answer(req.tally, req.node, req.replica, reply))

    def lose_disk(self, replica: str, how: int) -> None:
        """The disk is gone, or an old backup is put back; the real store notices either."""
        restored = self.backups.get(replica) if how else None
        self.records[replica] = dict(restored) if restored else {k: EMPTY for k in self.keys}
        self.recovering[replica] = self.variant.detect_loss
        self.rejoin_read[replica] = []
        self.stats.lost += 1
        self.note(f"{replica} {'restored from a backup' if restored else 'lost its disk'}")

    def rejoin(self, replica: str) -> None:
        """Read the next other replica that can answer; with enough read, install their merge."""
        if not self.recovering[replica] or not self.up[replica]:
            return
        read = self.rejoin_read[replica]
        others = [r for r in REPLICAS if r != replica]
        source = others[len(read)] if len(read) < len(others) else None
        if source is None or not self.up[source] or self.recovering[source]:
            return
        read.append(dict(self.records[source]))
        self.note(f"{replica} reads {source} to rejoin")
        if len(read) >= self.variant.rejoin_reads:
            self.records[replica] = {k: merge(r[k] for r in read) for k in self.keys}
            self.recovering[replica], self.rejoin_read[replica] = False, []
            self.stats.rejoined += 1
            self.note(f"{replica} rejoined")

    def at_node(self, answer: Answer) -> None:
        node = next(n for n in self.nodes if n.name == answer.node)
        node.seen = max(node.seen, answer.reply.record.promised)
        for key, s in node.sessions.items():
            if s.tally is not None and s.tally_id == answer.tally:
                outcome = s.tally.on_reply(answer.replica, answer.reply)
                if outcome is not None:
                    self.decided(node, key, s, outcome)
                return
        # An answer to an abandoned or decided tally (or from before a reboot): ignored.


# --- Hypothesis: histories and runners -------------------------------------------------

# (weight, how to build the action from three small numbers): deliveries and signing
# dominate so that histories get somewhere; every fault stays common enough to strike at
# every point of the protocol. Simplest first: Hypothesis shrinks the choice towards 0.
# Hypothesis likes the bounds of a range, so both ends of the table are a plain Deliver.
WEIGHTS: tuple[tuple[int, Callable[[int, int, int], Action]], ...] = (
    (4, lambda i, n, k: Deliver(i)),
    (4, lambda i, n, k: Flush()),
    (6, lambda i, n, k: Sign(i, n)),
    (2, lambda i, n, k: Promote(n, k)),
    (2, lambda i, n, k: Drop(i)),
    (1, lambda i, n, k: Duplicate(i)),
    (1, lambda i, n, k: GiveUp(i)),
    (1, lambda i, n, k: Retry(i)),
    (1, lambda i, n, k: Crash(n)),
    (2, lambda i, n, k: Restart(n)),
    (1, lambda i, n, k: Reboot(n)),
    (1, lambda i, n, k: Backup(n)),
    (1, lambda i, n, k: LoseDisk(n, i)),
    (2, lambda i, n, k: Rejoin(n)),
    (1, lambda i, n, k: Rogue(n, k)),
    (4, lambda i, n, k: Deliver(i)),
)
# Histories about lost state: signing, promotions, lost messages and replicas down (so that one
# lags), lost disks and backups put back, and rejoins, without the other faults. For the property that a lost disk never costs a
# signature, and for the negative controls that must find how a weaker rejoin would.
DISK_WEIGHTS: tuple[tuple[int, Callable[[int, int, int], Action]], ...] = (
    (4, lambda i, n, k: Deliver(i)),
    (4, lambda i, n, k: Flush()),
    (6, lambda i, n, k: Sign(i, n)),
    (3, lambda i, n, k: Promote(n, k)),
    (3, lambda i, n, k: Drop(i)),
    (1, lambda i, n, k: GiveUp(i)),
    (2, lambda i, n, k: Crash(n)),
    (3, lambda i, n, k: Restart(n)),
    (1, lambda i, n, k: Backup(n)),
    (2, lambda i, n, k: LoseDisk(n, i)),
    (4, lambda i, n, k: Rejoin(n)),
    (4, lambda i, n, k: Deliver(i)),
)


def actions(weights: tuple[tuple[int, Callable[[int, int, int], Action]], ...]) -> st.SearchStrategy[Action]:
    """Actions drawn with ``weights``.

    One integer per action (rather than one_of, which ignores repeated branches as weights,
    or a tuple of draws) is the cheapest to generate, and shrinks towards Deliver(0): the
    integer picks the kind, then the message or session index, the node and the key.
    """
    table = tuple(build for weight, build in weights for _ in range(weight))

    def decode(number: int) -> Action:
        number, choice = divmod(number, len(table))
        number, i = divmod(number, 16)
        k, n = divmod(number, 3)
        return table[choice](i, n, k % 2)

    return st.integers(0, len(table) * 16 * 3 * 2 - 1).map(decode)


ACTIONS = actions(WEIGHTS)
DISK_ACTIONS = actions(DISK_WEIGHTS)

MAX_STEPS = 100


ANY_CAST = st.integers(2, 3)
ANY_KEYS = st.integers(1, 2)
EITHER = st.booleans()


def histories(
    nodes: st.SearchStrategy[int] = ANY_CAST,
    keys: st.SearchStrategy[int] = ANY_KEYS,
    disciplined: st.SearchStrategy[bool] = EITHER,
    min_steps: int = 0,
    steps: st.SearchStrategy[Action] = ACTIONS,
) -> st.SearchStrategy[History]:
    """Histories of up to MAX_STEPS actions.

    Asking for a third of that at least gets nearly every history past its
    first promotion (Hypothesis otherwise favours short lists); the searches
    for counterexamples delete the padding afterwards (:func:`minimise`).
    """
    return st.builds(
        History,
        nodes=nodes,
        keys=keys,
        disciplined=disciplined,
        actions=st.lists(steps, min_size=min_steps, max_size=MAX_STEPS).map(tuple),
    )


def simulate(history: History, variant: Variant = REAL) -> Simulator:
    """Run a history; raises :class:`InvariantViolation` at the first broken invariant."""
    sim = Simulator(history.nodes, history.keys, history.disciplined, variant)
    sim.run(history.actions)
    return sim


def violation(history: History, variant: Variant = REAL) -> InvariantViolation | None:
    """The first broken invariant of a history, or None when it keeps them all."""
    try:
        simulate(history, variant)
    except InvariantViolation as broken:
        return broken
    return None


# Reproducible: the same histories on every run and every machine, nothing stored between runs.
REAL_RUNS = settings(
    max_examples=2500,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SEARCH = settings(
    max_examples=3000,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def counterexample(
    invariant: str, variant: Variant, steps: st.SearchStrategy[Action] = ACTIONS
) -> tuple[History, InvariantViolation]:
    """The smallest history found that breaks ``invariant`` through signatures with these replicas.

    Through signatures: every Advance the violation names is a signer's, not
    a read repair's, so what is found is a real double sign or a real
    signature by a superseded signer. Hypothesis finds and shrinks one; as
    the histories have a minimum length, the shrunk one may still hold
    actions that do nothing, so single actions are then deleted for as long
    as the same kind of violation remains.
    """

    def breaks(history: History) -> bool:
        broken = violation(history, variant)
        return (
            broken is not None
            and broken.invariant == invariant
            and all(e.purpose == SIGN for e in broken.events if e.kind == "advance-ok")
        )

    history = minimise(find(histories(min_steps=MAX_STEPS // 3, steps=steps), breaks, settings=SEARCH), breaks)
    broken = violation(history, variant)
    assert broken is not None
    return history, broken


def minimise(history: History, breaks: Callable[[History], bool]) -> History:
    """Delete actions one at a time while ``breaks`` holds, until none can go."""
    actions = list(history.actions)
    i = 0
    while i < len(actions):
        shorter = history._replace(actions=tuple(actions[:i] + actions[i + 1 :]))
        if breaks(shorter):
            del actions[i]
        else:
            i += 1
    return history._replace(actions=tuple(actions))


def summary(history: History, broken: InvariantViolation) -> str:
    """What a negative control prints: the shrunk script and the log up to the violation."""
    head = f"nodes={history.nodes} keys={history.keys} disciplined={history.disciplined}"
    verdict = f"{broken.invariant}: {broken.message}"
    return "\n".join([head, *map(repr, history.actions), verdict, *broken.log])


# --- broken replicas for the negative controls -----------------------------------------


def advance_without_epoch_check(record: Record, ballot: Ballot, hrs: HRS, digest: str) -> tuple[Record, Reply]:
    """:func:`advance` minus the fence: a superseded signer is never told STALE_EPOCH."""
    if hrs < record.hwm:
        return record, Reply(REGRESSION, record)
    if hrs == record.hwm and digest != record.digest:
        return record, Reply(CONFLICT, record)
    accepted = Record(max(record.promised, ballot), hrs, digest)
    return accepted, Reply(OK, accepted)


def advance_without_conflict_check(record: Record, ballot: Ballot, hrs: HRS, digest: str) -> tuple[Record, Reply]:
    """:func:`advance` that lets another digest replace the one at the same mark."""
    if ballot < record.promised:
        return record, Reply(STALE_EPOCH, record)
    if hrs < record.hwm:
        return record, Reply(REGRESSION, record)
    accepted = Record(max(record.promised, ballot), hrs, digest)
    return accepted, Reply(OK, accepted)


def promise_hiding_the_mark(record: Record, ballot: Ballot) -> tuple[Record, Reply]:
    """:func:`promise` that answers as if nothing had been signed: the promoter reads no mark."""
    record, reply = promise(record, ballot)
    return record, Reply(reply.status, reply.record._replace(hwm=ZERO, digest=""))


def anyone_may_send(ballot: Ballot, sender: str) -> str | None:
    """No check of who owns a ballot."""
    return None


# --- the properties --------------------------------------------------------------------


def explore(history: History) -> None:
    """Run a history against the real register and report what it reached."""
    sim = simulate(history)
    # Steer generation towards the hard cases, each on its own: many signatures,
    # superseded signers, engines asking for marks already taken.
    target(float(sim.stats.signed), label="signatures")
    target(float(sim.stats.fenced), label="fenced signers")
    target(float(sim.stats.clashes), label="clashing marks")
    # Statistics (pytest --hypothesis-show-statistics) show the hard cases are reached.
    event(f"promotions completed: {min(sim.stats.completed, 3)}{'+' if sim.stats.completed >= 3 else ''}")
    event(f"signatures: {'0' if not sim.stats.signed else '1-4' if sim.stats.signed < 5 else '5+'}")
    for status in (STALE_EPOCH, CONFLICT, REGRESSION, RECOVERING):
        if status in sim.stats.statuses:
            event(f"a replica answered {status}")
    if sim.stats.lost:
        event(f"a disk was lost, then {'rejoined' if sim.stats.rejoined else 'not rejoined'}")
    if sim.stats.fenced:
        event("a signer was fenced (STALE_EPOCH)")
    if sim.stats.clashes:
        event("a signature was refused (CONFLICT/REGRESSION)")


@REAL_RUNS
@given(histories(min_steps=MAX_STEPS // 3))
def test_the_real_register_keeps_every_invariant(history: History) -> None:
    """Two or three nodes, one or two keys, engines that jump ahead or lag behind."""
    explore(history)


@REAL_RUNS
@given(histories(nodes=st.just(2), keys=st.just(1), disciplined=st.just(False), min_steps=MAX_STEPS // 3))
def test_the_real_register_keeps_every_invariant_in_a_duel(history: History) -> None:
    """Two nodes fighting over one key with lagging engines: the densest contention.

    Every promotion supersedes the other node, and each engine asks for marks
    the other may already have signed, so fencing and the conflict check are
    exercised in most histories.
    """
    explore(history)


@REAL_RUNS
@given(histories(min_steps=MAX_STEPS // 3, steps=DISK_ACTIONS))
def test_the_real_register_keeps_every_invariant_when_disks_are_lost(history: History) -> None:
    """Lost disks and backups put back, rejoins, lost messages: nothing signed is lost."""
    explore(history)


def test_a_partition_story_with_the_real_register() -> None:
    """A hand-written history: a frozen active, a promoted standby, then the active wakes up.

    Kept as a readable example of what the generated histories do, and to
    pin that the harness reaches the interesting outcomes at all.
    """
    story = (
        Promote(0, 0),
        Flush(),  # a promoted at e1
        Sign(0, 0),
        Flush(),  # a signs 1/0/1
        Promote(1, 0),
        Flush(),  # b's 1@b is above 1@a: promised; b repairs 1/0/1
        Sign(0, 0),  # a wakes up and asks for 1/0/2
        Sign(1, 0),  # b's engine is behind: asks for 1/0/1 again
        Flush(),
        Sign(0, 0),  # only b can sign now
        Flush(),  # b signs 1/0/2
    )
    sim = simulate(History(2, 1, False, story))
    a, b = sim.nodes
    key = KEYS[0]
    assert a.sessions[key].phase == STOPPED
    assert b.sessions[key].phase == SIGNING
    assert {STALE_EPOCH, CONFLICT, OK} <= sim.stats.statuses
    assert sim.stats.signed == 2
    assert sim.records["r1"][key].hwm == HRS(1, 0, 2)


def test_a_lost_disk_story_with_the_real_register() -> None:
    """A replica that lost its disk answers nothing until both others let it rejoin.

    a signs 1/0/2 on r1 and r2 while r3 is down; r1's disk is lost and r2
    is down: b cannot be promoted by the recovering r1 and the lagging r3
    (that would repair 1/0/1 and let b sign 1/0/2 again). Once r2 is back,
    r1 rejoins from r2 and r3, and b's promotion repairs 1/0/2.
    """
    story = (
        Promote(0, 0),
        Flush(),  # a at 1@a
        Sign(0, 0),
        Flush(),  # 1/0/1 everywhere
        Crash(2),
        Sign(0, 0),
        Flush(),
        Restart(2),  # 1/0/2 on r1 and r2 only
        LoseDisk(0, 0),
        Crash(1),
        Promote(1, 0),
        Flush(),
        GiveUp(0),  # r1 RECOVERING, r3 promises: no majority
        Rejoin(0),
        Rejoin(0),  # r2 is down: nothing to read
        Restart(1),
        Rejoin(0),
        Rejoin(0),  # r2 then r3: rejoined
        Promote(1, 0),
        Flush(),
    )
    sim = simulate(History(2, 1, False, story))
    key = KEYS[0]
    b = sim.nodes[1]
    assert RECOVERING in sim.stats.statuses
    assert sim.stats.rejoined == 1
    assert b.sessions[key].phase == SIGNING
    assert b.sessions[key].best.hwm == HRS(1, 0, 2)


def test_the_simulation_is_deterministic() -> None:
    """The same history gives the same log, so a counterexample replays exactly."""
    actions = tuple(Deliver(i) if i % 3 else Promote(i, i) for i in range(40)) + (Flush(),)
    story = History(3, 2, False, actions)
    assert simulate(story).log == simulate(story).log


# --- the negative controls: the checker must catch each missing guard -----------------


# Each prints its shrunk history and log (shown with pytest -s, or when it fails).


def test_without_the_epoch_check_a_superseded_signer_keeps_signing() -> None:
    history, broken = counterexample("I2", Variant(advance_fn=advance_without_epoch_check))
    print("\n--- negative control (a): no epoch check ---\n" + summary(history, broken))
    promotion, stale = broken.events
    assert stale.purpose == SIGN and stale.node != promotion.node
    # The same history is safe with the real register: the epoch check is what fences.
    assert violation(history) is None


def test_without_the_conflict_check_two_digests_get_signed_at_one_mark() -> None:
    history, broken = counterexample("I1", Variant(advance_fn=advance_without_conflict_check))
    print("\n--- negative control (b): no conflict check ---\n" + summary(history, broken))
    # Two real signatures, not a read repair: a double sign.
    assert [e.purpose for e in broken.events] == [SIGN, SIGN]
    assert violation(history) is None


def test_without_the_mark_in_promises_a_promotion_loses_a_signature() -> None:
    """The third control, for I3: a promoter that cannot read the marks repairs too low."""
    history, broken = counterexample("I3", Variant(promise_fn=promise_hiding_the_mark))
    print("\n--- negative control (c): promises hide the mark ---\n" + summary(history, broken))
    signed, promotion = broken.events
    assert signed.purpose == SIGN and promotion.hrs < signed.hrs
    assert violation(history) is None


def test_a_lost_disk_read_as_nothing_signed_loses_a_signature() -> None:
    """(d) A replica that lost its disk and answers as new lets a promotion repair too low."""
    history, broken = counterexample("I3", Variant(detect_loss=False), DISK_ACTIONS)
    print("\n--- negative control (d): a lost disk read as empty ---\n" + summary(history, broken))
    assert any(isinstance(a, LoseDisk) for a in history.actions)
    assert violation(history) is None


def test_a_rejoin_from_one_replica_loses_a_signature() -> None:
    """(e) Rejoining from one other replica, which may be the one that lagged, is not enough.

    Written out rather than searched for: a random search needs thousands of
    histories to line the steps up. r2 is down while a signs 1/0/2 on r1 and
    r3; r1's disk is lost and r1 rejoins from r2 alone; b's promotion then
    reads r1 and r2, neither of which holds 1/0/2.
    """
    story = (
        Promote(0, 0),
        Flush(),  # a at 1@a
        Sign(0, 0),
        Flush(),  # 1/0/1 everywhere
        Crash(1),
        Sign(0, 0),
        Flush(),
        Restart(1),  # 1/0/2 on r1 and r3; r2 lags
        LoseDisk(0, 0),
        Rejoin(0),  # r1 reads r2 first ...
        Promote(1, 0),
        Flush(),  # ... and b reads r1 and r2
    )
    history = History(2, 1, False, story)
    broken = violation(history, Variant(rejoin_reads=1))
    assert broken is not None and broken.invariant == "I3", broken
    print("\n--- negative control (e): rejoin from one replica ---\n" + summary(history, broken))
    signed, promotion = broken.events
    assert signed.hrs == HRS(1, 0, 2) and promotion.hrs == HRS(1, 0, 1)
    # With the real rejoin r1 waits for r3 too: b's promotion finds no majority, nothing is lost.
    assert violation(history) is None


def test_without_the_owner_check_a_node_signs_at_another_nodes_ballot() -> None:
    """(f) Replicas that accept any sender let a superseded signer take the new owner's ballot."""
    history, broken = counterexample("I4", Variant(sender_check=anyone_may_send))
    print("\n--- negative control (f): no owner check ---\n" + summary(history, broken))
    assert any(isinstance(a, Rogue) for a in history.actions)
    assert violation(history) is None


def test_the_negative_controls_cannot_pass_against_the_real_register() -> None:
    """The search itself must come back empty-handed when nothing is broken.

    Otherwise the two tests above would pass whatever the variant does.
    """
    with pytest.raises(NoSuchExample):
        find(
            histories(min_steps=MAX_STEPS // 3),
            lambda h: violation(h) is not None,
            settings=settings(SEARCH, max_examples=500),
        )
