"""FilePV's double-sign rule, each branch, for votes and proposals."""

from __future__ import annotations

import pytest
from privval_support import proposal, vote

from highlander.privval import schema, signbytes
from highlander.privval.rules import NOTHING, LastSigned, Refuse, Reuse, Sign, check_fresh, decide
from highlander.signstate.register import HRS


def signed_vote(**fields: object) -> tuple[HRS, bytes]:
    message = vote(**fields)  # type: ignore[arg-type]
    return signbytes.vote_hrs(message), signbytes.vote_sign_bytes("chain", message)


def signed_proposal(**fields: object) -> tuple[HRS, bytes]:
    message = proposal(**fields)  # type: ignore[arg-type]
    return signbytes.proposal_hrs(message), signbytes.proposal_sign_bytes("chain", message)


SIGNERS = {"vote": signed_vote, "proposal": signed_proposal}


def last(hrs: HRS, sign_bytes: bytes) -> LastSigned:
    return LastSigned(hrs, sign_bytes, b"stored-signature")


def test_nothing_signed_yet_means_sign() -> None:
    hrs, data = signed_vote()
    assert decide(NOTHING, hrs, data) == Sign()


@pytest.mark.parametrize("kind", SIGNERS)
def test_higher_hrs_is_signed(kind: str) -> None:
    hrs, data = SIGNERS[kind](height=10)
    newer, newer_data = SIGNERS[kind](height=11)
    assert decide(last(hrs, data), newer, newer_data) == Sign()


@pytest.mark.parametrize("kind", SIGNERS)
def test_lower_hrs_is_refused(kind: str) -> None:
    hrs, data = SIGNERS[kind](height=10, round_=2)
    lower, lower_data = SIGNERS[kind](height=10, round_=1)
    decision = decide(last(hrs, data), lower, lower_data)
    assert isinstance(decision, Refuse) and "regression" in decision.reason and not decision.conflict


def test_lower_step_at_the_same_height_and_round_is_refused() -> None:
    precommit, data = signed_vote(kind=schema.PRECOMMIT)
    prevote, prevote_data = signed_vote(kind=schema.PREVOTE)
    assert isinstance(decide(last(precommit, data), prevote, prevote_data), Refuse)


@pytest.mark.parametrize("kind", SIGNERS)
def test_same_hrs_same_bytes_returns_the_stored_signature(kind: str) -> None:
    hrs, data = SIGNERS[kind]()
    assert decide(last(hrs, data), hrs, data) == Reuse(b"stored-signature")


@pytest.mark.parametrize("kind", SIGNERS)
def test_same_hrs_only_the_timestamp_differs_returns_stored_timestamp_and_signature(kind: str) -> None:
    hrs, data = SIGNERS[kind](seconds=100)
    _, later = SIGNERS[kind](seconds=250)
    decision = decide(last(hrs, data), hrs, later)
    assert isinstance(decision, Reuse) and decision.signature == b"stored-signature"
    assert decision.timestamp is not None and decision.timestamp.seconds == 100


@pytest.mark.parametrize("kind", SIGNERS)
def test_same_hrs_other_block_is_a_conflict(kind: str) -> None:
    hrs, data = SIGNERS[kind](block=b"a")
    _, other = SIGNERS[kind](block=b"b")
    decision = decide(last(hrs, data), hrs, other)
    assert isinstance(decision, Refuse) and decision.conflict and "conflicting data" in decision.reason


def test_same_hrs_nil_against_a_block_is_a_conflict() -> None:
    hrs, data = signed_vote()
    nil = schema.Vote(type=schema.PREVOTE, height=10, round=0)
    nil.timestamp.seconds = 100
    decision = decide(last(hrs, data), hrs, signbytes.vote_sign_bytes("chain", nil))
    assert isinstance(decision, Refuse) and decision.conflict


def test_same_hrs_other_chain_is_a_conflict_even_if_only_the_timestamp_also_differs() -> None:
    message = vote()
    hrs, data = signbytes.vote_hrs(message), signbytes.vote_sign_bytes("chain", message)
    message.timestamp.seconds = 999
    decision = decide(last(hrs, data), hrs, signbytes.vote_sign_bytes("other-chain", message))
    assert isinstance(decision, Refuse) and decision.conflict


def test_same_hrs_without_stored_sign_bytes_is_refused() -> None:
    hrs, data = signed_vote()
    decision = decide(LastSigned(hrs), hrs, data)
    assert isinstance(decision, Refuse) and "not on record" in decision.reason


def test_fresh_signature_must_be_above_the_promotion_mark() -> None:
    mark = HRS(10, 0, 2)
    assert "not above the register's mark" in (check_fresh(mark, mark, mark, 100) or "")
    assert check_fresh(HRS(10, 0, 3), mark, mark, 100) is None


def test_fresh_signature_far_above_the_mark_is_refused() -> None:
    mark = HRS(10, 0, 3)
    assert check_fresh(HRS(110, 0, 1), mark, mark, 100) is None
    assert "more than 100 above" in (check_fresh(HRS(111, 0, 1), mark, mark, 100) or "")


def test_first_signature_of_a_fresh_register_may_be_at_any_height() -> None:
    zero = HRS(0, 0, 0)
    assert check_fresh(HRS(5_000_000, 0, 1), zero, zero, 100) is None
