"""highlander.adapters.files: a file or directory is replaced whole or not at
all, with the mode and owner asked for, durably, and no temporary outlives
its writer: removed on an error, and by the next write after a crash.

The filesystem is real (tmp_path). A full disk on a real filesystem is in
tests/process/test_durable_writes.py; here a failing system call is
injected only to reach the points a real disk fails at rarely (fsync,
rename) and to record the order of the calls.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from highlander.adapters import files
from highlander.adapters.files import (
    SUFFIX,
    new_directory,
    remove_stale_temporaries,
    replace_directory,
    temporary_pattern,
    write_file,
)


def temporaries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(SUFFIX))


def crashed_writer(destination: Path, at: str = "os.replace") -> None:
    """A child that dies by SIGKILL where ``write_file`` is about to call ``at``."""
    code = textwrap.dedent(f"""
        import os, signal
        from highlander.adapters.files import write_file
        def crash(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)
        {at} = crash
        write_file({str(destination)!r}, "from the crashed writer")
    """)
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr


# --- the file: bytes, mode, owner ------------------------------------------------------


def test_creates_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_file(path, "one", mode=0o600)
    assert path.read_text() == "one" and stat.S_IMODE(path.stat().st_mode) == 0o600
    write_file(str(path), b"two\xff", mode=0o640)
    assert path.read_bytes() == b"two\xff" and stat.S_IMODE(path.stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == ["state.json"]


def test_mode_ignores_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        write_file(tmp_path / "a", "x", mode=0o755)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o755


@pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")
def test_keeps_the_owner_of_the_file_it_replaces(tmp_path: Path) -> None:
    path = tmp_path / "priv_validator_state.json"
    path.write_text("old")
    os.chown(path, 65534, 65534)
    write_file(path, "new", mode=0o600)
    info = path.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (65534, 65534, 0o600)
    assert path.read_text() == "new"


def test_create_only_never_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "ca.key"
    write_file(path, "first", mode=0o600, replace=False)
    assert path.read_text() == "first" and stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        write_file(path, "second", mode=0o600, replace=False)
    assert path.read_text() == "first"
    assert os.listdir(tmp_path) == ["ca.key"]


def test_create_only_without_hard_links_still_refuses_an_existing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file system that cannot link (EPERM, as vfat): checked, then renamed."""

    def no_links(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, "links not supported")

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "node.crt"
    write_file(path, "one", replace=False)
    with pytest.raises(FileExistsError):
        write_file(path, "two", replace=False)
    assert path.read_text() == "one" and os.listdir(tmp_path) == ["node.crt"]


def test_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_file("state.json", "x")
    assert (tmp_path / "state.json").read_text() == "x"


def test_a_missing_directory_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_file(tmp_path / "missing" / "state.json", "x")
    assert os.listdir(tmp_path) == []


def test_a_long_name_still_gets_a_temporary(tmp_path: Path) -> None:
    path = tmp_path / ("n" * 255)
    write_file(path, "x")
    assert path.read_text() == "x" and os.listdir(tmp_path) == [path.name]


# --- durability: the order of the system calls -------------------------------------------


def test_fsyncs_the_file_before_the_rename_and_the_directory_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file")
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_file(tmp_path / "s", "x")
    assert events == ["fsync-file", "rename", "fsync-dir"]


def test_short_writes_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data)[:3]))
    write_file(tmp_path / "s", "0123456789" * 10)
    assert (tmp_path / "s").read_text() == "0123456789" * 10


@pytest.mark.parametrize(
    ("call", "error"),
    [("write", errno.ENOSPC), ("fsync", errno.ENOSPC), ("fsync", errno.EIO), ("replace", errno.EIO)],
)
def test_a_failure_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str, error: int
) -> None:
    path = tmp_path / "state.json"
    path.write_text("old")

    def failing(*args: object) -> None:
        raise OSError(error, os.strerror(error))

    monkeypatch.setattr(os, call, failing)
    with pytest.raises(OSError) as caught:
        write_file(path, "new")
    assert caught.value.errno == error
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["state.json"]


# --- temporaries left by a crash ------------------------------------------------------------


@pytest.mark.parametrize("at", ["os.write", "os.fsync", "os.replace"])
def test_a_crashed_writers_temporary_is_removed_by_the_next_write(tmp_path: Path, at: str) -> None:
    path = tmp_path / "state.json"
    write_file(path, "before")
    crashed_writer(path, at)
    (left,) = temporaries(tmp_path)
    assert temporary_pattern(path).fullmatch(left)
    assert path.read_text() == "before"
    write_file(path, "after")
    assert os.listdir(tmp_path) == ["state.json"] and path.read_text() == "after"


def test_a_live_writers_temporary_is_left_alone(tmp_path: Path) -> None:
    """Negative control: a temporary whose writer still holds its lock is not stale."""
    path = tmp_path / "state.json"
    live = tmp_path / f".state.json.0123456789ab{SUFFIX}"
    fd = os.open(live, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        write_file(path, "x")
        assert temporaries(tmp_path) == [live.name]
    finally:
        os.close(fd)
    assert remove_stale_temporaries(path) == [live]
    assert os.listdir(tmp_path) == ["state.json"]


def test_only_this_destinations_temporaries_are_removed(tmp_path: Path) -> None:
    names = [
        f".state.json.0123456789ab{SUFFIX}",  # this destination's: removed
        f".state.json.other.0123456789ab{SUFFIX}",  # of ".../state.json.other"
        f".state.0123456789ab{SUFFIX}",  # of ".../state"
        ".state.json.0123456789ab.tmp",  # not ours
        f".state.json.0123456789AB{SUFFIX}",  # not a name we make
        "state.json.bak",
    ]
    for name in names:
        (tmp_path / name).write_text("x")
    (tmp_path / f".state.json.ba9876543210{SUFFIX}").symlink_to(tmp_path / "state.json.bak")
    assert remove_stale_temporaries(tmp_path / "state.json") == [tmp_path / names[0]]
    assert sorted(os.listdir(tmp_path)) == sorted(names[1:] + [f".state.json.ba9876543210{SUFFIX}"])
    assert (tmp_path / "state.json.bak").read_text() == "x"


def test_a_cleaner_racing_a_new_temporary_cannot_remove_it_under_its_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cleaner that takes a temporary between its creation and its lock: the writer makes another."""
    path = tmp_path / "state.json"
    real_flock = fcntl.flock
    raced: list[str] = []

    def flock(fd: int, operation: int) -> None:
        if not raced and operation == fcntl.LOCK_EX:
            raced.extend(p.name for p in tmp_path.iterdir())
            os.unlink(tmp_path / raced[0])  # what a cleaner does to an unlocked temporary
        real_flock(fd, operation)

    monkeypatch.setattr(files.fcntl, "flock", flock)
    write_file(path, "x")
    assert len(raced) == 1 and path.read_text() == "x" and os.listdir(tmp_path) == ["state.json"]


# --- directories ----------------------------------------------------------------------------


def test_a_directory_is_replaced_whole(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for text in ("one", "two"):
        with new_directory(out) as building:
            (building / "file").write_text(text)
            replace_directory(building, out)
        assert (out / "file").read_text() == text
        assert os.listdir(tmp_path) == ["out"]


def test_a_directory_not_moved_into_place_is_removed(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), new_directory(tmp_path / "out") as building:
        (building / "file").write_text("x")
        raise RuntimeError("vetoed")
    assert os.listdir(tmp_path) == []


def test_a_failed_swap_puts_the_old_directory_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "file").write_text("old")
    real_rename = os.rename
    renames: list[str] = []

    def rename(src: str, dst: str) -> None:
        renames.append(str(src))
        if len(renames) == 2:  # the new directory into place
            raise OSError(errno.EIO, "Input/output error")
        real_rename(src, dst)

    with new_directory(out) as building:
        monkeypatch.setattr(os, "rename", rename)
        with pytest.raises(OSError):
            replace_directory(building, out)
        monkeypatch.undo()
    assert (out / "file").read_text() == "old" and os.listdir(tmp_path) == ["out"]


def test_directories_left_by_a_crash_are_removed_by_the_next_one(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    code = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from highlander.adapters.files import new_directory, replace_directory
        real_rename = os.rename
        def rename(src, dst):
            real_rename(src, dst)
            os.kill(os.getpid(), signal.SIGKILL)  # between the two renames
        os.rename = rename
        with new_directory({str(out)!r}) as building:
            (building / "file").write_text("new")
            replace_directory(building, Path({str(out)!r}))
    """)
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert len(temporaries(tmp_path)) == 2 and not out.exists()  # the old one and the new one
    with new_directory(out) as building:
        replace_directory(building, out)
    assert os.listdir(tmp_path) == ["out"]
