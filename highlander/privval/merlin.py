"""Merlin transcripts over the part of STROBE-128 they use.

CometBFT's SecretConnection derives its authentication challenge from a
Merlin transcript (https://merlin.cool). No maintained Python package
implements it — PyPI's ``merlin-transcripts`` is a single unmaintained 0.1
release and PyPI's ``strobe`` is an unrelated project — and the construction
is small, so it is written here from its specification: STROBE v1.0.2 at the
128-bit security level, restricted to the operations Merlin needs (meta-AD,
AD, PRF), on :func:`highlander.privval.keccak.permute`.
"""

from __future__ import annotations

from highlander.privval.keccak import permute

RATE = 166  # STROBE-128's R: 200 bytes of state less 2 * 128 bits of capacity, less 2
FLAG_I, FLAG_A, FLAG_C, FLAG_M = 0x01, 0x02, 0x04, 0x10
MERLIN_LABEL = b"Merlin v1.0"


class Strobe128:
    """The STROBE-128 duplex, with only the operations Merlin uses."""

    def __init__(self, protocol: bytes) -> None:
        self.state = bytearray(200)
        self.state[0:6] = bytes((1, RATE + 2, 1, 0, 1, 96))
        self.state[6:18] = b"STROBEv1.0.2"
        permute(self.state)
        self.pos = 0
        self.pos_begin = 0
        self.flags = 0
        self.meta_ad(protocol)

    def _run_f(self) -> None:
        self.state[self.pos] ^= self.pos_begin
        self.state[self.pos + 1] ^= 0x04
        self.state[RATE + 1] ^= 0x80
        permute(self.state)
        self.pos = self.pos_begin = 0

    def _absorb(self, data: bytes) -> None:
        for byte in data:
            self.state[self.pos] ^= byte
            self.pos += 1
            if self.pos == RATE:
                self._run_f()

    def _squeeze(self, length: int) -> bytes:
        out = bytearray()
        for _ in range(length):
            out.append(self.state[self.pos])
            self.state[self.pos] = 0
            self.pos += 1
            if self.pos == RATE:
                self._run_f()
        return bytes(out)

    def _begin(self, flags: int, more: bool) -> None:
        if more:
            if flags != self.flags:
                raise ValueError(f"cannot continue operation {self.flags:#x} as {flags:#x}")
            return
        previous_begin = self.pos_begin
        self.pos_begin = self.pos + 1
        self.flags = flags
        self._absorb(bytes((previous_begin, flags)))
        if flags & FLAG_C and self.pos != 0:
            self._run_f()

    def meta_ad(self, data: bytes, more: bool = False) -> None:
        self._begin(FLAG_M | FLAG_A, more)
        self._absorb(data)

    def ad(self, data: bytes, more: bool = False) -> None:
        self._begin(FLAG_A, more)
        self._absorb(data)

    def prf(self, length: int, more: bool = False) -> bytes:
        self._begin(FLAG_I | FLAG_A | FLAG_C, more)
        return self._squeeze(length)


def _length(n: int) -> bytes:
    if not 0 <= n < 1 << 32:
        raise ValueError(f"a Merlin message is at most 2^32-1 bytes, got {n}")
    return n.to_bytes(4, "little")


class Transcript:
    """A Merlin transcript: labelled messages in, labelled challenges out."""

    def __init__(self, label: bytes) -> None:
        self._strobe = Strobe128(MERLIN_LABEL)
        self.append_message(b"dom-sep", label)

    def append_message(self, label: bytes, message: bytes) -> None:
        self._strobe.meta_ad(label)
        self._strobe.meta_ad(_length(len(message)), more=True)
        self._strobe.ad(message)

    def challenge_bytes(self, label: bytes, length: int) -> bytes:
        self._strobe.meta_ad(label)
        self._strobe.meta_ad(_length(length), more=True)
        return self._strobe.prf(length)
