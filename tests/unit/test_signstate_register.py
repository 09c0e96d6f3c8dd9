"""The pure sign-state protocol, branch by branch.

The replica rules (:func:`promise`, :func:`advance`) and the coordinator's
tallies (:class:`Promotion`, :class:`Advance`) are what every safety claim of
the register rests on, so each verdict, each ordering between checks and
each counting rule of the tallies is pinned here. The whole-protocol
properties (no double sign, fencing, nothing lost) are checked by the
simulation in ``test_signstate_simulation.py``.
"""

from __future__ import annotations

import itertools

import pytest

from highlander.signstate.register import (
    CONFLICT,
    EMPTY,
    HRS,
    NO_QUORUM,
    OK,
    REFUSED,
    REGRESSION,
    SEVERITY,
    STALE_EPOCH,
    STEPS,
    ZERO,
    Advance,
    KeyId,
    Promotion,
    Record,
    Repair,
    Reply,
    advance,
    check_mark,
    majority,
    next_epoch,
    promise,
)

KEY = KeyId("chain-1", "validator")
TRIO = ("r1", "r2", "r3")
D1 = "aa" * 32
D2 = "bb" * 32


def rec(epoch: int, h: int = 0, r: int = 0, s: int = 0, digest: str = "") -> Record:
    """A replica record, written compactly."""
    return Record(epoch, HRS(h, r, s), digest)


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
    assert STEPS == {1: "propose", 2: "prevote", 3: "precommit"}


def test_the_empty_record_is_below_every_mark() -> None:
    assert EMPTY == Record(0, ZERO, "")


def test_next_epoch_is_above_what_was_seen() -> None:
    assert next_epoch(0) == 1
    assert next_epoch(41) == 42


@pytest.mark.parametrize(("replicas", "needed"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3)])
def test_majority_is_more_than_half(replicas: int, needed: int) -> None:
    assert majority(replicas) == needed


# --- check_mark ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hrs", "digest"),
    [
        (HRS(1, 0, 1), "0"),
        (HRS(1, 0, 3), "0123456789abcdef"),
        (HRS(10**12, 7, 2), "f" * 128),
    ],
)
def test_check_mark_accepts_valid_marks(hrs: HRS, digest: str) -> None:
    assert check_mark(hrs, digest) is None


@pytest.mark.parametrize(
    ("hrs", "digest", "fragment"),
    [
        (HRS(0, 0, 1), D1, "height must be at least 1"),
        (HRS(-1, 0, 1), D1, "height must be at least 1"),
        (HRS(1, -1, 1), D1, "round non-negative"),
        (HRS(1, 0, -1), D1, "height must be at least 1"),
        (HRS(1, 0, 0), D1, "step must be 1"),
        (HRS(1, 0, 4), D1, "step must be 1"),
        (HRS(1, 0, 1), "", "digest must be"),
        (HRS(1, 0, 1), "f" * 129, "digest must be"),
        (HRS(1, 0, 1), "ABCDEF", "digest must be"),
        (HRS(1, 0, 1), "xyz", "digest must be"),
        (HRS(1, 0, 1), "ab cd", "digest must be"),
    ],
)
def test_check_mark_says_why_a_mark_cannot_be_signed(hrs: HRS, digest: str, fragment: str) -> None:
    problem = check_mark(hrs, digest)
    assert problem is not None and fragment in problem


def test_check_mark_reports_the_mark_before_the_digest() -> None:
    # A bad mark is the more fundamental error: it is reported even when the digest is bad too.
    problem = check_mark(HRS(0, 0, 1), "")
    assert problem is not None and "height" in problem


# --- promise ---------------------------------------------------------------------------


def test_promise_accepts_a_newer_epoch_and_keeps_the_mark() -> None:
    before = rec(3, 5, 0, 2, D1)
    after, reply = promise(before, 4)
    assert after == rec(4, 5, 0, 2, D1)
    # The promoter learns the mark from the reply: it must be the record after the promise.
    assert reply == Reply(OK, after)


def test_promise_on_an_empty_record() -> None:
    after, reply = promise(EMPTY, 1)
    assert after == Record(1, ZERO, "")
    assert reply == Reply(OK, after)


@pytest.mark.parametrize("epoch", [3, 2, 0])
def test_promise_refuses_an_epoch_not_newer_than_the_promised(epoch: int) -> None:
    # Equal is refused too: otherwise two promoters at the same epoch could both win.
    before = rec(3, 5, 0, 2, D1)
    after, reply = promise(before, epoch)
    assert after is before
    assert reply == Reply(REFUSED, before)


# --- advance ---------------------------------------------------------------------------


def test_advance_moves_the_mark_forward() -> None:
    after, reply = advance(rec(2, 5, 0, 1, D1), 2, HRS(5, 0, 2), D2)
    assert after == rec(2, 5, 0, 2, D2)
    assert reply == Reply(OK, after)


def test_advance_from_the_empty_record() -> None:
    after, reply = advance(EMPTY, 1, HRS(1, 0, 1), D1)
    assert reply == Reply(OK, rec(1, 1, 0, 1, D1))
    assert after == reply.record


def test_advance_retry_with_the_same_digest_is_accepted_unchanged() -> None:
    before = rec(2, 5, 0, 1, D1)
    after, reply = advance(before, 2, HRS(5, 0, 1), D1)
    assert after == before
    assert reply == Reply(OK, before)


def test_advance_at_a_newer_epoch_raises_the_promise() -> None:
    # The replica missed the promotion; from now on it must refuse the old epoch like the others.
    after, reply = advance(rec(2, 5, 0, 1, D1), 7, HRS(5, 0, 2), D2)
    assert after == rec(7, 5, 0, 2, D2)
    assert reply.status == OK
    _, stale = advance(after, 2, HRS(9, 0, 1), D1)
    assert stale.status == STALE_EPOCH


def test_advance_retry_at_a_newer_epoch_also_raises_the_promise() -> None:
    # The promoter's read repair of an unchanged mark is such a retry.
    after, reply = advance(rec(2, 5, 0, 1, D1), 3, HRS(5, 0, 1), D1)
    assert after == rec(3, 5, 0, 1, D1)
    assert reply == Reply(OK, after)


def test_advance_refuses_an_older_epoch() -> None:
    before = rec(4, 5, 0, 1, D1)
    after, reply = advance(before, 3, HRS(6, 0, 1), D2)
    assert after is before
    assert reply == Reply(STALE_EPOCH, before)


def test_advance_refuses_a_lower_mark() -> None:
    before = rec(2, 5, 1, 1, D1)
    for hrs in (HRS(5, 0, 3), HRS(4, 9, 3), HRS(5, 1, 0)):
        after, reply = advance(before, 2, hrs, D2)
        assert after is before
        assert reply == Reply(REGRESSION, before)


def test_advance_refuses_another_digest_at_the_same_mark() -> None:
    before = rec(2, 5, 0, 1, D1)
    after, reply = advance(before, 2, HRS(5, 0, 1), D2)
    assert after is before
    assert reply == Reply(CONFLICT, before)


def test_the_first_mark_with_no_digest_yet_conflicts_only_with_a_nonempty_digest() -> None:
    # ZERO/"" is the empty state; a (pointless) advance to it is a same-digest retry.
    _, reply = advance(EMPTY, 1, ZERO, "")
    assert reply == Reply(OK, rec(1))
    _, reply = advance(EMPTY, 1, ZERO, D1)
    assert reply.status == CONFLICT


def test_advance_checks_the_epoch_before_the_mark() -> None:
    # A superseded signer must hear STALE_EPOCH (stop for good), not REGRESSION or CONFLICT.
    before = rec(4, 5, 0, 1, D1)
    assert advance(before, 3, HRS(4, 0, 1), D2)[1].status == STALE_EPOCH
    assert advance(before, 3, HRS(5, 0, 1), D2)[1].status == STALE_EPOCH
    assert advance(before, 3, HRS(5, 0, 1), D1)[1].status == STALE_EPOCH


def test_a_lower_mark_is_a_regression_whatever_its_digest() -> None:
    before = rec(2, 5, 0, 2, D1)
    assert advance(before, 2, HRS(5, 0, 1), D1)[1].status == REGRESSION


# --- Promotion -------------------------------------------------------------------------


def ok(epoch: int, h: int = 0, r: int = 0, s: int = 0, digest: str = "") -> Reply:
    return Reply(OK, rec(epoch, h, r, s, digest))


def refused(epoch: int, h: int = 0, r: int = 0, s: int = 0, digest: str = "") -> Reply:
    return Reply(REFUSED, rec(epoch, h, r, s, digest))


def test_promotion_starts_undecided_with_everyone_missing() -> None:
    p = Promotion(KEY, 5, TRIO)
    assert (p.key, p.epoch, p.needed, p.outcome) == (KEY, 5, 2, None)
    assert p.missing() == ["r1", "r2", "r3"]
    assert p.best == EMPTY
    assert p.highest_epoch == 0


def test_promotion_is_ok_at_a_majority_of_promises() -> None:
    p = Promotion(KEY, 5, TRIO)
    assert p.on_reply("r2", ok(5, 3, 0, 1, D1)) is None
    assert p.on_reply("r1", ok(5, 2, 0, 3, D2)) == OK
    assert p.outcome == OK
    assert p.missing() == ["r3"]


def test_promotion_counts_a_duplicate_once() -> None:
    p = Promotion(KEY, 5, TRIO)
    assert p.on_reply("r1", ok(5)) is None
    assert p.on_reply("r1", ok(5)) is None
    assert len(p.replies) == 1
    assert p.on_reply("r3", ok(5)) == OK


def test_a_duplicate_cannot_replace_the_first_reply() -> None:
    p = Promotion(KEY, 5, TRIO)
    p.on_reply("r1", refused(9))
    p.on_reply("r1", ok(5, 7, 0, 1, D1))
    assert p.replies["r1"].status == REFUSED


def test_promotion_ignores_unknown_replicas() -> None:
    p = Promotion(KEY, 5, TRIO)
    assert p.on_reply("r4", ok(5, 9, 0, 1, D1)) is None
    assert p.on_reply("r4", ok(5)) is None
    assert p.replies == {}
    assert p.on_reply("r1", ok(5)) is None
    assert p.on_reply("r2", ok(5)) == OK
    assert p.best == rec(5)


def test_promotion_ignores_replies_after_the_outcome() -> None:
    p = Promotion(KEY, 5, TRIO)
    p.on_reply("r1", ok(5, 1, 0, 1, D1))
    p.on_reply("r2", ok(5, 1, 0, 1, D1))
    # r3 has a higher mark, but the promoter already decided: best is the majority's, as returned.
    assert p.on_reply("r3", ok(5, 9, 0, 1, D2)) == OK
    assert "r3" not in p.replies
    assert p.best == rec(5, 1, 0, 1, D1)


def test_promotion_is_refused_once_a_majority_cannot_promise() -> None:
    p = Promotion(KEY, 5, TRIO)
    assert p.on_reply("r1", refused(6)) is None
    assert p.on_reply("r2", refused(7)) == REFUSED
    # The retry must go above every epoch reported, refusals included.
    assert p.highest_epoch == 7
    assert p.on_reply("r3", ok(5)) == REFUSED


def test_promotion_with_one_refusal_still_reaches_ok() -> None:
    p = Promotion(KEY, 5, TRIO)
    assert p.on_reply("r1", refused(8, 9, 0, 3, D2)) is None
    assert p.on_reply("r2", ok(5, 2, 0, 1, D1)) is None
    assert p.on_reply("r3", ok(5)) == OK
    # A refusing replica's mark is not the majority's: best comes from the promises only.
    assert p.best == rec(5, 2, 0, 1, D1)
    assert p.highest_epoch == 8


def test_promotion_best_is_the_highest_mark_among_the_promises() -> None:
    p = Promotion(KEY, 5, TRIO)
    p.on_reply("r1", ok(5, 4, 2, 1, D2))
    p.on_reply("r2", ok(5, 4, 2, 3, D1))
    assert p.best == rec(5, 4, 2, 3, D1)


def test_promotion_best_breaks_a_tie_at_one_mark_by_digest() -> None:
    # Deterministic, so every promoter picks the same; the read repair then catches a conflict.
    p = Promotion(KEY, 5, TRIO)
    p.on_reply("r1", ok(5, 4, 0, 1, D2))
    p.on_reply("r3", ok(5, 4, 0, 1, D1))
    assert p.best == rec(5, 4, 0, 1, D2)


def test_promotion_give_up_without_replies_is_no_quorum() -> None:
    p = Promotion(KEY, 5, TRIO)
    assert p.give_up() == NO_QUORUM
    assert p.outcome == NO_QUORUM
    assert p.best == EMPTY
    assert p.highest_epoch == 0


def test_promotion_give_up_with_a_minority_is_no_quorum() -> None:
    p = Promotion(KEY, 5, TRIO)
    p.on_reply("r1", ok(5))
    assert p.give_up() == NO_QUORUM
    # Decided: a late promise does not turn the abandoned promotion into a success.
    assert p.on_reply("r2", ok(5)) == NO_QUORUM
    assert p.outcome == NO_QUORUM


def test_promotion_give_up_after_one_refusal_is_no_quorum() -> None:
    # A majority was still possible: the verdict is the timeout, not the refusal.
    p = Promotion(KEY, 5, TRIO)
    p.on_reply("r1", refused(9))
    assert p.give_up() == NO_QUORUM


def test_give_up_keeps_an_outcome_already_reached() -> None:
    p = Promotion(KEY, 5, TRIO)
    p.on_reply("r1", ok(5))
    p.on_reply("r2", ok(5))
    assert p.give_up() == OK
    q = Promotion(KEY, 5, TRIO)
    q.on_reply("r1", refused(6))
    q.on_reply("r2", refused(6))
    assert q.give_up() == REFUSED


def test_promotion_over_five_replicas_needs_three() -> None:
    p = Promotion(KEY, 5, ["a", "b", "c", "d", "e"])
    assert p.on_reply("a", ok(5)) is None
    assert p.on_reply("b", ok(5)) is None
    assert p.on_reply("c", refused(6)) is None
    assert p.on_reply("d", refused(6)) is None
    assert p.on_reply("e", ok(5)) == OK


def test_promotion_with_duplicate_replica_names_counts_distinct_replicas() -> None:
    p = Promotion(KEY, 5, ["r1", "r1", "r2", "r3"])
    assert p.needed == 2
    assert p.missing() == ["r1", "r2", "r3"]


# --- Advance ---------------------------------------------------------------------------

MARK = HRS(7, 0, 2)


def new_advance(replicas: tuple[str, ...] = TRIO) -> Advance:
    return Advance(KEY, 5, MARK, D1, replicas)


def accepted() -> Reply:
    return Reply(OK, Record(5, MARK, D1))


def test_advance_tally_keeps_what_it_asks_for() -> None:
    a = new_advance()
    assert (a.key, a.epoch, a.hrs, a.digest, a.needed, a.outcome) == (KEY, 5, MARK, D1, 2, None)


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


def test_stale_epoch_after_one_ok_is_still_decided_at_once() -> None:
    a = new_advance()
    a.on_reply("r1", accepted())
    assert a.on_reply("r2", Reply(STALE_EPOCH, rec(6))) == STALE_EPOCH


def test_one_failure_leaves_the_advance_open() -> None:
    for status in (REGRESSION, CONFLICT):
        a = new_advance()
        assert a.on_reply("r1", Reply(status, rec(5, 9, 0, 1, D2))) is None
        assert a.on_reply("r2", accepted()) is None
        assert a.on_reply("r3", accepted()) == OK


@pytest.mark.parametrize(
    ("statuses", "verdict"),
    [
        ((REGRESSION, REGRESSION), REGRESSION),
        ((CONFLICT, CONFLICT), CONFLICT),
        ((REGRESSION, CONFLICT), CONFLICT),
        ((OK, REGRESSION, REGRESSION), REGRESSION),
        ((OK, REGRESSION, CONFLICT), CONFLICT),
        ((OK, CONFLICT, REGRESSION), CONFLICT),
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


def test_severity_puts_a_conflict_first_and_the_timeout_last() -> None:
    assert SEVERITY[0] == CONFLICT
    assert SEVERITY.index(STALE_EPOCH) < SEVERITY.index(REGRESSION) < SEVERITY.index(REFUSED)
    assert SEVERITY[-1] == NO_QUORUM


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


def run_round(records: dict[str, Record], epoch: int) -> Promotion:
    """A promotion over ``records`` with every reply delivered, in name order."""
    p = Promotion(KEY, epoch, records)
    for name in sorted(records):
        records[name], reply = promise(records[name], epoch)
        p.on_reply(name, reply)
    return p


def test_a_superseded_signer_is_fenced_after_a_promotion() -> None:
    records = {name: EMPTY for name in TRIO}
    first = run_round(records, 1)
    assert first.outcome == OK
    second = run_round(records, 2)
    assert second.outcome == OK
    a = Advance(KEY, 1, HRS(1, 0, 1), D1, TRIO)
    for name in TRIO:
        records[name], reply = advance(records[name], 1, HRS(1, 0, 1), D1)
        if a.on_reply(name, reply) is not None:
            break
    assert a.outcome == STALE_EPOCH


def test_two_promoters_at_one_epoch_cannot_both_win() -> None:
    records = {name: EMPTY for name in TRIO}
    assert run_round(records, 3).outcome == OK
    again = run_round(records, 3)
    assert again.outcome == REFUSED
    assert next_epoch(again.highest_epoch) == 4


# --- a failover after a superseded signer's unsigned leftover ---------------------------


TRIO_OF_XYW = ("x", "y", "w")


def _fenced_mark_then_failover(
    x_digest: str, y_digest: str, y_replica_up: bool
) -> tuple[Repair, dict[str, Record]]:
    """The read repair of a failover after a fenced signer left its mark on one replica.

    X is active at e1. Y takes over at e2 through its own and the witness'
    replica. X's last in-flight advance at 1/0/1 still reaches X's own
    replica, which never promised e2 (STALE_EPOCH from the witness stops X: nothing is signed
    by X). Y signs 1/0/1 on its replica and the witness. Then X takes over
    again at e3 reading its own replica and the witness, with Y's replica
    down or up but answering last. Returns X's repair tally and the records.
    """
    mark = HRS(1, 0, 1)
    records = {"x": EMPTY, "y": EMPTY, "w": EMPTY}
    for name in ("x", "y", "w"):
        records[name], _ = promise(records[name], 1)
    for name in ("y", "w"):
        records[name], _ = promise(records[name], 2)
    records["x"], reply = advance(records["x"], 1, mark, x_digest)
    assert reply.status == OK
    assert advance(records["w"], 1, mark, x_digest)[1].status == STALE_EPOCH
    signed = Advance(KEY, 2, mark, y_digest, records)
    for name in ("y", "w"):
        records[name], reply = advance(records[name], 2, mark, y_digest)
        signed.on_reply(name, reply)
    assert signed.outcome == OK  # Y signed y_digest at 1/0/1: nobody else may, and nobody did

    promotion = Promotion(KEY, 3, records)
    for name in ("x", "w"):
        records[name], reply = promise(records[name], 3)
        promotion.on_reply(name, reply)
    assert promotion.outcome == OK
    best = promotion.best
    repair = Repair(KEY, 3, best.hwm, best.digest, records)
    for name in ("x", "w", "y") if y_replica_up else ("x", "w"):
        records[name], reply = advance(records[name], 3, best.hwm, best.digest)
        repair.on_reply(name, reply)
    repair.give_up()
    return repair, records


@pytest.mark.parametrize(
    ("x_digest", "y_digest"), [(D2, D1), (D1, D2)], ids=["x-digest-higher", "y-digest-higher"]
)
def test_a_failover_is_not_stuck_by_a_fenced_signers_leftover(x_digest: str, y_digest: str) -> None:
    assert _fenced_mark_then_failover(x_digest, y_digest, y_replica_up=False)[0].outcome == OK


def test_a_failover_is_not_stuck_with_all_replicas_up() -> None:
    assert _fenced_mark_then_failover(D2, D1, y_replica_up=True)[0].outcome == OK


def test_a_repair_counts_a_conflict_only_at_its_own_mark() -> None:
    repair = Repair(KEY, 3, HRS(2, 0, 1), D1, TRIO)
    names = sorted(TRIO)
    # At its mark with another digest: holds the mark, counts.
    assert repair.on_reply(names[0], Reply(CONFLICT, rec(3, 2, 0, 1, D2))) is None
    # A conflict anywhere else is not the repair's mark: it does not count.
    assert repair.on_reply(names[1], Reply(CONFLICT, rec(3, 2, 0, 2, D2))) is None
    assert repair.on_reply(names[2], Reply(OK, rec(3, 2, 0, 1, D1))) == OK
    assert len(repair.ok()) == 2


def test_after_the_repair_nobody_can_sign_the_leftover_or_another_digest_at_that_mark() -> None:
    """The repair may complete on an unsigned leftover; a second digest at the
    signed mark still never reaches a majority."""
    for x_digest, y_digest in ((D2, D1), (D1, D2)):
        for up in (False, True):
            repair, records = _fenced_mark_then_failover(x_digest, y_digest, up)
            attempt = Advance(KEY, 3, repair.hrs, x_digest, TRIO_OF_XYW)
            for name in ("x", "y", "w"):
                records[name], reply = advance(records[name], 3, repair.hrs, x_digest)
                attempt.on_reply(name, reply)
            assert attempt.outcome != OK
