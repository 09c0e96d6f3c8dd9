"""A nemesis against the register, in the spirit of Jepsen.

Three real replica daemons on loopback, every link between them through a
relay; signers that compete for a key: ``demo-signer`` processes on a fast
synthetic chain (the socket API: they ask before every signature), and for a
second key FilePV-like signers under ``highlander signstate follow`` (they
sign first; a promotion skips a height margin and a change not replicated
within the deadline gets the signer killed), each promoted on its node,
several at once; and a nemesis that, for a bounded time, mixes:

- links cut, blackholed (a partition the sender cannot see) or slowed by
  random delays, then healed;
- replicas killed with SIGKILL and restarted, frozen with SIGSTOP and woken;
- a replica's disk lost (its state directory removed) or rolled back (an
  older copy put back), after which it is recovering until rejoined;
- signers of either kind killed, started on another node (a failover: it
  supersedes), or started beside a running one (two active signers).

Everything is drawn from one seeded generator (printed, and set with
``HIGHLANDER_NEMESIS_SEED``); nothing depends on timing to be safe, only on
the register. At the end the journals of every signature handed out are
checked: zero double signs. The negative controls run the same nemesis with
one signer of each kind that does not ask the register, and the same
checkers must find their double signs. CI runs a short nemesis; ``-m soak`` a
long one.
"""

from __future__ import annotations

import random
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from signstate_support import (
    FilePVSigners,
    Relay,
    SignerChurn,
    Signers,
    check_journals,
    filepv_double_signs,
    nemesis_seed,
    relayed,
)

from highlander.lab.replicas import NODES, LoopbackReplicas
from highlander.signstate.client import SignerClient

pytestmark = pytest.mark.signstate

SHORT = 45.0  # seconds of nemesis in the default run
LONG = 600.0  # with -m soak
# Signatures of each kind a run must have made for its check to mean something.
ENOUGH_SOCKET = 100
ENOUGH_FILEPV = 50


class Nemesis(SignerChurn):
    """Faults on a relayed trio and churn of signers, one random step at a time.

    At most one replica's disk is lost or rolled back at a time (the register
    assumes a majority of disks survive), and every fault is undone by
    :meth:`calm`.
    """

    def __init__(
        self,
        replicas: LoopbackReplicas,
        relays: dict[tuple[str, str], Relay],
        signers: Signers,
        filepv: FilePVSigners,
        rng: random.Random,
        workdir: Path,
    ) -> None:
        super().__init__(signers, rng)
        self.replicas = replicas
        self.relays = relays
        self.filepv = filepv
        self.workdir = workdir
        self.down: set[str] = set()  # killed
        self.frozen: set[str] = set()
        self.lost: str | None = None  # the replica whose disk is lost or rolled back
        self.backups: dict[str, Path] = {}
        self.rejoined = 0
        self.kept_filepv: set[int] = set()  # the same for FilePV signers, by PID

    def step(self) -> None:
        actions = [
            (3, self.break_link),
            (3, self.heal_link),
            (2, self.kill_replica),
            (3, self.restart_replica),
            (2, self.freeze_replica),
            (3, self.wake_replica),
            (1, self.backup),
            (1, self.lose_disk),
            (2, self.rejoin),
            (3, self.failover),
            (1, self.second_signer),
            (3, self.filepv_failover),
            (1, self.second_filepv_signer),
        ]
        action = self.rng.choices([a for _, a in actions], weights=[w for w, _ in actions])[0]
        action()

    # --- links ---

    def break_link(self) -> None:
        a, b = self.rng.sample(NODES, 2)
        how = self.rng.choice(["cut", "blackhole", "delay"])
        for link in ((a, b), (b, a)) if self.rng.random() < 0.7 else ((a, b),):
            relay = self.relays[link]
            relay.cut() if how == "cut" else relay.blackhole() if how == "blackhole" else relay.delay(0.05)
        self.note(f"{how} {a}<->{b}")

    def heal_link(self) -> None:
        link = self.rng.choice(list(self.relays))
        self.relays[link].heal()
        self.note(f"heal {link}")

    # --- replicas ---

    def kill_replica(self) -> None:
        node = self.rng.choice(NODES)
        self.replicas.kill(node)
        self.down.add(node)
        self.frozen.discard(node)
        self.note(f"kill -9 {node}")

    def restart_replica(self) -> None:
        if self.down:
            node = self.rng.choice(sorted(self.down))
            self.replicas.start(node)
            self.down.discard(node)
            self.note(f"restart {node}")

    def freeze_replica(self) -> None:
        node = self.rng.choice([n for n in NODES if n not in self.down] or NODES)
        if node not in self.down:
            self.replicas.signal(node, signal.SIGSTOP)
            self.frozen.add(node)
            self.note(f"SIGSTOP {node}")

    def wake_replica(self) -> None:
        if self.frozen:
            node = self.rng.choice(sorted(self.frozen))
            self.replicas.signal(node, signal.SIGCONT)
            self.frozen.discard(node)
            self.note(f"SIGCONT {node}")

    def backup(self) -> None:
        node = self.rng.choice(NODES)
        if node == self.lost:
            return  # nothing sound to copy
        copy = self.workdir / f"backup-{node}"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(self.replicas.state_dir(node), copy, ignore=shutil.ignore_patterns(".lock"))
        self.backups[node] = copy
        self.note(f"backup {node}")

    def lose_disk(self) -> None:
        if self.lost is not None:
            return
        node = self.rng.choice(NODES)
        self.replicas.kill(node)
        self.frozen.discard(node)
        shutil.rmtree(self.replicas.state_dir(node))
        how = "lost"
        if node in self.backups and self.rng.random() < 0.5:
            shutil.copytree(self.backups[node], self.replicas.state_dir(node))
            how = "rolled back to its backup"
        self.replicas.start(node)
        self.down.discard(node)
        self.lost = node
        self.note(f"{node}'s disk {how}")

    def rejoin(self) -> None:
        if self.lost is None or self.lost in self.down or self.lost in self.frozen:
            return
        try:
            with SignerClient(self.replicas.socket(self.lost), timeout=5) as client:
                if not client.ping()[1]:
                    self.note(f"{self.lost} was not lost after all (its backup was current)")
                else:
                    self.note(client.rejoin())
                    self.rejoined += 1
            self.lost = None
        except Exception as exc:  # not possible now (a peer down, cut or frozen): later
            self.note(f"rejoin {self.lost} not now: {exc}")

    # --- signers ---

    def filepv_failover(self) -> None:
        running = [p for p in self.filepv.started if p.poll() is None and p.pid not in self.kept_filepv]
        for follower in running:  # its signer dies with it
            follower.kill()
            follower.wait()
        node = self.rng.choice(NODES)
        started = self.filepv.start(node)
        self.note(f"FilePV failover: killed {len(running)}, {'started one' if started else 'no promotion'} on {node}")

    def second_filepv_signer(self) -> None:
        node = self.rng.choice(NODES)
        started = self.filepv.start(node)
        self.note(f"a second FilePV signer on {node}" if started else f"no FilePV promotion on {node}")

    def calm(self) -> None:
        """Undo every fault, so that the run ends on a healthy trio."""
        for relay in self.relays.values():
            relay.heal()
        for node in list(self.frozen):
            self.replicas.signal(node, signal.SIGCONT)
        for node in list(self.down):
            self.replicas.start(node)
        self.frozen.clear()
        self.down.clear()
        deadline = time.monotonic() + 30
        while self.lost is not None and time.monotonic() < deadline:
            self.rejoin()
            time.sleep(0.5)

    def sign_enough(self, timeout: float = 60) -> None:
        """On the healed trio, keep a guarded signer of each kind signing until the
        checkers have enough to check: a schedule that kept a majority away for
        most of the run (all three replicas lost, down or frozen at once) leaves
        few signatures, and one that never recovers fails the test below."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            socket_signed, filepv_signed = signed(self.signers, self.filepv)
            if socket_signed > ENOUGH_SOCKET and filepv_signed > ENOUGH_FILEPV:
                return
            if not any(s.process.poll() is None and s.name not in self.kept for s in self.signers.started):
                self.signers.start("node-a")
            if not any(p.poll() is None and p.pid not in self.kept_filepv for p in self.filepv.started):
                self.filepv.start("node-b")
            time.sleep(1.0)


def signed(signers: Signers, filepv: FilePVSigners) -> tuple[int, int]:
    """Signatures handed out so far: through the socket, and by FilePV signers."""
    _, report = check_journals(signers.journals())
    return sum(s["count"] for s in report["signers"]), sum(len(j.read_text().splitlines()) for j in filepv.journals())


Arena = tuple[LoopbackReplicas, dict[tuple[str, str], Relay], Signers, FilePVSigners]


@pytest.fixture
def arena(tmp_path: Path) -> Iterator[Arena]:
    """A relayed trio and its signers; everything stopped by PID, relays closed, whatever happens."""
    replicas = LoopbackReplicas(tmp_path / "trio", timeout=0.5)
    relays = relayed(replicas, seed=1)
    signers = Signers(tmp_path, replicas)
    filepv = FilePVSigners(tmp_path, replicas, ("filepv-chain", "validator"))
    try:
        replicas.start()
        yield replicas, relays, signers, filepv
    finally:
        signers.stop_all()
        filepv.stop_all()
        for node in NODES:
            replicas.signal(node, signal.SIGCONT)
        replicas.stop()
        for relay in relays.values():
            relay.close()


class Outcome(NamedTuple):
    nemesis: Nemesis
    report: dict  # type: ignore[type-arg]  # check-journals --json of the socket signers
    filepv_double_signs: dict[str, list[str]]
    filepv_signed: int


def run_nemesis(arena: Arena, seconds: float, workdir: Path, unguarded: bool = False) -> Outcome:
    replicas, relays, signers, filepv = arena
    chosen = nemesis_seed()
    print(f"nemesis seed {chosen} (HIGHLANDER_NEMESIS_SEED={chosen} repeats it)")
    nemesis = Nemesis(replicas, relays, signers, filepv, random.Random(chosen), workdir)
    signers.start("node-a")
    filepv.start("node-b")
    if unguarded:
        nemesis.kept.add(signers.start("node-b", guard=False).name)
        unguarded_filepv = filepv.start("node-c", guard=False)
        assert unguarded_filepv is not None
        nemesis.kept_filepv.add(unguarded_filepv.pid)
    # Besides the random steps, every run loses a disk a third of the way in and
    # rolls one back at two thirds (when a backup exists by then).
    started = time.monotonic()
    deadline = started + seconds
    scripted = [
        (started + seconds / 3, nemesis.lose_disk),
        (started + 2 * seconds / 3, nemesis.backup),
        (started + 2 * seconds / 3 + 2, nemesis.lose_disk),
    ]
    try:
        while time.monotonic() < deadline:
            if scripted and time.monotonic() >= scripted[0][0]:
                scripted.pop(0)[1]()
            else:
                nemesis.step()
            time.sleep(nemesis.rng.uniform(0.1, 1.5))
        nemesis.calm()
        nemesis.sign_enough()
    finally:
        signers.stop_all()
        filepv.stop_all()
        print("\n".join(nemesis.log))
    _, report = check_journals(signers.journals())
    journals = filepv.journals()
    return Outcome(nemesis, report, filepv_double_signs(journals), signed(signers, filepv)[1])


def assert_no_double_sign(outcome: Outcome) -> None:
    report = outcome.report
    signed = sum(s["count"] for s in report["signers"])
    assert report["double_signs"] == [], report["double_signs"]
    assert outcome.filepv_double_signs == {}, outcome.filepv_double_signs
    assert signed > ENOUGH_SOCKET, f"only {signed} signatures through the socket: the nemesis left nothing to check"
    assert outcome.filepv_signed > ENOUGH_FILEPV, f"only {outcome.filepv_signed} FilePV signatures: nothing to check"
    print(
        f"{signed} socket signatures by {len(report['signers'])} runs, {outcome.filepv_signed} FilePV signatures, "
        f"{outcome.nemesis.rejoined} rejoins: no double sign"
    )


def test_no_double_sign_under_the_nemesis(arena: Arena, tmp_path: Path) -> None:
    assert_no_double_sign(run_nemesis(arena, SHORT, tmp_path))


@pytest.mark.soak
def test_no_double_sign_under_a_long_nemesis(arena: Arena, tmp_path: Path) -> None:
    outcome = run_nemesis(arena, LONG, tmp_path)
    assert_no_double_sign(outcome)
    assert outcome.nemesis.rejoined > 0


def test_negative_control_unguarded_signers_are_caught(arena: Arena, tmp_path: Path) -> None:
    """The same nemesis and checkers with one signer of each kind that never asks the register."""
    outcome = run_nemesis(arena, 10.0, tmp_path, unguarded=True)
    assert outcome.report["double_signs"], "check-journals found no double sign by the unguarded socket signer"
    assert outcome.filepv_double_signs, "the FilePV checker found no double sign by the unguarded FilePV signer"
