"""The validator's consensus key, read from CometBFT's ``priv_validator_key.json``.

The file holds the Ed25519 key as CometBFT's JSON encoder writes it::

    {"address": "<HEX>",
     "pub_key": {"type": "tendermint/PubKeyEd25519", "value": "<base64 32 bytes>"},
     "priv_key": {"type": "tendermint/PrivKeyEd25519", "value": "<base64 seed || public>"}}

A key file that anyone but its owner may read or write is refused: the key
is the validator, and whoever copies it can sign twice without us.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

PUB_TYPE = "tendermint/PubKeyEd25519"
PRIV_TYPE = "tendermint/PrivKeyEd25519"


class KeyFileError(ValueError):
    """The key file is unusable; the message names it and the fix."""


class ValidatorKey(NamedTuple):
    private: Ed25519PrivateKey
    public: bytes
    address: str  # upper-case hex, as CometBFT logs it

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)


def address_of(public: bytes) -> str:
    """CometBFT's validator address: the first 20 bytes of SHA-256 of the key."""
    return hashlib.sha256(public).digest()[:20].hex().upper()


def parse_key(text: str, source: str) -> ValidatorKey:
    try:
        document = json.loads(text)
        kind, value = document["priv_key"]["type"], document["priv_key"]["value"]
    except (ValueError, KeyError, TypeError):
        raise KeyFileError(f"{source}: not a CometBFT priv_validator_key.json (no priv_key type and value)") from None
    if kind != PRIV_TYPE:
        raise KeyFileError(f"{source}: key type {kind!r} is not supported; only {PRIV_TYPE} (ed25519) is")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, TypeError):
        raise KeyFileError(f"{source}: priv_key.value is not base64") from None
    if len(raw) != 64:
        raise KeyFileError(f"{source}: an ed25519 priv_key is 64 bytes (seed and public key), got {len(raw)}")
    private = Ed25519PrivateKey.from_private_bytes(raw[:32])
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    if public != raw[32:]:
        raise KeyFileError(f"{source}: priv_key.value's public half does not match its seed; the file is damaged")
    stored = document.get("pub_key", {}).get("value") if isinstance(document.get("pub_key"), dict) else None
    if stored is not None and stored != base64.b64encode(public).decode():
        raise KeyFileError(f"{source}: pub_key does not match priv_key; the file is damaged")
    return ValidatorKey(private, public, address_of(public))


def load_key(path: Path) -> ValidatorKey:
    """Read the key, refusing a file others may read or write."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot open the validator key: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if mode & 0o077:
            raise KeyFileError(
                f"{path}: the validator key is accessible to group or others (mode {stat.filemode(mode)}); "
                f"run 'chmod 600 {path}' and check who could have copied it"
            )
        with os.fdopen(fd, "r", closefd=False) as stream:
            text = stream.read()
    finally:
        os.close(fd)
    return parse_key(text, str(path))
