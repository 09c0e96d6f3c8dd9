"""The one durable file write, on real files.

A file holds its old or its new content, never a mixture; it has the mode
asked for whatever the umask; a failed write leaves no temporary file behind,
and the temporary files of writers that died are removed by the next write.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from highlander.adapters import files
from highlander.adapters.files import fsync_directory, write_durably


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
def umask() -> Iterator[None]:
    """Restores the process umask a test changes."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield
    os.umask(previous)


def dead_pid() -> int:
    """A process id no process can have: above the kernel's limit."""
    pid = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    assert not Path(f"/proc/{pid}").exists()
    return pid


# --- content and mode ------------------------------------------------------------------------


def test_a_new_file_holds_the_data_and_nothing_else_is_left(tmp_path: Path) -> None:
    target = tmp_path / "record"
    write_durably(target, b"x" * 200)
    assert target.read_bytes() == b"x" * 200
    assert names(tmp_path) == ["record"]


def test_large_data_is_written_whole(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    write_durably(tmp_path / "big", data)
    assert (tmp_path / "big").read_bytes() == data


def test_short_writes_are_continued(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # os.write may write less than asked (a signal, a nearly full disk): the rest must follow.
    real = os.write
    monkeypatch.setattr(files.os, "write", lambda fd, data: real(fd, bytes(data[:7])))
    write_durably(tmp_path / "record", b"0123456789" * 10)
    monkeypatch.undo()
    assert (tmp_path / "record").read_bytes() == b"0123456789" * 10


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077, 0o777])
@pytest.mark.parametrize("wanted", [0o600, 0o644, 0o640])
def test_the_mode_is_the_one_asked_for_whatever_the_umask(tmp_path: Path, umask: None, mask: int, wanted: int) -> None:
    os.umask(mask)
    target = tmp_path / "record"
    write_durably(target, b"data", mode=wanted)
    assert mode(target) == wanted


def test_the_default_mode_is_private(tmp_path: Path, umask: None) -> None:
    os.umask(0)
    write_durably(tmp_path / "record", b"data")
    assert mode(tmp_path / "record") == 0o600


def test_a_replaced_file_does_not_keep_a_loose_old_mode(tmp_path: Path) -> None:
    target = tmp_path / "record"
    target.write_bytes(b"old content that is longer than the new")
    target.chmod(0o666)
    write_durably(target, b"new")
    assert target.read_bytes() == b"new"
    assert mode(target) == 0o600


def test_the_content_is_replaced_by_a_new_file_not_rewritten_in_place(tmp_path: Path) -> None:
    # A reader (or a crash) sees the old file whole or the new file whole: the
    # old inode is never written, the new one is renamed over it.
    target = tmp_path / "record"
    write_durably(target, b"old content")
    with open(target, "rb") as reader:
        write_durably(target, b"new")
        assert reader.read() == b"old content"
    assert target.read_bytes() == b"new"


def test_the_file_is_synced_before_the_rename_and_the_directory_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync directory" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(source: object, target: object) -> None:
        events.append("rename")
        real_replace(source, target)  # type: ignore[arg-type]

    monkeypatch.setattr(files.os, "fsync", fsync)
    monkeypatch.setattr(files.os, "replace", replace)
    write_durably(tmp_path / "record", b"data")
    assert events == ["fsync file", "rename", "fsync directory"]


def test_fsync_directory(tmp_path: Path) -> None:
    fsync_directory(tmp_path)
    with pytest.raises(FileNotFoundError):
        fsync_directory(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        fsync_directory(tmp_path / "file")


# --- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize("call", ["write", "fsync", "replace"])
def test_a_failed_write_removes_its_temporary_file_and_keeps_the_old_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    target = tmp_path / "record"
    write_durably(target, b"old content")

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, call, full)
    with pytest.raises(OSError) as caught:
        write_durably(target, b"new content")
    monkeypatch.undo()
    assert caught.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old content"
    assert names(tmp_path) == ["record"]


def test_a_failed_rename_removes_its_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "occupied"
    target.mkdir()
    (target / "inside").write_text("a non-empty directory cannot be replaced by a file")
    with pytest.raises(OSError):
        write_durably(target, b"data")
    assert names(tmp_path) == ["occupied"]
    assert target.is_dir()


def test_an_interrupted_write_removes_its_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Not only OSError: a KeyboardInterrupt in the middle leaves nothing behind either.
    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_durably(tmp_path / "record", b"data")
    monkeypatch.undo()
    assert names(tmp_path) == []


def test_a_missing_directory_is_an_error_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_durably(tmp_path / "missing" / "record", b"data")
    assert names(tmp_path) == []


# --- temporary files of writers that died -----------------------------------------------------------


def test_temporary_files_of_dead_writers_are_removed(tmp_path: Path) -> None:
    dead = dead_pid()
    for leftover in (f".record.{dead}.1.tmp", f".record.{dead}.140234.tmp"):
        (tmp_path / leftover).write_bytes(b"half a write")
    write_durably(tmp_path / "record", b"data")
    assert names(tmp_path) == ["record"]


def test_temporary_files_of_live_writers_are_kept(tmp_path: Path) -> None:
    dead = dead_pid()
    kept = [
        ".record.1.5.tmp",  # process 1 is alive: its write may be under way
        f".record.{os.getpid()}.99.tmp",  # this process: another thread's write
        f".other.{dead}.1.tmp",  # another file's: its own next write removes it
        ".record.not-a-pid.tmp",  # not a name write_durably gives
    ]
    for leftover in kept:
        (tmp_path / leftover).write_bytes(b"in progress")
    write_durably(tmp_path / "record", b"data")
    assert names(tmp_path) == sorted([*kept, "record"])
