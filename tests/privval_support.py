"""Votes, proposals and key files for the privval tests (unit and integration)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.message import Message

from highlander.privval import messages, schema
from highlander.privval.key import address_of
from highlander.privval.secretconn import raw_public


def vote(
    height: int = 10, round_: int = 0, kind: int = schema.PREVOTE, block: bytes = b"a", seconds: int = 100
) -> Message:
    """A vote for the block named ``block`` (complete block id, 32-byte hashes)."""
    message = schema.Vote(type=kind, height=height, round=round_)
    message.block_id.hash = hashlib.sha256(block).digest()
    message.block_id.part_set_header.total = 1
    message.block_id.part_set_header.hash = hashlib.sha256(b"parts" + block).digest()
    message.timestamp.seconds = seconds
    return message


def proposal(height: int = 10, round_: int = 0, block: bytes = b"a", seconds: int = 100) -> Message:
    message = schema.Proposal(type=schema.PROPOSAL, height=height, round=round_, pol_round=-1)
    message.block_id.CopyFrom(vote(block=block).block_id)
    message.timestamp.seconds = seconds
    return message


def vote_request(chain: str, **fields: object) -> Message:
    return messages.wrap("sign_vote_request", schema.SignVoteRequest(vote=vote(**fields), chain_id=chain))  # type: ignore[arg-type]


def proposal_request(chain: str, **fields: object) -> Message:
    request = schema.SignProposalRequest(proposal=proposal(**fields), chain_id=chain)  # type: ignore[arg-type]
    return messages.wrap("sign_proposal_request", request)


def write_key(path: Path, private: Ed25519PrivateKey, mode: int = 0o600) -> Path:
    """A priv_validator_key.json as CometBFT writes it."""
    public = raw_public(private)
    path.write_text(
        json.dumps(
            {
                "address": address_of(public),
                "pub_key": {"type": "tendermint/PubKeyEd25519", "value": base64.b64encode(public).decode()},
                "priv_key": {
                    "type": "tendermint/PrivKeyEd25519",
                    "value": base64.b64encode(private.private_bytes_raw() + public).decode(),
                },
            }
        )
    )
    os.chmod(path, mode)
    return path
