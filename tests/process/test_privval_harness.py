"""``highlander privval`` against a harness playing the CometBFT side:
requests a real node would not send — the same vote for two blocks at once,
broken frames, a failed handshake, unknown messages, marks far off. The
signer and the register (three sign-state daemons) are real processes."""

from __future__ import annotations

from collections.abc import Iterator
import stat
from pathlib import Path

import privval_support as support
import pytest
from cometbft_support import FakeNode, PrivvalProcess, fake_nodes, in_parallel
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from highlander.lab.replicas import LoopbackReplicas
from highlander.privval import control, messages, schema, signbytes
from highlander.privval.secretconn import raw_public
from highlander.privval.transport import Connection

pytestmark = pytest.mark.signstate
CHAIN = "harness-chain"


class Harness:
    def __init__(self, nodes: list[FakeNode], signer: PrivvalProcess, public: bytes) -> None:
        self.nodes, self.signer, self.public = nodes, signer, public

    def verify_vote(self, vote) -> None:  # type: ignore[no-untyped-def]
        Ed25519PublicKey.from_public_bytes(self.public).verify(vote.signature, signbytes.vote_sign_bytes(CHAIN, vote))


@pytest.fixture
def harness(tmp_path: Path, replicas: LoopbackReplicas) -> Iterator[Harness]:
    private = Ed25519PrivateKey.generate()
    key_file = support.write_key(tmp_path / "priv_validator_key.json", private)
    with fake_nodes(2) as nodes:
        signer = PrivvalProcess(
            tmp_path / "signer",
            CHAIN,
            key_file,
            replicas.socket("node-a"),
            [node.laddr for node in nodes],
            max_height_gap=1000,
        )
        try:
            signer.start()
            signer.wait_log("event=promoted")
            yield Harness(nodes, signer, raw_public(private))
        finally:
            signer.stop()


def ping_works(connection: Connection) -> bool:
    return FakeNode.ask(connection, messages.wrap("ping_request", schema.PingRequest())).HasField("ping_response")


def test_concurrent_same_hrs_for_two_blocks_from_two_connections_signs_exactly_one(harness: Harness) -> None:
    first, second = (node.accept() for node in harness.nodes)
    for height in range(10, 40):
        blocks = (b"a", b"b") if height % 2 else (b"b", b"a")
        answers = in_parallel(
            lambda: FakeNode.ask(first, support.vote_request(CHAIN, height=height, block=blocks[0])),
            lambda: FakeNode.ask(second, support.vote_request(CHAIN, height=height, block=blocks[1])),
        )
        signed = [a.signed_vote_response for a in answers if not a.signed_vote_response.HasField("error")]  # type: ignore[attr-defined]
        assert len(signed) == 1, f"height {height}: {len(signed)} signatures"
        harness.verify_vote(signed[0].vote)
    assert harness.signer.log_text().count("event=signed") == 30


def test_other_chain_id_and_marks_far_off_get_a_remote_signer_error(harness: Harness) -> None:
    connection = harness.nodes[0].accept()
    ok = FakeNode.ask(connection, support.vote_request(CHAIN, height=100)).signed_vote_response
    assert not ok.HasField("error")
    cases = {
        "serves 'harness-chain' only": support.vote_request("other-chain", height=101),
        "below the last signed": support.vote_request(CHAIN, height=99),
        "more than 1000 above": support.vote_request(CHAIN, height=100 + 1001),
        "type 3 is neither": support.vote_request(CHAIN, height=102, kind=3),
    }
    for complaint, request in cases.items():
        answer = FakeNode.ask(connection, request).signed_vote_response
        assert complaint in answer.error.description and answer.vote.signature == b""
    proposal = FakeNode.ask(connection, support.proposal_request("other-chain", height=103)).signed_proposal_response
    assert "serves 'harness-chain' only" in proposal.error.description
    assert ping_works(connection)  # still serving on the same connection


def test_unknown_message_type_gets_an_empty_answer_and_the_connection_stays(harness: Harness) -> None:
    connection = harness.nodes[0].accept()
    connection.write(b"\x02\x5a\x00")  # privval.Message field 11: not in any CometBFT version
    assert messages.parse(schema.PrivvalMessage, connection.read_body()).WhichOneof("sum") is None
    assert "event=unknown-request" in harness.signer.wait_log("event=unknown-request.*")
    assert ping_works(connection)


def reconnects_and_serves(harness: Harness) -> None:
    assert ping_works(harness.nodes[0].accept())


@pytest.mark.parametrize(
    ("send", "logged"),
    [
        (lambda c: c.write(messages.uvarint(100_000)), "larger than the 16384 bytes allowed"),
        (lambda c: c.write(b"\x05\x0a\x05ab\x00"), "not a valid Message"),
        (lambda c: c.write(b"\xff" * 11), "not a valid varint"),
        (lambda c: c.sock.sendall(bytes(1044)), "failed authentication"),
    ],
    ids=["oversized", "not-protobuf", "bad-varint", "garbage-frame"],
)
def test_malformed_input_drops_the_connection_with_one_line_and_the_signer_goes_on(
    harness: Harness, send, logged: str
) -> None:  # type: ignore[no-untyped-def]
    connection = harness.nodes[0].accept()
    send(connection)
    harness.signer.wait_log(f"event=dropped node={harness.nodes[0].laddr} reason=.*{logged}")
    reconnects_and_serves(harness)
    assert harness.signer.log_text().count(logged) == 1  # one line, no retry storm


@pytest.mark.parametrize(
    ("first_message", "logged"),
    [
        (messages.uvarint(34) + b"\x0a\x20" + bytes(32), "low-order point"),
        (b"\x03abc", "not a 32-byte ephemeral key"),
    ],
    ids=["low-order-key", "not-a-key"],
)
def test_failed_handshake_is_one_line_and_the_signer_redials(
    harness: Harness, first_message: bytes, logged: str
) -> None:
    raw = harness.nodes[0].accept_raw()
    raw.recv(64)  # the signer's ephemeral key
    raw.sendall(first_message)
    harness.signer.wait_log(f"event=dial-failed node={harness.nodes[0].laddr} error=.*{logged}")
    raw.close()
    reconnects_and_serves(harness)


def test_silent_peer_during_the_handshake_does_not_stop_the_other_node(harness: Harness) -> None:
    stalled = harness.nodes[0].accept_raw()  # never answers the handshake
    other = harness.nodes[1].accept()
    assert ping_works(other)
    answer = FakeNode.ask(other, support.vote_request(CHAIN, height=5)).signed_vote_response
    harness.verify_vote(answer.vote)
    stalled.close()


def test_control_socket_promotes_and_demotes_a_running_signer(tmp_path: Path, replicas: LoopbackReplicas) -> None:
    private = Ed25519PrivateKey.generate()
    key_file = support.write_key(tmp_path / "priv_validator_key.json", private)
    control_path = tmp_path / "control.sock"
    with fake_nodes(1) as (node,):
        signer = PrivvalProcess(
            tmp_path / "signer", CHAIN, key_file, replicas.socket("node-a"), [node.laddr], control=str(control_path)
        )
        try:
            signer.start(promote=False)
            connection = node.accept()
            assert ping_works(connection)
            assert stat.S_IMODE(control_path.stat().st_mode) == 0o600
            status = control.request(control_path, "status")
            assert status["promoted"] is False and status["connected"] == [node.laddr]
            refused = FakeNode.ask(connection, support.vote_request(CHAIN, height=3)).signed_vote_response
            assert "not promoted" in refused.error.description

            promoted = control.request(control_path, "promote")
            assert promoted["status"] == "OK" and promoted["mark"] == "0/0/0"
            connection = node.accept()  # the unpromoted signer had hung up for a signer that may sign
            signed = FakeNode.ask(connection, support.vote_request(CHAIN, height=3)).signed_vote_response
            assert not signed.HasField("error")

            assert control.request(control_path, "demote") == {"status": "OK"}
            later = FakeNode.ask(connection, support.vote_request(CHAIN, height=4)).signed_vote_response
            assert "not promoted" in later.error.description
            assert control.request(control_path, "status")["last"] == "3/0/2"
            assert control.request(control_path, "reboot")["status"] == "ERROR"
        finally:
            signer.stop()
    assert not control_path.exists()
