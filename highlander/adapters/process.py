"""Starting, finding and stopping a managed daemon.

A daemon is recognised by a marker variable in its environment
(``HIGHLANDER_OCF=<agent>:<instance>``) which every process it forks
inherits. The PID file says where to look first; the marker says whether
the process there really is ours (not a reused PID, not a zombie) and lets
stop find every process of the resource, including children that left the
daemon's process group.

The checks use only ``os`` and ``/proc``: they run on every monitor.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from subprocess import Popen

MARKER_VARIABLE = "HIGHLANDER_OCF"


def marker(agent: str, instance: str) -> str:
    """The environment entry that tags every process of one resource."""
    return f"{MARKER_VARIABLE}={agent}:{instance}"


def _environ_of(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read()
    except OSError:  # gone, or a zombie whose memory is released
        return b""


def is_ours(pid: int, tag: str) -> bool:
    """Whether ``pid`` is a live process carrying ``tag`` in its environment."""
    entries = _environ_of(pid).split(b"\0")
    return tag.encode() in entries


def read_pidfile(path: str) -> int | None:
    """The PID recorded in ``path``; None when there is no usable PID file."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def write_pidfile(path: str, pid: int) -> None:
    """Record ``pid`` atomically so a concurrent monitor never reads half a file."""
    from highlander.adapters.files import write_file  # imported when writing: every monitor imports this module

    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o755, exist_ok=True)
    write_file(path, f"{pid}\n", mode=0o644)


def remove_file(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def find_tagged(tag: str) -> list[int]:
    """Every live process whose environment carries ``tag``."""
    me = os.getpid()
    return [
        int(entry)
        for entry in os.listdir("/proc")
        if entry.isdigit() and int(entry) != me and is_ours(int(entry), tag)
    ]


def running_pid(pidfile: str, tag: str) -> int | None:
    """The daemon's PID if the PID file names a live process of ours."""
    pid = read_pidfile(pidfile)
    return pid if pid is not None and is_ours(pid, tag) else None


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str,
    logfile: str,
    user: str | None,
) -> Popen[bytes]:
    """Start ``argv`` detached from the agent: own session, stdin from
    /dev/null, output appended to ``logfile`` (so pacemaker-execd does not
    wait on our pipes), running as ``user`` with that user's groups."""
    import subprocess

    os.makedirs(os.path.dirname(logfile) or ".", mode=0o750, exist_ok=True)
    with open(logfile, "ab") as log, open(os.devnull, "rb") as null:
        return subprocess.Popen(
            list(argv),
            stdin=null,
            stdout=log,
            stderr=log,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
            user=user,
            group=None if user is None else _primary_group(user),
            extra_groups=None if user is None else _supplementary_groups(user),
        )


def _primary_group(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_gid


def _supplementary_groups(user: str) -> list[int]:
    return os.getgrouplist(user, _primary_group(user))


def signal_processes(pids: Sequence[int], signum: int, group_leader: int | None = None) -> None:
    """Send ``signum`` to each process, and to the whole process group of
    ``group_leader`` (the daemon, which leads its own session), ignoring the gone."""
    targets = list(pids) + ([-group_leader] if group_leader else [])
    for target in targets:
        try:
            os.kill(target, signum)
        except (ProcessLookupError, PermissionError):
            pass


def wait_gone(tag: str, seconds: float) -> list[int]:
    """Poll until no process carries ``tag`` or ``seconds`` pass; the survivors."""
    import time

    deadline = time.monotonic() + max(seconds, 0)
    while True:
        left = find_tagged(tag)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)
