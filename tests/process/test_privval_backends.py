"""``highlander privval`` on every backend of the register, through a failover.

Two real signers with one key, on node-a and node-b, each in front of its
node's sign-state daemon; the register is the built-in trio, a real etcd
cluster or a real PostgreSQL server. The first signs; the second is
promoted (a failover); from then on the first refuses to sign (and says it
was superseded), and the second signs only above the first one's last mark.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import privval_support as support
import pytest
from backends_support import BACKENDS, Arena, arena
from cometbft_support import FakeNode, PrivvalProcess, fake_nodes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

pytestmark = pytest.mark.signstate
CHAIN = "backends-privval"


@pytest.fixture(params=BACKENDS)
def register(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Arena]:
    with arena(request.param, tmp_path) as started:
        yield started


def sign(connection, height: int, block: bytes) -> str:  # type: ignore[no-untyped-def]
    """The signer's error for a prevote at ``height`` for ``block`` ("" when it signed)."""
    answer = FakeNode.ask(connection, support.vote_request(CHAIN, height=height, block=block)).signed_vote_response
    return answer.error.description if answer.HasField("error") else ""


def test_a_failover_moves_the_signing_and_the_old_signer_refuses(register: Arena, tmp_path: Path) -> None:
    key_file = support.write_key(tmp_path / "priv_validator_key.json", Ed25519PrivateKey.generate())
    with fake_nodes(2) as (node_a, node_b):
        first = PrivvalProcess(tmp_path / "a", CHAIN, key_file, register.socket("node-a"), [node_a.laddr])
        second = PrivvalProcess(tmp_path / "b", CHAIN, key_file, register.socket("node-b"), [node_b.laddr])
        try:
            first.start()
            first.wait_log("event=promoted")
            to_first = node_a.accept()
            for height in range(10, 20):
                assert sign(to_first, height, b"a") == ""
            second.start()  # the failover: promoted on node-b
            second.wait_log("event=promoted")
            to_second = node_b.accept()
            assert sign(to_first, 20, b"x"), "the superseded signer signed"
            first.wait_log("event=superseded")
            assert sign(to_second, 19, b"b"), "the new signer signed at the old signer's last mark with other bytes"
            for height in range(20, 25):
                assert sign(to_second, height, b"b") == ""
        finally:
            first.stop()
            second.stop()
