"""A short nemesis on the etcd and PostgreSQL backends, in the style of the trio's.

A sign-state daemon on each of three nodes, all on one real store, and
``demo-signer`` processes competing for one key (failovers, a second signer
beside a running one). The nemesis, for a bounded time and drawn from one
seeded generator (``HIGHLANDER_NEMESIS_SEED`` repeats a run):

- etcd: a member killed with SIGKILL and restarted, or frozen with SIGSTOP
  and woken (at times two at once: no quorum);
- PostgreSQL: the server crashed (immediate shutdown) and restarted, or
  every connection of the daemons cut;
- both: a daemon killed and restarted.

At the end the journal of every signature handed out is checked: zero
double signs. The negative control runs the same nemesis with one signer
that never asks the register, and the same checker must find its double
signs.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from backends_support import Arena, arena
from signstate_support import SignerChurn, Signers, check_journals, nemesis_seed

from highlander.lab.stores import LocalEtcd, LocalPostgres
from highlander.lab.replicas import NODES

pytestmark = pytest.mark.signstate

SHORT = 30.0


class StoreNemesis(SignerChurn):
    """Faults of the store and of the daemons, and churn of signers."""

    def __init__(self, register: Arena, signers: Signers, rng: random.Random) -> None:
        self.register = register
        super().__init__(signers, rng)

    def step(self) -> None:
        store = self.register.store
        faults = [(3, self.failover), (1, self.second_signer), (1, self.restart_daemon)]
        if isinstance(store, LocalEtcd):
            faults += [(2, self.kill_member), (2, self.freeze_member), (3, self.heal_members)]
        elif isinstance(store, LocalPostgres):
            faults += [(1, self.crash_postgres), (2, self.cut_connections)]
        action = self.rng.choices([a for _, a in faults], weights=[w for w, _ in faults])[0]
        action()

    # --- the store ---

    def kill_member(self) -> None:
        assert isinstance(self.register.store, LocalEtcd)
        member = self.rng.choice(LocalEtcd.MEMBERS)
        self.register.store.end(member, signal.SIGKILL)
        self.note(f"kill -9 {member}")

    def freeze_member(self) -> None:
        assert isinstance(self.register.store, LocalEtcd)
        member = self.rng.choice(LocalEtcd.MEMBERS)
        self.register.store.send(member, signal.SIGSTOP)
        self.note(f"SIGSTOP {member}")

    def heal_members(self) -> None:
        etcd = self.register.store
        assert isinstance(etcd, LocalEtcd)
        for member in LocalEtcd.MEMBERS:
            etcd.send(member, signal.SIGCONT)
        etcd.start()
        self.note("etcd members woken and restarted")

    def crash_postgres(self) -> None:
        postgres = self.register.store
        assert isinstance(postgres, LocalPostgres)
        postgres.crash()
        time.sleep(self.rng.uniform(0, 1.0))
        postgres.start()
        self.note("PostgreSQL crashed and restarted")

    def cut_connections(self) -> None:
        assert isinstance(self.register.store, LocalPostgres)
        self.note(f"cut {self.register.store.cut_connections()} PostgreSQL connection(s)")

    # --- daemons and signers ---

    def restart_daemon(self) -> None:
        node = self.rng.choice(NODES)
        self.register.nodes.kill(node)
        self.register.nodes.start(node)
        self.note(f"daemon {node} killed and restarted")

    def calm(self) -> None:
        if isinstance(self.register.store, LocalEtcd):
            self.heal_members()
        elif isinstance(self.register.store, LocalPostgres):
            self.register.store.start()


@pytest.fixture(params=["etcd", "postgresql"])
def register(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Arena]:
    with arena(request.param, tmp_path, timeout=0.5) as started:
        try:
            yield started
        finally:
            if isinstance(started.store, LocalEtcd):
                for member in LocalEtcd.MEMBERS:
                    started.store.send(member, signal.SIGCONT)


def run_nemesis(register: Arena, workdir: Path, seconds: float, unguarded: bool = False) -> dict:  # type: ignore[type-arg]
    chosen = nemesis_seed()
    print(f"nemesis seed {chosen} (HIGHLANDER_NEMESIS_SEED={chosen} repeats it)")
    signers = Signers(workdir, register.nodes)
    nemesis = StoreNemesis(register, signers, random.Random(chosen))
    try:
        signers.start("node-a")
        if unguarded:
            nemesis.kept.add(signers.start("node-b", guard=False).name)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            nemesis.step()
            time.sleep(nemesis.rng.uniform(0.2, 1.5))
        nemesis.calm()
        time.sleep(1.0)
    finally:
        signers.stop_all()
        print("\n".join(nemesis.log))
    _, report = check_journals(signers.journals())
    return report  # type: ignore[no-any-return]


def test_no_double_sign_under_a_nemesis_of_the_store(register: Arena, tmp_path: Path) -> None:
    report = run_nemesis(register, tmp_path, SHORT)
    signed = sum(s["count"] for s in report["signers"])
    assert report["double_signs"] == [], report["double_signs"]
    assert signed > 100, f"only {signed} signatures: the nemesis left nothing to check"
    print(f"{register.backend}: {signed} signatures by {len(report['signers'])} runs: no double sign")


def test_negative_control_an_unguarded_signer_is_caught(register: Arena, tmp_path: Path) -> None:
    """The same nemesis and checker with one signer that never asks the register."""
    report = run_nemesis(register, tmp_path, 10.0, unguarded=True)
    assert report["double_signs"], "check-journals found no double sign by the unguarded signer"
