"""What a validator signs: CometBFT's canonical sign bytes, and the checks a
vote or proposal must pass before anything is signed for it.

Sign bytes are the length-delimited ``CanonicalVote`` /
``CanonicalProposal`` (height and round as fixed 64-bit, the chain id, the
block id left out when it is the zero one) and, for vote extensions
(CometBFT 0.38+), the delimited ``CanonicalVoteExtension``. A vote
extension is signed for every non-nil precommit: with extensions enabled the
node panics when that signature is missing, and when it comes on any other
vote.
"""

from __future__ import annotations

from google.protobuf.message import Message

from highlander.privval import messages, schema
from highlander.signstate.register import HRS

STEP_PROPOSE, STEP_PREVOTE, STEP_PRECOMMIT = 1, 2, 3
VOTE_STEPS = {schema.PREVOTE: STEP_PREVOTE, schema.PRECOMMIT: STEP_PRECOMMIT}
HASH_SIZE = 32
INT32_MAX = 2**31 - 1


class BadRequest(ValueError):
    """A vote or proposal that must not be signed as it is; the text says why."""


def block_id_is_zero(block_id: Message) -> bool:
    return not block_id.hash and block_id.part_set_header.total == 0 and not block_id.part_set_header.hash


def _block_id_is_complete(block_id: Message) -> bool:
    header = block_id.part_set_header
    return len(block_id.hash) == HASH_SIZE and header.total > 0 and len(header.hash) == HASH_SIZE


def _canonical_block_id(target: Message, block_id: Message) -> None:
    if block_id_is_zero(block_id):
        return  # absent from the sign bytes
    target.block_id.hash = block_id.hash
    target.block_id.part_set_header.total = block_id.part_set_header.total
    target.block_id.part_set_header.hash = block_id.part_set_header.hash


def _check_common(what: str, height: int, round_: int, block_id: Message) -> None:
    if height < 1:
        raise BadRequest(f"{what} height must be at least 1, got {height}")
    if round_ < 0:
        raise BadRequest(f"{what} round must not be negative, got {round_}")
    if not block_id_is_zero(block_id) and not _block_id_is_complete(block_id):
        raise BadRequest(f"{what} block id must be empty or complete (32-byte hashes, parts > 0)")


def vote_hrs(vote: Message) -> HRS:
    """The vote's height/round/step, after checking it is a vote we may sign."""
    step = VOTE_STEPS.get(vote.type)
    if step is None:
        raise BadRequest(f"vote type {vote.type} is neither prevote (1) nor precommit (2)")
    _check_common("vote", vote.height, vote.round, vote.block_id)
    if vote.extension and not needs_extension_signature(vote):
        raise BadRequest("a vote extension is only allowed on a non-nil precommit")
    return HRS(vote.height, vote.round, step)


def proposal_hrs(proposal: Message) -> HRS:
    if proposal.type != schema.PROPOSAL:
        raise BadRequest(f"proposal type {proposal.type} is not a proposal (32)")
    _check_common("proposal", proposal.height, proposal.round, proposal.block_id)
    if not _block_id_is_complete(proposal.block_id):
        raise BadRequest("a proposal must name a complete block id")
    if not -1 <= proposal.pol_round < proposal.round:
        raise BadRequest(f"proposal POL round {proposal.pol_round} must be -1 or below its round {proposal.round}")
    return HRS(proposal.height, proposal.round, STEP_PROPOSE)


def needs_extension_signature(vote: Message) -> bool:
    """Non-nil precommits carry an extension signature; nothing else may."""
    return vote.type == schema.PRECOMMIT and not block_id_is_zero(vote.block_id)


def vote_sign_bytes(chain_id: str, vote: Message) -> bytes:
    schema.fill_non_nullable(vote)
    canonical = schema.CanonicalVote(type=vote.type, height=vote.height, round=vote.round, chain_id=chain_id)
    _canonical_block_id(canonical, vote.block_id)
    canonical.timestamp.CopyFrom(vote.timestamp)
    return messages.encode(canonical)


def proposal_sign_bytes(chain_id: str, proposal: Message) -> bytes:
    schema.fill_non_nullable(proposal)
    canonical = schema.CanonicalProposal(
        type=schema.PROPOSAL,
        height=proposal.height,
        round=proposal.round,
        pol_round=proposal.pol_round,
        chain_id=chain_id,
    )
    _canonical_block_id(canonical, proposal.block_id)
    canonical.timestamp.CopyFrom(proposal.timestamp)
    return messages.encode(canonical)


def vote_extension_sign_bytes(chain_id: str, vote: Message) -> bytes:
    canonical = schema.CanonicalVoteExtension(
        extension=vote.extension, height=vote.height, round=vote.round, chain_id=chain_id
    )
    return messages.encode(canonical)


def timestamp_only_difference(step: int, signed: bytes, requested: bytes) -> Message | None:
    """The timestamp in ``signed`` when it and ``requested`` differ in nothing
    else (FilePV then hands out the earlier signature with its timestamp);
    None when anything else differs or either cannot be read."""
    kind = schema.CanonicalProposal if step == STEP_PROPOSE else schema.CanonicalVote
    try:
        old = messages.parse(kind, messages.split(signed))
        new = messages.parse(kind, messages.split(requested))
    except messages.FrameError:
        return None
    timestamp = schema.Timestamp()
    timestamp.CopyFrom(old.timestamp)
    old.ClearField("timestamp")
    new.ClearField("timestamp")
    return timestamp if old == new else None
