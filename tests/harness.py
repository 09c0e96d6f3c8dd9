"""What tests of every tier share: how they run the highlander CLI, and the loopback ports they reserve."""

from __future__ import annotations

import contextlib
import socket
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

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


Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def scrape(port: int) -> Samples:
    """Every sample of a loopback /metrics, parsed by prometheus_client: name -> labels -> value."""
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def sample(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when it is absent (a counter that never moved)."""
    return samples.get(name, {}).get(tuple(sorted(labels.items())), 0.0)
