"""When a signer's link to a node hangs up: after a refusal by a signer that
may not sign (so that one that may gets the node), never after a signature.

The link is served over a real socket pair (the plain framing of a Unix
socket); the signer is a stand-in whose answers and promotion the test sets.
"""

from __future__ import annotations

import socket
import threading

import privval_support as support
from google.protobuf.message import Message

from highlander.privval import messages, schema
from highlander.privval.config import NodeAddress
from highlander.privval.service import NodeLink
from highlander.privval.transport import Connection

CHAIN = "test-chain"


class DemotedWhileSigning:
    """Signs the first request, and is demoted the moment it has (the race
    between an answer and a demotion); refuses everything after."""

    def __init__(self) -> None:
        self.promoted = True

    def handle(self, request: Message, peer: str) -> Message:
        if not self.promoted:
            return messages.refusal("sign_vote_request", "this signer is not promoted")
        self.promoted = False
        vote = request.sign_vote_request.vote
        vote.signature = b"s" * 64
        return messages.wrap("signed_vote_response", schema.SignedVoteResponse(vote=vote))

    def may_sign(self) -> bool:
        return self.promoted


def serve(signer: DemotedWhileSigning, requests: list[Message]) -> tuple[list[Message], bool]:
    """The answers the node reads to ``requests`` over one connection, and whether the link yielded."""
    ours, theirs = socket.socketpair()
    theirs.settimeout(5)  # a link that hung up leaves the node waiting: a timeout, not a hang
    link = NodeLink(NodeAddress("unix", "/unused"), signer, None, 10.0, threading.Event())  # type: ignore[arg-type]
    result: list[bool] = []
    server = threading.Thread(target=lambda: result.append(link._serve(Connection(ours))))
    server.start()
    node, answers = Connection(theirs), []
    try:
        for request in requests:
            node.write_message(request)
            answers.append(messages.parse(schema.PrivvalMessage, node.read_body()))
    finally:
        server.join(10)
        ours.close()
        theirs.close()
    return answers, result[0]


def test_a_signature_keeps_the_connection_even_if_the_signer_was_demoted_meanwhile() -> None:
    answers, yielded = serve(
        DemotedWhileSigning(), [support.vote_request(CHAIN, height=3), support.vote_request(CHAIN, height=4)]
    )
    assert not messages.is_refusal(answers[0])
    assert "not promoted" in answers[1].signed_vote_response.error.description  # answered, not hung up on
    assert yielded  # the refusal, not the signature, gave the node up


def test_is_refusal() -> None:
    assert messages.is_refusal(messages.refusal("sign_proposal_request", "no"))
    assert not messages.is_refusal(messages.wrap("signed_vote_response", schema.SignedVoteResponse()))
    assert not messages.is_refusal(schema.PrivvalMessage())
