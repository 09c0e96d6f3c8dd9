"""The durable store of a sign-state replica, on real files.

A damaged record must never be read as "nothing signed yet": resetting a
high-water mark to zero is exactly how a validator double-signs. So every
way a record file can go wrong (garbage, truncation, a flipped field, a file
of another key, a format from another version) is shown to raise a
:class:`StoreError` that names the file — and never to come back as EMPTY.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from highlander.signstate import store as store_module
from highlander.signstate.register import EMPTY, HRS, KeyId, Record
from highlander.signstate.replica import Replica
from highlander.signstate.store import (
    NAME_CHARS,
    Store,
    StoreError,
    check_key,
    decode,
    encode,
    write_durably,
)
from highlander.signstate.wire import Request

KEY = KeyId("cosmoshub-4", "validator-1")
OTHER = KeyId("cosmoshub-4", "validator-2")
RECORD = Record(7, HRS(1234, 2, 3), "ab" * 32)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leftovers(directory: Path) -> list[str]:
    """Temporary files write_durably may have left behind, anywhere below ``directory``."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*.tmp"))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "state")


@pytest.fixture
def saved(store: Store) -> Path:
    """The path of KEY's record, saved with RECORD."""
    store.save(KEY, RECORD)
    return store.path(KEY)


def rewrite(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    """Apply ``change`` to the record document and recompute a *valid* checksum,
    so only the change itself can make the record unreadable."""
    document = json.loads(path.read_bytes())
    document.pop("checksum")
    change(document)
    document["checksum"] = store_module._checksum(document)
    path.write_text(json.dumps(document))


def assert_refused(store: Store, key: KeyId, path: Path, *words: str) -> StoreError:
    """Loading ``key`` raises a StoreError naming ``path`` (and ``words``), never EMPTY."""
    with pytest.raises(StoreError) as caught:
        loaded = store.load(key)
        pytest.fail(f"a damaged record was read as {loaded}")  # pragma: no cover
    message = str(caught.value)
    assert str(path) in message
    for word in words:
        assert word in message
    return caught.value


# --- round trip ----------------------------------------------------------------


def test_a_key_without_a_record_is_empty(store: Store) -> None:
    assert store.load(KEY) == EMPTY
    assert store.keys() == []


def test_saved_record_reads_back_in_this_and_a_new_store(store: Store, saved: Path) -> None:
    assert store.load(KEY) == RECORD
    assert Store(store.directory).load(KEY) == RECORD  # what a restarted daemon sees
    assert saved == store.directory / KEY.chain_id / f"{KEY.key_id}.json"


def test_save_replaces_the_previous_record(store: Store, saved: Path) -> None:
    newer = Record(8, HRS(1235, 0, 1), "cd" * 32)
    store.save(KEY, newer)
    assert store.load(KEY) == newer
    assert store.load(OTHER) == EMPTY


def test_keys_lists_every_record_and_ignores_temporary_and_lock_files(store: Store, saved: Path) -> None:
    third = KeyId("osmosis-1", "val")
    store.save(OTHER, RECORD)
    store.save(third, RECORD)
    os.close(store.claim())
    (saved.parent / f".{saved.name}.123.456.tmp").write_text("half a write")
    (saved.parent / ".hidden.json").write_text("{}")
    assert store.keys() == sorted([KEY, OTHER, third])


def test_keys_of_a_missing_directory_is_empty(tmp_path: Path) -> None:
    assert Store(tmp_path / "never-created").keys() == []


def test_record_file_and_directories_are_private(store: Store) -> None:
    os.close(store.claim())  # the daemon and the offline import claim the directory first
    store.save(KEY, RECORD)
    assert mode(store.path(KEY)) == 0o600
    assert mode(store.path(KEY).parent) == 0o700
    assert mode(store.directory) == 0o700


def test_save_leaves_no_temporary_file(store: Store, saved: Path) -> None:
    for height in range(2, 6):
        store.save(KEY, Record(7, HRS(height, 0, 1), "ee"))
    assert leftovers(store.directory) == []
    assert sorted(p.name for p in saved.parent.iterdir()) == [saved.name]


def test_record_file_is_readable_json_with_checksum(saved: Path) -> None:
    document = json.loads(saved.read_text())
    assert document["chain_id"] == KEY.chain_id and document["key_id"] == KEY.key_id
    assert document["hwm"] == [1234, 2, 3]
    assert document["promised_epoch"] == 7
    assert len(document["checksum"]) == 64


@given(
    chain=st.text(alphabet=sorted(NAME_CHARS), min_size=1, max_size=64).filter(lambda s: s[0] != "."),
    key_id=st.text(alphabet=sorted(NAME_CHARS), min_size=1, max_size=64).filter(lambda s: s[0] != "."),
    epoch=st.integers(0, 2**63 - 1),
    hrs=st.tuples(st.integers(0, 2**63 - 1), st.integers(0, 2**31), st.integers(0, 3)),
    digest=st.text(alphabet="0123456789abcdef", max_size=128),
)
def test_encode_decode_round_trip(chain: str, key_id: str, epoch: int, hrs: tuple[int, int, int], digest: str) -> None:
    key = KeyId(chain, key_id)
    record = Record(epoch, HRS(*hrs), digest)
    assert decode(key, encode(key, record), "somewhere") == record


# --- write_durably ---------------------------------------------------------------


def test_write_durably_creates_a_private_file_without_leftovers(tmp_path: Path) -> None:
    target = tmp_path / "record.json"
    write_durably(target, b"x" * 200)
    assert target.read_bytes() == b"x" * 200
    assert mode(target) == 0o600
    assert leftovers(tmp_path) == []


def test_write_durably_replaces_content_and_mode(tmp_path: Path) -> None:
    target = tmp_path / "record.json"
    target.write_bytes(b"old content that is longer than the new")
    target.chmod(0o644)
    write_durably(target, b"new")
    assert target.read_bytes() == b"new"
    assert mode(target) == 0o600  # a fresh file: a loose old mode is not inherited
    write_durably(target, b"public", mode=0o644)
    assert mode(target) == 0o644


def test_write_durably_removes_its_temporary_file_when_the_rename_fails(tmp_path: Path) -> None:
    target = tmp_path / "occupied"
    target.mkdir()
    (target / "inside").write_text("a non-empty directory cannot be replaced by a file")
    with pytest.raises(OSError):
        write_durably(target, b"data")
    assert leftovers(tmp_path) == []
    assert target.is_dir()


# --- damaged records: StoreError naming the file, never EMPTY ------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x00" * 64,
        b"\xff\xfe garbage \x80",
        b"not json at all",
        b"[]",
        b'"a string"',
        b"null",
        b"42",
        b"{}",
        b'{"format": 1}',
    ],
    ids=["empty", "zeros", "binary", "text", "list", "string", "null", "number", "no-fields", "no-checksum"],
)
def test_corrupt_record_is_refused(store: Store, saved: Path, content: bytes) -> None:
    saved.write_bytes(content)
    assert_refused(store, KEY, saved, "never delete it")


@pytest.mark.parametrize("keep", [1, 10, 50, -30, -2])
def test_truncated_record_is_refused(store: Store, saved: Path, keep: int) -> None:
    data = saved.read_bytes()
    saved.write_bytes(data[:keep])
    assert_refused(store, KEY, saved, "truncated or damaged")


@pytest.mark.parametrize(
    "field, value",
    [
        ("promised_epoch", 0),
        ("promised_epoch", 8),
        ("hwm", [0, 0, 0]),
        ("hwm", [1233, 2, 3]),
        ("digest", ""),
        ("digest", "cd" * 32),
        ("key_id", OTHER.key_id),
    ],
)
def test_checksum_mismatch_is_refused(store: Store, saved: Path, field: str, value: object) -> None:
    document = json.loads(saved.read_bytes())
    document[field] = value  # the checksum stays the old one
    saved.write_text(json.dumps(document))
    assert_refused(store, KEY, saved, "checksum mismatch")


def test_the_checksum_is_what_tells_damage_from_a_genuine_record(store: Store, saved: Path) -> None:
    # A record that is intact but says EMPTY is EMPTY; this only pins that the
    # checksum is what separates damage from a genuine record.
    rewrite(saved, lambda d: d.update(hwm=[0, 0, 0], digest="", promised_epoch=0))
    assert store.load(KEY) == EMPTY


def test_record_of_another_key_is_refused(store: Store, saved: Path) -> None:
    other_path = store.path(OTHER)
    other_path.write_bytes(saved.read_bytes())  # e.g. a file copied to the wrong name
    error = assert_refused(store, OTHER, other_path, str(KEY), str(OTHER))
    assert "not" in str(error)


def test_record_of_another_chain_is_refused(store: Store, saved: Path) -> None:
    elsewhere = KeyId("osmosis-1", KEY.key_id)
    path = store.path(elsewhere)
    path.parent.mkdir(mode=0o700)
    path.write_bytes(saved.read_bytes())
    assert_refused(store, elsewhere, path, str(KEY))


def test_unsupported_format_is_refused(store: Store, saved: Path) -> None:
    rewrite(saved, lambda d: d.update(format=2))
    assert_refused(store, KEY, saved, "format 2")


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.pop("hwm"),
        lambda d: d.pop("digest"),
        lambda d: d.pop("promised_epoch"),
        lambda d: d.pop("format"),
        lambda d: d.pop("chain_id"),
        lambda d: d.update(hwm=[1, 2]),
        lambda d: d.update(hwm="1/2/3"),
        lambda d: d.update(hwm=None),
        lambda d: d.update(promised_epoch="seven"),
        lambda d: d.update(promised_epoch=None),
    ],
    ids=[
        "no-hwm", "no-digest", "no-epoch", "no-format", "no-chain",
        "short-hwm", "text-hwm", "null-hwm", "text-epoch", "null-epoch",
    ],
)  # fmt: skip
def test_missing_or_malformed_field_with_valid_checksum_is_refused(store: Store, saved: Path, change) -> None:  # type: ignore[no-untyped-def]
    rewrite(saved, change)
    assert_refused(store, KEY, saved)


def test_unreadable_record_is_refused(store: Store) -> None:
    path = store.path(KEY)
    path.mkdir(parents=True)  # a directory where the file should be
    assert_refused(store, KEY, path, "cannot read")


def test_replica_refuses_a_damaged_key_and_serves_the_others(store: Store, saved: Path) -> None:
    store.save(OTHER, RECORD)
    saved.write_bytes(saved.read_bytes()[:-20])
    damaged = saved.read_bytes()
    replica = Replica(store)
    for op in ("status", "promise", "advance"):
        with pytest.raises(StoreError, match="truncated"):
            replica.handle(Request(1, op, KEY, 9, HRS(2000, 0, 1), "aa"))
    assert saved.read_bytes() == damaged  # untouched: only an operator's import repairs it
    assert replica.handle(Request(2, "status", OTHER)).record == RECORD


def test_write_error_names_the_file(store: Store, saved: Path) -> None:
    saved.unlink()
    saved.mkdir()  # something the record cannot replace
    (saved / "inside").write_text("x")
    with pytest.raises(StoreError) as caught:
        store.save(KEY, RECORD)
    assert str(saved) in str(caught.value) and "cannot write" in str(caught.value)
    assert leftovers(store.directory) == []


def test_directory_error_names_the_file(store: Store) -> None:
    # The chain's directory cannot be created (here: a file is in its place;
    # on a real node: a full disk or a read-only file system). The replica
    # and the server only catch StoreError, so anything else escapes them.
    store.directory.mkdir()
    (store.directory / KEY.chain_id).write_text("not a directory")
    with pytest.raises(StoreError) as caught:
        store.save(KEY, RECORD)
    assert str(store.directory / KEY.chain_id) in str(caught.value)


# --- claim ---------------------------------------------------------------------------


def test_claim_creates_the_directory_and_holds_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "a" / "b")
    fd = store.claim()
    try:
        assert store.directory.is_dir() and mode(store.directory) == 0o700
        with pytest.raises(StoreError) as caught:
            Store(store.directory).claim()
        message = str(caught.value)
        assert str(store.directory) in message
        assert "in use by another process" in message and "stop it first" in message
    finally:
        os.close(fd)
    os.close(Store(store.directory).claim())  # free again once the holder let go


def test_claim_is_exclusive_across_processes(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    fd = store.claim()
    script = (
        "import sys\n"
        "from highlander.signstate.store import Store, StoreError\n"
        "try:\n"
        "    Store(sys.argv[1]).claim()\n"
        "except StoreError as e:\n"
        "    print(e)\n"
        "    sys.exit(3)\n"
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", script, str(store.directory)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 3, result.stderr
        assert "in use by another process" in result.stdout
    finally:
        os.close(fd)
    again = subprocess.run(
        [sys.executable, "-c", script, str(store.directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert again.returncode == 0, again.stderr


# --- key names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        KeyId("a", "b"),
        KeyId("x" * 64, "y" * 64),
        KeyId("cosmoshub-4", "priv_validator.key"),
        KeyId("A.b-C_9", "0"),
    ],
)
def test_valid_key_names(store: Store, key: KeyId) -> None:
    assert check_key(key) is None
    store.save(key, RECORD)
    assert store.load(key) == RECORD
    assert store.keys() == [key]


@pytest.mark.parametrize(
    "key, field",
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
def test_invalid_key_names_are_refused_before_any_file_is_touched(
    tmp_path: Path, store: Store, key: KeyId, field: str
) -> None:
    problem = check_key(key)
    assert problem is not None and problem.startswith(field) and repr(getattr(key, field)) in problem
    for action in (lambda: store.path(key), lambda: store.load(key), lambda: store.save(key, RECORD)):
        with pytest.raises(StoreError, match=field):
            action()
    assert sorted(p.name for p in tmp_path.rglob("*")) == []  # not even the state directory
