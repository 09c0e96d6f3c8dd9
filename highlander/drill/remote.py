"""A real cluster as a drill :class:`~highlander.drill.site.Site`: its nodes over
SSH, its BMCs through its own fence devices.

The drill on a real cluster does what it does on the lab with what an
operator has: SSH to every node (``ssh_host`` of the inventory) with host keys
checked, Pacemaker's detail log and the signers' journals read over that SSH,
and a node's power cut with the node's own fence device, run on one of its
*peers*: the nodes hold the BMC passwords (``password_file``, mode 0600) and
reach the BMC network, the operator's machine need not. The fence agent gets
its options on standard input and the password only through
``password_script`` on the peer: no secret crosses the wire or a command line.

The only failure it causes is a power cut; freezing a node, pulling its cable
or silencing its BMC are the lab's.

Times come from the nodes' clocks (logs, journals) and from the drill's host
(the moment a power cut was confirmed): they must be NTP-synchronised, as a
cluster's clocks must be anyway, and Pacemaker's log, which has local times,
is read in the drill host's time zone: run the drill with the nodes' ``TZ``. A cut's time is when the fence agent
confirmed the power off, which is at most its own verification later than
the cut itself: detection reads that much shorter, never a signature of the
failed node as "after the cut" when it was before.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path

from highlander.adapters.pacemaker import ClusterStatus, Pacemaker
from highlander.adapters.runner import Result, Runs
from highlander.adapters.ssh import SshRunner
from highlander.commands.fence import stdin_for
from highlander.drill import evidence
from highlander.drill.chain_check import ChainView
from highlander.drill.site import SiteError, Undo, at_once
from highlander.drill.workload import DEMO
from highlander.inventory.model import FenceDevice, Inventory

JOURNALS = "/var/log/highlander/journal-*.jsonl"
# An absolute path pattern the remote shell expands, nothing else.
GLOB = re.compile(r"^/[A-Za-z0-9._/*?-]+$")
# A node that did not answer is not asked again for this long: a powered-off
# node costs a connect timeout per question, and the drill asks several a second.
QUIET = 10.0
POWER_TIMEOUT = 120.0  # one fence agent run: its own login retries and power waits
# The cluster's units, whose systemd journal a failure's evidence keeps from the drill's start on.
UNITS = ("corosync", "pacemaker", "highlander-signstate")


class RemoteError(SiteError):
    """The cluster cannot be driven as asked; the message says why."""


class RemoteSite:
    """The nodes of ``inventory`` over SSH; ``cache`` receives local copies of
    their journals (only what was appended is read each time)."""

    failures = frozenset({"power"})
    workload = DEMO

    def __init__(
        self,
        inventory: Inventory,
        cache: Path,
        *,
        user: str = "root",
        key_file: Path | None = None,
        known_hosts: Path | None = None,
        journals: str = JOURNALS,
    ) -> None:
        if not GLOB.match(journals):
            raise RemoteError(
                f"journals pattern {journals!r}: give an absolute path, '*' and '?' allowed (e.g. {JOURNALS})"
            )
        for node in inventory.nodes:
            if not self._devices(node.fence):
                raise RemoteError(
                    f"{node.name}: the drill runs the node's fence device on a peer, which needs "
                    f"the device's password_file on the nodes (a vault password stays on the "
                    f"controller); give the node a device with password_file"
                )
        self.inventory = inventory
        self.names = [n.name for n in inventory.nodes]
        self.cache = cache
        self.journals = journals
        self.runners = {
            n.name: SshRunner(n.ssh_host, user=user, key_file=key_file, known_hosts=known_hosts, retry_after=QUIET)
            for n in inventory.nodes
        }
        self._answered = self.names[0]
        self._logs: dict[tuple[str, str], tuple[int, bytes]] = {}
        self._journal_sizes: dict[Path, int] = {}

    def chain(self) -> ChainView | None:
        """A real cluster's signers are judged by their journals here."""
        return None

    @staticmethod
    def _devices(fence: Sequence[FenceDevice]) -> list[FenceDevice]:
        return [d for d in fence if d.password_file]

    def close(self) -> None:
        for runner in self.runners.values():
            runner.close()

    # -- looking at the cluster --

    def status(self, avoid: str | None = None) -> ClusterStatus | None:
        """crm_mon from the node that answered last, else from the others in turn."""
        order = [self._answered] + [n for n in self.names if n != self._answered]
        for name in order:
            if name == avoid:
                continue
            status = Pacemaker(self.runners[name]).try_status()
            if status is not None:
                self._answered = name
                return status
        return None

    def runner(self, name: str) -> Runs:
        return self.runners[name]

    def file_size(self, name: str, path: str) -> int:
        result = self.runners[name].run(["stat", "-c", "%s", path], timeout=15)
        return int(result.stdout) if result.ok and result.stdout.strip().isdigit() else 0

    def read_from(self, name: str, path: str, offset: int) -> bytes:
        """What was read before (kept) and what was appended since."""
        start, data = self._logs.get((name, path), (offset, b""))
        if start != offset:
            start, data = offset, b""
        result = self.runners[name].run(["tail", "-c", f"+{start + len(data) + 1}", path], timeout=30)
        if result.ok:
            data += result.stdout.encode()
        self._logs[(name, path)] = (start, data)
        return data

    def journal_paths(self) -> list[Path]:
        """The copies made in this run; a node that does not answer keeps the
        copy it had, so its signatures are never out of the checks."""
        for name in self.names:
            listing = self.runners[name].run(["sh", "-c", f"ls -1 {self.journals} 2>/dev/null"], timeout=15)
            for remote in listing.stdout.split() if listing.ok else ():
                local = self.cache / name / Path(remote).name
                if local not in self._journal_sizes:  # a copy from an earlier run starts over
                    local.parent.mkdir(parents=True, exist_ok=True)
                    local.write_bytes(b"")
                    self._journal_sizes[local] = 0
                have = self._journal_sizes[local]
                more = self.runners[name].run(["tail", "-c", f"+{have + 1}", remote], timeout=30)
                if more.ok and more.stdout:
                    appended = more.stdout.encode()
                    with open(local, "ab") as f:
                        f.write(appended)
                    self._journal_sizes[local] = have + len(appended)
        return sorted(self._journal_sizes)

    def collect(self, folder: Path, since: float) -> list[str]:
        """Over each node's SSH: the commands, the last part of each log and
        journal, and the systemd journal of the cluster's units since ``since``.
        A node that does not answer is named, and the others still collected."""
        problems: list[str] = []
        for name in self.names:
            mine = folder / name
            runner = self.runners[name]
            problems += evidence.node_commands(runner, mine)
            patterns = " ".join(evidence.NODE_FILES)
            listing = runner.run(["sh", "-c", f"ls -1d {patterns} 2>/dev/null"], timeout=15)
            for remote in listing.stdout.split():
                copy = runner.run(["tail", "-c", str(evidence.MAX_BYTES), remote], timeout=120)
                if copy.ok:
                    evidence.keep_bytes(evidence.node_file(mine, remote), copy.stdout.encode())
                else:
                    problems.append(f"{name}: {remote}: {(copy.stderr or copy.stdout).strip()[-300:]}")
            units = [arg for unit in UNITS for arg in ("-u", unit)]
            journal = runner.run(
                ["journalctl", "--no-pager", "-o", "short-iso-precise", "--since", f"@{int(since)}", *units],
                timeout=120,
            )
            if journal.ok:
                evidence.keep_bytes(folder / "site" / name / "journalctl.txt", journal.stdout.encode())
            else:
                problems.append(f"{name}: journalctl: {(journal.stderr or journal.stdout).strip()[-300:]}")
        return problems

    # -- power --

    def power(self, names: Sequence[str], action: str) -> list[float]:
        """Each node's fence device, run on a peer that is not being powered off
        itself, if there is one; for "off", when each agent confirmed it."""

        def one(name: str) -> float:
            result = self._fence(name, action, avoid=names)
            if result.returncode != 0:
                raise RemoteError(
                    f"{name}: its fence device could not power it {action}: "
                    f"{(result.stderr or result.stdout).strip()[-300:]}"
                )
            if action == "off":
                self.runners[name].gone()
            return time.time()

        confirmed = at_once(one, names)
        return [t for t in confirmed if t is not None] if action == "off" else []

    def power_state(self, name: str) -> str:
        return {0: "on", 2: "off"}.get(self._fence(name, "status", avoid=()).returncode, "unknown")

    def _fence(self, name: str, action: str, avoid: Sequence[str]) -> Result:
        """Run ``action`` with node ``name``'s fence devices, in the inventory's
        order, each on the first peer that answers, until one answers "done" or
        (for status) "on"/"off"."""
        target = self.inventory.node(name)
        peers = [n for n in self.names if n not in avoid and n != name]
        peers += [n for n in self.names if n in avoid and n != name]
        last: Result | None = None
        for device in self._devices(target.fence):
            for peer in peers:
                result = self.runners[peer].run(
                    [device.agent], stdin=stdin_for(device, name, action, None), timeout=POWER_TIMEOUT
                )
                if result.returncode == 255:
                    continue  # the peer does not answer: the next one
                if result.returncode == 0 or (action == "status" and result.returncode == 2):
                    return result
                last = result
                break  # the peer ran it: the device failed, try the next device
        if last is None:
            raise RemoteError(f"no peer of {name} answered over SSH ({', '.join(peers)}): cannot reach its BMC")
        return last

    def inflict(self, failure: str, target: str) -> tuple[float, Undo | None]:
        if failure != "power":
            raise RemoteError(f"a real cluster's node is failed by a power cut only, not by {failure!r}")
        (cut,) = self.power([target], "off")
        return cut, None


def confirmation(inventory: Inventory, scenario: str) -> str:
    """What the operator reads before a drill touches a real cluster."""
    nodes = ", ".join(f"{n.name} ({n.role}, {n.ssh_host})" for n in inventory.nodes)
    return (
        f"The drill {scenario} will really fail nodes of cluster {inventory.cluster_name!r} [{nodes}]: "
        f"power cuts through their BMCs. The validator stops signing for the length of each failover."
    )
