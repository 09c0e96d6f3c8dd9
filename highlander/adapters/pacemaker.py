"""Reading and driving a live Pacemaker cluster through its own tools.

Everything goes through a :class:`CommandRunner`, so the same code works on
the host, inside a lab node's namespaces, or over SSH. State is read from
``crm_mon --output-as=xml`` rather than from its text, which changes between
versions.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import NamedTuple

from highlander.adapters.runner import CommandError, Runs
from highlander.adapters.waiting import wait_until


# crm_mon's roles of a running instance (Pacemaker 2.1 names, and the older ones).
STARTED = frozenset({"Started"})
PROMOTED = frozenset({"Promoted", "Master"})
RUNNING = STARTED | {"Unpromoted", "Slave"} | PROMOTED


class ResourceState(NamedTuple):
    """One resource (or clone instance) as crm_mon reports it."""

    id: str
    agent: str
    role: str
    active: bool
    failed: bool
    nodes: tuple[str, ...]


class ClusterStatus(NamedTuple):
    """The parts of crm_mon's report the commands act on."""

    dc: str | None
    quorate: bool
    online: tuple[str, ...]
    resources: tuple[ResourceState, ...]
    fail_counts: dict[tuple[str, str], int]  # (node, resource) -> count

    def resource(self, rid: str) -> ResourceState | None:
        for state in self.resources:
            if state.id == rid:
                return state
        return None

    def started_on(self, rid: str) -> tuple[str, ...]:
        """Nodes where ``rid`` runs healthy; empty while stopped or failed."""
        state = self.resource(rid)
        if state is None or not state.active or state.failed or state.role != "Started":
            return ()
        return state.nodes

    def clone_nodes(self, rid: str) -> tuple[str, ...]:
        """Nodes where an instance of clone primitive ``rid`` runs healthy."""
        return self._nodes(rid, STARTED)

    def promoted_on(self, rid: str) -> tuple[str, ...]:
        """Nodes where an instance of promotable clone primitive ``rid`` runs healthy and promoted."""
        return self._nodes(rid, PROMOTED)

    def instance_nodes(self, rid: str) -> tuple[str, ...]:
        """Nodes where an instance of clone primitive ``rid`` runs healthy, in any role."""
        return self._nodes(rid, RUNNING)

    def _nodes(self, rid: str, roles: frozenset[str]) -> tuple[str, ...]:
        return tuple(
            node
            for r in self.resources
            if r.id == rid and r.active and not r.failed and r.role in roles
            for node in r.nodes
        )

    def fail_count(self, rid: str) -> int:
        return sum(count for (_, r), count in self.fail_counts.items() if r == rid)


def parse_status(document: str) -> ClusterStatus:
    """Turn ``crm_mon --output-as=xml`` into a :class:`ClusterStatus`."""
    root = ET.fromstring(document)
    summary = root.find("summary")
    dc = summary.find("current_dc") if summary is not None else None
    dc_name = dc.get("name") if dc is not None and dc.get("present") == "true" else None
    quorate = dc is not None and dc.get("with_quorum") == "true"
    online = tuple(n.get("name", "") for n in root.iterfind("nodes/node") if n.get("online") == "true")
    resources = tuple(
        ResourceState(
            id=r.get("id", ""),
            agent=r.get("resource_agent", ""),
            role=r.get("role", ""),
            active=r.get("active") == "true",
            failed=r.get("failed") == "true",
            nodes=tuple(n.get("name", "") for n in r.iterfind("node")),
        )
        for r in root.iter("resource")
    )
    fail_counts = {
        (node.get("name", ""), history.get("id", "")): int(history.get("fail-count", "0"))
        for node in root.iterfind("node_history/node")
        for history in node.iterfind("resource_history")
        if history.get("fail-count")
    }
    return ClusterStatus(dc_name, quorate, online, resources, fail_counts)


class Pacemaker:
    """A cluster as seen from one node."""

    def __init__(self, runner: Runs) -> None:
        self.runner = runner

    def status(self) -> ClusterStatus:
        result = self.runner.run(["crm_mon", "--one-shot", "--inactive", "--output-as=xml"], check=True)
        return parse_status(result.stdout)

    def try_status(self) -> ClusterStatus | None:
        """The status, or None while the cluster cannot tell (still starting)."""
        try:
            return self.status()
        except (CommandError, ET.ParseError):
            return None

    def show(self) -> str:
        """crm_mon's human view, with fail counts, for an operator to read."""
        return self.runner.run(["crm_mon", "--one-shot", "--inactive", "--failcounts"], check=True).stdout

    def wait_for(
        self, what: str, predicate: Callable[[ClusterStatus], bool], timeout: float, poll: float = 0.5
    ) -> ClusterStatus:
        """Poll until ``predicate(status)`` holds; TimeoutError names ``what``."""

        def check() -> ClusterStatus | None:
            status = self.try_status()
            return status if status is not None and predicate(status) else None

        return wait_until(check, timeout=timeout, what=what, interval=poll)
