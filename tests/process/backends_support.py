"""Sign-state daemons on each backend, for the tests that run on all three.

Not a test module. :func:`arena` starts the register of one backend with a
daemon on each of the three nodes: the built-in trio, or real etcd (three
members) or PostgreSQL servers with the daemons configured to use them.
Everything is stopped by PID whatever happens.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness import HIGHLANDER

from highlander.signstate.client import SignerClient
from highlander.lab.stores import LocalEtcd, LocalPostgres, local_register
from highlander.lab.replicas import NODES, LoopbackReplicas

BACKENDS = ("trio", "etcd", "postgresql")


class Arena:
    """One backend's register and the daemons in front of it."""

    def __init__(self, backend: str, nodes: LoopbackReplicas, store: LocalEtcd | LocalPostgres | None) -> None:
        self.backend = backend
        self.nodes = nodes
        self.store = store

    def client(self, node: str = "node-a", timeout: float = 10.0) -> SignerClient:
        return SignerClient(self.nodes.socket(node), timeout=timeout)

    def socket(self, node: str) -> Path:
        return self.nodes.socket(node)

    def restart_store(self) -> None:
        """Every place the register lives crashes and comes back (its disks kept)."""
        if isinstance(self.store, LocalEtcd):
            for member in LocalEtcd.MEMBERS:
                self.store.end(member, signal.SIGKILL)
            self.store.start()
        elif isinstance(self.store, LocalPostgres):
            self.store.crash()
            self.store.start()
        else:
            for node in NODES:
                self.nodes.kill(node)
            self.nodes.start()

    def cut_connections(self) -> None:
        """The daemons' connections to the store break (the store stays up)."""
        if isinstance(self.store, LocalEtcd):
            for member in LocalEtcd.MEMBERS:  # one at a time: the cluster keeps its quorum
                self.store.end(member, signal.SIGKILL)
                self.store.start(member)
        elif isinstance(self.store, LocalPostgres):
            self.store.cut_connections()
        else:
            for node in NODES:  # each daemon's links to its peers
                self.nodes.kill(node)
                self.nodes.start(node)


def init(config: Path, backend: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HIGHLANDER, "signstate", "init", "--config", str(config), "--backend", backend],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@contextmanager
def arena(backend: str, workdir: Path, timeout: float = 1.0) -> Iterator[Arena]:
    """The register of ``backend`` with a daemon on each node, stopped whatever happens."""
    with local_register(backend, workdir, timeout) as (nodes, store):
        yield Arena(backend, nodes, store)
