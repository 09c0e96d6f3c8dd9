"""The register under attack, on three real daemons on loopback.

Each test is one way the register was made to accept a double sign, or to
stop serving, with the daemons of the first version: ballots borrowed from
another node, ballots and heights pushed to the integer limits, a frozen
replica, a flood of connections that never authenticate, a lost or
rolled-back disk read as "nothing signed yet", a socket path that named a
file, many signers at once. Every process is stopped by PID by its fixture.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from harness import HIGHLANDER
from signstate_support import TIMEOUT, as_peer, exchange, frame, reset_key, tcp

from highlander.adapters.waiting import wait_until
from highlander.lab.replicas import LoopbackReplicas
from highlander.signstate.client import Refused, SignerClient, Superseded
from highlander.signstate.register import BALLOT_STEP, HRS, MAX_HEIGHT, MAX_ROUND, Ballot, KeyId, Record
from highlander.signstate.wire import Request, request_document

pytestmark = pytest.mark.signstate

CHAIN = "hardening-1"


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[LoopbackReplicas]:
    replicas = LoopbackReplicas(tmp_path / "trio", timeout=1.0)
    try:
        replicas.start()
        yield replicas
    finally:
        replicas.stop()


def client(replicas: LoopbackReplicas, node: str) -> SignerClient:
    return SignerClient(replicas.socket(node), timeout=TIMEOUT)


def digest(n: int) -> str:
    return f"{n:064x}"


# --- ballots belong to the node they were promised to ----------------------------------------


def test_a_superseded_signer_cannot_take_the_new_owners_epoch(replicas: LoopbackReplicas) -> None:
    """node-a's signer, told STALE_EPOCH, retries at the epoch node-b was promised: refused,
    and node-b's next signature goes through (the first version said OK, then CONFLICT for b)."""
    key = KeyId(CHAIN, "borrowed")
    with client(replicas, "node-a") as a, client(replicas, "node-b") as b:
        old = a.promote(key)
        a.advance(key, old.epoch, HRS(12, 0, 1), digest(1))
        new = b.promote(key)
        with pytest.raises(Superseded):
            a.advance(key, old.epoch, HRS(13, 0, 1), digest(2))
        with pytest.raises(Refused) as borrowed:
            a.advance(key, new.epoch, HRS(13, 0, 1), digest(2))
        assert borrowed.value.status in ("STALE_EPOCH", "REFUSED")
        b.advance(key, new.epoch, HRS(13, 0, 1), digest(3))
        records = b.status(key)
    assert {r.hwm for r in records.values()} == {HRS(13, 0, 1)}
    assert {r.digest for r in records.values()} == {digest(3)}


def test_a_node_cannot_skip_promotion_at_a_ballot_that_is_not_its_own(replicas: LoopbackReplicas) -> None:
    key = KeyId(CHAIN, "skipped")
    with client(replicas, "node-a") as a:
        session = a.promote(key)
        a.advance(key, session.epoch, HRS(5, 0, 1), digest(5))
    hrs = HRS(6, 0, 1)
    with as_peer(replicas, "node-b") as sock:
        for owner in ("node-a", "node-c"):  # the active's ballot, and a third node's higher one
            ballot = Ballot(session.epoch + (owner == "node-c") * 5, owner)
            request = request_document(Request(1, "advance", key, ballot, hrs, digest(6)))
            answer = exchange(sock, frame(request))
            assert answer["status"] == "ERROR"
            assert f"belongs to {owner}, not to node-b" in str(answer["error"])
        promise = request_document(Request(2, "promise", key, Ballot(session.epoch + 1, "node-c")))
        assert "not to node-b" in str(exchange(sock, frame(promise))["error"])
    with client(replicas, "node-a") as a:
        assert a.status(key)["node-a"].hwm == HRS(5, 0, 1)


# --- no input bricks the register ------------------------------------------------------------


def test_a_ballot_far_above_the_promise_is_refused(replicas: LoopbackReplicas) -> None:
    """A promise at 2^63-1 over TLS once locked every later promotion out for good."""
    key = KeyId(CHAIN, "far-ballot")
    with client(replicas, "node-a") as a:
        session = a.promote(key)
    with as_peer(replicas, "node-b") as sock:
        for counter in (session.epoch + BALLOT_STEP + 1, 2**53 - 1, 2**63 - 1):
            answer = exchange(sock, frame(request_document(Request(1, "promise", key, Ballot(counter, "node-b")))))
            assert answer["status"] in ("REFUSED", "ERROR"), answer
        within = exchange(
            sock, frame(request_document(Request(2, "promise", key, Ballot(session.epoch + 3, "node-b"))))
        )
        assert within["status"] == "OK"
    with client(replicas, "node-a") as a:  # promotions go on, above the step that was allowed
        again = a.promote(key)
        a.advance(key, again.epoch, HRS(1, 0, 1), digest(1))
    assert again.epoch == session.epoch + 4


def test_a_mark_at_the_limit_is_lowered_by_reset_and_signing_resumes(replicas: LoopbackReplicas) -> None:
    """Height 2^63-1 through the socket once blocked a key forever; now heights stop at
    MAX_HEIGHT, and root's reset (a majority, behind a fresh promotion) lowers a mark."""
    key = KeyId(CHAIN, "at-the-limit")
    with client(replicas, "node-a") as a:
        session = a.promote(key)
        answer = a.call(
            {
                "op": "advance",
                "chain_id": CHAIN,
                "key_id": key.key_id,
                "epoch": session.epoch,
                "height": 2**63 - 1,
                "round": 0,
                "step": 1,
                "digest": "aa",
            }
        )
        assert answer["status"] == "ERROR" and f"0 to {MAX_HEIGHT}" in str(answer["error"])
        a.advance(key, session.epoch, HRS(MAX_HEIGHT, MAX_ROUND, 3), digest(9))  # nothing can follow this
        with pytest.raises(Refused):
            a.advance(key, session.epoch, HRS(MAX_HEIGHT, MAX_ROUND, 3), digest(10))
    done = reset_key(replicas.socket("node-a"), key, "100/0/3")
    assert done.returncode == 0, done.stderr
    assert "set to 100/0/3" in done.stdout and "3 of 3 replicas answered" in done.stdout
    with client(replicas, "node-b") as b:
        resumed = b.promote(key)
        assert resumed.hwm == HRS(100, 0, 3)
        b.advance(key, resumed.epoch, HRS(101, 0, 1), digest(11))


def test_reset_and_rejoin_are_for_root_only(replicas: LoopbackReplicas) -> None:
    """A signer's group may use the socket; only root may lower a mark or rebuild a replica."""
    path = replicas.socket("node-a")
    # Let the unprivileged child reach the socket at all: the test's own directories only.
    opened = [p for p in (path, *path.parents) if p != Path("/") and not stat.S_IMODE(p.stat().st_mode) & 0o001]
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in opened}
    for p, mode in modes.items():
        os.chmod(p, mode | (0o006 if p == path else 0o001))
    reset = b'{"op":"reset","chain_id":"c","key_id":"k","height":1,"round":0,"step":1}\n'
    code = (
        "import os, socket, sys\n"
        "os.setgid(65534); os.setuid(65534)\n"
        f"s = socket.socket(socket.AF_UNIX); s.connect({str(path)!r})\n"
        'for line in (%r, b\'{"op":"rejoin"}\\n\'):\n'
        "    s.sendall(line); sys.stdout.write(s.makefile('rb').readline().decode())\n" % reset
    )
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    finally:
        for p, mode in modes.items():
            os.chmod(p, mode)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("is for root only") == 2, done.stdout


# --- one frozen replica costs one timeout, not every request -----------------------------------


def test_a_frozen_replica_does_not_stall_the_other_two(replicas: LoopbackReplicas) -> None:
    """With node-c stopped (SIGSTOP), node-a and node-b answer every advance and promotion;
    the first version answered mostly NO_QUORUM while its threads waited on node-c."""
    key = KeyId(CHAIN, "frozen-peer")
    replicas.signal("node-c", signal.SIGSTOP)
    try:
        slow = 0
        with client(replicas, "node-a") as a:
            session = a.promote(key)
            for height in range(1, 301):
                started = time.monotonic()
                a.advance(key, session.epoch, HRS(height, 0, 1), digest(height))  # raises if not OK
                slow += time.monotonic() - started > replicas.timeout / 2
            keys = [KeyId(CHAIN, f"frozen-{i}") for i in range(20)]
            with ThreadPoolExecutor(10) as pool:  # concurrent signers, as a node with many validators has
                list(pool.map(lambda k: advance_many(replicas, k, 20), keys))
        assert slow <= 1, f"{slow} advances waited for the frozen replica"
    finally:
        replicas.signal("node-c", signal.SIGCONT)
    with client(replicas, "node-a") as a:  # node-c serves again once it wakes (a lagging replica is normal)
        session = a.promote(key)

        def node_c_holds_it() -> bool:
            a.advance(key, session.epoch, HRS(1000, 0, 1), digest(1000))  # again: the same mark is idempotent
            held = a.status(key)["node-c"]
            return isinstance(held, Record) and held.hwm == HRS(1000, 0, 1)

        wait_until(node_c_holds_it, timeout=20, what="node-c to hold the next mark")


def advance_many(replicas: LoopbackReplicas, key: KeyId, count: int) -> None:
    with client(replicas, "node-a") as a:
        session = a.promote(key)
        for height in range(1, count + 1):
            a.advance(key, session.epoch, HRS(height, 0, 2), digest(height))


# --- connections that never authenticate take nothing from the peers --------------------------


def test_a_flood_of_unauthenticated_connections_does_not_keep_peers_out(replicas: LoopbackReplicas) -> None:
    """300 idle TCP connections and a flood of 50 more each second at node-a's peer port:
    every fresh peer connection still gets through, and a restarted node-b gets its quorum
    (the first version's 64 slots filled before the handshake)."""
    stop = threading.Event()
    idle: list[socket.socket] = []

    def flood() -> None:
        while not stop.wait(0.02):
            try:
                idle.append(tcp(replicas))
            except OSError:
                pass

    try:
        idle.extend(tcp(replicas) for _ in range(300))
        flooder = threading.Thread(target=flood)
        flooder.start()
        try:
            for _ in range(8):
                with as_peer(replicas, "node-b") as sock:
                    status = request_document(Request(1, "status", KeyId(CHAIN, "flooded")))
                    assert exchange(sock, frame(status))["status"] == "OK"
            replicas.stop("node-b")
            replicas.start("node-b")
            key = KeyId(CHAIN, "flooded")
            for attempt in range(3):
                with client(replicas, "node-b") as b:
                    session = b.promote(key)
                    b.advance(key, session.epoch, HRS(attempt + 1, 0, 1), digest(attempt))
                    assert b.status(key)["node-a"] != "no answer"
        finally:
            stop.set()
            flooder.join()
    finally:
        for sock in idle:
            sock.close()
    assert "event=dropped reason=too-many-handshakes" in replicas.log("node-a").read_text()


# --- a lost or rolled-back disk is not "nothing signed yet" -------------------------------------


def sign_on_a_and_b(replicas: LoopbackReplicas, key: KeyId, heights: range) -> int:
    """Promote on node-a and sign ``heights`` while node-c is down (node-c lags)."""
    replicas.stop("node-c")
    with client(replicas, "node-a") as a:
        session = a.promote(key)
        for height in heights:
            a.advance(key, session.epoch, HRS(height, 0, 3), digest(height))
    return session.epoch


def ping(replicas: LoopbackReplicas, node: str) -> tuple[str, str]:
    with client(replicas, node) as c:
        return c.ping()


def test_a_lost_state_directory_makes_the_replica_recover_instead_of_starting_at_zero(
    replicas: LoopbackReplicas,
) -> None:
    """node-b's disk is lost while node-c lags and node-a is down: the first version let
    node-c be promoted at zero and sign heights node-a had signed. Now node-b is recovering,
    node-c gets no majority, and node-b rejoins only once both others are up."""
    key = KeyId(CHAIN, "lost-disk")
    sign_on_a_and_b(replicas, key, range(1, 11))
    replicas.kill("node-a")
    replicas.kill("node-b")
    shutil.rmtree(replicas.state_dir("node-b"))
    replicas.start("node-b")
    replicas.start("node-c")
    assert not replicas.state_dir("node-b").exists(), "the daemon must not create a lost state directory"
    node, recovering = ping(replicas, "node-b")
    assert node == "node-b" and "does not exist" in recovering and "rejoin" in recovering
    with client(replicas, "node-c") as c:
        with pytest.raises(Refused) as refused:
            c.promote(key)
        assert refused.value.status == "NO_QUORUM"
        assert "node-b=RECOVERING" in refused.value.detail or "recovering" in refused.value.detail

    rejoin = [*HIGHLANDER, "signstate", "rejoin", "--socket", str(replicas.socket("node-b"))]
    early = subprocess.run(rejoin, capture_output=True, text=True, timeout=60)
    assert early.returncode == 1 and "node-a did not give its records" in early.stderr, early.stderr
    replicas.start("node-a")
    done = subprocess.run(rejoin, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "rejoined node-b from node-a, node-c" in done.stdout
    assert ping(replicas, "node-b")[1] == ""
    replicas.stop("node-a")  # the promotion must now read node-b's rejoined mark
    with client(replicas, "node-c") as c:
        assert c.promote(key).hwm == HRS(10, 0, 3)


def test_a_log_older_than_its_seal_is_a_lost_replica(replicas: LoopbackReplicas) -> None:
    """An older copy of node-b's records put back (a backup restored) once read as valid
    and lowered its promise; the seal tells it is older than what node-b answered."""
    key = KeyId(CHAIN, "rolled-back")
    sign_on_a_and_b(replicas, key, range(1, 4))
    old = replicas.state_dir("node-b") / "log.old"
    shutil.copy2(replicas.state_dir("node-b") / "log", old)
    sign_on_a_and_b(replicas, key, range(4, 8))
    replicas.stop("node-b")
    os.replace(old, replicas.state_dir("node-b") / "log")
    replicas.start("node-b")
    replicas.start("node-c")
    recovering = ping(replicas, "node-b")[1]
    assert "rolled back or truncated" in recovering, recovering
    with client(replicas, "node-a") as a:
        assert a.status(key)["node-b"] == "recovering"


def test_a_missing_log_or_identity_is_a_lost_replica(replicas: LoopbackReplicas) -> None:
    for name, expected in (("log", "is missing"), ("identity", "no identity file")):
        replicas.stop("node-c")
        (replicas.state_dir("node-c") / name).unlink()
        replicas.start("node-c")
        assert expected in ping(replicas, "node-c")[1]
        with client(replicas, "node-c") as c:
            assert "rejoined node-c" in c.rejoin()
        assert ping(replicas, "node-c")[1] == ""


def test_init_refuses_a_directory_that_holds_a_replica(replicas: LoopbackReplicas) -> None:
    replicas.stop("node-c")
    done = subprocess.run(
        [*HIGHLANDER, "signstate", "init", "--config", str(replicas.config("node-c"))],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1 and "is not empty" in done.stderr and "rejoin" in done.stderr


# --- files the daemon meets ---------------------------------------------------------------------


def test_a_socket_path_that_is_a_regular_file_is_refused_and_kept(replicas: LoopbackReplicas) -> None:
    replicas.stop("node-c")
    path = replicas.socket("node-c")
    path.write_text("precious\n")
    process = subprocess.run(
        [*HIGHLANDER, "signstate", "serve", "--config", str(replicas.config("node-c"))],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert process.returncode == 1 and "exists and is not a socket" in process.stderr
    assert path.read_text() == "precious\n"
    path.unlink()


def test_temporary_files_of_an_interrupted_write_are_removed_at_start(replicas: LoopbackReplicas) -> None:
    replicas.stop("node-c")
    leftover = replicas.state_dir("node-c") / ".log.0123456789ab.highlander-tmp"
    leftover.write_bytes(b"half a snapshot")
    replicas.start("node-c")
    assert not leftover.exists()
    assert ping(replicas, "node-c")[1] == ""


def test_state_files_are_private(replicas: LoopbackReplicas) -> None:
    directory = replicas.state_dir("node-a")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for name in ("identity", "log", "seal"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600, name


# --- many signers at once -----------------------------------------------------------------------


def test_a_hundred_signers_at_once_are_all_served(replicas: LoopbackReplicas) -> None:
    """The first version's listen backlog was 5 and its connection limit 64: the 7th signer
    connecting at once, and the 70th connected, were turned away."""
    barrier = threading.Barrier(100)

    def signer(i: int) -> Record:
        key = KeyId(CHAIN, f"many-{i}")
        barrier.wait(timeout=30)
        with client(replicas, "node-a") as a:
            session = a.promote(key)
            for height in range(1, 11):
                a.advance(key, session.epoch, HRS(height, 0, 1), digest(height))
            return a.status(key)["node-a"]  # type: ignore[return-value]

    with ThreadPoolExecutor(100) as pool:
        records = list(pool.map(signer, range(100)))
    assert all(r.hwm == HRS(10, 0, 1) for r in records)
