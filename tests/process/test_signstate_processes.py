"""The register with real processes: three daemons on loopback and real
``demo-signer`` processes, crashed, frozen and starved of a majority; the
journals are then checked with ``highlander check-journals``.

Everything runs on loopback as the invoking user. Every process a test
starts is stopped by its fixture by PID, also when the test fails. Waits are
bounded; nothing asserts on how long anything took.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

from harness import HIGHLANDER
from signstate_support import BLOCK_TIME, CHAIN_ID, KEY_ID, Signers, check_journals

from highlander.adapters.waiting import wait_until
from highlander.drill.signer import lateness
from highlander.lab.ports import free_ports
from highlander.lab.replicas import NODES, LoopbackReplicas
from highlander.signstate.register import HRS

pytestmark = pytest.mark.signstate


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[LoopbackReplicas]:
    """Three sign-state daemons on loopback, stopped by PID whatever happens."""
    replicas = LoopbackReplicas(tmp_path / "trio", timeout=1.0)
    try:
        replicas.start()
        yield replicas
    finally:
        replicas.stop()


@pytest.fixture
def signers(tmp_path: Path, replicas: LoopbackReplicas) -> Iterator[Signers]:
    started = Signers(tmp_path, replicas)
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture
def unguarded(tmp_path: Path) -> Iterator[Signers]:
    """Signers without any daemon: they never ask the register."""
    started = Signers(tmp_path, None)
    try:
        yield started
    finally:
        started.stop_all()


def mark(entry: dict) -> tuple[int, int, int]:  # type: ignore[type-arg]
    return entry["height"], entry["round"], entry["step"]


def assert_marks_continue(report: dict) -> None:  # type: ignore[type-arg]
    """Each signer strictly above itself, and each new signer above the one before it."""
    assert not report["regressions"], report["regressions"]
    runs = sorted(report["signers"], key=lambda s: s["epoch"])
    for before, after in itertools.pairwise(runs):
        assert mark(after["first"]) > mark(before["last"]), (before, after)
        assert after["first"]["time"] > before["last"]["time"], (before, after)


def test_crashes_of_replicas_and_signers_never_double_sign(replicas: LoopbackReplicas, signers: Signers) -> None:
    """(a) A few rounds of: kill -9 a replica and the active signer at random
    points, restart the replica and start a signer on another node."""
    rng = random.Random(0x4D1C)
    active = signers.start("node-a")
    active.wait_entries(5)
    for _ in range(3):
        replica = rng.choice(NODES)
        crashes: list[Callable[[], None]] = [partial(replicas.kill, replica), active.kill]
        rng.shuffle(crashes)
        for crash in crashes:
            time.sleep(rng.uniform(0, 0.3))
            crash()
        successor = rng.choice([n for n in NODES if n != active.node])
        restart_first = rng.random() < 0.5
        if restart_first:
            replicas.start(replica)
        active = signers.start(successor)  # promotes with two replicas when the third is still down
        if not restart_first:
            time.sleep(rng.uniform(0, 0.3))
            replicas.start(replica)
        active.wait_entries(5)
    assert active.terminate() == 0, signers.logs()

    status, report = check_journals(signers.journals())
    assert status == 0, report["double_signs"]
    assert report["ok"] and not report["double_signs"]
    assert [s["node"] for s in sorted(report["signers"], key=lambda s: s["epoch"])] == [
        s.node for s in signers.started
    ], signers.logs()
    assert_marks_continue(report)


def test_a_frozen_signer_is_superseded_and_signs_nothing_more(replicas: LoopbackReplicas, signers: Signers) -> None:
    """(b) SIGSTOP the active signer, promote another, SIGCONT the first:
    its next advance is refused with STALE_EPOCH and it exits with 3."""
    first = signers.start("node-a")
    first.wait_entries(5)
    os.kill(first.pid, signal.SIGSTOP)
    frozen_at = signers.height_now()
    signed_before = len(first.entries())

    second = signers.start("node-b")
    # Let the chain move far enough that whatever the frozen signer was about
    # to sign is too late to sign: then only the register's answer matters.
    past = frozen_at + math.ceil(lateness(BLOCK_TIME) / BLOCK_TIME) + 5
    wait_until(
        lambda: second.alive() and second.entries() and second.entries()[-1].hrs.height >= past,
        timeout=30,
        what=f"node-b signing height {past}",
        interval=0.05,
    )
    assert len(first.entries()) == signed_before

    os.kill(first.pid, signal.SIGCONT)
    assert first.process.wait(timeout=30) == 3, first.log_text()
    assert len(first.entries()) == signed_before
    assert "event=superseded status=STALE_EPOCH" in first.log_text()
    assert second.terminate() == 0, second.log_text()

    status, report = check_journals(signers.journals())
    assert status == 0, report["double_signs"]
    assert_marks_continue(report)


def _highlander(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HIGHLANDER, *args], check=False, capture_output=True, text=True, timeout=60)


def test_without_a_majority_nothing_is_promoted_or_signed(replicas: LoopbackReplicas, signers: Signers) -> None:
    """(c) With two replicas down, promote and advance fail and say why;
    a signer waits, signs nothing, and starts once a majority is back."""
    key = ["--socket", str(replicas.socket("node-a")), "--chain-id", CHAIN_ID, "--key-id", KEY_ID]
    promoted = _highlander("signstate", "promote", *key)
    assert promoted.returncode == 0, promoted.stderr
    epoch = json.loads(promoted.stdout)["epoch"]

    replicas.kill("node-b")
    replicas.kill("node-c")
    # The advance first: a promotion, even a failed one, raises the local
    # replica's promise above ``epoch``, and the advance would be STALE_EPOCH.
    advance = _highlander(
        "signstate",
        "advance",
        *key,
        "--epoch",
        str(epoch),
        "--height",
        "5",
        "--round",
        "0",
        "--step",
        "1",
        "--digest",
        "ab" * 32,
    )
    promote = _highlander("signstate", "promote", *key)
    for done, said in ((promote, "not promoted"), (advance, "do not sign")):
        assert done.returncode != 0
        message = done.stderr
        assert said in message and "NO_QUORUM" in message, message
        assert "1 of 3 replicas answered, 2 needed" in message, message
        assert "node-b:" in message and "node-c:" in message, message

    [port] = free_ports(1)
    waiting = signers.start("node-a", status_port=port)
    wait_until(
        lambda: waiting.alive() and waiting.log_text().count("event=no-quorum op=promote") >= 2,
        timeout=20,
        what="the signer retrying its promotion",
    )
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as answer:
        sync = json.load(answer)["result"]["sync_info"]
    assert sync == {"latest_block_height": "0", "catching_up": True}
    assert waiting.entries() == []

    replicas.start("node-b")
    signed = waiting.wait_entries(3)
    assert signed[0].epoch > epoch
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as answer:
        sync = json.load(answer)["result"]["sync_info"]
    assert sync["catching_up"] is False and int(sync["latest_block_height"]) >= signed[-1].hrs.height
    assert waiting.terminate() == 0, waiting.log_text()


def test_the_checker_catches_unguarded_signers(unguarded: Signers) -> None:
    """(d) The negative control: two signers without the register sign the
    same heights on two nodes, and check-journals reports the double sign."""
    a = unguarded.start("node-a", guard=False)
    b = unguarded.start("node-b", guard=False)

    def common_marks() -> set[HRS]:
        a.alive()
        b.alive()
        both = {e.hrs for e in a.entries()} & {e.hrs for e in b.entries()}
        return both if len(both) >= 3 else set()

    wait_until(common_marks, timeout=30, what="both unguarded signers signing the same marks", interval=0.05)
    assert a.terminate() == 0 and b.terminate() == 0, unguarded.logs()
    signed_twice = {e.hrs for e in a.entries()} & {e.hrs for e in b.entries()}

    status, report = check_journals(unguarded.journals())
    assert status == 1
    assert not report["ok"]
    assert {HRS(*mark(d)) for d in report["double_signs"]} == signed_twice
    assert all({e["node"] for e in d["entries"]} == {"node-a", "node-b"} for d in report["double_signs"])
