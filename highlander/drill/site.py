"""Where a drill runs: the one interface the scenarios see.

A scenario (:mod:`highlander.drill.scenarios`) fails a node, watches the
cluster recover and reads what happened from Pacemaker's detail log and the
signers' journals. It does all of that through a :class:`Site`, so the same
scenario runs on the lab (:class:`highlander.lab.site.LabSite`: namespaces and
simulated BMCs on this machine) and on a real cluster
(:class:`highlander.drill.remote.RemoteSite`: SSH and the cluster's own fence
devices). A site says which failures it can cause in :attr:`Site.failures`;
a scenario that needs another one is refused before it touches anything.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from highlander.adapters.pacemaker import ClusterStatus
from highlander.adapters.runner import Runs
from highlander.drill.chain_check import ChainView
from highlander.drill.workload import Workload
from highlander.inventory.model import Inventory

# The failures a site may be able to cause, and what each does to a node.
FAILURES: dict[str, str] = {
    "power": "cut its power through its BMC",
    "freeze": "freeze every process of it (SIGSTOP), later thaw them",
    "cable": "pull its network cable, later put it back",
    "bmc": "silence its BMC and cut its power without it",
}


class SiteError(RuntimeError):
    """The site cannot be reached or driven as asked; the message says why.

    Each site has its own kind (the lab's, a real cluster's): the drill stops
    on any of them with its one line.
    """


# Undoes a failure (thaws a frozen node, puts a cable back) and returns what it
# recorded on the way, for the iteration's record.
Undo = Callable[[], dict[str, Any]]


class Site(Protocol):
    """A cluster the drill can look at and fail nodes of."""

    inventory: Inventory
    failures: frozenset[str]  # the keys of FAILURES this site can cause
    workload: Workload  # what the validator signs with, and where the drill sees it sign

    def chain(self) -> ChainView | None:
        """Where the validator's chain is read (None: no chain, the journals judge)."""

    def status(self, avoid: str | None = None) -> ClusterStatus | None:
        """crm_mon from a node that answers, other than ``avoid``; None if none can tell."""

    def runner(self, name: str) -> Runs:
        """Runs programs on node ``name``."""

    def file_size(self, name: str, path: str) -> int:
        """The size of file ``path`` on node ``name`` (0 if it cannot be read)."""

    def read_from(self, name: str, path: str, offset: int) -> bytes:
        """File ``path`` on node ``name`` from byte ``offset`` on (empty if it cannot be read)."""

    def journal_paths(self) -> list[Path]:
        """Local, up-to-date copies (or the files themselves) of every node's signing journal."""

    def power(self, names: Sequence[str], action: str) -> list[float]:
        """Power nodes ``names`` "off" or "on" through their BMCs, all at once;
        for "off", when each one's power went off."""

    def power_state(self, name: str) -> str:
        """ "on", "off" or "unknown", as node ``name``'s BMC reports it."""

    def inflict(self, failure: str, target: str) -> tuple[float, Undo | None]:
        """Cause ``failure`` (a key of :attr:`failures`) on node ``target``; returns
        its time and what undoes it (None: fencing power-cycles the node)."""

    def collect(self, folder: Path, since: float) -> list[str]:
        """Keep the evidence of every node (:mod:`highlander.drill.evidence`:
        crm_mon, constraints, the CIB, scores, the logs and journals) and the
        site's own in ``folder``, from the drill's start ``since`` on where a
        history is long; returns what could not be collected."""

    def close(self) -> None:
        """Let go of connections."""


def at_once(function: Callable[[str], float | None], names: Sequence[str]) -> list[float | None]:
    """``function(name)`` for every name, each in its own thread (a two-node power
    cut must be one moment, not two); the results in order; the first error is raised."""
    results: dict[str, float | None] = {}
    errors: list[BaseException] = []

    def one(name: str) -> None:
        try:
            results[name] = function(name)
        except BaseException as exc:  # noqa: BLE001 (raised below, in the caller's thread)
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return [results[name] for name in names]
