"""Loopback ports for the daemons a harness starts, chosen without a race.

A daemon that names its peers in its configuration cannot bind port 0 and
report what it got: every port must be known before any daemon starts. The
usual trick (bind port 0, close, hand the number on) leaves a window until
the daemon binds, in which anyone the kernel gives an ephemeral port (a bind
to port 0, an outgoing connection) can take it. Third-party daemons (etcd,
PostgreSQL, CometBFT, sshd) have the same need and cannot be handed a socket.

So the ports come from outside ``net.ipv4.ip_local_port_range``, where the
kernel never hands out a port on its own: only a process that binds that
exact number can take it. Above the range first (61000-65535 with Linux's
default 32768-60999), far from the well-known ports the lab's own daemons
bind (CometBFT's 26656-26660); below it when too few are left above.

Among the harness's own processes (the test run, the lab's supervisor, a
benchmark) a claim file decides: each port given out is recorded with the
claiming process, under a lock, until that process ends. A port something
already listens on is skipped.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import random
import socket
import tempfile
from pathlib import Path

LOOPBACK = "127.0.0.1"
# The fewest ports a side of the ephemeral range must have to be used, and how many below it are.
ENOUGH = 1000
SPAN = 10000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


class PortsExhausted(RuntimeError):
    """Every port of the span is claimed by a running process or in use."""


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(word) for word in EPHEMERAL_RANGE.read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def _span() -> range:
    """The ports to choose from: above the ephemeral range, or else below it."""
    low, high = _ephemeral_range()
    above = range(high + 1, 65536)
    return above if len(above) >= ENOUGH else range(max(1024, low - SPAN), low)


def _registry() -> Path:
    """The claims of this user's processes, in a directory only this user may write."""
    directory = Path(tempfile.gettempdir()) / f"highlander-ports-{os.getuid()}"
    directory.mkdir(mode=0o700, exist_ok=True)
    if directory.is_symlink() or directory.stat().st_uid != os.getuid():
        raise PermissionError(f"{directory} belongs to another user: remove it")
    return directory / "claims.json"


def _start_time(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot), None if it is gone: a PID reused later is not the claimant."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def free_ports(count: int) -> list[int]:
    """``count`` loopback ports nobody listens on, claimed for this process until it ends."""
    span = _span()
    registry = _registry()
    me = {"pid": os.getpid(), "started": _start_time(os.getpid())}
    with open(registry.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            claims: dict[str, dict[str, object]] = json.loads(registry.read_text())
        except (OSError, ValueError):
            claims = {}
        claims = {
            port: owner
            for port, owner in claims.items()
            if isinstance(owner, dict)
            and isinstance(owner.get("pid"), int)
            and _start_time(owner["pid"]) == owner.get("started")  # type: ignore[arg-type]
        }
        chosen: list[int] = []
        for port in random.sample(span, len(span)):
            if len(chosen) == count:
                break
            if str(port) not in claims and _bindable(port):
                chosen.append(port)
        if len(chosen) < count:
            raise PortsExhausted(
                f"no {count} free ports in {span.start}-{span.stop - 1}: {len(claims)} are claimed by running "
                f"processes (see {registry})"
            )
        claims.update({str(port): me for port in chosen})
        temporary = registry.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(claims))
        os.replace(temporary, registry)
    return chosen
