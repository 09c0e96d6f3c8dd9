"""Keccak-f[1600] and Merlin, checked against independent implementations
and published vectors.

The permutation is checked by building SHA3-256 and SHAKE128 from it and
comparing with hashlib (OpenSSL's Keccak); Merlin by the vectors its
reference implementations publish (the Go ``merlin`` packages' simple and
complex transcripts, which CometBFT's own Merlin also passes).
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from highlander.privval.keccak import ROUND_CONSTANTS, permute
from highlander.privval.merlin import Transcript


def sponge(message: bytes, rate: int, suffix: int, length: int) -> bytes:
    """A plain Keccak sponge over :func:`permute` (pad10*1 with a domain suffix)."""
    state = bytearray(200)
    padded = bytearray(message) + bytes([suffix])
    padded += bytes(-len(padded) % rate)
    padded[-1] |= 0x80
    for start in range(0, len(padded), rate):
        for i, byte in enumerate(padded[start : start + rate]):
            state[i] ^= byte
        permute(state)
    out = bytearray()
    while len(out) < length:
        out += state[:rate]
        permute(state)
    return bytes(out[:length])


@given(st.binary(max_size=400))
def test_sha3_256_built_on_the_permutation_matches_hashlib(message: bytes) -> None:
    assert sponge(message, 136, 0x06, 32) == hashlib.sha3_256(message).digest()


@pytest.mark.parametrize("message", [b"", b"abc", bytes(range(256)) * 3])
def test_shake128_long_output_matches_hashlib(message: bytes) -> None:
    assert sponge(message, 168, 0x1F, 500) == hashlib.shake_128(message).digest(500)


def test_round_constants_start_and_end_as_published() -> None:
    # FIPS 202's first and last iota constants.
    assert ROUND_CONSTANTS[0] == 0x0000000000000001
    assert ROUND_CONSTANTS[1] == 0x0000000000008082
    assert ROUND_CONSTANTS[23] == 0x8000000080008008


def test_permute_refuses_a_wrong_state_size() -> None:
    with pytest.raises(ValueError, match="200 bytes"):
        permute(bytearray(199))


def test_merlin_simple_transcript_vector() -> None:
    transcript = Transcript(b"test protocol")
    transcript.append_message(b"some label", b"some data")
    assert (
        transcript.challenge_bytes(b"challenge", 32).hex()
        == "d5a21972d0d5fe320c0d263fac7fffb8145aa640af6e9bca177c03c7efcf0615"
    )


def test_merlin_complex_transcript_vector() -> None:
    # Long messages wrap the sponge many times; challenges feed back in.
    transcript = Transcript(b"test protocol")
    transcript.append_message(b"step1", b"some data")
    data = bytes([99]) * 1024
    for _ in range(32):
        challenge = transcript.challenge_bytes(b"challenge", 32)
        transcript.append_message(b"bigdata", data)
        transcript.append_message(b"challengedata", challenge)
    assert challenge.hex() == "a8c933f54fae76e3f9bea93648c1308e7dfa2152dd51674ff3ca438351cf003c"


def test_merlin_challenge_depends_on_every_message() -> None:
    def challenge(message: bytes) -> bytes:
        transcript = Transcript(b"p")
        transcript.append_message(b"m", message)
        return transcript.challenge_bytes(b"c", 32)

    assert challenge(b"a") != challenge(b"b")
