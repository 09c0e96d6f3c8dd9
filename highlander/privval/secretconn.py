"""CometBFT's SecretConnection, the arithmetic without the socket.

The handshake (see :mod:`highlander.privval.transport` for the I/O):

1. both sides send an ephemeral X25519 public key;
2. the two keys, sorted, and the Diffie-Hellman secret go into a Merlin
   transcript, which yields the 32-byte challenge;
3. HKDF-SHA256 of the secret gives two ChaCha20-Poly1305 keys, one per
   direction — which is which depends on whose ephemeral key sorts lower;
4. each side signs the challenge with its Ed25519 identity and sends key and
   signature, encrypted; each verifies the other's.

After that every frame carries a 4-byte little-endian length and up to 1024
data bytes, zero-padded to 1028 and sealed to 1044; the nonce is a 64-bit
little-endian counter in bytes 4..11, one per direction.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from highlander.privval import messages, schema
from highlander.privval.merlin import Transcript

DATA_MAX = 1024
LENGTH_SIZE = 4
FRAME_SIZE = DATA_MAX + LENGTH_SIZE  # 1028
SEALED_SIZE = FRAME_SIZE + 16  # 1044
KEY_INFO = b"TENDERMINT_SECRET_CONNECTION_KEY_AND_CHALLENGE_GEN"
TRANSCRIPT_LABEL = b"TENDERMINT_SECRET_CONNECTION_TRANSCRIPT_HASH"
MAX_NONCE = (1 << 64) - 1


class SecretConnectionError(ValueError):
    """The peer broke the SecretConnection protocol (handshake or frames)."""


class Keys(NamedTuple):
    receive: bytes
    send: bytes


def derive_keys(dh_secret: bytes, local_is_least: bool) -> Keys:
    """The two AEAD keys from the shared secret (HKDF-SHA256, no salt)."""
    material = HKDF(algorithm=hashes.SHA256(), length=96, salt=None, info=KEY_INFO).derive(dh_secret)
    first, second = material[:32], material[32:64]
    return Keys(first, second) if local_is_least else Keys(second, first)


def challenge(local_ephemeral: bytes, remote_ephemeral: bytes, dh_secret: bytes) -> bytes:
    low, high = sorted((local_ephemeral, remote_ephemeral))
    transcript = Transcript(TRANSCRIPT_LABEL)
    transcript.append_message(b"EPHEMERAL_LOWER_PUBLIC_KEY", low)
    transcript.append_message(b"EPHEMERAL_UPPER_PUBLIC_KEY", high)
    transcript.append_message(b"DH_SECRET", dh_secret)
    return transcript.challenge_bytes(b"SECRET_CONNECTION_MAC", 32)


def raw_public(key: X25519PrivateKey | Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def ephemeral_message(public: bytes) -> bytes:
    """What each side sends first: a delimited ``google.protobuf.BytesValue``."""
    return messages.uvarint(len(public) + 2) + b"\x0a" + messages.uvarint(len(public)) + public


def parse_ephemeral(body: bytes) -> bytes:
    """The peer's ephemeral key from a BytesValue body; exactly 32 bytes."""
    if len(body) != 34 or body[:2] != b"\x0a\x20":
        raise SecretConnectionError("the peer's first message is not a 32-byte ephemeral key")
    return body[2:]


class Session(NamedTuple):
    """The outcome of the key exchange, before authentication."""

    keys: Keys
    challenge: bytes


def exchange(local: X25519PrivateKey, remote_public: bytes) -> Session:
    """Derive the session from our ephemeral key and the peer's."""
    try:
        secret = local.exchange(X25519PublicKey.from_public_bytes(remote_public))
    except ValueError:
        # cryptography refuses an all-zero result: a low-order point.
        raise SecretConnectionError("the peer's ephemeral key is a low-order point") from None
    local_public = raw_public(local)
    return Session(derive_keys(secret, local_public < remote_public), challenge(local_public, remote_public, secret))


def auth_message(identity: Ed25519PrivateKey, session_challenge: bytes) -> bytes:
    """Our identity key and its signature of the challenge, delimited."""
    message = schema.AuthSigMessage(sig=identity.sign(session_challenge))
    message.pub_key.ed25519 = raw_public(identity)
    return messages.encode(message)


def verify_auth(body: bytes, session_challenge: bytes) -> bytes:
    """The peer's Ed25519 identity, once its challenge signature checks out."""
    try:
        message = messages.parse(schema.AuthSigMessage, body)
    except messages.FrameError as exc:
        raise SecretConnectionError(str(exc)) from None
    if message.pub_key.WhichOneof("sum") != "ed25519" or len(message.pub_key.ed25519) != 32:
        raise SecretConnectionError("the peer's identity is not an Ed25519 key")
    try:
        Ed25519PublicKey.from_public_bytes(message.pub_key.ed25519).verify(message.sig, session_challenge)
    except InvalidSignature:
        raise SecretConnectionError("the peer's challenge signature does not verify") from None
    return bytes(message.pub_key.ed25519)


class FrameCipher:
    """One direction of a SecretConnection: its key and its nonce counter."""

    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)
        self._counter = 0

    def _nonce(self) -> bytes:
        if self._counter >= MAX_NONCE:
            raise SecretConnectionError("nonce space exhausted; the connection must be closed")
        nonce = b"\x00\x00\x00\x00" + struct.pack("<Q", self._counter)
        self._counter += 1
        return nonce

    def seal(self, chunk: bytes) -> bytes:
        if len(chunk) > DATA_MAX:
            raise ValueError(f"a frame carries at most {DATA_MAX} bytes, got {len(chunk)}")
        frame = struct.pack("<I", len(chunk)) + chunk + bytes(DATA_MAX - len(chunk))
        return self._aead.encrypt(self._nonce(), frame, None)

    def open(self, sealed: bytes) -> bytes:
        if len(sealed) != SEALED_SIZE:
            raise SecretConnectionError(f"a sealed frame is {SEALED_SIZE} bytes, got {len(sealed)}")
        try:
            frame = self._aead.decrypt(self._nonce(), sealed, None)
        except InvalidTag:
            raise SecretConnectionError("a frame failed authentication (tampered, or out of order)") from None
        (length,) = struct.unpack_from("<I", frame)
        if length > DATA_MAX:
            raise SecretConnectionError(f"a frame claims {length} data bytes, more than {DATA_MAX}")
        return frame[LENGTH_SIZE : LENGTH_SIZE + length]

    def seal_all(self, data: bytes) -> bytes:
        """``data`` as the frames CometBFT would write (none for no data)."""
        return b"".join(self.seal(data[i : i + DATA_MAX]) for i in range(0, len(data), DATA_MAX))
