"""A replica's durable state, on real files.

A lost or damaged record must never be read as "nothing signed yet":
starting a high-water mark from zero is exactly how a validator
double-signs. So every way the state directory can go wrong (missing,
another node's, another incarnation's, a damaged or missing line, a log
rolled back behind its seal, a torn seal) is shown to raise :class:`Lost`
with a message that names the file and says to rejoin — and never to open.
What must keep working is shown too: an interrupted last write is dropped,
a full disk keeps the queue, the log is compacted without losing a record.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from highlander.signstate import store as store_module
from highlander.signstate.register import EMPTY, HRS, MAX_COUNTER, MAX_HEIGHT, MAX_ROUND, Ballot, KeyId, Record
from highlander.signstate.store import (
    FORMAT,
    LOG_MAGIC,
    NAME_CHARS,
    SEAL_SLOT,
    Lost,
    Store,
    StoreError,
    check_key,
    create,
    decode_line,
    encode_line,
)

NODE = "node-a"
KEY = KeyId("cosmoshub-4", "validator-1")
OTHER = KeyId("cosmoshub-4", "validator-2")
THIRD = KeyId("osmosis-1", "val")
RECORD = Record(Ballot(7, "node-b"), HRS(1234, 2, 3), "ab" * 32)
REJOIN = "run 'highlander signstate rejoin' on this node"


def mark(height: int, owner: str = NODE) -> Record:
    return Record(Ballot(3, owner), HRS(height, 0, 1), f"{height:02x}")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def opened() -> Iterator[Callable[[Store], Store]]:
    """Registers stores to close at the end of the test, whatever happens."""
    stores: list[Store] = []

    def keep(store: Store) -> Store:
        stores.append(store)
        return store

    yield keep
    for store in stores:
        store.close()


def reopen(directory: Path, node: str = NODE) -> Store:
    """The store as a restarted daemon sees it (closed again; the records stay in memory)."""
    store = Store(directory, node)
    store.open()
    store.close()
    return store


def written(directory: Path, changes: list[tuple[KeyId, Record]], records: list[tuple[KeyId, Record]] = ()) -> Path:  # type: ignore[assignment]
    """A replica created with ``records``, then ``changes`` put and flushed, closed; its directory."""
    store = create(directory, NODE, records)
    try:
        for key, record in changes:
            store.put(key, record)
        store.flush()
    finally:
        store.close()
    return directory


def log_lines(directory: Path) -> list[bytes]:
    return (directory / "log").read_bytes().splitlines(keepends=True)


def set_log_lines(directory: Path, lines: list[bytes]) -> None:
    (directory / "log").write_bytes(b"".join(lines))


def sealed_line(text: str) -> bytes:
    """A log line with a valid checksum: only what ``text`` says can make it unreadable."""
    return f"{text} {zlib.crc32(text.encode()):08x}\n".encode()


def flip(line: bytes, at: int = 4) -> bytes:
    """``line`` with one character changed, its checksum left as it was."""
    return line[:at] + (b"9" if line[at : at + 1] != b"9" else b"8") + line[at + 1 :]


def assert_lost(directory: Path, path: Path, *words: str, node: str = NODE) -> str:
    """Opening ``directory`` raises Lost naming ``path``, saying to rejoin, and never opens."""
    store = Store(directory, node)
    with pytest.raises(Lost) as caught:
        store.open()
        store.close()
        pytest.fail(f"lost state was opened with {store.records}")  # pragma: no cover
    message = str(caught.value)
    assert str(path) in message
    assert REJOIN in message
    for word in words:
        assert word in message
    return message


# --- round trip ----------------------------------------------------------------------------


def test_a_new_replica_is_empty(directory: Path, opened: Callable[[Store], Store]) -> None:
    store = opened(create(directory, NODE))
    assert store.keys() == [] and store.get(KEY) == EMPTY
    assert (store.seq, store.durable, store.pending()) == (0, 0, False)
    assert store.flush() == 0  # nothing queued: nothing written
    store.close()
    assert reopen(directory).records == {}


def test_put_flush_and_open_round_trip(directory: Path, opened: Callable[[Store], Store]) -> None:
    store = opened(create(directory, NODE))
    assert store.put(KEY, mark(1)) == 1
    assert store.put(OTHER, RECORD) == 2
    assert store.put(KEY, mark(2)) == 3
    assert store.get(KEY) == mark(2)  # in memory at once
    assert (store.durable, store.pending()) == (0, True)  # not yet on disk: no reply may depend on it
    assert store.flush() == 3
    assert (store.durable, store.pending()) == (3, False)
    assert store.last_change == {KEY: 3, OTHER: 2}
    store.close()
    again = reopen(directory)
    assert again.records == {KEY: mark(2), OTHER: RECORD}
    assert again.keys() == [KEY, OTHER]
    assert (again.seq, again.durable) == (3, 3)
    assert again.last_change == {KEY: 3, OTHER: 2}


def test_appends_continue_after_a_reopen(directory: Path) -> None:
    written(directory, [(KEY, mark(1))])
    store = Store(directory, NODE)
    store.open()
    try:
        assert store.put(OTHER, mark(2)) == 2
        store.flush()
    finally:
        store.close()
    assert reopen(directory).records == {KEY: mark(1), OTHER: mark(2)}


def test_create_with_records_for_a_rejoin(directory: Path) -> None:
    records = [(KEY, RECORD), (OTHER, EMPTY), (THIRD, mark(9))]
    written(directory, [], records)
    again = reopen(directory)
    assert again.records == dict(records)
    assert again.seq == 0


def test_create_over_an_old_replica_starts_a_new_incarnation(directory: Path) -> None:
    written(directory, [(KEY, mark(1))])
    old = reopen(directory).incarnation
    written(directory, [], [(OTHER, RECORD)])
    again = reopen(directory)
    assert again.incarnation != old and len(again.incarnation) == 32
    assert again.records == {OTHER: RECORD}


def test_the_largest_values_round_trip(directory: Path) -> None:
    largest = Record(Ballot(MAX_COUNTER, "n" * 64), HRS(MAX_HEIGHT, MAX_ROUND, 3), "f" * 128)
    key = KeyId("c" * 64, "k" * 64)
    written(directory, [(key, largest), (KEY, EMPTY)])
    assert reopen(directory).records == {key: largest, KEY: EMPTY}


def test_the_group_commit_makes_many_changes_durable_with_one_sync(
    directory: Path, opened: Callable[[Store], Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = opened(create(directory, NODE))
    keys = [KeyId("chain", f"key-{i}") for i in range(50)]
    for height in range(1, 5):
        for key in keys:
            store.put(key, mark(height))
    synced: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(store_module.os, "fdatasync", lambda fd: (synced.append(fd), real(fd))[1])
    assert store.flush() == 200
    assert synced.count(store._log_fd) == 1
    store.close()
    again = reopen(directory)
    assert again.records == {key: mark(4) for key in keys}
    assert again.seq == 200


def test_changes_put_during_a_flush_wait_for_the_next(
    directory: Path, opened: Callable[[Store], Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The daemon flushes off its event loop while requests keep arriving.
    store = opened(create(directory, NODE))
    store.put(KEY, mark(1))
    real = os.fdatasync

    def sync_while_a_change_arrives(fd: int) -> None:
        if fd == store._log_fd and not store.pending():
            store.put(OTHER, mark(2))
        real(fd)

    monkeypatch.setattr(store_module.os, "fdatasync", sync_while_a_change_arrives)
    assert store.flush() == 1
    assert store.pending() and store.durable == 1
    assert store.flush() == 2
    store.close()
    assert reopen(directory).records == {KEY: mark(1), OTHER: mark(2)}


# --- the log's lines --------------------------------------------------------------------------


def test_the_log_is_text_with_a_header_and_a_checksum_on_every_line(directory: Path) -> None:
    written(directory, [(KEY, RECORD), (OTHER, EMPTY)], [(THIRD, mark(5))])
    incarnation = reopen(directory).incarnation
    lines = log_lines(directory)
    for line in lines:
        text, crc = line.rstrip(b"\n").rsplit(b" ", 1)
        assert crc == f"{zlib.crc32(text):08x}".encode()
    assert lines[0].split()[:4] == [LOG_MAGIC.encode(), str(FORMAT).encode(), incarnation.encode(), b"0"]
    assert lines[1].split()[:-1] == b"0 osmosis-1 val 3 node-a 5 0 1 05".split()
    assert lines[2].split()[:-1] == f"1 cosmoshub-4 validator-1 7 node-b 1234 2 3 {'ab' * 32}".encode().split()
    assert lines[3].split()[:-1] == b"2 cosmoshub-4 validator-2 0 - 0 0 0 -".split()


@settings(max_examples=200, deadline=None)
@given(
    seq=st.integers(0, 2**63 - 1),
    chain=st.text(alphabet=sorted(NAME_CHARS), min_size=1, max_size=64).filter(lambda s: s[0] != "."),
    key_id=st.text(alphabet=sorted(NAME_CHARS), min_size=1, max_size=64).filter(lambda s: s[0] != "."),
    counter=st.integers(0, MAX_COUNTER),
    owner=st.from_regex(r"\A[a-z0-9][a-z0-9.-]{0,62}\Z") | st.just(""),
    hrs=st.tuples(st.integers(0, MAX_HEIGHT), st.integers(0, MAX_ROUND), st.integers(0, 3)),
    digest=st.text(alphabet="0123456789abcdef", max_size=128),
)
def test_encode_decode_line_round_trip(
    seq: int, chain: str, key_id: str, counter: int, owner: str, hrs: tuple[int, int, int], digest: str
) -> None:
    key = KeyId(chain, key_id)
    record = Record(Ballot(counter, owner), HRS(*hrs), digest)
    line = encode_line(seq, key, record)
    text, crc = line.rstrip(b"\n").rsplit(b" ", 1)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert crc == f"{zlib.crc32(text):08x}".encode()
    assert decode_line(text.decode().split(" ")) == (seq, key, record)


@pytest.mark.parametrize(
    ("words", "message"),
    [
        ("1 c k 3 n 1 0 1", "8 fields instead of 9"),
        ("1 c k 3 n 1 0 1 aa extra", "10 fields instead of 9"),
        ("1 .c k 3 n 1 0 1 aa", "chain_id '.c' must be"),
        ("x c k 3 n 1 0 1 aa", "invalid literal"),
        ("1 c k three n 1 0 1 aa", "invalid literal"),
    ],
)
def test_decode_line_refuses_malformed_words(words: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_line(words.split(" "))


# --- Lost: every way the state can be missing, damaged or older --------------------------------


def test_a_missing_directory_is_lost_and_not_recreated(directory: Path) -> None:
    assert_lost(directory, directory, "does not exist", "mount it")
    assert not directory.exists()


def test_a_missing_identity_is_lost(directory: Path) -> None:
    written(directory, [(KEY, RECORD)])
    (directory / "identity").unlink()
    message = assert_lost(directory, directory, "no identity file")
    assert "'highlander signstate init' on every node" in message  # a new cluster's fix, said apart


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x00" * 64,
        b"\xff\xfe garbage \x80",
        b'{"format": 2, "node": "node-a"',
        b"[]",
        b"null",
        b"42",
        b"{}",
        b'{"format": 2, "node": "node-a"}',
        b'{"format": 2, "incarnation": "00"}',
    ],
    ids=["empty", "zeros", "binary", "truncated", "list", "null", "number", "no-fields", "no-incarnation", "no-node"],
)
def test_a_damaged_identity_is_lost(directory: Path, content: bytes) -> None:
    written(directory, [(KEY, RECORD)])
    (directory / "identity").write_bytes(content)
    assert_lost(directory, directory / "identity", "is damaged")


def test_an_identity_of_another_format_is_a_clear_error_not_lost(directory: Path) -> None:
    # Not a lost disk: a version mismatch the operator fixes by running the right version.
    written(directory, [(KEY, RECORD)])
    (directory / "identity").write_text('{"format": 3, "node": "node-a", "incarnation": "00"}')
    with pytest.raises(StoreError) as caught:
        Store(directory, NODE).open()
    assert not isinstance(caught.value, Lost)
    assert str(directory / "identity") in str(caught.value)
    assert f"format 3 is not the format of this version ({FORMAT})" in str(caught.value)


def test_another_nodes_directory_is_refused(directory: Path) -> None:
    written(directory, [(KEY, RECORD)])
    with pytest.raises(StoreError) as caught:
        Store(directory, "node-b").open()
    assert not isinstance(caught.value, Lost)
    message = str(caught.value)
    assert f"{directory} holds the sign-state of node-a, not of node-b" in message
    assert "check state_dir and node in the configuration" in message


def test_a_missing_log_is_lost(directory: Path) -> None:
    written(directory, [(KEY, RECORD)])
    (directory / "log").unlink()
    assert_lost(directory, directory / "log", "is missing")


@pytest.mark.parametrize(
    "content", [b"", b"\n", b"garbage\n", b"\x00" * 100], ids=["empty", "newline", "text", "zeros"]
)
def test_a_log_without_its_header_is_lost(directory: Path, content: bytes) -> None:
    written(directory, [(KEY, RECORD)])
    (directory / "log").write_bytes(content)
    assert_lost(directory, directory / "log", "header of this replica's incarnation")


def test_a_log_of_another_incarnation_is_lost(directory: Path, tmp_path: Path) -> None:
    # E.g. a rejoin a crash interrupted after the new log, before the new identity.
    written(directory, [(KEY, RECORD)])
    other = written(tmp_path / "other", [(KEY, RECORD)])
    shutil.copy(other / "log", directory / "log")
    assert_lost(directory, directory / "log", "header of this replica's incarnation")


def test_a_log_with_a_damaged_header_is_lost(directory: Path) -> None:
    written(directory, [(KEY, RECORD)])
    lines = log_lines(directory)
    set_log_lines(directory, [flip(lines[0], 30), *lines[1:]])
    assert_lost(directory, directory / "log", "header")


@pytest.mark.parametrize("at", [0, 2, 10, 30, -12, -3])
def test_a_damaged_line_in_the_middle_is_lost(directory: Path, at: int) -> None:
    written(directory, [(KEY, mark(1)), (OTHER, mark(2)), (KEY, mark(3))])
    lines = log_lines(directory)
    set_log_lines(directory, [lines[0], lines[1], flip(lines[2], at % len(lines[2])), lines[3]])
    assert_lost(directory, directory / "log", "line 3 is damaged (checksum mismatch)")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2 cosmoshub-4 validator-2 3 node-a 2 0 1", "8 fields instead of 9"),
        ("2 cosmoshub-4 ../etc 3 node-a 2 0 1 02", "key_id '../etc' must be"),
        ("2 cosmoshub-4 validator-2 3 node-a two 0 1 02", "invalid literal"),
    ],
)
def test_a_line_with_a_valid_checksum_but_malformed_content_is_lost(directory: Path, text: str, message: str) -> None:
    written(directory, [(KEY, mark(1)), (OTHER, mark(2)), (KEY, mark(3))])
    lines = log_lines(directory)
    set_log_lines(directory, [lines[0], lines[1], sealed_line(text), lines[3]])
    assert_lost(directory, directory / "log", "line 3 is damaged", message)


@pytest.mark.parametrize("missing", [1, 2, 3])
def test_a_deleted_change_is_lost(directory: Path, missing: int) -> None:
    written(directory, [(KEY, mark(1)), (OTHER, mark(2)), (KEY, mark(3)), (OTHER, mark(4))])
    lines = log_lines(directory)
    set_log_lines(directory, lines[:missing] + lines[missing + 1 :])
    assert_lost(directory, directory / "log", f"change {missing + 1} where {missing} was due")


def test_changes_out_of_order_are_lost(directory: Path) -> None:
    written(directory, [(KEY, mark(1)), (OTHER, mark(2)), (KEY, mark(3))])
    lines = log_lines(directory)
    set_log_lines(directory, [lines[0], lines[2], lines[1], lines[3]])
    assert_lost(directory, directory / "log", "change 2 where 1 was due")


def test_a_log_older_than_its_seal_is_lost(directory: Path, tmp_path: Path) -> None:
    # A rolled-back disk, or a backup restored over a running replica's log.
    written(directory, [(KEY, mark(1)), (OTHER, mark(2))])
    shutil.copy(directory / "log", tmp_path / "log.old")
    store = Store(directory, NODE)
    store.open()
    try:
        store.put(KEY, mark(3))
        store.flush()
    finally:
        store.close()
    shutil.copy(tmp_path / "log.old", directory / "log")
    message = assert_lost(directory, directory / "log", "ends at change 2 but its seal says 3", "rolled back")
    assert "backup" in message


def test_a_log_cut_at_a_line_boundary_is_lost(directory: Path) -> None:
    # A complete last change gone: nothing in the log shows it, the seal does.
    written(directory, [(KEY, mark(1)), (OTHER, mark(2)), (KEY, mark(3))])
    set_log_lines(directory, log_lines(directory)[:-1])
    assert_lost(directory, directory / "log", "ends at change 2 but its seal says 3")


def test_a_damaged_last_change_that_was_sealed_is_lost_not_dropped(directory: Path) -> None:
    # Only a last line no seal counts can be a write a crash interrupted.
    written(directory, [(KEY, mark(1)), (OTHER, mark(2)), (KEY, mark(3))])
    lines = log_lines(directory)
    set_log_lines(directory, [*lines[:-1], flip(lines[-1])])
    assert_lost(directory, directory / "log", "seal says 3")


def test_a_damaged_last_line_of_a_snapshot_is_lost_not_dropped(directory: Path) -> None:
    """A snapshot is written whole (temporary file, fsync, rename): its last
    line is never an interrupted write, so damage there is damage, and the
    key on it must not come back as "nothing signed yet"."""
    written(directory, [], [(KEY, RECORD), (OTHER, mark(5))])
    lines = log_lines(directory)
    set_log_lines(directory, [*lines[:-1], flip(lines[-1])])
    assert_lost(directory, directory / "log")


def test_a_deleted_line_of_a_snapshot_is_lost(directory: Path) -> None:
    """A snapshot line removed whole (a log cut at a line boundary, a block
    lost) is a key read as "nothing signed yet"."""
    written(directory, [(THIRD, mark(1))], [(KEY, RECORD), (OTHER, mark(5))])
    lines = log_lines(directory)
    set_log_lines(directory, [lines[0], lines[2], lines[3]])
    assert_lost(directory, directory / "log")


def test_a_key_twice_in_a_snapshot_is_lost(directory: Path) -> None:
    written(directory, [], [(KEY, RECORD), (OTHER, mark(5))])
    lines = log_lines(directory)
    set_log_lines(directory, [*lines, lines[1]])
    store = Store(directory, NODE)
    with pytest.raises(Lost, match="line 4 is damaged"):
        store.open()


def test_a_missing_seal_is_lost(directory: Path) -> None:
    written(directory, [(KEY, RECORD)])
    (directory / "seal").unlink()
    assert_lost(directory, directory / "seal", "is missing")


@pytest.mark.parametrize(
    "seal",
    [b"", b"\x00" * (2 * SEAL_SLOT), b"garbage" * 1000],
    ids=["empty", "zeros", "garbage"],
)
def test_a_seal_with_both_slots_torn_is_lost(directory: Path, seal: bytes) -> None:
    written(directory, [(KEY, RECORD)])
    (directory / "seal").write_bytes(seal)
    assert_lost(directory, directory / "seal", "damaged or belongs to another incarnation")


def test_a_seal_with_both_slots_flipped_is_lost(directory: Path) -> None:
    written(directory, [(KEY, RECORD)])
    data = bytearray((directory / "seal").read_bytes())
    data[30] ^= 1
    data[SEAL_SLOT + 30] ^= 1
    (directory / "seal").write_bytes(bytes(data))
    assert_lost(directory, directory / "seal", "damaged")


def test_a_seal_of_another_incarnation_is_lost(directory: Path, tmp_path: Path) -> None:
    written(directory, [(KEY, RECORD)])
    other = written(tmp_path / "other", [(KEY, RECORD)])
    shutil.copy(other / "seal", directory / "seal")
    assert_lost(directory, directory / "seal", "another incarnation")


@pytest.mark.parametrize("slot", [0, 1])
def test_one_torn_seal_slot_is_survived(directory: Path, slot: int) -> None:
    # The two slots exist so that a torn write never loses both.
    written(directory, [(KEY, mark(1)), (OTHER, mark(2))])
    data = bytearray((directory / "seal").read_bytes())
    data[slot * SEAL_SLOT : (slot + 1) * SEAL_SLOT] = b"\x00" * SEAL_SLOT
    (directory / "seal").write_bytes(bytes(data))
    assert reopen(directory).records == {KEY: mark(1), OTHER: mark(2)}


def test_the_seal_check_survives_a_torn_newer_slot(directory: Path, tmp_path: Path) -> None:
    # The older slot still counts: a log rolled back behind it is still caught.
    written(directory, [(KEY, mark(1))])
    shutil.copy(directory / "log", tmp_path / "log.old")
    for height in (2, 3):
        store = Store(directory, NODE)
        store.open()
        store.put(KEY, mark(height))
        store.flush()
        store.close()
    seal = (directory / "seal").read_bytes()
    newer = max((0, 1), key=lambda i: int(seal[i * SEAL_SLOT :].split(b" ")[2]))
    torn = bytearray(seal)
    torn[newer * SEAL_SLOT : (newer + 1) * SEAL_SLOT] = b"\x00" * SEAL_SLOT
    (directory / "seal").write_bytes(bytes(torn))
    shutil.copy(tmp_path / "log.old", directory / "log")
    assert_lost(directory, directory / "log", "ends at change 1 but its seal says 2")


def test_a_failed_open_releases_the_directory(directory: Path) -> None:
    written(directory, [(KEY, RECORD)])
    (directory / "seal").unlink()
    with pytest.raises(Lost):
        Store(directory, NODE).open()
    fd = os.open(directory / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody holds it
    finally:
        os.close(fd)


# --- an interrupted write ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tail",
    [b"4 cosmoshub-4 valid", b"4 cosmoshub-4 validator-1 3 node-a 9 0 1 09 0000", b"\x00" * 300, b"\xff"],
    ids=["half-line", "no-newline", "zeros", "one-byte"],
)
def test_an_interrupted_last_line_is_dropped_and_appends_continue(directory: Path, tail: bytes) -> None:
    written(directory, [(KEY, mark(1)), (OTHER, mark(2)), (KEY, mark(3))])
    size = (directory / "log").stat().st_size
    with open(directory / "log", "ab") as log:
        log.write(tail)
    store = Store(directory, NODE)
    store.open()
    try:
        assert store.records == {KEY: mark(3), OTHER: mark(2)} and store.seq == 3
        assert (directory / "log").stat().st_size == size  # cut back before anything is appended
        assert store.put(THIRD, mark(4)) == 4
        store.flush()
    finally:
        store.close()
    assert reopen(directory).records == {KEY: mark(3), OTHER: mark(2), THIRD: mark(4)}


def test_an_interrupted_last_line_with_its_newline_is_dropped(directory: Path) -> None:
    # A group commit's write torn inside its last line: the line is complete but its checksum fails.
    written(directory, [(KEY, mark(1)), (OTHER, mark(2))])
    with open(directory / "log", "ab") as log:
        log.write(flip(encode_line(3, KEY, mark(3))))
    assert reopen(directory).records == {KEY: mark(1), OTHER: mark(2)}


def test_temporary_files_of_interrupted_writes_are_removed_at_open(directory: Path) -> None:
    written(directory, [(KEY, RECORD)])
    leftovers = [
        ".log.0123456789ab.highlander-tmp",
        ".identity.00000000abcd.highlander-tmp",
        ".seal.ffffffffffff.highlander-tmp",
    ]
    for name in leftovers:
        (directory / name).write_bytes(b"half a write")
    (directory / "notes.tmp").write_text("not ours: kept")
    assert reopen(directory).records == {KEY: RECORD}
    assert sorted(p.name for p in directory.iterdir()) == [".lock", "identity", "log", "notes.tmp", "seal"]


# --- a failed write -------------------------------------------------------------------------------


def enospc_once(monkeypatch: pytest.MonkeyPatch, name: str, written_first: int = 0) -> list[int]:
    """Make ``os.<name>`` fail once with ENOSPC (a write first writes ``written_first`` bytes)."""
    real = getattr(os, name)
    failed: list[int] = []

    def failing(fd: int, *args: object) -> object:
        if not failed:
            failed.append(fd)
            if name == "write" and written_first:
                real(fd, bytes(args[0])[:written_first])  # type: ignore[index]
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, *args)

    monkeypatch.setattr(store_module.os, name, failing)
    return failed


@pytest.mark.parametrize(("call", "written_first"), [("write", 0), ("write", 25), ("fdatasync", 0)])
def test_a_failed_flush_keeps_the_queue_and_the_next_one_succeeds(
    directory: Path, opened: Callable[[Store], Store], monkeypatch: pytest.MonkeyPatch, call: str, written_first: int
) -> None:
    store = opened(create(directory, NODE))
    store.put(KEY, mark(1))
    store.flush()
    size = (directory / "log").stat().st_size
    store.put(OTHER, mark(2))
    store.put(KEY, mark(3))
    failed = enospc_once(monkeypatch, call, written_first)
    with pytest.raises(StoreError) as caught:
        store.flush()
    assert failed
    assert str(caught.value) == f"{directory / 'log'}: cannot write: No space left on device"
    assert (store.durable, store.pending()) == (1, True)  # nothing that depends on it may be answered
    assert (directory / "log").stat().st_size == size  # cut back to what was synced
    assert store.flush() == 3
    assert (store.durable, store.pending()) == (3, False)
    store.close()
    assert reopen(directory).records == {KEY: mark(3), OTHER: mark(2)}


def test_after_a_failed_flush_the_log_reads_as_what_was_synced(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = create(directory, NODE)
    try:
        store.put(KEY, mark(1))
        store.flush()
        store.put(KEY, mark(2))
        enospc_once(monkeypatch, "write", 30)
        with pytest.raises(StoreError):
            store.flush()
    finally:
        monkeypatch.undo()
        store.close()  # a daemon killed before it could retry
    assert reopen(directory).records == {KEY: mark(1)}  # not Lost, not the half-written change


def test_changes_put_after_a_failed_flush_follow_the_kept_ones(
    directory: Path, opened: Callable[[Store], Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = opened(create(directory, NODE))
    store.put(KEY, mark(1))
    enospc_once(monkeypatch, "fdatasync")
    with pytest.raises(StoreError):
        store.flush()
    store.put(KEY, mark(2))
    store.put(OTHER, mark(3))
    assert store.flush() == 3
    store.close()
    again = reopen(directory)
    assert again.records == {KEY: mark(2), OTHER: mark(3)} and again.seq == 3


# --- the snapshot ----------------------------------------------------------------------------------


def test_the_log_is_rewritten_as_a_snapshot_when_it_grows(
    directory: Path, opened: Callable[[Store], Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "LOG_MIN_LIMIT", 2000)
    store = opened(create(directory, NODE, [(THIRD, RECORD)]))  # a key never changed again
    sizes, bases = [], set()
    for height in range(1, 201):
        store.put(KEY if height % 3 else OTHER, mark(height))
        store.flush()
        sizes.append((directory / "log").stat().st_size)
        bases.add(log_lines(directory)[0].split()[3])
    assert max(sizes) < 2000 + 200  # bounded: the limit, and one flush past it
    assert len(bases) > 2  # rewritten, more than once
    assert mode(directory / "log") == 0o600
    assert [p.name for p in directory.iterdir() if p.name.endswith("highlander-tmp")] == []
    store.close()
    again = reopen(directory)
    assert again.records == {THIRD: RECORD, KEY: mark(200), OTHER: mark(198)}
    assert again.seq == 200


def test_appends_after_a_snapshot_survive_a_reopen(
    directory: Path, opened: Callable[[Store], Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "LOG_MIN_LIMIT", 0)
    store = opened(create(directory, NODE))
    for height in range(1, 6):
        store.put(KEY, mark(height))
    store.flush()
    store.put(KEY, mark(6))
    store.flush()  # the log (5 changes of one key) is more than twice its content: a snapshot
    lines = log_lines(directory)
    assert lines[0].split()[3] == b"6" and len(lines) == 2
    monkeypatch.setattr(store_module, "LOG_MIN_LIMIT", 1 << 30)
    store.put(OTHER, mark(7))
    store.flush()
    store.close()
    assert reopen(directory).records == {KEY: mark(6), OTHER: mark(7)}
    assert len(log_lines(directory)) == 3


def test_a_rolled_back_snapshot_is_lost(directory: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "LOG_MIN_LIMIT", 0)
    written(directory, [(KEY, mark(1)), (KEY, mark(2)), (KEY, mark(3))])
    shutil.copy(directory / "log", tmp_path / "log.old")
    store = Store(directory, NODE)
    store.open()
    try:
        store.put(KEY, mark(4))
        store.flush()  # a snapshot at 4
    finally:
        store.close()
    assert log_lines(directory)[0].split()[3] == b"4"
    shutil.copy(tmp_path / "log.old", directory / "log")
    assert_lost(directory, directory / "log", "seal says 4")


def test_a_failed_snapshot_keeps_the_old_log_and_the_queue(
    directory: Path, opened: Callable[[Store], Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = opened(create(directory, NODE))
    for height in range(1, 6):
        store.put(KEY, mark(height))
    store.flush()
    before = (directory / "log").read_bytes()
    monkeypatch.setattr(store_module, "LOG_MIN_LIMIT", 0)
    store.put(OTHER, mark(6))
    enospc_once(monkeypatch, "write")  # the snapshot's write_file uses os.write too
    with pytest.raises(StoreError, match="No space left on device"):
        store.flush()
    assert (directory / "log").read_bytes() == before
    assert [p.name for p in directory.iterdir() if p.name.endswith("highlander-tmp")] == []
    assert store.pending()
    assert store.flush() == 6
    store.close()
    assert reopen(directory).records == {KEY: mark(5), OTHER: mark(6)}


# --- one process per directory ----------------------------------------------------------------------


def test_a_second_open_of_the_same_directory_fails_clearly(directory: Path, opened: Callable[[Store], Store]) -> None:
    opened(create(directory, NODE))
    with pytest.raises(StoreError) as caught:
        Store(directory, NODE).open()
    message = str(caught.value)
    assert str(directory) in message
    assert "in use by another process" in message and "stop it first" in message
    assert not isinstance(caught.value, Lost)


OPEN_IN_ANOTHER_PROCESS = """\
import sys
from highlander.signstate.store import Store, StoreError
try:
    Store(sys.argv[1], sys.argv[2]).open()
except StoreError as e:
    print(e)
    sys.exit(3)
"""


def open_elsewhere(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", OPEN_IN_ANOTHER_PROCESS, str(directory), NODE],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_directory_is_exclusive_across_processes(directory: Path) -> None:
    store = create(directory, NODE)
    try:
        held = open_elsewhere(directory)
        assert held.returncode == 3, held.stderr
        assert "in use by another process" in held.stdout and str(directory) in held.stdout
    finally:
        store.close()
    free = open_elsewhere(directory)
    assert free.returncode == 0, free.stdout + free.stderr


# --- modes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_the_state_is_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    directory = tmp_path / "a" / "state"
    previous = os.umask(umask)
    try:
        written(directory, [(KEY, RECORD)])
    finally:
        os.umask(previous)
    assert mode(directory) == 0o700
    for name in ("identity", "log", "seal"):
        assert mode(directory / name) == 0o600, name
    assert mode(directory / ".lock") & 0o077 == 0


# --- key names --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [KeyId("a", "b"), KeyId("x" * 64, "y" * 64), KeyId("cosmoshub-4", "priv_validator.key"), KeyId("A.b-C_9", "0")],
)
def test_valid_key_names(directory: Path, key: KeyId) -> None:
    assert check_key(key) is None
    written(directory, [(key, RECORD)])
    assert reopen(directory).records == {key: RECORD}


@pytest.mark.parametrize(
    ("key", "field"),
    [
        (KeyId("", "k"), "chain_id"),
        (KeyId("c", ""), "key_id"),
        (KeyId("x" * 65, "k"), "chain_id"),
        (KeyId("c", "y" * 65), "key_id"),
        (KeyId("..", "k"), "chain_id"),
        (KeyId(".", "k"), "chain_id"),
        (KeyId("c", ".hidden"), "key_id"),
        (KeyId("c", "../../etc/passwd"), "key_id"),
        (KeyId("a/b", "k"), "chain_id"),
        (KeyId("c", "with space"), "key_id"),
        (KeyId("c", "nul\x00"), "key_id"),
        (KeyId("c", "new\nline"), "key_id"),
        (KeyId("chaîne", "k"), "chain_id"),
        (KeyId("c", "k*"), "key_id"),
    ],
)
def test_invalid_key_names(key: KeyId, field: str) -> None:
    problem = check_key(key)
    assert problem is not None and problem.startswith(field) and repr(getattr(key, field)) in problem
    assert "must be 1 to 64 of A-Z a-z 0-9 . _ - and not start with '.'" in problem
