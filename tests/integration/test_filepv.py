"""CometBFT FilePV mode against a real trio: the state file is raised to the
register's mark and never lowered, its changes are replicated while the
signer runs, and a superseded signer is killed at once."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from highlander.adapters.waiting import wait_until
from highlander.commands.signstate import raise_state_file, read_state_file
from highlander.signstate import formats
from highlander.signstate.client import SignerClient
from highlander.signstate.localtrio import LocalTrio
from highlander.signstate.register import HRS, KeyId, Record

pytestmark = pytest.mark.signstate
KEY = KeyId("filepv-chain", "val")


def signed(path: Path, hrs: HRS, signbytes: bytes) -> None:
    """Write the state file the way CometBFT does after signing at ``hrs``."""
    formats.write_atomically(path, formats.dump_cometbft(formats.SignState(hrs, b"\x01" * 64, signbytes)))


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def test_raising_never_lowers_the_state_file(tmp_path: Path) -> None:
    path = tmp_path / "priv_validator_state.json"
    assert raise_state_file(path, "cometbft", HRS(10, 0, 2)) == HRS(10, 0, 2)
    assert raise_state_file(path, "cometbft", HRS(9, 5, 3)) == HRS(10, 0, 2)
    assert read_state_file(path, "cometbft").hrs == HRS(10, 0, 2)
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_the_follower_replicates_and_kills_a_superseded_signer(
    trio: LocalTrio, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    state = tmp_path / "priv_validator_state.json"
    with SignerClient(trio.socket("node-a")) as client:
        session = client.promote(KEY)
    raise_state_file(state, "cometbft", session.hwm)
    signer = subprocess.Popen(["sleep", "600"])  # stands in for the FilePV daemon
    processes.append(signer)
    follower = subprocess.Popen(
        [
            sys.executable, "-m", "highlander", "signstate", "follow",
            "--socket", str(trio.socket("node-a")), "--chain-id", KEY.chain_id, "--key-id", KEY.key_id,
            "--epoch", str(session.epoch), "--state-file", str(state), "--guard-pid", str(signer.pid),
        ],
        stderr=subprocess.PIPE,
    )  # fmt: skip
    processes.append(follower)
    time.sleep(0.5)  # let it read the file as the promotion left it

    signed(state, HRS(5, 0, 1), b"vote-5-1")
    digest = formats.digest_of(read_state_file(state, "cometbft"))

    def replicated() -> bool:
        with SignerClient(trio.socket("node-b")) as client:
            records = client.status(KEY)
        return sum(isinstance(r, Record) and r.hwm == HRS(5, 0, 1) and r.digest == digest for r in records.values()) >= 2

    wait_until(replicated, timeout=10, what="the state file's mark on a majority")

    with SignerClient(trio.socket("node-b")) as client:
        client.promote(KEY)  # node-b takes over
    signed(state, HRS(5, 0, 2), b"vote-5-2")  # the old signer signs once more

    assert follower.wait(timeout=10) == 3
    assert signer.wait(timeout=10) == -9  # SIGKILLed the moment the register said STALE_EPOCH
    assert b"STALE_EPOCH" in follower.stderr.read()  # type: ignore[union-attr]
