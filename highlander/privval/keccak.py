"""The Keccak-f[1600] permutation (FIPS 202), the block function of STROBE.

Python's hashlib exposes SHA-3 and SHAKE but not the bare permutation, which
STROBE (and so Merlin, and so CometBFT's SecretConnection) needs. The round
constants and rotation offsets are derived here from their definitions in
FIPS 202 rather than typed in, so there is no table to get wrong; the tests
check the permutation by building SHA3-256 from it and comparing with
hashlib.
"""

from __future__ import annotations

MASK = (1 << 64) - 1
ROUNDS = 24


def _rc_bit(t: int) -> int:
    """rc(t) of FIPS 202 algorithm 5: one output bit of the LFSR x^8+x^6+x^5+x^4+1."""
    if t % 255 == 0:
        return 1
    r = 0x01  # bit i of the integer is R[i]
    for _ in range(t % 255):
        r <<= 1
        if r & 0x100:
            r ^= 0x171  # R[0], R[4], R[5], R[6] ^= R[8]; then R[8] is dropped
    return r & 1


def _round_constants() -> tuple[int, ...]:
    constants = []
    for round_index in range(ROUNDS):
        value = 0
        for j in range(7):
            if _rc_bit(j + 7 * round_index):
                value |= 1 << ((1 << j) - 1)
        constants.append(value)
    return tuple(constants)


def _rotations() -> tuple[int, ...]:
    """rho's offsets by lane index x + 5y (FIPS 202 algorithm 2)."""
    offsets = [0] * 25
    x, y = 1, 0
    for t in range(24):
        offsets[x + 5 * y] = ((t + 1) * (t + 2) // 2) % 64
        x, y = y, (2 * x + 3 * y) % 5
    return tuple(offsets)


ROUND_CONSTANTS = _round_constants()
ROTATIONS = _rotations()
# pi moves lane (x, y) to (y, 2x + 3y): the destination index of each source lane.
PI = tuple(y + 5 * ((2 * x + 3 * y) % 5) for y in range(5) for x in range(5))


def _rotl(value: int, shift: int) -> int:
    return ((value << shift) | (value >> (64 - shift))) & MASK if shift else value


def permute_lanes(lanes: list[int]) -> None:
    """Apply Keccak-f[1600] in place to 25 lanes (index x + 5y)."""
    for constant in ROUND_CONSTANTS:
        # theta
        columns = [lanes[x] ^ lanes[x + 5] ^ lanes[x + 10] ^ lanes[x + 15] ^ lanes[x + 20] for x in range(5)]
        for x in range(5):
            d = columns[(x - 1) % 5] ^ _rotl(columns[(x + 1) % 5], 1)
            for y in range(0, 25, 5):
                lanes[x + y] ^= d
        # rho and pi
        moved = [0] * 25
        for index in range(25):
            moved[PI[index]] = _rotl(lanes[index], ROTATIONS[index])
        # chi
        for y in range(0, 25, 5):
            row = moved[y : y + 5]
            for x in range(5):
                lanes[x + y] = row[x] ^ (~row[(x + 1) % 5] & row[(x + 2) % 5] & MASK)
        # iota
        lanes[0] ^= constant


def permute(state: bytearray) -> None:
    """Apply Keccak-f[1600] in place to a 200-byte state (lanes little-endian)."""
    if len(state) != 200:
        raise ValueError(f"a Keccak-f[1600] state is 200 bytes, got {len(state)}")
    lanes = [int.from_bytes(state[8 * i : 8 * i + 8], "little") for i in range(25)]
    permute_lanes(lanes)
    state[:] = b"".join(lane.to_bytes(8, "little") for lane in lanes)
