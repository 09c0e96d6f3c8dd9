"""The pure sign-state protocol, branch by branch.

The replica rules (:func:`promise`, :func:`advance`, :func:`reset`,
:func:`merge`) and the coordinator's tallies (:class:`Promotion`,
:class:`Advance`, :class:`Repair`) are what every safety claim of the
register rests on, so each verdict, each ordering between checks, each bound
and each counting rule of the tallies is pinned here. The whole-protocol
properties (no double sign, fencing, nothing lost) are checked by the
simulation in ``test_signstate_simulation.py``.
"""

from __future__ import annotations

import itertools

import pytest

from highlander.signstate.register import (
    BALLOT_STEP,
    CONFLICT,
    EMPTY,
    HRS,
    MAX_COUNTER,
    MAX_HEIGHT,
    MAX_ROUND,
    NO_BALLOT,
    NO_QUORUM,
    OK,
    RECOVERING,
    REFUSED,
    REGRESSION,
    SEVERITY,
    STALE_EPOCH,
    STEPS,
    ZERO,
    Advance,
    Ballot,
    KeyId,
    Promotion,
    Record,
    Repair,
    Reply,
    advance,
    check_ballot,
    check_mark,
    check_sender,
    majority,
    merge,
    next_ballot,
    promise,
    reset,
)

KEY = KeyId("chain-1", "validator")
TRIO = ("r1", "r2", "r3")
D1 = "aa" * 32
D2 = "bb" * 32


def b(counter: int, owner: str = "node-a") -> Ballot:
    return Ballot(counter, owner)


def rec(counter: int, h: int = 0, r: int = 0, s: int = 0, digest: str = "", owner: str = "node-a") -> Record:
    """A replica record, written compactly (counter 0 is the empty ballot)."""
    return Record(b(counter, owner) if counter else NO_BALLOT, HRS(h, r, s), digest)


# --- values ----------------------------------------------------------------------------


def test_hrs_orders_height_then_round_then_step() -> None:
    # The high-water mark is compared as a tuple; the protocol relies on it.
    assert HRS(1, 9, 3) < HRS(2, 0, 1)
    assert HRS(2, 0, 3) < HRS(2, 1, 1)
    assert HRS(2, 1, 1) < HRS(2, 1, 2)
    assert ZERO < HRS(1, 0, 1)


def test_values_print_as_operators_write_them() -> None:
    assert str(HRS(12, 0, 2)) == "12/0/2"
    assert str(KEY) == "chain-1/validator"
    assert str(Ballot(7, "node-b")) == "7@node-b"
    assert str(NO_BALLOT) == "0"
    assert STEPS == {1: "propose", 2: "prevote", 3: "precommit"}


def test_the_empty_record_is_below_every_mark_and_ballot() -> None:
    assert EMPTY == Record(Ballot(0, ""), ZERO, "")
    assert NO_BALLOT < Ballot(1, "")
    assert NO_BALLOT < Ballot(0, "a")


@pytest.mark.parametrize(("replicas", "needed"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3)])
def test_majority_is_more_than_half(replicas: int, needed: int) -> None:
    assert majority(replicas) == needed


def test_the_documented_maxima() -> None:
    # Every JSON reader keeps 2^53-1 exactly; CometBFT's rounds are 32-bit.
    assert MAX_HEIGHT == MAX_COUNTER == 2**53 - 1
    assert MAX_ROUND == 2**31 - 1
    # Billions of promotions, at the largest step, before a counter runs out.
    assert MAX_COUNTER // BALLOT_STEP > 10**9


# --- ballots ---------------------------------------------------------------------------


def test_ballots_order_by_counter_first() -> None:
    # A higher counter wins whoever owns it: "zzz" does not outrank a newer promotion.
    assert Ballot(1, "zzz") < Ballot(2, "a")
    assert Ballot(9, "node-a") < Ballot(10, "node-a")


def test_ballots_with_one_counter_order_by_owner() -> None:
    # Two nodes never hold the same ballot: the owner breaks the tie, the same way everywhere.
    assert Ballot(5, "node-a") < Ballot(5, "node-b") < Ballot(5, "node-c")
    assert Ballot(5, "node-a") != Ballot(5, "node-b")
    assert max(Ballot(5, "node-b"), Ballot(5, "node-a")) == Ballot(5, "node-b")


@pytest.mark.parametrize(
    "seen",
    [NO_BALLOT, Ballot(1, "node-a"), Ballot(41, "zzz"), Ballot(41, "node-b"), Ballot(41, "")],
    ids=str,
)
def test_next_ballot_belongs_to_the_node_and_is_above_what_was_seen(seen: Ballot) -> None:
    ballot = next_ballot(seen, "node-b")
    assert ballot.owner == "node-b"
    assert ballot > seen
    assert ballot.counter == seen.counter + 1


def test_next_ballot_goes_above_a_ballot_of_a_later_owner() -> None:
    # node-a cannot reuse the counter of node-b: (5, node-a) < (5, node-b).
    assert next_ballot(Ballot(5, "node-b"), "node-a") == Ballot(6, "node-a")


@pytest.mark.parametrize("ballot", [Ballot(1, "n"), Ballot(MAX_COUNTER, "node-a"), Ballot(42, "x" * 64)], ids=str)
def test_check_ballot_accepts_valid_ballots(ballot: Ballot) -> None:
    assert check_ballot(ballot) is None


@pytest.mark.parametrize(
    "ballot",
    [NO_BALLOT, Ballot(0, "node-a"), Ballot(-1, "node-a"), Ballot(1, ""), Ballot(MAX_COUNTER + 1, "node-a")],
    ids=repr,
)
def test_check_ballot_refuses_an_empty_owner_and_counters_out_of_range(ballot: Ballot) -> None:
    problem = check_ballot(ballot)
    assert problem is not None
    assert f"a ballot is a counter from 1 to {MAX_COUNTER} and the node it belongs to" in problem
    assert problem.endswith(f"got {ballot}")


def test_check_sender_lets_only_the_owner_act() -> None:
    assert check_sender(Ballot(3, "node-a"), "node-a") is None
    assert check_sender(Ballot(3, "node-b"), "node-a") == "ballot 3@node-b belongs to node-b, not to node-a"
    assert check_sender(NO_BALLOT, "node-a") == "ballot 0 belongs to nobody, not to node-a"


def test_check_sender_compares_names_exactly() -> None:
    for impostor in ("Node-a", "node-a ", "node-", "node-ab", ""):
        assert check_sender(Ballot(3, "node-a"), impostor) is not None


# --- check_mark ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hrs", "digest"),
    [
        (HRS(1, 0, 1), "0"),
        (HRS(1, 0, 3), "0123456789abcdef"),
        (HRS(10**12, 7, 2), "f" * 128),
        (HRS(MAX_HEIGHT, MAX_ROUND, 3), D1),
    ],
)
def test_check_mark_accepts_valid_marks(hrs: HRS, digest: str) -> None:
    assert check_mark(hrs, digest) is None


HEIGHT_AND_ROUND = f"height must be 1 to {MAX_HEIGHT} and round 0 to {MAX_ROUND}"


@pytest.mark.parametrize(
    ("hrs", "digest", "fragment"),
    [
        (HRS(0, 0, 1), D1, HEIGHT_AND_ROUND),
        (HRS(-1, 0, 1), D1, HEIGHT_AND_ROUND),
        (HRS(MAX_HEIGHT + 1, 0, 1), D1, HEIGHT_AND_ROUND),
        (HRS(2**63 - 1, 0, 1), D1, HEIGHT_AND_ROUND),
        (HRS(1, -1, 1), D1, HEIGHT_AND_ROUND),
        (HRS(1, MAX_ROUND + 1, 1), D1, HEIGHT_AND_ROUND),
        (HRS(1, 0, -1), D1, "step must be 1 (propose), 2 (prevote) or 3 (precommit), got -1"),
        (HRS(1, 0, 0), D1, "step must be 1"),
        (HRS(1, 0, 4), D1, "step must be 1"),
        (HRS(1, 0, 1), "", "digest must be 1 to 128 lower-case hex digits"),
        (HRS(1, 0, 1), "f" * 129, "digest must be"),
        (HRS(1, 0, 1), "ABCDEF", "digest must be"),
        (HRS(1, 0, 1), "xyz", "digest must be"),
        (HRS(1, 0, 1), "ab cd", "digest must be"),
        (HRS(1, 0, 1), "١٢", "digest must be"),
    ],
)
def test_check_mark_says_why_a_mark_cannot_be_signed(hrs: HRS, digest: str, fragment: str) -> None:
    problem = check_mark(hrs, digest)
    assert problem is not None and fragment in problem


def test_check_mark_names_the_mark_it_refuses() -> None:
    assert check_mark(HRS(MAX_HEIGHT + 1, 0, 1), D1) == f"{HEIGHT_AND_ROUND}, got {MAX_HEIGHT + 1}/0/1"


def test_check_mark_reports_the_mark_before_the_step_and_the_digest() -> None:
    # A bad mark is the more fundamental error: it is reported even when the rest is bad too.
    problem = check_mark(HRS(0, 0, 9), "")
    assert problem is not None and problem.startswith("height")
    problem = check_mark(HRS(1, 0, 9), "")
    assert problem is not None and problem.startswith("step")


# --- promise ---------------------------------------------------------------------------


def test_promise_accepts_a_newer_ballot_and_keeps_the_mark() -> None:
    before = rec(3, 5, 0, 2, D1)
    after, reply = promise(before, b(4, "node-b"))
    assert after == Record(b(4, "node-b"), HRS(5, 0, 2), D1)
    # The promoter learns the mark from the reply: it must be the record after the promise.
    assert reply == Reply(OK, after)


def test_promise_on_an_empty_record() -> None:
    after, reply = promise(EMPTY, b(1))
    assert after == Record(b(1), ZERO, "")
    assert reply == Reply(OK, after)


def test_promise_of_the_same_counter_by_a_later_owner_is_newer() -> None:
    after, reply = promise(rec(3, owner="node-a"), b(3, "node-b"))
    assert reply.status == OK and after.promised == b(3, "node-b")


@pytest.mark.parametrize("ballot", [b(3), b(2), b(1, "zzz"), b(3, "node-"), NO_BALLOT], ids=str)
def test_promise_refuses_a_ballot_not_newer_than_the_promised(ballot: Ballot) -> None:
    # Equal is refused too: otherwise two promoters at the same ballot could both win.
    before = rec(3, 5, 0, 2, D1)
    after, reply = promise(before, ballot)
    assert after is before
    assert reply == Reply(REFUSED, before)


def test_promise_accepts_up_to_ballot_step_above_the_promise() -> None:
    before = rec(10, 5, 0, 2, D1)
    after, reply = promise(before, b(10 + BALLOT_STEP, "node-b"))
    assert reply.status == OK and after.promised == b(10 + BALLOT_STEP, "node-b")


@pytest.mark.parametrize("counter", [10 + BALLOT_STEP + 1, 10 * BALLOT_STEP, MAX_COUNTER])
def test_promise_refuses_a_ballot_more_than_ballot_step_above(counter: int) -> None:
    # A faulty or hostile node cannot push the counter to where no promotion can follow.
    before = rec(10, 5, 0, 2, D1)
    after, reply = promise(before, b(counter, "node-b"))
    assert after is before
    assert reply == Reply(REFUSED, before)


def test_the_ballot_step_is_counted_from_the_empty_record() -> None:
    assert promise(EMPTY, b(BALLOT_STEP))[1].status == OK
    assert promise(EMPTY, b(BALLOT_STEP + 1))[1].status == REFUSED


def test_the_ballot_step_ignores_the_owner() -> None:
    # (10+STEP, "") ... (10+STEP, "zzz") are all within the step; the counter alone counts.
    assert promise(rec(10, owner="zzz"), b(10 + BALLOT_STEP, "a"))[1].status == OK


# --- advance ---------------------------------------------------------------------------


def test_advance_moves_the_mark_forward() -> None:
    after, reply = advance(rec(2, 5, 0, 1, D1), b(2), HRS(5, 0, 2), D2)
    assert after == rec(2, 5, 0, 2, D2)
    assert reply == Reply(OK, after)


def test_advance_from_the_empty_record() -> None:
    after, reply = advance(EMPTY, b(1), HRS(1, 0, 1), D1)
    assert reply == Reply(OK, rec(1, 1, 0, 1, D1))
    assert after == reply.record


def test_advance_retry_with_the_same_digest_is_accepted_unchanged() -> None:
    before = rec(2, 5, 0, 1, D1)
    after, reply = advance(before, b(2), HRS(5, 0, 1), D1)
    assert after == before
    assert reply == Reply(OK, before)


def test_advance_at_a_newer_ballot_raises_the_promise() -> None:
    # The replica missed the promotion; from now on it must refuse the old ballot like the others.
    after, reply = advance(rec(2, 5, 0, 1, D1), b(7, "node-b"), HRS(5, 0, 2), D2)
    assert after == Record(b(7, "node-b"), HRS(5, 0, 2), D2)
    assert reply.status == OK
    _, stale = advance(after, b(2), HRS(9, 0, 1), D1)
    assert stale.status == STALE_EPOCH


def test_advance_retry_at_a_newer_ballot_also_raises_the_promise() -> None:
    # The promoter's read repair of an unchanged mark is such a retry.
    after, reply = advance(rec(2, 5, 0, 1, D1), b(3), HRS(5, 0, 1), D1)
    assert after == rec(3, 5, 0, 1, D1)
    assert reply == Reply(OK, after)


def test_advance_refuses_an_older_ballot() -> None:
    before = rec(4, 5, 0, 1, D1)
    after, reply = advance(before, b(3), HRS(6, 0, 1), D2)
    assert after is before
    assert reply == Reply(STALE_EPOCH, before)


def test_a_superseded_node_cannot_borrow_the_new_owners_counter() -> None:
    # node-b was promised (2, node-b); node-a's signer, told "epoch 2", can only send
    # (2, node-a) through its own coordinator, which is older: it is fenced.
    before = rec(2, 5, 0, 1, D1, owner="node-b")
    after, reply = advance(before, b(2, "node-a"), HRS(6, 0, 1), D2)
    assert after is before
    assert reply == Reply(STALE_EPOCH, before)


def test_advance_accepts_up_to_ballot_step_above_the_promise() -> None:
    after, reply = advance(rec(2, 5, 0, 1, D1), b(2 + BALLOT_STEP), HRS(5, 0, 2), D2)
    assert reply.status == OK and after.promised == b(2 + BALLOT_STEP)


@pytest.mark.parametrize("counter", [2 + BALLOT_STEP + 1, MAX_COUNTER])
def test_advance_refuses_a_ballot_more_than_ballot_step_above(counter: int) -> None:
    before = rec(2, 5, 0, 1, D1)
    after, reply = advance(before, b(counter), HRS(5, 0, 2), D2)
    assert after is before
    assert reply == Reply(REFUSED, before)


def test_advance_refuses_a_lower_mark() -> None:
    before = rec(2, 5, 1, 1, D1)
    for hrs in (HRS(5, 0, 3), HRS(4, 9, 3), HRS(5, 1, 0)):
        after, reply = advance(before, b(2), hrs, D2)
        assert after is before
        assert reply == Reply(REGRESSION, before)


def test_advance_refuses_another_digest_at_the_same_mark() -> None:
    before = rec(2, 5, 0, 1, D1)
    after, reply = advance(before, b(2), HRS(5, 0, 1), D2)
    assert after is before
    assert reply == Reply(CONFLICT, before)


def test_the_first_mark_with_no_digest_yet_conflicts_only_with_a_nonempty_digest() -> None:
    # ZERO/"" is the empty state; a (pointless) advance to it is a same-digest retry.
    _, reply = advance(EMPTY, b(1), ZERO, "")
    assert reply == Reply(OK, rec(1))
    _, reply = advance(EMPTY, b(1), ZERO, D1)
    assert reply.status == CONFLICT


def test_advance_checks_the_ballot_before_the_mark() -> None:
    # A superseded signer must hear STALE_EPOCH (stop for good), not REGRESSION or CONFLICT.
    before = rec(4, 5, 0, 1, D1)
    assert advance(before, b(3), HRS(4, 0, 1), D2)[1].status == STALE_EPOCH
    assert advance(before, b(3), HRS(5, 0, 1), D2)[1].status == STALE_EPOCH
    assert advance(before, b(3), HRS(5, 0, 1), D1)[1].status == STALE_EPOCH
    # A ballot too far above is refused whatever the mark: it is not a ballot anyone promoted.
    too_far = b(4 + BALLOT_STEP + 1)
    assert advance(before, too_far, HRS(4, 0, 1), D2)[1].status == REFUSED
    assert advance(before, too_far, HRS(5, 0, 1), D2)[1].status == REFUSED
    assert advance(before, too_far, HRS(6, 0, 1), D2)[1].status == REFUSED


def test_a_lower_mark_is_a_regression_whatever_its_digest() -> None:
    before = rec(2, 5, 0, 2, D1)
    assert advance(before, b(2), HRS(5, 0, 1), D1)[1].status == REGRESSION


# --- reset -----------------------------------------------------------------------------


def test_reset_lowers_the_mark_and_forgets_the_digest() -> None:
    before = rec(4, MAX_HEIGHT, 0, 3, D1)
    after, reply = reset(before, b(5), HRS(100, 0, 3))
    assert after == rec(5, 100, 0, 3, "")
    assert reply == Reply(OK, after)


def test_reset_to_nothing_signed() -> None:
    after, reply = reset(rec(4, 7, 0, 1, D1), b(4), ZERO)
    assert after == rec(4)
    assert reply == Reply(OK, after)


def test_reset_can_also_raise_the_mark() -> None:
    after, reply = reset(rec(4, 7, 0, 1, D1), b(4), HRS(9, 0, 1))
    assert reply.status == OK and after.hwm == HRS(9, 0, 1) and after.digest == ""


def test_reset_refuses_a_stale_ballot() -> None:
    # Only the newest promotion may lower a mark: a superseded node cannot undo signatures.
    before = rec(4, 7, 0, 1, D1, owner="node-b")
    for ballot in (b(3), b(4, "node-a")):
        after, reply = reset(before, ballot, ZERO)
        assert after is before
        assert reply == Reply(STALE_EPOCH, before)


def test_after_a_reset_the_reset_mark_itself_cannot_be_signed() -> None:
    # The reset mark has no digest: any signature there is a conflict; the signer signs above.
    after, _ = reset(rec(4, 7, 0, 1, D1), b(4), HRS(5, 0, 1))
    assert advance(after, b(4), HRS(5, 0, 1), D1)[1].status == CONFLICT
    assert advance(after, b(4), HRS(5, 0, 2), D1)[1].status == OK


def test_reset_refuses_a_ballot_more_than_ballot_step_above() -> None:
    """The same bound as promise and advance: a peer may send a reset at any
    ballot it owns, and one at (MAX_COUNTER, peer) would raise the promise to
    where no later ballot can be promised, bricking the key for good."""
    before = rec(4, 7, 0, 1, D1)
    for counter in (4 + BALLOT_STEP + 1, MAX_COUNTER):
        after, reply = reset(before, b(counter), ZERO)
        assert after is before
        assert reply == Reply(REFUSED, before)


# --- merge -----------------------------------------------------------------------------


def test_merge_of_nothing_is_empty() -> None:
    assert merge([]) == EMPTY
    assert merge(iter(())) == EMPTY


def test_merge_of_one_record_is_that_record() -> None:
    assert merge([rec(4, 7, 0, 1, D1)]) == rec(4, 7, 0, 1, D1)


def test_merge_takes_the_highest_promise_and_the_highest_mark_independently() -> None:
    # A rejoin must keep both: the promise fences old signers, the mark old signatures.
    merged = merge([rec(9, 5, 0, 1, D1, owner="node-b"), rec(3, 8, 0, 2, D2)])
    assert merged == Record(b(9, "node-b"), HRS(8, 0, 2), D2)


def test_merge_keeps_the_digest_of_the_highest_mark() -> None:
    merged = merge([rec(1, 8, 0, 2, D1), rec(1, 8, 0, 1, D2), rec(1, 7, 5, 3, D2)])
    assert merged.hwm == HRS(8, 0, 2) and merged.digest == D1


def test_merge_breaks_a_tie_at_one_mark_by_digest_in_any_order() -> None:
    records = [rec(1, 8, 0, 2, D1), rec(1, 8, 0, 2, D2), rec(2, 3, 0, 1, D1, owner="node-b")]
    for order in itertools.permutations(records):
        assert merge(order) == Record(b(2, "node-b"), HRS(8, 0, 2), D2)


def test_merge_never_lowers_any_record() -> None:
    records = [rec(3, 9, 0, 1, D1), rec(5, 2, 0, 1, D2, owner="node-c"), EMPTY, rec(5, 9, 0, 1, D1, owner="node-b")]
    merged = merge(records)
    for record in records:
        assert merged.promised >= record.promised
        assert merged.hwm >= record.hwm


def test_merge_keeps_the_promise_owner() -> None:
    assert merge([rec(5, owner="node-a"), rec(5, owner="node-c"), rec(5, owner="node-b")]).promised == b(5, "node-c")


# --- Promotion -------------------------------------------------------------------------

BALLOT = b(5)


def ok(counter: int, h: int = 0, r: int = 0, s: int = 0, digest: str = "", owner: str = "node-a") -> Reply:
    return Reply(OK, rec(counter, h, r, s, digest, owner))


def refused(counter: int, h: int = 0, r: int = 0, s: int = 0, digest: str = "", owner: str = "node-a") -> Reply:
    return Reply(REFUSED, rec(counter, h, r, s, digest, owner))


RECOVERING_REPLY = Reply(RECOVERING, EMPTY)


def test_promotion_starts_undecided_with_everyone_missing() -> None:
    p = Promotion(KEY, BALLOT, TRIO)
    assert (p.key, p.ballot, p.needed, p.outcome) == (KEY, BALLOT, 2, None)
    assert p.missing() == ["r1", "r2", "r3"]
    assert p.best == EMPTY
    assert p.highest_ballot == NO_BALLOT


def test_promotion_is_ok_at_a_majority_of_promises() -> None:
    p = Promotion(KEY, BALLOT, TRIO)
    assert p.on_reply("r2", ok(5, 3, 0, 1, D1)) is None
    assert p.on_reply("r1", ok(5, 2, 0, 3, D2)) == OK
    assert p.outcome == OK
    assert p.missing() == ["r3"]


def test_promotion_counts_a_duplicate_once() -> None:
    p = Promotion(KEY, BALLOT, TRIO)
    assert p.on_reply("r1", ok(5)) is None
    assert p.on_reply("r1", ok(5)) is None
    assert len(p.replies) == 1
    assert p.on_reply("r3", ok(5)) == OK


def test_a_duplicate_cannot_replace_the_first_reply() -> None:
    p = Promotion(KEY, BALLOT, TRIO)
    p.on_reply("r1", refused(9))
    p.on_reply("r1", ok(5, 7, 0, 1, D1))
    assert p.replies["r1"].status == REFUSED


def test_promotion_ignores_unknown_replicas() -> None:
    p = Promotion(KEY, BALLOT, TRIO)
    assert p.on_reply("r4", ok(5, 9, 0, 1, D1)) is None
    assert p.on_reply("r4", ok(5)) is None
    assert p.replies == {}
    assert p.on_reply("r1", ok(5)) is None
    assert p.on_reply("r2", ok(5)) == OK
    assert p.best == rec(5)


def test_promotion_ignores_replies_after_the_outcome() -> None:
    p = Promotion(KEY, BALLOT, TRIO)
    p.on_reply("r1", ok(5, 1, 0, 1, D1))
    p.on_reply("r2", ok(5, 1, 0, 1, D1))
    # r3 has a higher mark, but the promoter already decided: best is the majority's, as returned.
    assert p.on_reply("r3", ok(5, 9, 0, 1, D2)) == OK
    assert "r3" not in p.replies
    assert p.best == rec(5, 1, 0, 1, D1)


def test_promotion_is_refused_once_a_majority_cannot_promise() -> None:
    p = Promotion(KEY, BALLOT, TRIO)
    assert p.on_reply("r1", refused(6, owner="node-c")) is None
    assert p.on_reply("r2", refused(7, owner="node-b")) == REFUSED
    # The retry must go above every ballot reported, refusals included.
    assert p.highest_ballot == b(7, "node-b")
    assert next_ballot(p.highest_ballot, "node-a") == b(8, "node-a")
    assert p.on_reply("r3", ok(5)) == REFUSED


def test_highest_ballot_breaks_a_counter_tie_by_owner() -> None:
    p = Promotion(KEY, BALLOT, TRIO)
    p.on_reply("r1", refused(7, owner="node-c"))
    p.on_reply("r2", refused(7, owner="node-b"))
    assert p.highest_ballot == b(7, "node-c")


def test_promotion_with_one_refusal_still_reaches_ok() -> None:
    p = Promotion(KEY, BALLOT, TRIO)
    assert p.on_reply("r1", refused(8, 9, 0, 3, D2)) is None
    assert p.on_reply("r2", ok(5, 2, 0, 1, D1)) is None
    assert p.on_reply("r3", ok(5)) == OK
    # A refusing replica's mark is not the majority's: best comes from the promises only.
    assert p.best == rec(5, 2, 0, 1, D1)
    assert p.highest_ballot == b(8)


def test_promotion_best_is_the_highest_mark_among_the_promises() -> None:
    p = Promotion(KEY, BALLOT, TRIO)
    p.on_reply("r1", ok(5, 4, 2, 1, D2))
    p.on_reply("r2", ok(5, 4, 2, 3, D1))
    assert p.best == rec(5, 4, 2, 3, D1)


def test_promotion_best_breaks_a_tie_at_one_mark_by_digest() -> None:
    # Deterministic, so every promoter picks the same; the read repair then catches a conflict.
    p = Promotion(KEY, BALLOT, TRIO)
    p.on_reply("r1", ok(5, 4, 0, 1, D2))
    p.on_reply("r3", ok(5, 4, 0, 1, D1))
    assert p.best == rec(5, 4, 0, 1, D2)


def test_promotion_give_up_without_replies_is_no_quorum() -> None:
    p = Promotion(KEY, BALLOT, TRIO)
    assert p.give_up() == NO_QUORUM
    assert p.outcome == NO_QUORUM
    assert p.best == EMPTY
    assert p.highest_ballot == NO_BALLOT


def test_promotion_give_up_with_a_minority_is_no_quorum() -> None:
    p = Promotion(KEY, BALLOT, TRIO)
    p.on_reply("r1", ok(5))
    assert p.give_up() == NO_QUORUM
    # Decided: a late promise does not turn the abandoned promotion into a success.
    assert p.on_reply("r2", ok(5)) == NO_QUORUM
    assert p.outcome == NO_QUORUM


def test_promotion_give_up_after_one_refusal_is_no_quorum() -> None:
    # A majority was still possible: the verdict is the timeout, not the refusal.
    p = Promotion(KEY, BALLOT, TRIO)
    p.on_reply("r1", refused(9))
    assert p.give_up() == NO_QUORUM


def test_give_up_keeps_an_outcome_already_reached() -> None:
    p = Promotion(KEY, BALLOT, TRIO)
    p.on_reply("r1", ok(5))
    p.on_reply("r2", ok(5))
    assert p.give_up() == OK
    q = Promotion(KEY, BALLOT, TRIO)
    q.on_reply("r1", refused(6))
    q.on_reply("r2", refused(6))
    assert q.give_up() == REFUSED


def test_promotion_over_five_replicas_needs_three() -> None:
    p = Promotion(KEY, BALLOT, ["a", "b", "c", "d", "e"])
    assert p.on_reply("a", ok(5)) is None
    assert p.on_reply("b", ok(5)) is None
    assert p.on_reply("c", refused(6)) is None
    assert p.on_reply("d", refused(6)) is None
    assert p.on_reply("e", ok(5)) == OK


def test_promotion_with_duplicate_replica_names_counts_distinct_replicas() -> None:
    p = Promotion(KEY, BALLOT, ["r1", "r1", "r2", "r3"])
    assert p.needed == 2
    assert p.missing() == ["r1", "r2", "r3"]


# --- RECOVERING in the tallies ------------------------------------------------------------


def test_a_recovering_replica_counts_as_answered_but_never_as_a_promise() -> None:
    p = Promotion(KEY, BALLOT, TRIO)
    assert p.on_reply("r1", RECOVERING_REPLY) is None
    assert p.missing() == ["r2", "r3"]
    assert p.on_reply("r2", ok(5, 3, 0, 1, D1)) is None  # one promise: not a majority
    assert p.on_reply("r3", ok(5)) == OK
    assert p.best == rec(5, 3, 0, 1, D1)
    assert len(p.ok()) == 2


def test_a_recovering_replicas_empty_record_is_never_the_best() -> None:
    # Its EMPTY must not stand for "nothing signed": best comes from the promises only.
    p = Promotion(KEY, BALLOT, TRIO)
    p.on_reply("r1", RECOVERING_REPLY)
    p.on_reply("r2", ok(5, 3, 0, 1, D1))
    p.on_reply("r3", ok(5, 2, 0, 1, D2))
    assert p.best == rec(5, 3, 0, 1, D1)


@pytest.mark.parametrize(
    "replies",
    [
        {"r1": RECOVERING_REPLY, "r2": RECOVERING_REPLY},
        {"r1": RECOVERING_REPLY, "r2": RECOVERING_REPLY, "r3": RECOVERING_REPLY},
        {"r2": ok(5), "r1": RECOVERING_REPLY, "r3": RECOVERING_REPLY},
    ],
    ids=["two-recovering", "all-recovering", "one-ok-two-recovering"],
)
def test_a_promotion_with_only_recovering_failures_is_no_quorum_at_once(replies: dict[str, Reply]) -> None:
    # Decided as soon as a majority is out of reach, without waiting for the timeout.
    p = Promotion(KEY, BALLOT, TRIO)
    outcomes = [p.on_reply(name, reply) for name, reply in replies.items()]
    assert outcomes[-1] == NO_QUORUM
    assert p.outcome == NO_QUORUM


def test_a_promotion_with_a_refusal_and_a_recovering_replica_is_refused() -> None:
    # A refusal means a newer ballot exists: the promoter retries higher, so it must hear it.
    for order in itertools.permutations([("r1", RECOVERING_REPLY), ("r2", refused(9))]):
        p = Promotion(KEY, BALLOT, TRIO)
        assert [p.on_reply(*reply) for reply in order][-1] == REFUSED
        assert p.highest_ballot == b(9)


def test_recovering_is_not_a_severity_and_never_reported_as_one() -> None:
    assert RECOVERING not in SEVERITY
    assert NO_QUORUM not in SEVERITY


@pytest.mark.parametrize("kind", [Advance, Repair])
def test_an_advance_with_only_recovering_failures_is_no_quorum(kind: type[Advance]) -> None:
    a = kind(KEY, BALLOT, HRS(7, 0, 2), D1, TRIO)
    assert a.on_reply("r1", RECOVERING_REPLY) is None
    assert a.on_reply("r2", RECOVERING_REPLY) == NO_QUORUM
    assert a.on_reply("r3", Reply(OK, Record(BALLOT, HRS(7, 0, 2), D1))) == NO_QUORUM


def test_an_advance_with_a_recovering_replica_reports_the_other_failure() -> None:
    for status in (CONFLICT, REGRESSION, REFUSED):
        a = Advance(KEY, BALLOT, HRS(7, 0, 2), D1, TRIO)
        a.on_reply("r1", RECOVERING_REPLY)
        assert a.on_reply("r2", Reply(status, rec(5, 9, 0, 1, D2))) == status


def test_an_advance_with_one_recovering_replica_still_reaches_ok() -> None:
    a = Advance(KEY, BALLOT, HRS(7, 0, 2), D1, TRIO)
    accepted = Reply(OK, Record(BALLOT, HRS(7, 0, 2), D1))
    assert a.on_reply("r2", RECOVERING_REPLY) is None
    assert a.on_reply("r1", accepted) is None
    assert a.on_reply("r3", accepted) == OK


def test_give_up_with_a_recovering_replica_is_no_quorum() -> None:
    a = Advance(KEY, BALLOT, HRS(7, 0, 2), D1, TRIO)
    a.on_reply("r1", RECOVERING_REPLY)
    a.on_reply("r2", Reply(OK, Record(BALLOT, HRS(7, 0, 2), D1)))
    assert a.give_up() == NO_QUORUM


# --- Advance ---------------------------------------------------------------------------

MARK = HRS(7, 0, 2)


def new_advance(replicas: tuple[str, ...] = TRIO) -> Advance:
    return Advance(KEY, BALLOT, MARK, D1, replicas)


def accepted() -> Reply:
    return Reply(OK, Record(BALLOT, MARK, D1))


def test_advance_tally_keeps_what_it_asks_for() -> None:
    a = new_advance()
    assert (a.key, a.ballot, a.hrs, a.digest, a.needed, a.outcome) == (KEY, BALLOT, MARK, D1, 2, None)


def test_advance_is_ok_at_a_majority() -> None:
    a = new_advance()
    assert a.on_reply("r3", accepted()) is None
    assert a.on_reply("r1", accepted()) == OK
    assert a.missing() == ["r2"]


def test_advance_counts_a_duplicate_once() -> None:
    a = new_advance()
    assert a.on_reply("r1", accepted()) is None
    assert a.on_reply("r1", accepted()) is None
    assert a.outcome is None
    assert a.on_reply("r2", accepted()) == OK


def test_advance_ignores_unknown_replicas() -> None:
    a = new_advance()
    assert a.on_reply("rX", accepted()) is None
    assert a.on_reply("rX", Reply(STALE_EPOCH, rec(9))) is None
    assert a.replies == {}


def test_advance_ignores_replies_after_the_outcome() -> None:
    a = new_advance()
    a.on_reply("r1", accepted())
    a.on_reply("r2", accepted())
    # Once signed, a later STALE_EPOCH changes nothing: the signature is out.
    assert a.on_reply("r3", Reply(STALE_EPOCH, rec(9))) == OK
    assert "r3" not in a.replies


def test_stale_epoch_is_decided_at_once() -> None:
    # Even as the very first reply, with a majority still reachable: the signer is superseded.
    a = new_advance()
    assert a.on_reply("r1", Reply(STALE_EPOCH, rec(6))) == STALE_EPOCH
    assert a.on_reply("r2", accepted()) == STALE_EPOCH
    assert a.on_reply("r3", accepted()) == STALE_EPOCH
    assert a.outcome == STALE_EPOCH
    assert a.highest_ballot == b(6)


def test_stale_epoch_after_one_ok_is_still_decided_at_once() -> None:
    a = new_advance()
    a.on_reply("r1", accepted())
    assert a.on_reply("r2", Reply(STALE_EPOCH, rec(6))) == STALE_EPOCH


def test_one_failure_leaves_the_advance_open() -> None:
    for status in (REGRESSION, CONFLICT, REFUSED, RECOVERING):
        a = new_advance()
        assert a.on_reply("r1", Reply(status, rec(5, 9, 0, 1, D2))) is None
        assert a.on_reply("r2", accepted()) is None
        assert a.on_reply("r3", accepted()) == OK


@pytest.mark.parametrize(
    ("statuses", "verdict"),
    [
        ((REGRESSION, REGRESSION), REGRESSION),
        ((CONFLICT, CONFLICT), CONFLICT),
        ((REFUSED, REFUSED), REFUSED),
        ((REGRESSION, CONFLICT), CONFLICT),
        ((REFUSED, REGRESSION), REGRESSION),
        ((REFUSED, CONFLICT), CONFLICT),
        ((RECOVERING, REFUSED), REFUSED),
        ((RECOVERING, RECOVERING), NO_QUORUM),
        ((OK, REGRESSION, REGRESSION), REGRESSION),
        ((OK, REGRESSION, CONFLICT), CONFLICT),
        ((OK, CONFLICT, REGRESSION), CONFLICT),
        ((OK, RECOVERING, REGRESSION), REGRESSION),
        ((OK, RECOVERING, RECOVERING), NO_QUORUM),
    ],
)
def test_the_most_alarming_failure_wins_in_any_order(statuses: tuple[str, ...], verdict: str) -> None:
    for order in itertools.permutations(statuses):
        a = new_advance()
        outcomes = [a.on_reply(replica, Reply(status, rec(5))) for replica, status in zip(TRIO, order)]
        # Undecided until the second failure puts a majority of OKs out of reach; then the
        # verdict, which a later reply (even an OK) does not change.
        decided_at = [i for i, status in enumerate(order) if status != OK][1]
        assert outcomes[:decided_at] == [None] * decided_at, order
        assert outcomes[decided_at:] == [verdict] * (len(order) - decided_at), order


def test_severity_puts_a_conflict_first_and_a_refusal_last() -> None:
    assert SEVERITY == (CONFLICT, STALE_EPOCH, REGRESSION, REFUSED)


def test_advance_give_up_without_replies_is_no_quorum() -> None:
    a = new_advance()
    assert a.give_up() == NO_QUORUM
    assert a.on_reply("r1", accepted()) == NO_QUORUM
    assert a.on_reply("r2", accepted()) == NO_QUORUM


def test_advance_give_up_with_one_ok_and_one_conflict_is_no_quorum() -> None:
    # The third reply could still have made it: a timeout, not a conflict verdict.
    a = new_advance()
    a.on_reply("r1", accepted())
    a.on_reply("r2", Reply(CONFLICT, rec(5)))
    assert a.give_up() == NO_QUORUM


def test_advance_give_up_keeps_an_outcome_already_reached() -> None:
    a = new_advance()
    a.on_reply("r1", Reply(STALE_EPOCH, rec(6)))
    assert a.give_up() == STALE_EPOCH


def test_advance_over_a_single_replica() -> None:
    a = new_advance(("only",))
    assert a.needed == 1
    assert a.on_reply("only", accepted()) == OK


# --- the replica rules and the tallies together ----------------------------------------


def run_round(records: dict[str, Record], ballot: Ballot) -> Promotion:
    """A promotion over ``records`` with every reply delivered, in name order."""
    p = Promotion(KEY, ballot, records)
    for name in sorted(records):
        records[name], reply = promise(records[name], ballot)
        p.on_reply(name, reply)
    return p


def test_a_superseded_signer_is_fenced_after_a_promotion() -> None:
    records = {name: EMPTY for name in TRIO}
    assert run_round(records, b(1, "node-a")).outcome == OK
    assert run_round(records, b(2, "node-b")).outcome == OK
    for ballot in (b(1, "node-a"), b(2, "node-a")):  # its own ballot, or the new counter under its name
        a = Advance(KEY, ballot, HRS(1, 0, 1), D1, TRIO)
        for name in TRIO:
            records[name], reply = advance(records[name], ballot, HRS(1, 0, 1), D1)
            if a.on_reply(name, reply) is not None:
                break
        assert a.outcome == STALE_EPOCH
    assert all(record.hwm == ZERO for record in records.values())


def test_two_promoters_at_one_ballot_cannot_both_win() -> None:
    records = {name: EMPTY for name in TRIO}
    assert run_round(records, b(3)).outcome == OK
    again = run_round(records, b(3))
    assert again.outcome == REFUSED
    assert next_ballot(again.highest_ballot, "node-b") == b(4, "node-b")


def test_two_nodes_at_one_counter_cannot_both_win() -> None:
    # Whoever comes second at the same counter wins only if its name is later; never both.
    records = {name: EMPTY for name in TRIO}
    assert run_round(records, b(3, "node-b")).outcome == OK
    assert run_round(records, b(3, "node-a")).outcome == REFUSED
    assert run_round(records, b(3, "node-c")).outcome == OK


def test_a_ballot_pushed_far_ahead_by_one_node_does_not_stop_the_others() -> None:
    # A hostile node's ballot far above is refused by every replica; the register keeps working.
    records = {name: rec(7, 3, 0, 1, D1) for name in TRIO}
    assert run_round(records, b(7 + BALLOT_STEP + 1, "node-c")).outcome == REFUSED
    assert all(record.promised == b(7) for record in records.values())
    assert run_round(records, next_ballot(b(7), "node-b")).outcome == OK


def test_a_reset_behind_a_fresh_promotion_lowers_a_majority() -> None:
    records = {name: rec(3, MAX_HEIGHT, 0, 3, D1) for name in TRIO}
    ballot = next_ballot(b(3), "node-b")
    assert run_round(records, ballot).outcome == OK
    tally = Advance(KEY, ballot, HRS(10, 0, 3), "", TRIO)
    for name in TRIO:
        records[name], reply = reset(records[name], ballot, HRS(10, 0, 3))
        tally.on_reply(name, reply)
    assert tally.outcome == OK
    # The superseded signer cannot lower it again, nor sign above the lowered mark.
    assert reset(records["r1"], b(3), ZERO)[1].status == STALE_EPOCH
    assert advance(records["r1"], b(3), HRS(11, 0, 1), D2)[1].status == STALE_EPOCH
    assert advance(records["r1"], ballot, HRS(11, 0, 1), D2)[1].status == OK


# --- a failover after a superseded signer's unsigned leftover ---------------------------


X1, Y2, X3 = b(1, "x"), b(2, "y"), b(3, "x")


def _fenced_mark_then_failover(x_digest: str, y_digest: str, y_replica_up: bool) -> tuple[Repair, dict[str, Record]]:
    """The read repair of a failover after a fenced signer left its mark on one replica.

    X is active at (1, x). Y takes over at (2, y) through its own and the
    witness' replica. X's last in-flight advance at 1/0/1 still reaches X's
    own replica, which never promised (2, y) (STALE_EPOCH from the witness
    stops X: nothing is signed by X). Y signs 1/0/1 on its replica and the
    witness. Then X takes over again at (3, x) reading its own replica and
    the witness, with Y's replica down or up but answering last. Returns X's
    repair tally and the records.
    """
    mark = HRS(1, 0, 1)
    records = {"x": EMPTY, "y": EMPTY, "w": EMPTY}
    for name in ("x", "y", "w"):
        records[name], _ = promise(records[name], X1)
    for name in ("y", "w"):
        records[name], _ = promise(records[name], Y2)
    records["x"], reply = advance(records["x"], X1, mark, x_digest)
    assert reply.status == OK
    assert advance(records["w"], X1, mark, x_digest)[1].status == STALE_EPOCH
    signed = Advance(KEY, Y2, mark, y_digest, records)
    for name in ("y", "w"):
        records[name], reply = advance(records[name], Y2, mark, y_digest)
        signed.on_reply(name, reply)
    assert signed.outcome == OK  # Y signed y_digest at 1/0/1: nobody else may, and nobody did

    promotion = Promotion(KEY, X3, records)
    for name in ("x", "w"):
        records[name], reply = promise(records[name], X3)
        promotion.on_reply(name, reply)
    assert promotion.outcome == OK
    best = promotion.best
    repair = Repair(KEY, X3, best.hwm, best.digest, records)
    for name in ("x", "w", "y") if y_replica_up else ("x", "w"):
        records[name], reply = advance(records[name], X3, best.hwm, best.digest)
        repair.on_reply(name, reply)
    repair.give_up()
    return repair, records


@pytest.mark.parametrize(("x_digest", "y_digest"), [(D2, D1), (D1, D2)], ids=["x-digest-higher", "y-digest-higher"])
def test_a_failover_is_not_stuck_by_a_fenced_signers_leftover(x_digest: str, y_digest: str) -> None:
    assert _fenced_mark_then_failover(x_digest, y_digest, y_replica_up=False)[0].outcome == OK


def test_a_failover_is_not_stuck_with_all_replicas_up() -> None:
    assert _fenced_mark_then_failover(D2, D1, y_replica_up=True)[0].outcome == OK


def test_a_repair_counts_a_conflict_only_at_its_own_mark() -> None:
    repair = Repair(KEY, X3, HRS(2, 0, 1), D1, TRIO)
    # At its mark with another digest: holds the mark, counts.
    assert repair.on_reply("r1", Reply(CONFLICT, rec(3, 2, 0, 1, D2))) is None
    # A conflict anywhere else is not the repair's mark: it does not count.
    assert repair.on_reply("r2", Reply(CONFLICT, rec(3, 2, 0, 2, D2))) is None
    assert repair.on_reply("r3", Reply(OK, rec(3, 2, 0, 1, D1))) == OK
    assert len(repair.ok()) == 2


def test_a_repair_never_counts_a_recovering_replica() -> None:
    repair = Repair(KEY, X3, HRS(2, 0, 1), D1, TRIO)
    repair.on_reply("r1", Reply(RECOVERING, Record(X3, HRS(2, 0, 1), D2)))
    assert repair.ok() == []


def test_after_the_repair_nobody_can_sign_the_leftover_or_another_digest_at_that_mark() -> None:
    """The repair may complete on an unsigned leftover; a second digest at the
    signed mark still never reaches a majority."""
    for x_digest, y_digest in ((D2, D1), (D1, D2)):
        for up in (False, True):
            repair, records = _fenced_mark_then_failover(x_digest, y_digest, up)
            attempt = Advance(KEY, X3, repair.hrs, x_digest, ("x", "y", "w"))
            for name in ("x", "y", "w"):
                records[name], reply = advance(records[name], X3, repair.hrs, x_digest)
                attempt.on_reply(name, reply)
            assert attempt.outcome != OK
