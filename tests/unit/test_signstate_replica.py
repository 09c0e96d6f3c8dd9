"""A replica's decision for one request (:meth:`Replica.handle`), on a real store.

``handle`` applies the register's rules in memory and says which change a
reply must wait for; the event loop, the group commit and the peers are
exercised by the daemon tests with real processes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from highlander.signstate.register import (
    BALLOT_STEP,
    EMPTY,
    HRS,
    MAX_COUNTER,
    OK,
    RECOVERING,
    REFUSED,
    REGRESSION,
    STALE_EPOCH,
    ZERO,
    Ballot,
    KeyId,
    Record,
    Reply,
)
from highlander.signstate.replica import Replica
from highlander.signstate.store import StoreError, create
from highlander.signstate.wire import DUMP_PAGE, Page, Request, WireError

NODE = "node-a"
PEER = "node-b"
KEY = KeyId("cosmoshub-4", "validator-1")
OTHER = KeyId("cosmoshub-4", "validator-2")
A3 = Ballot(3, NODE)
B4 = Ballot(4, PEER)
D1 = "aa" * 32


@pytest.fixture
def replica(tmp_path: Path) -> Iterator[Replica]:
    create(tmp_path / "state", NODE).close()
    replica = Replica(NODE, tmp_path / "state")
    replica.open()
    try:
        yield replica
    finally:
        replica.close()


def promise(key: KeyId, ballot: Ballot) -> Request:
    return Request(1, "promise", key, ballot)


def advance(key: KeyId, ballot: Ballot, height: int, digest: str = D1) -> Request:
    return Request(2, "advance", key, ballot, HRS(height, 0, 1), digest)


def test_a_healthy_replica_answers_status_with_its_record(replica: Replica) -> None:
    assert replica.lost == ""
    assert replica.handle(Request(1, "status", KEY), PEER) == (Reply(OK, EMPTY), 0)


def test_a_change_is_answered_after_its_own_sequence_number(replica: Replica) -> None:
    reply, seq = replica.handle(promise(KEY, A3), NODE)
    assert reply == Reply(OK, Record(A3, ZERO, ""))
    assert seq == 1 and replica.store is not None and replica.store.pending()
    reply, seq = replica.handle(advance(KEY, A3, 5), NODE)
    assert (reply.status, seq) == (OK, 2)
    assert replica.handle(Request(3, "status", KEY), PEER) == (Reply(OK, Record(A3, HRS(5, 0, 1), D1)), 2)


def test_an_answer_without_a_change_waits_for_the_record_it_shows(replica: Replica) -> None:
    # The record in a refusal or a retry must be durable before anyone relies on it.
    replica.handle(promise(KEY, A3), NODE)
    replica.handle(advance(KEY, A3, 5), NODE)
    assert replica.handle(advance(KEY, A3, 4), NODE)[0].status == REGRESSION
    assert replica.handle(advance(KEY, A3, 4), NODE)[1] == 2
    assert replica.handle(advance(KEY, A3, 5), NODE) == (Reply(OK, Record(A3, HRS(5, 0, 1), D1)), 2)
    assert replica.handle(promise(KEY, A3), NODE) == (Reply(REFUSED, Record(A3, HRS(5, 0, 1), D1)), 2)
    assert replica.store is not None and replica.store.seq == 2


@pytest.mark.parametrize("op", ["promise", "advance", "reset"])
def test_only_the_ballots_owner_may_act_at_it(replica: Replica, op: str) -> None:
    request = Request(1, op, KEY, B4, HRS(5, 0, 1), D1)
    with pytest.raises(WireError, match=f"^ballot 4@node-b belongs to node-b, not to {NODE}$"):
        replica.handle(request, NODE)
    with pytest.raises(WireError, match="^ballot 4@node-b belongs to node-b, not to node-c$"):
        replica.handle(request, "node-c")
    assert replica.store is not None and replica.store.seq == 0  # nothing changed


def test_a_superseded_node_is_stale_at_its_own_ballot(replica: Replica) -> None:
    replica.handle(promise(KEY, A3), NODE)
    replica.handle(promise(KEY, B4), PEER)
    assert replica.handle(advance(KEY, Ballot(4, NODE), 9), NODE)[0].status == STALE_EPOCH


def test_a_reset_lowers_the_mark_and_is_logged(replica: Replica, caplog: pytest.LogCaptureFixture) -> None:
    replica.handle(promise(KEY, A3), NODE)
    replica.handle(advance(KEY, A3, 900), NODE)
    with caplog.at_level(logging.WARNING, logger="highlander.signstate"):
        reply, seq = replica.handle(Request(3, "reset", KEY, Ballot(5, PEER), HRS(10, 0, 1)), PEER)
    assert reply == Reply(OK, Record(Ballot(5, PEER), HRS(10, 0, 1), ""))
    assert seq == 3
    assert "event=reset" in caplog.text and "by=node-b" in caplog.text


def test_a_peers_reset_cannot_push_the_promise_out_of_reach(replica: Replica) -> None:
    """A peer may send a reset at any ballot it owns; one at (MAX_COUNTER,
    peer) must not become the promise, or no ballot can ever follow it."""
    replica.handle(promise(KEY, A3), NODE)
    reply, _ = replica.handle(Request(2, "reset", KEY, Ballot(MAX_COUNTER, PEER), ZERO), PEER)
    assert reply.status != OK
    assert replica.store is not None and replica.store.get(KEY).promised.counter <= A3.counter + BALLOT_STEP


def test_a_dump_pages_through_every_key_in_order(replica: Replica) -> None:
    keys = sorted(KeyId("chain", f"key-{i:03d}") for i in range(2 * DUMP_PAGE + 5))
    for key in keys:
        replica.handle(promise(key, A3), NODE)
    seen: list[KeyId] = []
    after = KeyId("", "")
    while True:
        page, seq = replica.handle(Request(1, "dump", after), PEER)
        assert isinstance(page, Page) and seq == len(keys)  # every record shown must be durable
        assert len(page.records) <= DUMP_PAGE
        seen += [key for key, record in page.records if record == Record(A3, ZERO, "")]
        if not page.more:
            break
        after = page.records[-1][0]
    assert seen == keys


def test_a_recovering_replica_answers_nothing_but_recovering(tmp_path: Path) -> None:
    replica = Replica(NODE, tmp_path / "never-initialised")
    replica.open()
    try:
        assert "does not exist" in replica.lost
        for request in (
            Request(1, "status", KEY),
            promise(KEY, A3),
            advance(KEY, A3, 5),
            Request(1, "reset", KEY, A3, ZERO),
            Request(1, "dump", KeyId("", "")),
        ):
            assert replica.handle(request, NODE) == (Reply(RECOVERING, EMPTY), 0)
        # Even a ballot of another node: a recovering replica checks nothing, it answers nothing.
        assert replica.handle(promise(KEY, B4), NODE)[0].status == RECOVERING
    finally:
        replica.close()
    assert not (tmp_path / "never-initialised").exists()


def test_a_replica_with_a_damaged_log_is_recovering(tmp_path: Path) -> None:
    store = create(tmp_path / "state", NODE, [(KEY, Record(A3, HRS(5, 0, 1), D1)), (OTHER, EMPTY)])
    store.close()
    log = tmp_path / "state" / "log"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(lines[0] + lines[1].replace(b" 5 ", b" 6 ") + lines[2])
    replica = Replica(NODE, tmp_path / "state")
    replica.open()
    try:
        assert "line 2 is damaged" in replica.lost
        assert replica.handle(Request(1, "status", KEY), NODE) == (Reply(RECOVERING, EMPTY), 0)
    finally:
        replica.close()


def test_another_nodes_directory_is_a_configuration_error_not_recovering(tmp_path: Path) -> None:
    create(tmp_path / "state", PEER).close()
    replica = Replica(NODE, tmp_path / "state")
    try:
        with pytest.raises(StoreError, match="holds the sign-state of node-b, not of node-a"):
            replica.open()
    finally:
        replica.close()


# --- where the sync runs ------------------------------------------------------------------------


def test_a_fast_disk_is_synced_on_the_loop_and_a_slow_one_in_the_thread(
    replica: Replica, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each answer waits for its change on disk wherever the sync ran; a sync slower
    than INLINE_SYNC_LIMIT moves the next one off the loop, a fast one brings it back."""
    import asyncio
    import threading
    import time

    from highlander.signstate import replica as module

    assert replica.store is not None
    flush = replica.store.flush
    delays = [0.0, module.INLINE_SYNC_LIMIT * 5, 0.0, 0.0]
    threads: list[str] = []

    def timed_flush() -> int:
        threads.append(threading.current_thread().name)
        time.sleep(delays[len(threads) - 1])
        return flush()

    monkeypatch.setattr(replica.store, "flush", timed_flush)

    async def answered(height: int) -> Reply:
        answer = replica.submit(advance(KEY, A3, height), NODE)
        assert not answer.done()  # never before the sync
        reply = await answer
        assert replica.store is not None and not replica.store.pending()
        return reply  # type: ignore[return-value]

    async def run() -> list[str]:
        replica.handle(promise(KEY, A3), NODE)
        return [(await answered(height)).status for height in (1, 2, 3, 4)]

    assert asyncio.run(run()) == [OK] * 4
    loop_thread = threading.current_thread().name
    # 1: fast, on the loop; 2: on the loop, but slow; 3: in the thread, fast; 4: back on the loop.
    assert threads[0] == threads[1] == threads[3] == loop_thread
    assert threads[2] != loop_thread
