"""Replacing a file or a directory so that a reader sees the old or the new one, whole.

Every file highlander writes outside the sign-state daemon goes through
:func:`write_file`: the bytes go to a temporary file next to the
destination, which gets its mode (exactly, whatever the umask) and the
owner of the file it replaces, is fsynced, renamed over the destination,
and the directory is fsynced. :func:`new_directory` and
:func:`replace_directory` do the same for a directory built in full
before it takes the place of another (a render's output).

Nothing is left behind:

- on an error (a full disk fails the write or the fsync) the temporary is
  removed before the error is raised, and the destination is untouched;
- a temporary left by a process that died between creating and renaming
  it (kill -9, power loss) is removed by the next write to the same
  destination.

Temporaries are named ``.<name>.<12 hex digits>.highlander-tmp`` next to
their destination ``<name>``. Their writer holds an exclusive ``flock`` on
each from its creation until its rename, and the kernel drops the lock
when the writer dies, however it dies: a temporary of that name that
nobody holds locked is stale and is removed; one that is locked belongs
to a live writer and is left alone. (A lock, not a PID in the name: PIDs
are reused, and a lab node's PIDs live in their own namespace.)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

SUFFIX = ".highlander-tmp"
_TOKEN_HEX = 12
_NAME_ROOM = 200  # of the destination's name, so a temporary's name stays under NAME_MAX (255)
_ATTEMPTS = 8


class TemporaryError(OSError):
    """No temporary could be created next to a destination."""


class _Taken(Exception):
    """A temporary was removed by a cleaner before its writer could lock it: make another."""


def _stem(destination: Path) -> str:
    return f".{destination.name[:_NAME_ROOM]}."


def temporary_pattern(destination: Path) -> re.Pattern[str]:
    """The names of ``destination``'s temporaries (in its directory), and no other."""
    return re.compile(re.escape(_stem(destination)) + f"[0-9a-f]{{{_TOKEN_HEX}}}" + re.escape(SUFFIX))


def _temporary_name(destination: Path) -> Path:
    return destination.with_name(f"{_stem(destination)}{os.urandom(_TOKEN_HEX // 2).hex()}{SUFFIX}")


def _names_this(path: Path, fd: int) -> bool:
    """Whether ``path`` is still the inode open as ``fd`` (nobody removed or replaced it)."""
    try:
        named = os.lstat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _create_locked(destination: Path, create: Callable[[Path], int]) -> tuple[int, Path]:
    """A new temporary for ``destination``, open and locked by this process.

    ``create(name)`` makes it and returns an open descriptor. Between that
    and the lock, a concurrent cleaner can take the unlocked temporary for
    stale and remove it: the name is checked once the lock is held, and a
    fresh one is made if it no longer names this temporary.
    """
    for _ in range(_ATTEMPTS):
        name = _temporary_name(destination)
        try:
            fd = create(name)
        except (FileExistsError, _Taken):
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if _names_this(name, fd):
                return fd, name
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise TemporaryError(f"{destination.parent}: cannot create a temporary for {destination.name}")


def _remove_tree_or_file(path: Path, is_directory: bool) -> None:
    if is_directory:
        import shutil

        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def remove_stale_temporaries(destination: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporaries of ``destination`` that no live writer holds; the removed ones.

    Only names of :func:`temporary_pattern` count, only regular files and
    directories (never a symlink or a device), and only when their lock can
    be taken at once: a held lock means a writer is at work.
    """
    target = Path(os.path.abspath(destination))
    pattern = temporary_pattern(target)
    removed: list[Path] = []
    try:
        entries = [e for e in os.scandir(target.parent) if pattern.fullmatch(e.name)]
    except FileNotFoundError:
        return removed
    for entry in entries:
        path = Path(entry.path)
        try:
            kind = os.lstat(path).st_mode
            if not (stat.S_ISREG(kind) or stat.S_ISDIR(kind)):
                continue
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue  # gone already, or not ours to open
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its writer is alive
            if _names_this(path, fd):
                _remove_tree_or_file(path, stat.S_ISDIR(os.fstat(fd).st_mode))
                removed.append(path)
        finally:
            os.close(fd)
    return removed


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make the directory's entries (a rename into it) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _place_new(temporary: Path, target: Path) -> None:
    """Give the finished ``temporary`` the name ``target`` only if nothing has it: FileExistsError otherwise."""
    try:
        os.link(temporary, target)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise  # FileExistsError among them
        # A file system without hard links: check, then rename (a race a link would not have).
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target)) from None
        os.rename(temporary, target)
    else:
        os.unlink(temporary)


def write_file(path: str | os.PathLike[str], data: bytes | str, *, mode: int = 0o644, replace: bool = True) -> None:
    """Replace ``path`` with ``data`` (text is written as UTF-8) so a crash leaves the old or the new file.

    The new file has ``mode`` exactly and, when it replaces one, that file's
    owner and group (so a root agent does not lock a non-root signer out of
    its own state file). The directory must exist. On any failure the
    temporary is removed and ``path`` is as it was. With ``replace=False``
    the file is only created: FileExistsError if ``path`` exists, even if it
    appeared while the data was being written (a CA key is never overwritten).
    """
    target = Path(os.path.abspath(path))
    payload = data.encode("utf-8") if isinstance(data, str) else data
    remove_stale_temporaries(target)
    try:
        existing: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        existing = None
    fd, temporary = _create_locked(
        target, lambda name: os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    )
    try:
        os.fchmod(fd, mode)
        if existing is not None:
            uid = existing.st_uid if existing.st_uid != os.geteuid() else -1
            gid = existing.st_gid if existing.st_gid != os.getegid() else -1
            if uid != -1 or gid != -1:
                os.fchown(fd, uid, gid)
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        if replace:
            os.replace(temporary, target)
        else:
            _place_new(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    finally:
        os.close(fd)
    fsync_directory(target.parent)


@contextlib.contextmanager
def new_directory(destination: str | os.PathLike[str]) -> Iterator[Path]:
    """An empty directory (mode 0700) next to ``destination``, to build its replacement in.

    Hand it to :func:`replace_directory` inside the ``with`` block; if it is
    still there when the block ends (an error, or no replacement), it is
    removed with everything in it.
    """
    target = Path(os.path.abspath(destination))
    remove_stale_temporaries(target)

    def create(name: Path) -> int:
        os.mkdir(name, 0o700)
        try:
            return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise _Taken() from None

    fd, temporary = _create_locked(target, create)
    try:
        yield temporary
    finally:
        try:
            if _names_this(temporary, fd):
                _remove_tree_or_file(temporary, is_directory=True)
        finally:
            os.close(fd)


def replace_directory(source: Path, destination: str | os.PathLike[str]) -> None:
    """Put the directory ``source`` (from :func:`new_directory`) where ``destination`` is.

    ``destination`` may be missing or a directory, which is removed with its
    contents. Two renames: a crash between them leaves ``destination``
    missing and the old directory under a temporary name (locked by this
    process until then), which the next write removes.
    """
    target = Path(os.path.abspath(destination))
    if not os.path.lexists(target):
        os.rename(source, target)
        fsync_directory(target.parent)
        return
    old_fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fcntl.flock(old_fd, fcntl.LOCK_EX)  # before it gets a temporary's name: never taken for stale
        old = _temporary_name(target)
        os.rename(target, old)
        try:
            os.rename(source, target)
        except BaseException:
            os.rename(old, target)
            raise
        fsync_directory(target.parent)
        _remove_tree_or_file(old, is_directory=True)
    finally:
        os.close(old_fd)
