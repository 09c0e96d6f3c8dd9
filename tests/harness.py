"""What tests of every tier share: how they run the highlander CLI, and the loopback ports they reserve."""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import highlander

LOOPBACK = "127.0.0.1"

# Where the package under test was imported from: the checkout (PYTHONPATH) or an environment's site-packages.
SOURCE = str(Path(highlander.__file__).resolve().parents[1])

# The one way tests run the CLI: ``[*HIGHLANDER, "fence", ...]``. It is this interpreter with the package this
# test process imported, whatever environment the child gets: an OCF agent starts its daemon with a minimal one
# and the lab's tools run with Pacemaker's bare one, where neither PYTHONPATH nor PATH would lead to it. (Plain
# words only: ocf-tester hands the command to a shell's eval.)
HIGHLANDER = ["/usr/bin/env", f"PYTHONPATH={SOURCE}", sys.executable, "-m", "highlander"]


@contextlib.contextmanager
def reserved_port() -> Iterator[int]:
    """A loopback TCP port held for the block: bound with SO_REUSEPORT, never listening.

    While it is held nobody else can bind the port (the kernel never hands it
    out for port 0, and a bind without SO_REUSEPORT fails), a connection to it
    is refused, and a daemon of the same user that binds with SO_REUSEPORT
    (``highlander demo-chain``) listens on it: no window between choosing a
    port and the daemon taking it, unlike binding, closing and hoping.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind((LOOPBACK, 0))
        yield int(held.getsockname()[1])
