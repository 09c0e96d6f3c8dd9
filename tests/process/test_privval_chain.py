"""``highlander privval`` signing for a real CometBFT chain.

A single-validator chain with CometBFT's built-in kvstore app, its
``priv_validator_laddr`` pointing at the signer, the register on three real
sign-state daemons on loopback. CometBFT verifies every signature itself,
so a height that advances is the proof that the SecretConnection, the
messages and the sign bytes are right; committed evidence would be the
proof of a double sign.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import harness
import pytest
from cometbft_support import QUIET_BETWEEN_HEIGHTS, CometNode, PrivvalProcess, cometbft
from harness import HIGHLANDER, sample

from highlander.adapters.waiting import wait_until
from highlander.lab.ports import free_ports
from highlander.lab.replicas import LoopbackReplicas

pytestmark = pytest.mark.signstate
CHAIN = "highlander-privval-test"


@pytest.fixture(autouse=True)
def cometbft_installed() -> None:
    """Skip (fail in CI) before any daemon starts when CometBFT is missing."""
    cometbft()


@pytest.fixture
def processes() -> Iterator[list[CometNode | PrivvalProcess]]:
    """Everything a test starts; stopped by PID whatever happens (signers first)."""
    started: list[CometNode | PrivvalProcess] = []
    try:
        yield started
    finally:
        for process in sorted(started, key=lambda p: isinstance(p, CometNode)):
            process.stop()


def chain(
    tmp_path: Path,
    replicas: LoopbackReplicas,
    processes: list[CometNode | PrivvalProcess],
    *,
    scheme: str = "tcp",
    extensions_height: int = 0,
    timeouts: Mapping[str, str] | None = None,
    **settings: object,
) -> tuple[CometNode, PrivvalProcess]:
    """A node and a promoted signer for it (``settings`` added to its privval.toml), both started, the signer first."""
    node = CometNode(tmp_path, "node-a", scheme=scheme)
    node.init(CHAIN, extensions_height=extensions_height, timeouts=timeouts)
    signer = PrivvalProcess(
        tmp_path / "signer-a", CHAIN, node.key_file, replicas.socket("node-a"), [node.privval_laddr], **settings
    )
    processes += [node, signer]
    signer.start()
    signer.wait_log("event=promoted")
    node.start()
    return node, signer


@pytest.mark.parametrize("scheme", ["tcp", "unix"])
def test_blocks_are_signed_through_highlander_privval(
    tmp_path: Path, replicas: LoopbackReplicas, processes: list, scheme: str
) -> None:  # type: ignore[type-arg]
    node, signer = chain(tmp_path, replicas, processes, scheme=scheme)
    height = node.wait_for_height(8)
    assert node.evidence(range(1, height + 1)) == []
    assert "event=signed" in signer.log_text() and "vote at=" in signer.log_text()
    assert _register_height(replicas, node) >= height  # every signature went through the register


def test_the_signer_serves_its_metrics(tmp_path: Path, replicas: LoopbackReplicas, processes: list) -> None:  # type: ignore[type-arg]
    """What the chain did, as Prometheus reads it from the signer: its votes signed, its
    heights (asked for and signed, values and never labels), promoted, one node connected."""
    [port] = free_ports(1)
    node, _ = chain(tmp_path, replicas, processes, metrics=f"127.0.0.1:{port}")
    height = node.wait_for_height(6)
    samples = harness.scrape(port)
    assert sample(samples, "highlander_privval_sign_requests_total", type="vote", result="signed") >= 2 * (height - 1)
    assert sample(samples, "highlander_privval_sign_seconds_count", type="vote") > 0
    assert sample(samples, "highlander_privval_promoted") == 1
    assert sample(samples, "highlander_privval_connected_nodes") == 1
    signed = sample(samples, "highlander_privval_signed_height")
    assert height - 1 <= signed <= sample(samples, "highlander_privval_requested_height")
    assert sample(samples, "highlander_privval_last_signature_timestamp_seconds") > 0
    assert all(
        set(dict(labels)) <= {"type", "result", "version", "le"} for family in samples.values() for labels in family
    )


def _register_height(replicas: LoopbackReplicas, node: CometNode) -> int:
    from highlander.privval.key import load_key
    from highlander.signstate.client import SignerClient
    from highlander.signstate.register import KeyId, Record

    key = KeyId(CHAIN, load_key(node.key_file).address)
    with SignerClient(replicas.socket("node-a")) as client:
        records = [r for r in client.status(key).values() if isinstance(r, Record)]
    return max(r.hwm.height for r in records)


def test_node_does_not_start_without_a_signer(tmp_path: Path, processes: list) -> None:  # type: ignore[type-arg]
    node = CometNode(tmp_path, "node-a")
    node.init(CHAIN)
    processes.append(node)
    node.start()
    wait_until(lambda: not node.running(), timeout=30, what="CometBFT to give up without a signer")
    assert "can't get pubkey" in node.log.read_text()


def test_signer_for_another_chain_id_is_refused(tmp_path: Path, replicas: LoopbackReplicas, processes: list) -> None:  # type: ignore[type-arg]
    node = CometNode(tmp_path, "node-a")
    node.init(CHAIN)
    signer = PrivvalProcess(
        tmp_path / "signer", "another-chain", node.key_file, replicas.socket("node-a"), [node.privval_laddr]
    )
    processes += [node, signer]
    signer.start()
    signer.wait_log("event=promoted")
    node.start()
    wait_until(lambda: not node.running(), timeout=30, what="CometBFT to stop without a public key")
    assert "can't get pubkey" in node.log.read_text()
    assert "this signer serves 'another-chain' only" in signer.log_text()
    assert "event=signed" not in signer.log_text()


def test_signer_restart_continues_the_chain(tmp_path: Path, replicas: LoopbackReplicas, processes: list) -> None:  # type: ignore[type-arg]
    node, signer = chain(tmp_path, replicas, processes)
    node.wait_for_height(4)
    signer.stop()
    stopped_at = node.height()
    signer.start()
    node.wait_for_height(stopped_at + 5)
    assert node.running() and node.evidence(range(1, node.height() + 1)) == []
    assert signer.log_text().count("event=promoted") == 2


def test_vote_extensions_enabled(tmp_path: Path, replicas: LoopbackReplicas, processes: list) -> None:  # type: ignore[type-arg]
    node, _ = chain(tmp_path, replicas, processes, extensions_height=2)
    node.wait_for_height(8)
    assert node.running()
    assert "panic" not in node.log.read_text()
    # Height 2 onwards was committed with extended votes, each extension signature checked by the node.
    commit = node.rpc("commit?height=5")["signed_header"]
    assert commit["commit"]["signatures"][0]["block_id_flag"] == 2  # type: ignore[index]


def test_two_nodes_of_one_validator_share_one_signer(
    tmp_path: Path, replicas: LoopbackReplicas, processes: list
) -> None:  # type: ignore[type-arg]
    first = CometNode(tmp_path, "node-a")
    first.init(CHAIN)
    second = CometNode(tmp_path, "node-b")
    second.init(CHAIN, genesis_from=first, peer=first)
    signer = PrivvalProcess(
        tmp_path / "signer",
        CHAIN,
        first.key_file,
        replicas.socket("node-a"),
        [first.privval_laddr, second.privval_laddr],
    )
    processes += [first, second, signer]
    signer.start()
    signer.wait_log("event=promoted")
    first.start()
    second.start()
    height = first.wait_for_height(10)
    second.wait_for_height(height)
    assert first.evidence(range(1, height + 1)) == []
    log = signer.log_text()
    assert f"node={first.privval_laddr}" in log and f"node={second.privval_laddr}" in log
    # The nodes race; the slower one's conflicting or older requests are refused, never signed.
    assert "event=ALARM" not in log


def test_another_signer_promoted_takes_over_the_chain(
    tmp_path: Path, replicas: LoopbackReplicas, processes: list
) -> None:  # type: ignore[type-arg]
    node, first = chain(tmp_path, replicas, processes, timeouts=QUIET_BETWEEN_HEIGHTS)
    node.wait_for_height(4)
    node.wait_for_height(node.height() + 1)  # just after a block (one validator: see QUIET_BETWEEN_HEIGHTS)
    second = PrivvalProcess(
        tmp_path / "signer-b", CHAIN, node.key_file, replicas.socket("node-b"), [node.privval_laddr]
    )
    processes.append(second)
    second.start()  # promoted at node-b: node-a's signer is superseded at its next advance
    second.wait_log("event=promoted")
    first.wait_log("event=superseded")
    taken_over = node.height()
    node.wait_for_height(taken_over + 5)
    assert "event=signed" in second.log_text()
    assert node.evidence(range(1, node.height() + 1)) == []


def test_moving_from_filepv_continues_above_the_imported_mark(
    tmp_path: Path, replicas: LoopbackReplicas, processes: list
) -> None:  # type: ignore[type-arg]
    """The README's move: FilePV signs first; its state is imported into every
    replica and copied to the signer; the node then signs through the signer."""
    import json
    import shutil
    import subprocess

    from highlander.lab.replicas import NODES
    from highlander.privval.key import load_key

    node = CometNode(tmp_path, "node-a")
    node.init(CHAIN, remote_signer=False)
    processes.append(node)
    node.start()
    node.wait_for_height(4)
    node.stop()
    address = load_key(node.key_file).address

    replicas.stop()
    for replica in NODES:
        subprocess.run(
            [
                *HIGHLANDER,
                "signstate",
                "import",
                "--config",
                str(replicas.config(replica)),
                "--chain-id",
                CHAIN,
                "--key-id",
                address,
                str(node.state_file),
            ],
            check=True,
            capture_output=True,
        )
    replicas.start()
    filepv_height = int(json.loads(node.state_file.read_text())["height"])
    signer = PrivvalProcess(tmp_path / "signer", CHAIN, node.key_file, replicas.socket("node-a"), [node.privval_laddr])
    processes.append(signer)
    shutil.copy(node.state_file, signer.dir / "state.json")
    node.use_remote_signer()
    signer.start()
    promoted = signer.wait_log(r"event=promoted .* mark=\S+")
    assert f"mark={filepv_height}/" in promoted  # the register holds FilePV's last mark
    node.start()
    node.wait_for_height(filepv_height + 3)
    assert node.evidence(range(1, node.height() + 1)) == []
