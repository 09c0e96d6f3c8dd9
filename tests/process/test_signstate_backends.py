"""The register's behaviour, the same on every backend.

Each test runs against the built-in trio, a real three-member etcd cluster
and a real PostgreSQL server, through the signer API a signer uses (the
daemons' Unix sockets): stale ballots, conflicts, regressions, epochs not
promoted here, a key pushed to the limit and reset, an epoch that outlives
a restart of its daemon, restarts of the store and lost connections.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from backends_support import BACKENDS, Arena, arena
from signstate_support import reset_key

from highlander.adapters.waiting import wait_until
from highlander.signstate.client import Conflict, Refused, Superseded
from highlander.signstate.register import HRS, MAX_HEIGHT, MAX_ROUND, KeyId, Record

pytestmark = pytest.mark.signstate

CHAIN = "backends-1"


@pytest.fixture(params=BACKENDS)
def register(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Arena]:
    with arena(request.param, tmp_path) as started:
        yield started


def digest(n: int) -> str:
    return f"{n:064x}"


def test_a_promotion_supersedes_the_signer_before_it(register: Arena) -> None:
    key = KeyId(CHAIN, "stale")
    with register.client("node-a") as a, register.client("node-b") as b:
        first = a.promote(key)
        a.advance(key, first.epoch, HRS(10, 0, 1), digest(1))
        second = b.promote(key)
        assert second.epoch > first.epoch and second.hwm == HRS(10, 0, 1) and second.digest == digest(1)
        with pytest.raises(Superseded):
            a.advance(key, first.epoch, HRS(11, 0, 1), digest(2))
        b.advance(key, second.epoch, HRS(11, 0, 1), digest(3))
        again = a.promote(key)
        assert again.epoch > second.epoch and again.hwm == HRS(11, 0, 1)
        with pytest.raises(Superseded):
            b.advance(key, second.epoch, HRS(12, 0, 1), digest(4))


def test_an_epoch_promoted_on_another_node_is_refused(register: Arena) -> None:
    key = KeyId(CHAIN, "borrowed")
    with register.client("node-a") as a, register.client("node-c") as c:
        session = a.promote(key)
        with pytest.raises(Refused) as refused:
            c.advance(key, session.epoch, HRS(1, 0, 1), digest(1))
        assert refused.value.status == "REFUSED"
        a.advance(key, session.epoch, HRS(1, 0, 1), digest(1))


def test_conflicts_and_regressions_are_refused_and_retries_accepted(register: Arena) -> None:
    key = KeyId(CHAIN, "conflict")
    with register.client("node-a") as a:
        session = a.promote(key)
        a.advance(key, session.epoch, HRS(5, 0, 2), digest(1))
        a.advance(key, session.epoch, HRS(5, 0, 2), digest(1))  # a retry of the same signature
        with pytest.raises(Conflict):
            a.advance(key, session.epoch, HRS(5, 0, 2), digest(2))
        with pytest.raises(Refused) as behind:
            a.advance(key, session.epoch, HRS(5, 0, 1), digest(3))
        assert behind.value.status == "REGRESSION"
        a.advance(key, session.epoch, HRS(5, 0, 3), digest(4))
        found = a.status(key)
        assert all(r == Record(r.promised, HRS(5, 0, 3), digest(4)) for r in found.values()), found
        assert all(isinstance(r, Record) for r in found.values()), found


def test_a_key_at_the_limit_is_reset_by_root_and_signing_resumes(register: Arena) -> None:
    key = KeyId(CHAIN, "limit")
    with register.client("node-a") as a:
        session = a.promote(key)
        a.advance(key, session.epoch, HRS(MAX_HEIGHT, MAX_ROUND, 3), digest(9))  # nothing can follow this
        with pytest.raises(Refused):
            a.advance(key, session.epoch, HRS(MAX_HEIGHT, MAX_ROUND, 3), digest(10))
    done = reset_key(register.socket("node-a"), key, "100/0/3")
    assert done.returncode == 0, done.stderr
    assert "set to 100/0/3" in done.stdout
    with register.client("node-b") as b:
        resumed = b.promote(key)
        assert resumed.hwm == HRS(100, 0, 3)
        b.advance(key, resumed.epoch, HRS(101, 0, 1), digest(11))


def test_an_epoch_outlives_a_restart_of_its_daemon(register: Arena) -> None:
    key = KeyId(CHAIN, "daemon-restart")
    with register.client("node-a") as a:
        session = a.promote(key)
        a.advance(key, session.epoch, HRS(3, 0, 1), digest(1))
    register.nodes.kill("node-a")
    register.nodes.start("node-a")
    with register.client("node-a") as a:
        a.advance(key, session.epoch, HRS(3, 0, 2), digest(2))


def advance_when_back(register: Arena, node: str, key: KeyId, epoch: int, hrs: HRS, sign: str) -> None:
    """Advance, asking again while the register answers NO_QUORUM (it is coming back)."""

    def advanced() -> bool:
        try:
            with register.client(node, timeout=5) as client:
                client.advance(key, epoch, hrs, sign)
            return True
        except Refused as exc:
            if exc.status not in ("NO_QUORUM", "ERROR"):
                raise
            return False
        except ConnectionError:
            return False

    wait_until(advanced, timeout=60, what=f"an advance on {node} after the store came back", interval=0.3)


def test_everything_accepted_survives_a_restart_of_the_store(register: Arena) -> None:
    key = KeyId(CHAIN, "store-restart")
    with register.client("node-a") as a:
        session = a.promote(key)
        for height in range(1, 21):
            a.advance(key, session.epoch, HRS(height, 0, 1), digest(height))
    register.restart_store()
    advance_when_back(register, "node-a", key, session.epoch, HRS(21, 0, 1), digest(21))
    with register.client("node-a") as a:
        with pytest.raises(Conflict):
            a.advance(key, session.epoch, HRS(21, 0, 1), digest(99))
    with register.client("node-b") as b:
        taken = b.promote(key)
        assert taken.hwm == HRS(21, 0, 1) and taken.digest == digest(21)


def test_signing_resumes_after_the_connections_are_lost(register: Arena) -> None:
    key = KeyId(CHAIN, "connections")
    with register.client("node-a") as a:
        session = a.promote(key)
        a.advance(key, session.epoch, HRS(1, 0, 1), digest(1))
    register.cut_connections()
    advance_when_back(register, "node-a", key, session.epoch, HRS(2, 0, 1), digest(2))
    with register.client("node-a") as a:
        with pytest.raises(Refused) as behind:
            a.advance(key, session.epoch, HRS(1, 0, 1), digest(1))
        assert behind.value.status == "REGRESSION"
