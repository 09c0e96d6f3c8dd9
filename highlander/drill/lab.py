"""Drills on the lab trio (``highlander lab up``).

``power-cut-active``: per iteration, find the node where the validator runs,
cut its power through its BMC (``chassis power off``: the BMC's power-off
hook kills the node's PID namespace at once), wait until the validator signs
on another node, read the phases from the cluster's logs and the journals,
power the node back on if fencing left it off, wait until it rejoins with its
sign-state replica, and check every journal: zero double signs.

``freeze-active``: the same, but the node is frozen instead (SIGSTOP to every
process of its PID namespace) until the validator signs elsewhere, which
takes longer than the token, then thawed (SIGCONT): the cluster must have
fenced it, and it must never sign again.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from highlander.adapters.pacemaker import ClusterStatus, Pacemaker
from highlander.demo.journals import check_journals, read_journals
from highlander.drill import measure
from highlander.lab import trio
from highlander.lab.node import RECORD_FILE, processes_in

SCENARIOS = ("power-cut-active", "freeze-active")
VALIDATOR = trio.VALIDATOR
PACEMAKER_LOG = "var/log/pacemaker/pacemaker.log"


class DrillError(RuntimeError):
    """The drill could not run or the cluster did not recover; the message says why."""


def journal_paths(directory: Path) -> list[Path]:
    return sorted(directory.glob("nodes/*/root/var/log/highlander/journal-*.jsonl"))


class LabDrill:
    def __init__(self, directory: Path, say: Callable[[str], None] = print, *, timeout: float = 120.0) -> None:
        self.directory = directory.absolute()
        self.plan, _ = trio.load_plan(self.directory)
        self.names = [n.name for n in self.plan.nodes]
        self.say = say
        self.timeout = timeout

    # -- looking at the cluster --

    def status(self, avoid: str | None = None) -> ClusterStatus | None:
        """crm_mon from the first running node other than ``avoid``."""
        for name in self.names:
            if name == avoid or trio.node_init(self.directory, name) is None:
                continue
            try:
                status = Pacemaker(trio.node_runner(self.directory, name)).try_status()
            except trio.LabError:
                continue
            if status is not None:
                return status
        return None

    def log_offsets(self) -> dict[str, int]:
        offsets = {}
        for name in self.names:
            path = self.directory / "nodes" / name / "root" / PACEMAKER_LOG
            offsets[name] = path.stat().st_size if path.exists() else 0
        return offsets

    def log_lines(self, offsets: dict[str, int], year: int) -> list[measure.LogLine]:
        lines: list[measure.LogLine] = []
        for name, offset in offsets.items():
            path = self.directory / "nodes" / name / "root" / PACEMAKER_LOG
            if path.exists():
                with open(path, "rb") as f:
                    f.seek(offset)
                    lines += measure.parse_log(f.read().decode(errors="replace"), year)
        return lines

    def bmc_off_time(self, name: str, since: float) -> float | None:
        """When the BMC recorded the power-off (its hook had killed the node by then)."""
        try:
            events = (self.directory / "bmc" / name / "events.log").read_text().splitlines()
        except FileNotFoundError:
            return None
        for line in reversed(events):
            stamp, _, what = line.partition(" ")
            if what == "off" and float(stamp) >= since:
                return float(stamp)
        return None

    def wait_healthy(self, what: str, timeout: float) -> ClusterStatus:
        """All nodes online and quorate, sign-state on all, the validator on exactly one node."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.status()
            if (s is not None and s.quorate and set(s.online) == set(self.names)
                    and set(trio.clone_nodes(s, trio.SIGNSTATE)) == set(self.names)
                    and len(s.started_on(VALIDATOR)) == 1):  # fmt: skip
                return s
            if time.monotonic() > deadline:
                raise DrillError(f"{what}: the trio was not healthy after {timeout:g} s")
            time.sleep(0.5)

    # -- the scenario --

    def freeze(self, name: str) -> list[tuple[int, int | None]]:
        """SIGSTOP every process of node ``name`` (its PID namespace); returns them (pid, start time)."""
        record = json.loads((self.directory / "nodes" / name / RECORD_FILE).read_text())
        frozen = []
        for pid in processes_in(record["pid_namespace"]):
            started = trio.start_time(pid)
            try:
                os.kill(pid, signal.SIGSTOP)
                frozen.append((pid, started))
            except ProcessLookupError:
                pass
        if not frozen:
            raise DrillError(f"{name} has no process to freeze")
        return frozen

    @staticmethod
    def thaw(frozen: list[tuple[int, int | None]]) -> int:
        """SIGCONT what is left of the frozen processes (fencing may have killed them); how many."""
        thawed = 0
        for pid, started in frozen:
            if trio.same_process(pid, started):
                try:
                    os.kill(pid, signal.SIGCONT)
                    thawed += 1
                except ProcessLookupError:
                    pass
        return thawed

    def power_cut_active(self, iteration: int) -> dict[str, Any]:
        return self.failover(iteration, "power-cut-active")

    def freeze_active(self, iteration: int) -> dict[str, Any]:
        return self.failover(iteration, "freeze-active")

    def failover(self, iteration: int, scenario: str) -> dict[str, Any]:
        """Cut (power-cut-active) or freeze (freeze-active: SIGSTOP its whole PID
        namespace until the validator signs elsewhere, longer than the token,
        then SIGCONT) the node where the validator runs, and measure."""
        before = self.wait_healthy("before the failure", self.timeout)
        target = before.started_on(VALIDATOR)[0]
        offsets = self.log_offsets()
        frozen: list[tuple[int, int | None]] = []
        if scenario == "freeze-active":
            self.say(f"[{iteration}] the validator runs on {target}: freezing every process of it (SIGSTOP)")
            asked = time.time()
            frozen = self.freeze(target)
            cut = time.time()
        else:
            self.say(f"[{iteration}] the validator runs on {target}: cutting its power through its BMC")
            asked = time.time()
            trio.bmc_chassis(self.directory, target, "off")
            cut = self.bmc_off_time(target, asked - 1) or time.time()

        dual_active_polls = 0
        deadline = time.monotonic() + self.timeout
        new_node = None
        while True:
            s = self.status(avoid=target)
            running = s.started_on(VALIDATOR) if s is not None else ()
            if len(running) > 1:
                dual_active_polls += 1
            if len(running) == 1 and running[0] != target:
                entries, _, _ = read_journals(journal_paths(self.directory))
                if measure.signing_gap(entries, cut, target).first_after is not None:
                    new_node = running[0]
                    break
            if time.monotonic() > deadline:
                raise DrillError(f"[{iteration}] the validator did not sign elsewhere within {self.timeout:g} s "
                                 f"of cutting {target}")  # fmt: skip
            time.sleep(0.3)
        self.say(f"[{iteration}] the validator signs on {new_node} again; reading the cluster's logs")
        thawed = None
        if frozen:
            thawed = self.thaw(frozen)
            self.say(f"[{iteration}] {target} thawed after {time.time() - cut:.1f} s (SIGCONT to {thawed} "
                     f"processes fencing left)")  # fmt: skip
            time.sleep(2.0)  # time for a thawed signer to try
        year = datetime.datetime.fromtimestamp(cut).year
        events = measure.cluster_events(self.log_lines(offsets, year), target, cut - 1)
        if events.fenced is None:
            self.say(f"[{iteration}] no fence confirmation in the logs yet; waiting")
            until = time.monotonic() + 60
            while events.fenced is None and time.monotonic() < until:
                time.sleep(1)
                events = measure.cluster_events(self.log_lines(offsets, year), target, cut - 1)

        if trio.bmc_power(self.directory, target) != "on":
            self.say(f"[{iteration}] powering {target} back on through its BMC")
            trio.bmc_chassis(self.directory, target, "on")
        else:
            self.say(f"[{iteration}] fencing rebooted {target}; waiting for it to rejoin")
        back = time.monotonic()
        self.wait_healthy(f"[{iteration}] {target} rejoining", 180)
        rejoin = round(time.monotonic() - back, 2)

        entries, _, _ = read_journals(journal_paths(self.directory))
        gap = measure.signing_gap(entries, cut, target)
        report = check_journals(journal_paths(self.directory))
        ghost = measure.signed_after(entries, target, cut)  # the cut or frozen node must never sign again
        dual = dual_active_polls + measure.overlapping_signers(entries, asked - 30)
        phases = measure.phases(cut, events, gap)
        ok = (
            report.ok and not ghost and dual == 0 and new_node != target
            and all(v is not None and v > 0 for v in phases.values())
        )  # fmt: skip
        record = {
            "iteration": iteration, "scenario": scenario, "target": target, "new_node": new_node, "thawed": thawed,
            "cut": cut, "asked": asked,
            "fence_request": events.fence_request.time if events.fence_request else None,
            "fenced": events.fenced.time if events.fenced else None,
            "promoted": events.promoted.time if events.promoted else None,
            "promoted_on": events.new_node,
            "last_signature_before": gap.last_before.to_dict() if gap.last_before else None,
            "first_signature_after": gap.first_after.to_dict() if gap.first_after else None,
            "phases": phases, "rejoin_seconds": rejoin,
            "double_signs": len(report.double_signs), "regressions": len(report.regressions),
            "dual_active": dual, "signed_after_cut_by_target": len(ghost),
            "journals": report.entries, "ok": ok,
        }  # fmt: skip
        shown = ", ".join(f"{k} {v:.2f} s" if v is not None else f"{k} ?" for k, v in phases.items())
        self.say(f"[{iteration}] {target} -> {new_node}: {shown}; {target} rejoined in {rejoin} s; "
                 f"double signs {record['double_signs']}, dual-active {dual}")  # fmt: skip
        return record

    def run(self, scenario: str, iterations: int) -> list[dict[str, Any]]:
        if scenario not in SCENARIOS:
            raise DrillError(f"unknown scenario {scenario!r} (known: {', '.join(SCENARIOS)})")
        step = {"power-cut-active": self.power_cut_active, "freeze-active": self.freeze_active}[scenario]
        return [step(i) for i in range(1, iterations + 1)]
