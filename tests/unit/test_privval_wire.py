"""The privval wire: protobuf messages, sign bytes and SecretConnection's
key schedule, against the vectors published in CometBFT's repository
(cometbft/cometbft v0.38: ``privval/msgs_test.go``, ``types/vote_test.go``,
``p2p/conn/testdata/TestDeriveSecretsAndChallengeGolden.golden``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from highlander.privval import messages, schema, secretconn, signbytes
from highlander.privval.secretconn import FrameCipher, SecretConnectionError

GOLDEN = Path(__file__).parent / "data" / "cometbft_secret_connection_golden.txt"
STAMP_2019 = 1570983284  # 2019-10-13T16:14:44Z


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def block_id(target) -> None:  # type: ignore[no-untyped-def]
    target.hash = sha256(b"blockID_hash")
    target.part_set_header.total = 1000000
    target.part_set_header.hash = sha256(b"blockID_part_set_header_hash")


def example_vote():  # type: ignore[no-untyped-def]
    vote = schema.Vote(type=schema.PRECOMMIT, height=3, round=2, validator_index=56789, extension=b"extension")
    block_id(vote.block_id)
    vote.timestamp.seconds = STAMP_2019
    vote.validator_address = sha256(b"validator_address")[:20]
    return vote


def example_proposal():  # type: ignore[no-untyped-def]
    proposal = schema.Proposal(type=1, height=3, round=2, pol_round=2, signature=b"it's a signature")
    block_id(proposal.block_id)
    proposal.timestamp.seconds = STAMP_2019
    return proposal


def error():  # type: ignore[no-untyped-def]
    return schema.RemoteSignerError(code=1, description="it's a error")


def pub_key_only():  # type: ignore[no-untyped-def]
    seed = sha256(b"it's a secret")  # ed25519.GenPrivKeyFromSecret
    public = secretconn.raw_public(Ed25519PrivateKey.from_private_bytes(seed))
    response = schema.PubKeyResponse()
    response.pub_key.ed25519 = public
    return response


VOTE_HEX = (
    "0a7f080210031802224a0a208b01023386c371778ecb6368573e539afc3cc860ec3a2f614e54fe5652f4fc80122608c0843d122072"
    "db3d959635dff1bb567bedaa70573392c5159666a3f8caf11e413aac52207a2a0608f49a8ded0532146af1f4111082efb388211bc7"
    "2c55bcd61e9ac3d538d5bb034a09657874656e73696f6e"
)
PROPOSAL_HEX = (
    "0a6e08011003180220022a4a0a208b01023386c371778ecb6368573e539afc3cc860ec3a2f614e54fe5652f4fc80122608c0843d12"
    "2072db3d959635dff1bb567bedaa70573392c5159666a3f8caf11e413aac52207a320608f49a8ded053a10697427732061207369676e"
    "6174757265"
)
PRIVVAL_VECTORS = [
    ("ping_request", lambda: schema.PingRequest(), "3a00"),
    ("ping_response", lambda: schema.PingResponse(), "4200"),
    ("pub_key_request", lambda: schema.PubKeyRequest(), "0a00"),
    ("pub_key_response", pub_key_only, "12240a220a20556a436f1218d30942efe798420f51dc9b6a311b929c578257457d05c5fcf230"),
    ("pub_key_response", lambda: schema.PubKeyResponse(error=error()), "12140a0012100801120c697427732061206572726f72"),
    ("sign_vote_request", lambda: schema.SignVoteRequest(vote=example_vote()), "1a8101" + VOTE_HEX),
    ("signed_vote_response", lambda: schema.SignedVoteResponse(vote=example_vote()), "228101" + VOTE_HEX),
    (
        "signed_vote_response",
        lambda: schema.SignedVoteResponse(error=error()),
        "22250a11220212002a0b088092b8c398feffffff0112100801120c697427732061206572726f72",
    ),
    ("sign_proposal_request", lambda: schema.SignProposalRequest(proposal=example_proposal()), "2a70" + PROPOSAL_HEX),
    (
        "signed_proposal_response",
        lambda: schema.SignedProposalResponse(proposal=example_proposal()),
        "3270" + PROPOSAL_HEX,
    ),
    (
        "signed_proposal_response",
        lambda: schema.SignedProposalResponse(error=error()),
        "32250a112a021200320b088092b8c398feffffff0112100801120c697427732061206572726f72",
    ),
]


@pytest.mark.parametrize(("field", "build", "expected"), PRIVVAL_VECTORS)
def test_privval_messages_encode_as_cometbft_does(field: str, build, expected: str) -> None:  # type: ignore[no-untyped-def]
    encoded = messages.encode(messages.wrap(field, build()))
    assert messages.split(encoded).hex() == expected


@pytest.mark.parametrize(("field", "build", "expected"), PRIVVAL_VECTORS)
def test_privval_vectors_parse_back(field: str, build, expected: str) -> None:  # type: ignore[no-untyped-def]
    message = messages.parse(schema.PrivvalMessage, bytes.fromhex(expected))
    assert message.WhichOneof("sum") == field


def test_pub_key_response_carries_both_spellings() -> None:
    message = messages.parse(
        schema.PrivvalMessage, messages.split(messages.encode(messages.pub_key_response(b"k" * 32)))
    )
    response = message.pub_key_response
    assert response.pub_key.ed25519 == response.pub_key_bytes == b"k" * 32
    assert response.pub_key_type == "ed25519"


ZERO_TIME = bytes([0x2A, 0xB, 0x8, 0x80, 0x92, 0xB8, 0xC3, 0x98, 0xFE, 0xFF, 0xFF, 0xFF, 0x1])
HEIGHT_1_ROUND_1 = bytes([0x11, 1, 0, 0, 0, 0, 0, 0, 0, 0x19, 1, 0, 0, 0, 0, 0, 0, 0])
CHAIN = bytes([0x32, 0xD]) + b"test_chain_id"
VOTE_SIGN_BYTES = [  # types/vote_test.go TestVoteSignBytesTestVectors
    ("", {}, bytes([0xD]) + ZERO_TIME),
    ("", {"height": 1, "round": 1, "type": 2}, bytes([0x21, 0x8, 0x2]) + HEIGHT_1_ROUND_1 + ZERO_TIME),
    ("", {"height": 1, "round": 1, "type": 1}, bytes([0x21, 0x8, 0x1]) + HEIGHT_1_ROUND_1 + ZERO_TIME),
    ("", {"height": 1, "round": 1}, bytes([0x1F]) + HEIGHT_1_ROUND_1 + ZERO_TIME),
    ("test_chain_id", {"height": 1, "round": 1}, bytes([0x2E]) + HEIGHT_1_ROUND_1 + ZERO_TIME + CHAIN),
    (
        "test_chain_id",
        {"height": 1, "round": 1, "extension": b"extension"},
        bytes([0x2E]) + HEIGHT_1_ROUND_1 + ZERO_TIME + CHAIN,
    ),
]


@pytest.mark.parametrize(("chain_id", "fields", "expected"), VOTE_SIGN_BYTES)
def test_vote_sign_bytes_vectors(chain_id: str, fields: dict[str, object], expected: bytes) -> None:
    assert signbytes.vote_sign_bytes(chain_id, schema.Vote(**fields)) == expected


def test_non_nullable_fields_are_filled_at_every_depth_and_nothing_else_is_touched() -> None:
    answer = messages.wrap("signed_vote_response", schema.SignedVoteResponse())
    schema.fill_non_nullable(answer)
    vote = answer.signed_vote_response.vote
    assert answer.signed_vote_response.HasField("vote") and vote.HasField("block_id")
    assert vote.block_id.HasField("part_set_header") and vote.timestamp.seconds == schema.ZERO_TIME_SECONDS
    assert not answer.signed_vote_response.HasField("error")  # nullable: left out
    ping = messages.wrap("ping_request", schema.PingRequest())
    assert schema.fill_non_nullable(ping).SerializeToString() == ping.SerializeToString()
    # a present field keeps its value
    vote = schema.Vote(height=3)
    vote.timestamp.seconds = 7
    assert schema.fill_non_nullable(vote).timestamp.seconds == 7


def test_vote_sign_bytes_with_a_block_id_keep_the_canonical_layout() -> None:
    vote = example_vote()
    encoded = signbytes.vote_sign_bytes("test_chain_id", vote)
    canonical = messages.parse(schema.CanonicalVote, messages.split(encoded))
    assert (canonical.type, canonical.height, canonical.round) == (2, 3, 2)
    assert canonical.block_id.part_set_header.total == 1000000
    assert canonical.timestamp.seconds == STAMP_2019 and canonical.chain_id == "test_chain_id"
    # sfixed64 height (tag 0x11) and round (tag 0x19): 8 bytes each, little-endian.
    assert encoded[3:12] == bytes([0x11, 3, 0, 0, 0, 0, 0, 0, 0])


def test_nil_vote_leaves_the_block_id_out_and_needs_no_extension_signature() -> None:
    vote = schema.Vote(type=schema.PRECOMMIT, height=5, round=0)
    canonical = messages.parse(schema.CanonicalVote, messages.split(signbytes.vote_sign_bytes("c", vote)))
    assert not canonical.HasField("block_id")
    assert not signbytes.needs_extension_signature(vote)
    assert signbytes.needs_extension_signature(example_vote())


def test_vote_extension_sign_bytes() -> None:
    encoded = signbytes.vote_extension_sign_bytes("test_chain_id", example_vote())
    expected_body = (
        b"\x0a\x09extension"
        + b"\x11"
        + (3).to_bytes(8, "little")
        + b"\x19"
        + (2).to_bytes(8, "little")
        + b"\x22\x0dtest_chain_id"
    )
    assert encoded == bytes([len(expected_body)]) + expected_body


def test_proposal_sign_bytes_are_a_delimited_canonical_proposal() -> None:
    proposal = example_proposal()
    proposal.type = schema.PROPOSAL
    proposal.pol_round = -1
    encoded = signbytes.proposal_sign_bytes("test_chain_id", proposal)
    canonical = messages.parse(schema.CanonicalProposal, messages.split(encoded))
    assert (canonical.type, canonical.height, canonical.round, canonical.pol_round) == (32, 3, 2, -1)
    assert canonical.chain_id == "test_chain_id" and canonical.HasField("block_id")
    assert signbytes.proposal_hrs(proposal) == (3, 2, 1)


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"type": 3}, "neither prevote"),
        ({"height": 0}, "height must be at least 1"),
        ({"round": -1}, "round must not be negative"),
        ({"type": schema.PREVOTE}, "extension is only allowed"),
    ],
)
def test_votes_that_must_not_be_signed(change: dict[str, int], complaint: str) -> None:
    vote = example_vote()
    for name, value in change.items():
        setattr(vote, name, value)
    with pytest.raises(signbytes.BadRequest, match=complaint):
        signbytes.vote_hrs(vote)


def test_incomplete_block_id_is_refused() -> None:
    vote = example_vote()
    vote.block_id.hash = b"short"
    with pytest.raises(signbytes.BadRequest, match="empty or complete"):
        signbytes.vote_hrs(vote)


def test_timestamp_only_difference() -> None:
    a, b = example_vote(), example_vote()
    b.timestamp.seconds += 5
    signed, requested = signbytes.vote_sign_bytes("c", a), signbytes.vote_sign_bytes("c", b)
    timestamp = signbytes.timestamp_only_difference(3, signed, requested)
    assert timestamp is not None and timestamp.seconds == STAMP_2019
    b.block_id.hash = sha256(b"another block")
    assert signbytes.timestamp_only_difference(3, signed, signbytes.vote_sign_bytes("c", b)) is None
    assert signbytes.timestamp_only_difference(3, b"\x05garbage", requested) is None


def golden_lines() -> list[list[str]]:
    return [line.split(",") for line in GOLDEN.read_text().splitlines() if line]


@pytest.mark.parametrize("line", golden_lines())
def test_secret_connection_key_derivation_golden(line: list[str]) -> None:
    secret, local_is_least, receive, send = line[:4]
    keys = secretconn.derive_keys(bytes.fromhex(secret), local_is_least == "true")
    assert (keys.receive.hex(), keys.send.hex()) == (receive, send)


def test_golden_file_has_the_published_32_vectors() -> None:
    assert len(golden_lines()) == 32


def test_both_sides_of_an_exchange_agree() -> None:
    a, b = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    side_a = secretconn.exchange(a, secretconn.raw_public(b))
    side_b = secretconn.exchange(b, secretconn.raw_public(a))
    assert side_a.challenge == side_b.challenge
    assert side_a.keys.send == side_b.keys.receive and side_a.keys.receive == side_b.keys.send


def test_low_order_ephemeral_key_is_refused() -> None:
    with pytest.raises(SecretConnectionError, match="low-order"):
        secretconn.exchange(X25519PrivateKey.generate(), bytes(32))


def test_auth_message_verifies_and_a_wrong_challenge_does_not() -> None:
    identity = Ed25519PrivateKey.generate()
    body = messages.split(secretconn.auth_message(identity, b"c" * 32))
    assert secretconn.verify_auth(body, b"c" * 32) == secretconn.raw_public(identity)
    with pytest.raises(SecretConnectionError, match="does not verify"):
        secretconn.verify_auth(body, b"d" * 32)


def test_frames_are_1044_bytes_and_round_trip_in_order() -> None:
    key = bytes(range(32))
    sender, receiver = FrameCipher(key), FrameCipher(key)
    data = bytes(range(256)) * 9  # 2304 bytes: three frames
    sealed = sender.seal_all(data)
    assert len(sealed) == 3 * secretconn.SEALED_SIZE
    frames = [sealed[i : i + 1044] for i in range(0, len(sealed), 1044)]
    assert b"".join(receiver.open(frame) for frame in frames) == data


def test_a_replayed_or_tampered_frame_fails() -> None:
    key = bytes(32)
    sender, receiver = FrameCipher(key), FrameCipher(key)
    first = sender.seal(b"one")
    assert receiver.open(first) == b"one"
    with pytest.raises(SecretConnectionError, match="authentication"):
        receiver.open(first)  # the nonce moved on
    second = bytearray(sender.seal(b"two"))
    second[0] ^= 1
    with pytest.raises(SecretConnectionError, match="authentication"):
        FrameCipher(key).open(bytes(second))


def test_oversized_and_malformed_delimited_messages() -> None:
    with pytest.raises(messages.FrameError, match="larger than"):
        messages.split(messages.uvarint(messages.MAX_MESSAGE + 1) + bytes(messages.MAX_MESSAGE + 1))
    with pytest.raises(messages.FrameError, match="not a valid varint"):
        messages.split(b"\xff" * 11)
    with pytest.raises(messages.FrameError, match="cut short"):
        messages.split(b"\x05ab")
    with pytest.raises(messages.FrameError, match="not a valid Message"):
        messages.parse(schema.PrivvalMessage, b"\x0a\x05ab")
