"""The one durable file write: a file holds either its old or its new content.

Write a temporary file next to the target, loop until every byte is written,
fsync it, rename it over the target, fsync the directory. After a crash the
target holds the old or the new content, never a mixture; once the call
returns, the new content survives a power cut. A failed write (a full disk)
removes its temporary file, and the temporary files a crash left behind are
recognisable (``.<name>.<pid>.<thread>.tmp``) and removed by the next write of
the same target.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def _remove_stale(path: Path) -> None:
    """Temporary files of ``path`` left by writers that no longer run."""
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        pid = leftover.name[len(path.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
            leftover.unlink(missing_ok=True)


def write_durably(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` (created with ``mode``), durably."""
    path = Path(path)
    _remove_stale(path)
    temporary = _temporary(path)
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            os.fchmod(fd, mode)  # whatever the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
