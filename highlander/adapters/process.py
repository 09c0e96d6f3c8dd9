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

TYPE_CHECKING = False  # typing's constant, without importing typing: see highlander/__init__.py
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from subprocess import Popen

MARKER_VARIABLE = "HIGHLANDER_OCF"


def marker(agent: str, instance: str) -> str:
    """The environment entry that tags every process of one resource."""
    return f"{MARKER_VARIABLE}={agent}:{instance}"


def own_marker() -> str | None:
    """The marker this process was started with, when it is part of a resource."""
    value = os.environ.get(MARKER_VARIABLE)
    return None if value is None else f"{MARKER_VARIABLE}={value}"


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
    write_small_file(path, f"{pid}\n")


def write_small_file(path: str, text: str) -> None:
    """Replace ``path`` with ``text`` (a run-time file: a PID, a reason) so
    that a reader sees the old or the new content, never half of it."""
    from highlander.adapters.files import write_file  # imported when writing: every monitor imports this module

    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o755, exist_ok=True)
    write_file(path, text, mode=0o644)


def remove_file(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def find_tagged(tag: str) -> list[int]:
    """Every live process whose environment carries ``tag``."""
    me = os.getpid()
    return [
        int(entry) for entry in os.listdir("/proc") if entry.isdigit() and int(entry) != me and is_ours(int(entry), tag)
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
    logfile: str | None,
    user: str | None,
    stdin: bytes | None = None,
    die_with_parent: bool = False,
) -> Popen[bytes]:
    """Start ``argv`` detached from the caller: own session, output appended
    to ``logfile`` (so pacemaker-execd does not wait on our pipes; None keeps
    the caller's output), running as ``user`` with that user's groups.

    Its standard input is ``stdin`` through a pipe (how a secret reaches it
    off the command line), or /dev/null. With ``die_with_parent`` it gets
    SIGKILL when the calling thread ends, however it ends (see
    :func:`_parent_death_signal`).
    """
    import subprocess
    from contextlib import ExitStack

    with ExitStack() as files:
        output = None
        if logfile is not None:
            os.makedirs(os.path.dirname(logfile) or ".", mode=0o750, exist_ok=True)
            output = files.enter_context(open(logfile, "ab"))
        source = subprocess.PIPE if stdin is not None else files.enter_context(open(os.devnull, "rb"))
        child = subprocess.Popen(
            list(argv),
            stdin=source,
            stdout=output,
            stderr=output,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
            user=user,
            group=None if user is None else _primary_group(user),
            extra_groups=None if user is None else _supplementary_groups(user),
            preexec_fn=_parent_death_signal(os.getpid()) if die_with_parent else None,
        )
    if stdin is not None:
        assert child.stdin is not None
        try:
            child.stdin.write(stdin)
            child.stdin.close()
        except BrokenPipeError:
            pass  # it exited at once; the caller learns that from its status
    return child


# prctl(2) option: the signal a process gets when its parent thread ends.
PR_SET_PDEATHSIG = 1


def _parent_death_signal(parent: int) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child die with the process spawning it.

    The kernel sends the signal when the *thread* that forked the child ends
    (so spawn from the thread that lives as long as the guard), and clears it
    when the child's credentials change. CPython calls ``preexec_fn`` after
    setgroups, setregid and setreuid (``child_exec`` in _posixsubprocess.c),
    so it is set as the final user; it is kept across exec unless the program
    is set-user-ID, set-group-ID or has file capabilities. If the parent died
    between fork and this call the signal would never come: getppid() then
    names another process, and the child kills itself.

    ctypes is loaded here, in the parent: the child only calls into it.
    """
    import ctypes
    import signal

    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def arm() -> None:
        if prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return arm


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
