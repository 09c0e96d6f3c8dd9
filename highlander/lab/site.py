"""The lab (``highlander lab up``) as a drill :class:`~highlander.drill.site.Site`.

The drill looks at the lab from the machine it runs on: crm_mon inside a
node's namespaces, the nodes' logs and journals in the lab directory, the
BMCs over IPMI from the switch. Beyond a power cut, the lab can cause what a
real cluster's operator cannot on purpose: freeze a node, pull its cable,
silence its BMC.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from highlander.adapters.pacemaker import ClusterStatus, Pacemaker
from highlander.adapters.runner import CommandRunner, Runs, system_env
from highlander.drill import evidence
from highlander.drill.chain_check import ChainReader, ChainView, CurlRpc
from highlander.drill.site import FAILURES, Undo, at_once
from highlander.drill.workload import CHAIN, CHAIN_STOCK, DEMO, WORKLOADS
from highlander.inventory import load
from highlander.lab import controls, stacks
from highlander.lab.node import NODE_LOG, RECORD_FILE, init_alive, processes_in, same_process, start_time
from highlander.lab.plan import load_plan
from highlander.lab.records import EVENTS_FILE, STATE_FILE, SUPERVISOR_LOG, LabError, lab_directory

# The lab's own account, kept with a failure's evidence: its events (power cuts
# and boots as the BMC hooks saw them), its supervisor's log, every BMC's power events.
LAB_FILES = (EVENTS_FILE, SUPERVISOR_LOG, STATE_FILE, "bmc/*/events.log", "chain/val-*/cometbft.log")


def open_site(directory: Path | None, say: Callable[[str], None]) -> LabSite:
    """The lab in ``directory`` (the default lab's when None) for ``highlander drill``,
    which finds this through the entry point ``lab`` of ``highlander.sites``."""
    if os.geteuid() != 0:
        raise LabError("the drill powers lab nodes off and enters their namespaces: run it as root")
    return LabSite(lab_directory(directory), say)


class LabSite:
    """The lab in ``directory``; ``say`` gets the progress lines of undoing a failure."""

    failures = frozenset(FAILURES)

    def __init__(self, directory: Path, say: Callable[[str], None] = print) -> None:
        self.directory = directory.absolute()
        self.plan, self.state = load_plan(self.directory)
        self.inventory = load(self.plan.inventory)
        self.say = say
        self.workload = WORKLOADS[self.state.get("workload", DEMO.name)]
        if self.workload is CHAIN and stacks.current(self.directory) == "stock":
            self.workload = CHAIN_STOCK

    def chain(self) -> ChainView | None:
        """The chain's RPC on the first ordinary validator's host (never failed by a drill)."""
        recorded = self.state.get("chain")
        if recorded is None:
            return None
        runner = CommandRunner(prefix=("ip", "netns", "exec", recorded["rpc_netns"]), env=system_env())
        return ChainView(ChainReader(CurlRpc(runner)), recorded["address"])

    def close(self) -> None:
        """Nothing to let go of: every command is its own process."""

    # -- looking at the cluster --

    def status(self, avoid: str | None = None) -> ClusterStatus | None:
        for node in self.plan.nodes:
            if node.name == avoid or controls.node_init(self.directory, node.name) is None:
                continue
            try:
                status = Pacemaker(controls.node_runner(self.directory, node.name)).try_status()
            except LabError:
                continue
            if status is not None:
                return status
        return None

    def runner(self, name: str) -> Runs:
        return controls.node_runner(self.directory, name)

    def _path(self, name: str, path: str) -> Path:
        return self.directory / "nodes" / name / "root" / path.lstrip("/")

    def file_size(self, name: str, path: str) -> int:
        try:
            return self._path(name, path).stat().st_size
        except FileNotFoundError:
            return 0

    def read_from(self, name: str, path: str, offset: int) -> bytes:
        try:
            with open(self._path(name, path), "rb") as f:
                f.seek(offset)
                return f.read()
        except FileNotFoundError:
            return b""

    def journal_paths(self) -> list[Path]:
        return sorted(self.directory.glob("nodes/*/root/var/log/highlander/journal-*.jsonl"))

    def collect(self, folder: Path, since: float) -> list[str]:
        """Every node's files straight from the lab directory (a powered-off
        node's too), the commands inside each running node, the lab's own files.
        The lab is young: its files are kept whole (up to the size limit)."""
        problems: list[str] = []
        for node in self.plan.nodes:
            mine = folder / node.name
            mine.mkdir(parents=True, exist_ok=True)
            if controls.node_init(self.directory, node.name) is None:
                problems.append(f"{node.name}: powered off: no crm_mon, cibadmin or crm_simulate from it")
            else:
                problems += evidence.node_commands(self.runner(node.name), mine)
            for pattern in evidence.NODE_FILES:
                for path in sorted(self._path(node.name, "/").glob(pattern.lstrip("/"))):
                    inner = "/" + str(path.relative_to(self._path(node.name, "/")))
                    evidence.keep_bytes(evidence.node_file(mine, inner), evidence.tail(path))
            init_log = self.directory / "nodes" / node.name / NODE_LOG
            if init_log.exists():  # the node's init: its boots and what its programs printed
                evidence.keep_bytes(mine / NODE_LOG, evidence.tail(init_log))
        for pattern in LAB_FILES:
            for path in sorted(self.directory.glob(pattern)):
                evidence.keep_bytes(folder / "site" / path.relative_to(self.directory), evidence.tail(path))
        return problems

    # -- power --

    def power(self, names: Sequence[str], action: str) -> list[float]:
        """``chassis power ACTION`` on each BMC; for "off", when each BMC recorded it
        (its hook had killed the node by then)."""
        asked = time.time()
        at_once(lambda name: controls.bmc_chassis(self.directory, name, action), names)
        return [self._off_time(name, asked - 1) or time.time() for name in names] if action == "off" else []

    def _off_time(self, name: str, since: float) -> float | None:
        try:
            events = (self.directory / "bmc" / name / "events.log").read_text().splitlines()
        except FileNotFoundError:
            return None
        for line in reversed(events):
            stamp, _, what = line.partition(" ")
            if what == "off" and float(stamp) >= since:
                return float(stamp)
        return None

    def power_state(self, name: str) -> str:
        return controls.bmc_power(self.directory, name)

    # -- failures --

    def inflict(self, failure: str, target: str) -> tuple[float, Undo | None]:
        cause: dict[str, Callable[[str], tuple[float, Undo | None]]] = {
            "power": self._cut_power,
            "freeze": self._freeze,
            "cable": self._pull_cable,
            "bmc": self._silence_bmc,
        }
        return cause[failure](target)

    def _cut_power(self, target: str) -> tuple[float, Undo | None]:
        (cut,) = self.power([target], "off")
        return cut, None

    def _freeze(self, target: str) -> tuple[float, Undo | None]:
        """SIGSTOP every process of the node (its PID namespace); the undo SIGCONTs
        what fencing left of them."""
        record = json.loads((self.directory / "nodes" / target / RECORD_FILE).read_text())
        if not init_alive(record):
            raise LabError(f"{target} is not running: nothing to freeze")
        frozen = []
        for pid in processes_in(record["pid_namespace"]):
            started = start_time(pid)
            try:
                os.kill(pid, signal.SIGSTOP)
                frozen.append((pid, started))
            except ProcessLookupError:
                pass
        if not frozen:
            raise LabError(f"{target} has no process to freeze")
        cut = time.time()

        def undo() -> dict[str, Any]:
            thawed = 0
            for pid, started in frozen:
                if same_process(pid, started):
                    try:
                        os.kill(pid, signal.SIGCONT)
                        thawed += 1
                    except ProcessLookupError:
                        pass
            self.say(f"  {target} thawed after {time.time() - cut:.1f} s (SIGCONT to {thawed} processes fencing left)")
            time.sleep(2.0)  # time for a thawed signer to try
            return {"thawed": thawed}

        return cut, undo

    def _pull_cable(self, target: str) -> tuple[float, Undo | None]:
        controls.set_link(self.directory, target, up=False)
        cut = time.time()

        def undo() -> dict[str, Any]:
            controls.set_link(self.directory, target, up=True)
            self.say(f"  {target}'s cable is back after {time.time() - cut:.1f} s")
            return {"link_restored": time.time()}

        return cut, undo

    def _silence_bmc(self, target: str) -> tuple[float, Undo | None]:
        controls.freeze_bmc(self.directory, target, frozen=True)
        try:
            controls.kill_node(self.directory, target)
        except BaseException:
            controls.freeze_bmc(self.directory, target, frozen=False)
            raise
        cut = time.time()

        def undo() -> dict[str, Any]:
            controls.freeze_bmc(self.directory, target, frozen=False)
            self.say(f"  {target}'s BMC answers again after {time.time() - cut:.1f} s")
            return {"restored": time.time()}

        return cut, undo
