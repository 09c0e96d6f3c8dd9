"""CometBFT FilePV mode against a real trio: the state file is raised to the
register's mark and never lowered, its changes are replicated while the
signer runs, and a superseded signer is killed at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from highlander.adapters import files
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
    files.write_file(path, formats.dump_cometbft(formats.SignState(hrs, b"\x01" * 64, signbytes)), mode=0o600)


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
            "--epoch", str(session.epoch), "--state-file", str(state), "--since", str(session.hwm),
            "--guard-pid", str(signer.pid),
        ],
        stderr=subprocess.PIPE,
    )  # fmt: skip
    processes.append(follower)
    signed(state, HRS(5, 0, 1), b"vote-5-1")  # at once: replicated even before the follower looks
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


def test_the_validator_agent_in_filepv_mode(trio: LocalTrio, tmp_path: Path) -> None:
    """Start through the agent: promoted, the state file raised by the margin
    above the register's mark, a follower replicating; stop ends both."""
    from highlander.adapters import process

    with SignerClient(trio.socket("node-b")) as client:  # an earlier signer left a mark
        session = client.promote(KEY)
        client.advance(KEY, session.epoch, HRS(40, 0, 3), "ab" * 32)
    state = tmp_path / "priv_validator_state.json"
    instance = f"filepv-{tmp_path.name[-8:]}"
    env = {
        "OCF_ROOT": "/usr/lib/ocf",
        "OCF_RESOURCE_INSTANCE": instance,
        "OCF_RESKEY_CRM_meta_timeout": "30000",
        "OCF_RESKEY_command": "sleep 600",
        "OCF_RESKEY_pidfile": str(tmp_path / "v.pid"),
        "OCF_RESKEY_logfile": str(tmp_path / "v.log"),
        "OCF_RESKEY_chain_id": KEY.chain_id,
        "OCF_RESKEY_key_id": KEY.key_id,
        "OCF_RESKEY_signstate_socket": str(trio.socket("node-a")),
        "OCF_RESKEY_state_file": str(state),
        "OCF_RESKEY_height_margin": "5",
    }
    agent = "/usr/lib/ocf/resource.d/highlander/validator"
    tag = process.marker("validator", instance)
    try:
        started = subprocess.run([agent, "start"], env=env, capture_output=True, text=True, timeout=60)
        assert started.returncode == 0, started.stderr
        assert read_state_file(state, "cometbft").hrs == HRS(45, 0, 3)
        assert len(process.find_tagged(tag)) == 2  # the daemon and its follower
        assert subprocess.run([agent, "monitor"], env=env, timeout=30).returncode == 0

        signed(state, HRS(46, 0, 1), b"vote-46-1")  # the daemon signs on its own

        def replicated() -> bool:
            with SignerClient(trio.socket("node-c")) as client:
                records = client.status(KEY)
            return sum(isinstance(r, Record) and r.hwm == HRS(46, 0, 1) for r in records.values()) >= 2

        wait_until(replicated, timeout=10, what="the daemon's new mark on a majority")
        stopped = subprocess.run([agent, "stop"], env=env, capture_output=True, text=True, timeout=60)
        assert stopped.returncode == 0, stopped.stderr
        assert process.find_tagged(tag) == []
    finally:
        for pid in process.find_tagged(tag):
            os.kill(pid, signal.SIGKILL)


def test_export_and_import_through_the_cli(trio: LocalTrio, tmp_path: Path) -> None:
    highlander = [sys.executable, "-m", "highlander", "signstate"]
    key = ["--chain-id", KEY.chain_id, "--key-id", "exported"]
    with SignerClient(trio.socket("node-a")) as client:
        session = client.promote(KeyId(KEY.chain_id, "exported"))
        client.advance(KeyId(KEY.chain_id, "exported"), session.epoch, HRS(7, 1, 2), "cd" * 32)
    out = tmp_path / "exported.json"
    done = subprocess.run(
        [*highlander, "export", "--socket", str(trio.socket("node-b")), *key, "--out", str(out)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert read_state_file(out, "cometbft").hrs == HRS(7, 1, 2)

    # Import raises a (stopped) replica from a signer's file, and refuses a running one's.
    signed(out, HRS(9, 0, 1), b"vote-9-1")
    refused = subprocess.run(
        [*highlander, "import", "--config", str(trio.config("node-c")), *key, str(out)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert refused.returncode != 0 and "in use by another process" in refused.stderr
    trio.stop("node-c")
    imported = subprocess.run(
        [*highlander, "import", "--config", str(trio.config("node-c")), *key, str(out)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    assert '"height": 9' in imported.stdout
