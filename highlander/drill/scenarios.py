"""The drill scenarios, run on a :class:`~highlander.drill.site.Site`: the lab
trio (``highlander lab up``) or a real cluster over SSH.

Every scenario is one row of :data:`SCENARIOS` (name, one-line summary, the
method that runs one iteration, the failure it needs the site to cause): the
CLI's choices, its help and the dispatch all read that table. Each iteration
checks its scenario's expected outcome and lists what was not met under
``failed_expectations``; its ``ok`` is false then, and always when a journal
holds a double sign, the chain committed evidence against our validator, or
two signers overlapped.

Where the validator signs and what its signatures are depends on the site's
workload (:mod:`highlander.drill.workload`): the demo signer's resource and
journals, or on a CometBFT chain the promoted ``privval`` and its log (the
stock stack's FilePV signer: the chain's commits). On a chain the chain is
the checker (:meth:`Drill.judge`): every height since the last one judged,
evidence naming our validator, and the missed blocks; evidence that turns up
between iterations stops the drill (:meth:`Drill.check_chain`).

Failovers (the node where the validator runs fails; it must move to the
other active node, the failed node must be fenced and never sign again):

- ``power-cut-active``: its power is cut through its BMC (on the lab, the
  BMC's hook kills the node's PID namespace at once);
- ``freeze-active`` (lab only): every process of it is frozen (SIGSTOP to its
  PID namespace) until the validator signs elsewhere, longer than the token,
  then thawed (SIGCONT);
- ``partition-active`` (lab only): its cable is pulled (its port on the
  switch down); the majority fences it through its BMC (on the switch), and
  the cable goes back once the validator signs elsewhere: the port is not the
  node's, so no reboot puts it back;
- ``bmc-down-and-power-cut-active`` (lab only): its BMC stops answering
  (SIGSTOP to its ipmi_sim), then its power is cut without the BMC. Nothing
  may take over while it cannot be fenced: for :data:`HOLD` seconds no
  validator may start and nobody may sign. Then the BMC answers again, the
  cluster's next fencing attempt succeeds and the failover completes
  (measured from there too).

The other scenarios:

- ``kill-signer``: SIGKILL to the signer under the validator agent on the
  active node; the monitor sees it and Pacemaker restarts it on the same node,
  without fencing anyone;
- ``power-cut-standby``, ``power-cut-witness``: the power of the other active
  node or of the witness is cut; the validator keeps signing where it is (the
  largest pause between signatures stays under :data:`MAX_GAP`), the node is
  fenced and rejoins;
- ``two-nodes-down``: the standby and the witness lose power at once; the
  active node loses quorum and stops the validator, nobody signs after the cut
  (but within :data:`SIGN_GRACE`); once both are powered on again the
  validator signs again (measured) and the trio is healthy.

Every iteration ends with the trio healthy again, keeps the journal entries
from :data:`WINDOW` seconds before the failure to as long after the recovery
(``signatures``: the timeline is drawn from them) and the phases of
:data:`highlander.drill.report.PHASES` (None where one does not apply).
A soak (:meth:`Drill.soak`) runs the scenarios the site can cause in a
shuffled, repeated order.

Between iterations nothing is asked of the cluster, so nothing may move:
before each iteration (:meth:`Drill.check_placement`) the validator must run
where the previous one left it, with no start or stop of it in the logs
since. Anything else is an *unasked move*, a finding of its own in the
report (the drill FAILS); when it leaves the next iteration nothing valid to
measure (the validator not on exactly one node, or banned from an active
node by a fail count), the drill stops there. A failed iteration (expected
outcome not met, a timeout, an error) and an unasked move keep their
evidence (:mod:`highlander.drill.evidence`) in the report directory before
the next iteration runs or anything is taken down; an error ends the drill
after that.
"""

from __future__ import annotations

import datetime
import functools
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from highlander.adapters.pacemaker import ClusterStatus
from highlander.drill import evidence, measure
from highlander.drill.chain_check import missed_blocks
from highlander.drill.journal import Entry, check_journals, read_journals
from highlander.drill.report import PHASES
from highlander.drill.site import FAILURES, Site
from highlander.drill.workload import DEMO, privval_entries
from highlander.signstate.register import HRS

SIGNSTATE = "signstate"
PACEMAKER_LOG = "/var/log/pacemaker/pacemaker.log"
# Longer than detection (token 3 s + consensus 3.6 s, ~8 s measured) and two
# failed fencing attempts. Measured on the lab: an attempt against a silent BMC
# fails after ~11 s (the IPMI agent's 5 s login timeout, tried twice) and the
# controller asks again at once, up to stonith-max-attempts (10, ~110 s) before
# it gives up until the cluster-recheck-interval (15 min): 30 s spends two or
# three attempts, and the one under way when the BMC answers again succeeds.
HOLD = 30.0
# A signature stamped just after the cut whose advance the sign-state majority
# answered before it: the one exception two-nodes-down allows.
SIGN_GRACE = 0.5
# The largest pause between consecutive signatures allowed while the standby or
# the witness fails: 6 block times (0.5 s each). Measured on the lab (2 cores):
# the pause stays near one block time; a replica that stops answering costs the
# sign-state register no wait, as two of three still answer.
MAX_GAP = 3.0
# Heights before the drill's start read for a signer seen only on the chain.
CHAIN_LOOKBACK = 30
# Journal entries kept around each failure for the timeline.
WINDOW = 10.0
REJOIN_TIMEOUT = 180.0
# Pacemaker's INFINITY as crm_mon shows a fail count: the node is banned for the resource.
BANNED = 1000000


class DrillError(RuntimeError):
    """The drill could not run or the cluster did not recover; the message says why."""


is_signer = DEMO.is_signer


def unmet(expectations: dict[str, bool]) -> list[str]:
    """The expectations (each said as it should be) that were not met."""
    return [what for what, met in expectations.items() if not met]


@dataclass(frozen=True)
class Placement:
    """Where the validator ran when an iteration ended (empty: nowhere), when
    that was, and how far each node's Pacemaker log went then."""

    nodes: tuple[str, ...]
    time: float
    offsets: dict[str, int]


@dataclass(frozen=True)
class Failure:
    """How a failover scenario fails the active node: ``kind`` is a failure of
    :data:`~highlander.drill.site.FAILURES`, ``action`` says it for the progress line.

    A failure that lets the cluster fail over is undone once the validator
    signs elsewhere; one that blocks fencing (``hold`` > 0) is held that long,
    with nothing allowed to move, and then undone so that the failover can
    happen.
    """

    action: str
    kind: str
    hold: float = 0.0


class Drill:
    """The scenarios on ``site``; ``say`` gets the progress lines, ``timeout``
    bounds each wait for the cluster (a takeover, a fencing, a restart).
    ``report_dir`` receives the evidence of failures (under ``evidence/``);
    without one, a temporary directory is made when the first is kept."""

    def __init__(
        self, site: Site, say: Callable[[str], None] = print, *, timeout: float = 120.0, report_dir: Path | None = None
    ) -> None:
        self.site = site
        self.names = [n.name for n in site.inventory.nodes]
        self.say = say if isinstance(say, evidence.Progress) else evidence.Progress(say)
        self.timeout = timeout
        self.report_dir = report_dir
        self.findings: list[dict[str, Any]] = []  # the unasked moves
        self.started = time.time()
        self.workload = site.workload
        self.resource = site.workload.resource
        self.actives = [n.name for n in site.inventory.nodes if n.role == "active"]
        # node -> (bytes and lines of its signer log read, the epoch there, its entries)
        self._signer_logs: dict[str, tuple[int, int, int, list[Entry]]] = {}
        self.chain = site.chain()
        self._checked = 0  # the last height of the chain judged: the first check reads it all
        self._chain_read = 0  # the last height read for chain_entries
        self._chain_signed: list[Entry] = []

    # -- looking at the cluster --

    def log_offsets(self) -> dict[str, int]:
        return {name: self.site.file_size(name, PACEMAKER_LOG) for name in self.names}

    def log_lines(self, offsets: dict[str, int], since: float) -> list[measure.LogLine]:
        """Every node's Pacemaker log lines written after ``offsets``."""
        year = datetime.datetime.fromtimestamp(since).year
        lines: list[measure.LogLine] = []
        for name, offset in offsets.items():
            text = self.site.read_from(name, PACEMAKER_LOG, offset).decode(errors="replace")
            lines += measure.parse_log(text, year)
        return lines

    def entries(self) -> list[Entry]:
        """Every signature so far: the journals, or the signer logs of the active nodes
        (read on from where the last call stopped)."""
        if self.workload.judged_by_the_chain_only and self.chain is not None:
            return self.chain_entries()
        if self.workload.signer_log is None:
            entries, _, _ = read_journals(self.site.journal_paths())
            return entries
        found: list[Entry] = []
        for node in self.actives:
            read, lines, epoch, known = self._signer_logs.get(node, (0, 0, 0, []))
            chunk = self.site.read_from(node, self.workload.signer_log, read)
            complete = chunk[: chunk.rfind(b"\n") + 1]
            if complete:
                text = complete.decode(errors="replace")
                more, epoch = privval_entries(text, node, f"{node}:{self.workload.signer_log}", lines, epoch)
                known = known + more
                self._signer_logs[node] = (read + len(complete), lines + text.count("\n"), epoch, known)
            found += known
        return found

    def chain_entries(self) -> list[Entry]:
        """Our validator's committed signatures since the drill began, as entries
        of the node ``chain`` (the chain does not say which node signed)."""
        assert self.chain is not None
        latest = self.chain.reader.latest()
        first = self._chain_read + 1 if self._chain_read else max(1, latest - CHAIN_LOOKBACK)
        if latest - 1 >= first:
            verdict = self.chain.reader.verdict(self.chain.address, first, latest - 1)
            self._chain_signed += [
                Entry("chain", h.height, self.chain.address, HRS(h.height, 0, 3), "", "chain", 0, h.signed_at, "")
                for h in verdict.heights
                if h.ours == "committed" and h.signed_at is not None
            ]
            self._chain_read = latest - 1
        return list(self._chain_signed)

    def signing_on(self, status: ClusterStatus | None) -> tuple[str, ...]:
        """The nodes where the validator signs (its resource started, or its signer promoted)."""
        return self.workload.signing_on(status) if status is not None else ()

    def wait_healthy(self, what: str, timeout: float) -> ClusterStatus:
        """All nodes online and quorate, sign-state on all, the validator on exactly one node."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.site.status()
            if (
                s is not None
                and s.quorate
                and set(s.online) == set(self.names)
                and set(s.clone_nodes(SIGNSTATE)) == set(self.names)
                and self.workload.ready(s, self.actives)
            ):
                return s
            if time.monotonic() > deadline:
                raise DrillError(f"{what}: the trio was not healthy after {timeout:g} s")
            time.sleep(0.5)

    def monitor_interval(self) -> float:
        """Seconds between the validator's process monitors, from the inventory."""
        return float(self.site.inventory.timeouts.monitor_interval)

    def roles(self, active: str) -> dict[str, str]:
        """Who is who around ``active``: "standby" (the other active-capable node) and "witness"."""
        standby = [n.name for n in self.site.inventory.nodes if n.role == "active" and n.name != active]
        witness = [n.name for n in self.site.inventory.nodes if n.role == "witness"]
        if len(standby) != 1 or len(witness) != 1:
            raise DrillError("the drill expects two active nodes and one witness")
        return {"standby": standby[0], "witness": witness[0]}

    def signer_pid(self, node: str) -> int:
        """The signer's PID inside ``node``: the one the validator agent recorded,
        if its command line is exactly the demo signer on that node."""
        runner = self.site.runner(node)
        pidfile = self.workload.pidfile
        recorded = runner.run(["cat", pidfile], timeout=10)
        if not recorded.ok or not recorded.stdout.strip().isdigit():
            raise DrillError(f"{node}: no signer PID in {pidfile}")
        pid = int(recorded.stdout.strip())
        cmdline = runner.run(["cat", f"/proc/{pid}/cmdline"], timeout=10).stdout
        if not self.workload.is_signer(cmdline.split("\0"), node):
            raise DrillError(f"{node}: PID {pid} in {pidfile} is not the signer: {cmdline!r}")
        return pid

    # -- waiting --

    def wait_takeover(self, iteration: int, target: str, cut: float) -> tuple[str, int]:
        """Until the validator runs on one node other than ``target`` and has signed
        there after ``cut``; returns that node and how often crm_mon showed it twice."""
        dual_polls = 0
        deadline = time.monotonic() + self.timeout
        while True:
            s = self.site.status(avoid=target)
            running = self.signing_on(s)
            if len(running) > 1:
                dual_polls += 1
            if len(running) == 1 and running[0] != target:
                if measure.signing_gap(self.entries(), cut, target).first_after is not None:
                    return running[0], dual_polls
            if time.monotonic() > deadline:
                raise DrillError(
                    f"[{iteration}] the validator did not sign elsewhere within {self.timeout:g} s of failing {target}"
                )
            time.sleep(0.3)

    def wait_fenced(self, offsets: dict[str, int], target: str, cut: float, timeout: float) -> measure.ClusterEvents:
        """The cluster's fencing of ``target`` from the logs; waits up to ``timeout`` for its confirmation."""
        until = time.monotonic() + timeout
        while True:
            events = measure.cluster_events(
                self.log_lines(offsets, cut), target, cut - 1, self.resource, self.workload.takeover
            )
            if events.fenced is not None or time.monotonic() > until:
                return events
            time.sleep(1.0)

    def rejoin(self, iteration: int, nodes: Sequence[str]) -> float:
        """Power on whichever of ``nodes`` fencing left off, wait until the trio is
        healthy; returns the seconds that took."""
        off = [n for n in nodes if self.site.power_state(n) != "on"]
        if off:
            self.say(f"[{iteration}] powering {', '.join(off)} back on through the BMC")
            self.site.power(off, "on")
        started = time.monotonic()
        self.wait_healthy(f"[{iteration}] {', '.join(nodes)} rejoining", REJOIN_TIMEOUT)
        return round(time.monotonic() - started, 2)

    def hold(self, target: str, cut: float, seconds: float) -> dict[str, Any]:
        """Watch for ``seconds`` after ``cut`` that nothing takes over from ``target``:
        polls where the validator ran on another node, signatures after the cut."""
        self.say(f"  holding {seconds:g} s: nothing may take over while {target} cannot be fenced")
        started_elsewhere = 0
        while time.time() < cut + seconds:
            s = self.site.status(avoid=target)
            if set(self.signing_on(s)) - {target}:
                started_elsewhere += 1
            time.sleep(1.0)
        signed = [e for e in self.entries() if e.time > cut]
        return {
            "hold_seconds": round(time.time() - cut, 1),
            "started_during_hold": started_elsewhere,
            "signed_during_hold": len(signed),
        }

    # -- the record --

    def finish(
        self,
        iteration: int,
        scenario: str,
        target: str,
        asked: float,
        cut: float,
        recovered: float,
        dual_polls: int,
        failed: list[str],
        fields: dict[str, Any],
    ) -> dict[str, Any]:
        """The iteration's record: the scenario's ``fields`` and ``failed`` expectations,
        the journals checked, the signatures of the window, and one progress line."""
        time.sleep(max(0.0, recovered + WINDOW - time.time()))  # the window's end is in the journals
        entries = self.entries()
        dual = dual_polls + measure.overlapping_signers(entries, asked - 30)
        record: dict[str, Any] = {
            "iteration": iteration,
            "scenario": scenario,
            "target": target,
            "cut": cut,
            "asked": asked,
            "new_node": None,
            "fence_request": None,
            "fenced": None,
            "promoted": None,
            "promoted_on": None,
            **fields,
            "dual_active": dual,
            "signatures": measure.signature_rows(entries, cut - WINDOW, recovered + WINDOW),
            "failed_expectations": failed,
        }
        clean = self.judge(record, cut, recovered)
        record["ok"] = clean and dual == 0 and not failed
        shown = ", ".join(f"{k} {v:.2f} s" for k, v in record["phases"].items() if v is not None)
        if self.chain is None:
            clean_means, counts = "clean journals, one signer", f"double signs {record['double_signs']}"
        else:
            missed = record.get("missed_blocks", {}).get("missed")
            clean_means = "no evidence against our validator, one signer"
            counts = (
                f"missed blocks {'?' if missed is None else missed}; evidence against our validator "
                f"{record['double_signs']}"
            )
        verdict = "OK" if record["ok"] else f"FAILED (not met: {'; '.join(failed) or clean_means})"
        self.say(f"[{iteration}] {shown}; {counts}, dual-active {dual}: {verdict}")
        return record

    def judge(self, record: dict[str, Any], cut: float | None, recovered: float | None) -> bool:
        """Check the iteration for double signs, into ``record``; True when clean.

        The demo signer's journals, or the chain: every height since the
        previous iteration's last, our signature on each (the timeline's
        ``blocks``), the evidence naming our validator (``double_signs``,
        ``evidence``), and the blocks missed from the failure and from the
        fence request to our next committed signature."""
        if self.chain is None:
            report = check_journals(self.site.journal_paths())
            record.update(
                {
                    "double_signs": len(report.double_signs),
                    "regressions": len(report.regressions),
                    "journals": report.entries,
                }
            )
            return report.ok
        latest = self.chain.reader.latest()
        verdict = self.chain.reader.verdict(self.chain.address, self._checked + 1, latest - 1)
        self._checked = latest - 1
        evidence = verdict.evidence
        record.update({"double_signs": len(evidence), "regressions": 0, "chain": verdict.to_dict()})
        if cut is not None:
            since = cut - WINDOW
            until = (recovered or time.time()) + WINDOW
            record["blocks"] = [h.row() for h in verdict.heights if since <= h.time <= until]
            record["missed_blocks"] = missed_blocks(verdict.heights, cut).to_dict()
            if record.get("fence_request"):
                record["missed_after_detection"] = missed_blocks(verdict.heights, record["fence_request"]).to_dict()
        if evidence:
            self.say(
                f"  THE CHAIN COMMITTED EVIDENCE of a double sign by our validator {self.chain.address}: "
                + "; ".join(
                    f"{e.kind.rsplit('/', 1)[-1]} for height {e.vote_height} round {e.vote_round}, "
                    f"committed at height {e.height}"
                    for e in evidence
                )
            )
        return not evidence

    @staticmethod
    def events_fields(events: measure.ClusterEvents) -> dict[str, Any]:
        return {
            "fence_request": events.fence_request.time if events.fence_request else None,
            "fenced": events.fenced.time if events.fenced else None,
            "promoted": events.promoted.time if events.promoted else None,
            "promoted_on": events.new_node,
        }

    # -- the scenarios --

    def failover(self, iteration: int, scenario: str, failure: Failure) -> dict[str, Any]:
        """Fail the node where the validator runs; it must sign on the other active
        node, the failed node be fenced and never sign again."""
        before = self.wait_healthy("before the failure", self.timeout)
        target = self.signing_on(before)[0]
        offsets = self.log_offsets()
        self.say(f"[{iteration}] the validator runs on {target}: {failure.action}")
        asked = time.time()
        cut, undo = self.site.inflict(failure.kind, target)
        fields: dict[str, Any] = {}
        try:
            if failure.hold:
                fields.update(self.hold(target, cut, failure.hold))
                if undo is not None:
                    fields.update(undo())
                    undo = None
            new_node, dual_polls = self.wait_takeover(iteration, target, cut)
            self.say(f"  the validator signs on {new_node} {time.time() - cut:.1f} s after the failure")
        finally:
            if undo is not None:
                fields.update(undo())
        events = self.wait_fenced(offsets, target, cut, 60)
        rejoin = self.rejoin(iteration, [target])
        entries = self.entries()
        gap = measure.signing_gap(entries, cut, target)
        ghost = measure.signed_after(entries, target, cut)  # the failed node must never sign again
        phases = measure.phases(cut, events, gap)
        first = gap.first_after.time if gap.first_after else None
        if "restored" in fields:  # the BMC answered again: the part of the failover after that
            fenced = events.fenced.time if events.fenced else None
            fields["after_restore"] = {
                "fenced": measure.between(fields["restored"], fenced),
                "signing": measure.between(fields["restored"], first),
            }
            fields["fence_failures"] = measure.fence_failures(self.log_lines(offsets, cut), target, cut)
        failed = unmet(
            {
                "the failed node never signs after the failure": not ghost,
                "the validator moves to the other active node": new_node != target,
                "every phase is measured": all(v is not None and v > 0 for v in phases.values()),
                "nothing takes over while fencing is impossible": not fields.get("started_during_hold")
                and not fields.get("signed_during_hold"),
            }
        )
        return self.finish(
            iteration,
            scenario,
            target,
            asked,
            cut,
            first or time.time(),
            dual_polls,
            failed,
            {
                "new_node": new_node,
                **self.events_fields(events),
                **fields,
                "last_signature_before": gap.last_before.to_dict() if gap.last_before else None,
                "first_signature_after": gap.first_after.to_dict() if gap.first_after else None,
                "phases": phases,
                "rejoin_seconds": rejoin,
                "signed_after_cut_by_target": len(ghost),
            },
        )

    def kill_signer(self, iteration: int, scenario: str) -> dict[str, Any]:
        """SIGKILL the signer on the active node: Pacemaker must restart it there
        (a promotable signer: restart it and promote an instance, there or on
        the standby, whose signer runs already), fencing nobody."""
        before = self.wait_healthy("before the failure", self.timeout)
        target = self.signing_on(before)[0]
        offsets = self.log_offsets()
        # The kill lands anywhere in the monitor's period: the iterations' own rhythm
        # (a restart, then the journal window) would otherwise keep it in one place.
        time.sleep(random.uniform(0.0, self.monitor_interval()))
        pid = self.signer_pid(target)
        self.say(f"[{iteration}] the validator runs on {target}: SIGKILL to its signer (PID {pid} in the node)")
        asked = time.time()
        self.site.runner(target).run(["kill", "-KILL", str(pid)], check=True, timeout=10)
        cut = time.time()
        moved = 0
        deadline = time.monotonic() + self.timeout
        while True:
            s = self.site.status()
            if set(self.signing_on(s)) - {target}:
                moved += 1
            lines = self.log_lines(offsets, cut)
            restart = measure.restart_events(lines, target, cut - 1, self.resource, self.workload.takeover)
            if restart.failed is not None and restart.started is None and not self.workload.in_place:
                anywhere = measure.first_start(lines, restart.failed.time, self.resource, self.workload.takeover)
                restart = measure.RestartEvents(restart.failed, anywhere)
            gap = measure.signing_gap(self.entries(), cut, None)
            if restart.started is not None and gap.first_after is not None:
                break
            if time.monotonic() > deadline:
                raise DrillError(f"[{iteration}] the signer was not restarted and signing within {self.timeout:g} s")
            time.sleep(0.5)
        where = gap.first_after.node
        self.say(f"  restarted; signing again on {where} {gap.first_after.time - cut:.1f} s after the kill")
        self.wait_healthy(f"[{iteration}] after the restart", self.timeout)
        fencing = measure.cluster_events(self.log_lines(offsets, cut), target, cut - 1).fence_request
        phases = {
            "detection": measure.between(cut, restart.failed.time if restart.failed else None),
            "fencing": None,
            "promotion": measure.between(restart.failed.time if restart.failed else None, restart.started.time),
            "signing_gap": None if gap.seconds is None else round(gap.seconds, 3),
            "total": measure.between(cut, gap.first_after.time),
        }
        in_place = self.workload.in_place
        failed = unmet(
            {
                "the validator never runs on another node": not moved or not in_place,
                "nobody is fenced": fencing is None,
                "the signer signs again on the same node": where == target or not in_place,
                "every phase but fencing is measured": all(v is not None for k, v in phases.items() if k != "fencing"),
            }
        )
        return self.finish(
            iteration,
            scenario,
            target,
            asked,
            cut,
            gap.first_after.time,
            0,
            failed,
            {
                "new_node": where,
                "promoted": restart.started.time,
                "promoted_on": where,
                "signer_pid": pid,
                "monitor_failed": restart.failed.time if restart.failed else None,
                "fence_request": fencing.time if fencing else None,
                "last_signature_before": gap.last_before.to_dict() if gap.last_before else None,
                "first_signature_after": gap.first_after.to_dict(),
                "phases": phases,
            },
        )

    def power_cut_bystander(self, iteration: int, scenario: str, role: str) -> dict[str, Any]:
        """Cut the power of the standby or the witness: the validator must keep
        signing where it is, the node be fenced and rejoin."""
        before = self.wait_healthy("before the failure", self.timeout)
        active = self.signing_on(before)[0]
        target = self.roles(active)[role]
        offsets = self.log_offsets()
        self.say(f"[{iteration}] the validator runs on {active}: cutting the power of the {role} {target}")
        asked = time.time()
        (cut,) = self.site.power([target], "off")
        moved = 0
        deadline = time.monotonic() + self.timeout
        while True:
            s = self.site.status(avoid=target)
            if set(self.signing_on(s)) - {active}:
                moved += 1
            events = measure.cluster_events(
                self.log_lines(offsets, cut), target, cut - 1, self.resource, self.workload.takeover
            )
            if events.fenced is not None:
                break
            if time.monotonic() > deadline:
                raise DrillError(f"[{iteration}] {target} was not fenced within {self.timeout:g} s")
            time.sleep(0.5)
        self.say(f"  {target} fenced {events.fenced.time - cut:.1f} s after the cut; waiting for it to rejoin")
        rejoin = self.rejoin(iteration, [target])
        recovered = time.time()
        entries = self.entries()
        gap = measure.largest_gap(entries, cut, recovered)
        elsewhere = [e for e in entries if e.time > cut and e.node != active]
        phases = {
            "detection": measure.between(cut, events.fence_request.time if events.fence_request else None),
            "fencing": measure.between(events.fence_request.time if events.fence_request else None, events.fenced.time),
            "promotion": None,
            "signing_gap": None if gap.seconds is None else round(gap.seconds, 3),
            "total": None,
        }
        failed = unmet(
            {
                "the validator keeps signing where it runs": not moved and not elsewhere,
                f"no pause between signatures over {MAX_GAP:g} s": gap.seconds is not None and gap.seconds <= MAX_GAP,
                "the cut node is fenced": events.fence_request is not None,
            }
        )
        return self.finish(
            iteration,
            scenario,
            target,
            asked,
            cut,
            recovered,
            0,
            failed,
            {
                "new_node": active,
                **self.events_fields(events),
                "promoted": None,
                "promoted_on": None,
                "max_gap": phases["signing_gap"],
                "max_gap_bound": MAX_GAP,
                "max_gap_between": [
                    gap.last_before.to_dict() if gap.last_before else None,
                    gap.first_after.to_dict() if gap.first_after else None,
                ],
                "phases": phases,
                "rejoin_seconds": rejoin,
            },
        )

    def two_nodes_down(self, iteration: int, scenario: str) -> dict[str, Any]:
        """Cut the standby and the witness at once: the active node must lose quorum
        and stop the validator, nobody sign; both powered on, signing resumes."""
        before = self.wait_healthy("before the failure", self.timeout)
        active = self.signing_on(before)[0]
        targets = sorted(self.roles(active).values())
        offsets = self.log_offsets()
        self.say(f"[{iteration}] the validator runs on {active}: cutting the power of {' and '.join(targets)}")
        asked = time.time()
        cut = max(self.site.power(targets, "off"))  # quorum is lost with the second one
        deadline = time.monotonic() + self.timeout
        while (
            loss := measure.quorum_loss(self.log_lines(offsets, cut), active, cut - 1, self.resource)
        ).stopped is None:
            if time.monotonic() > deadline:
                self.site.power(targets, "on")  # the next drill finds the trio whole
                raise DrillError(f"[{iteration}] {active} did not stop the validator within {self.timeout:g} s")
            time.sleep(0.5)
        self.say(
            f"  {active} stopped the validator {loss.stopped.time - cut:.1f} s after the cut; powering "
            f"{' and '.join(targets)} on"
        )
        time.sleep(2.0)  # a last chance for a late signature to show
        powered = time.time()
        self.site.power(targets, "on")
        deadline = time.monotonic() + REJOIN_TIMEOUT
        while (gap := measure.signing_gap(self.entries(), powered, None)).first_after is None:
            if time.monotonic() > deadline:
                raise DrillError(f"[{iteration}] nobody signed within {REJOIN_TIMEOUT:g} s of powering on")
            time.sleep(0.5)
        first = gap.first_after
        self.say(f"  signing again on {first.node} {first.time - powered:.1f} s after the power-on")
        self.wait_healthy(f"[{iteration}] {' and '.join(targets)} rejoining", REJOIN_TIMEOUT)
        entries = self.entries()
        outage = measure.signing_gap(entries, cut, None)
        late = [e for e in entries if cut + SIGN_GRACE < e.time < first.time]
        started = measure.first_start(self.log_lines(offsets, cut), powered, self.resource, self.workload.takeover)
        phases = {
            "detection": measure.between(cut, loss.lost.time if loss.lost else None),
            "fencing": None,
            "promotion": measure.between(powered, started.time if started else None),
            "signing_gap": None if outage.seconds is None else round(outage.seconds, 3),
            "total": measure.between(cut, first.time),
        }
        failed = unmet(
            {
                f"nobody signs after the cut (but within {SIGN_GRACE:g} s)": not late,
                f"{active} loses quorum": loss.lost is not None,
            }
        )
        return self.finish(
            iteration,
            scenario,
            active,
            asked,
            cut,
            first.time,
            0,
            failed,
            {
                "targets": targets,
                "new_node": first.node,
                "powered_on": powered,
                "promoted": started.time if started else None,
                "promoted_on": first.node,
                "quorum_lost": loss.lost.time if loss.lost else None,
                "validator_stopped": loss.stopped.time,
                "stopped_seconds": measure.between(cut, loss.stopped.time),
                "resume_seconds": measure.between(powered, first.time),
                "signed_within_grace": len([e for e in entries if cut < e.time <= cut + SIGN_GRACE]),
                "last_signature_before": outage.last_before.to_dict() if outage.last_before else None,
                "first_signature_after": first.to_dict(),
                "phases": phases,
            },
        )

    def runnable(self) -> list[str]:
        """The scenarios whose failure this site can cause."""
        return [s.name for s in SCENARIOS.values() if s.needs is None or s.needs in self.site.failures]

    def check_runnable(self, scenario: str) -> None:
        if scenario not in SCENARIOS:
            raise DrillError(f"unknown scenario {scenario!r} (known: {', '.join(SCENARIOS)})")
        needs = SCENARIOS[scenario].needs
        if needs is not None and needs not in self.site.failures:
            raise DrillError(
                f"{scenario} must {FAILURES[needs]}, which the drill can do on the lab only; "
                f"here it can run: {', '.join(self.runnable())}"
            )

    def run(self, scenario: str, iterations: int) -> list[dict[str, Any]]:
        self.check_runnable(scenario)
        return self.iterate([scenario] * iterations)

    def soak(self, count: int, seed: int) -> list[dict[str, Any]]:
        """``count`` iterations of mixed scenarios: rounds of every scenario this
        site can cause, each round in its own order (shuffled from ``seed``, so a
        soak can be repeated exactly). The records name their scenario."""
        shuffle = random.Random(seed).shuffle
        order: list[str] = []
        while len(order) < count:
            round_ = self.runnable()
            shuffle(round_)
            order += round_
        self.say(f"soak of {count} iterations (seed {seed}): {', '.join(order[:count])}")
        return self.iterate(order[:count])

    def iterate(self, order: Sequence[str]) -> list[dict[str, Any]]:
        """One iteration of each scenario in ``order``, each after checking that
        nothing moved since the previous one. A failed iteration keeps its
        evidence before the next one runs; an error (a timeout, the cluster not
        recovering) or an unasked move that leaves nothing valid to measure
        ends the drill, with the records so far."""
        records: list[dict[str, Any]] = []
        left = self.placement()
        for iteration, name in enumerate(order, 1):
            if not self.check_chain(iteration):
                break
            if left is not None and not self.check_placement(iteration, left):
                break
            try:
                record = SCENARIOS[name].step(self, iteration, name)
            except Exception as exc:  # noqa: BLE001 (any failure keeps its evidence; the drill stops)
                self.say(f"[{iteration}] FAILED: {exc}")
                record = self.failed_record(iteration, name, exc)
                record["evidence"] = self.keep_evidence(
                    f"{iteration:02d}-{name}", f"iteration {iteration} ({name}) stopped: {exc}", record, exc
                )
                records.append(record)
                break
            if not record["ok"]:
                what = "; ".join(record.get("failed_expectations") or ["double signs or two signers"])
                record["evidence"] = self.keep_evidence(
                    f"{iteration:02d}-{name}", f"iteration {iteration} ({name}) failed: {what}", record
                )
            records.append(record)
            left = self.placement()
        return records

    def failed_record(self, iteration: int, scenario: str, error: Exception) -> dict[str, Any]:
        """The record of an iteration that an error stopped: not OK, nothing
        measured, the journals checked all the same."""
        record: dict[str, Any] = {
            "iteration": iteration,
            "scenario": scenario,
            "ok": False,
            "error": str(error) or type(error).__name__,
            "failed_expectations": [str(error) or type(error).__name__],
            "target": None,
            "new_node": None,
            "phases": dict.fromkeys(PHASES),
            "double_signs": 0,
            "regressions": 0,
            "dual_active": 0,
            "signatures": [],
        }
        try:
            self.judge(record, None, None)
        except Exception as exc:  # noqa: BLE001 (the journals' or the chain's own trouble is in the evidence)
            record["judged"] = f"not checked: {type(exc).__name__}: {exc}"
        return record

    # -- where the validator runs between iterations --

    def placement(self) -> Placement | None:
        """Where the validator runs now (None: the cluster cannot tell)."""
        offsets = self.log_offsets()
        now = time.time()
        status = self.site.status()
        return None if status is None else Placement(self.signing_on(status), now, offsets)

    def check_chain(self, iteration: int) -> bool:
        """Before ``iteration``, on a chain: no evidence against our validator
        since the last height judged (the first time: since the chain began).
        Evidence is a finding with its evidence kept, and stops the drill."""
        if self.chain is None:
            return True
        record: dict[str, Any] = {}
        if self.judge(record, None, None):
            return True
        found = record["chain"]["evidence"]
        heights = record["chain"]["evidence_heights"]
        self.say(
            f"[{iteration}] the drill stops: the chain holds evidence of a double sign by our validator "
            f"(committed at heights {', '.join(map(str, heights))})"
        )
        finding: dict[str, Any] = {
            "kind": "evidence",
            "before_iteration": iteration,
            "found": found,
            "heights": heights,
            "chain": record["chain"],
        }
        finding["evidence"] = self.keep_evidence(
            f"before-{iteration:02d}-evidence",
            f"before iteration {iteration}: evidence against our validator on the chain",
            finding,
        )
        self.findings.append(finding)
        return False

    def check_placement(self, iteration: int, left: Placement) -> bool:
        """Before ``iteration``: the validator must run where the previous
        iteration ``left`` it, and nothing have started or stopped it since.
        Otherwise the unasked move is a finding (:attr:`findings`) with its
        evidence; returns False when the next iteration would measure nothing
        valid (the validator not on exactly one node once the cluster settled,
        or an active node banned for it by a fail count)."""
        status = self.site.status()
        changes = measure.placement_changes(self.log_lines(left.offsets, left.time), self.resource)
        now = self.signing_on(status) if status is not None else None
        if not changes and (now is None or now == left.nodes):
            return True
        seen = time.time()
        shown = ", ".join(now or ()) or "no node"
        self.say(
            f"[{iteration}] UNASKED MOVE before this iteration: the validator was left on "
            f"{', '.join(left.nodes) or 'no node'} and runs on {shown}; {len(changes)} start/stop of it "
            f"since"
        )
        finding: dict[str, Any] = {
            "kind": "unasked move",
            "before_iteration": iteration,
            "left_on": list(left.nodes),
            "now_on": list(now or ()),
            "left_at": left.time,
            "seen_at": seen,
            "operations": [line.text for line in changes],
            "fail_counts": {
                node: count
                for (node, rid), count in (status.fail_counts if status else {}).items()
                if rid == self.resource
            },
        }
        finding["evidence"] = self.keep_evidence(
            f"before-{iteration:02d}", f"before iteration {iteration}: the validator moved unasked", finding
        )
        reason = self.invalidated()
        finding["stops_drill"] = reason is not None
        finding["reason"] = reason
        self.findings.append(finding)
        if reason is not None:
            self.say(f"[{iteration}] the drill stops: {reason}")
        return reason is None

    def invalidated(self) -> str | None:
        """Why the next iteration would measure nothing valid, once the cluster
        settled; None if it can run."""
        try:
            status = self.wait_healthy("after the unasked move", self.timeout)
        except DrillError as exc:
            return str(exc)
        actives = [n.name for n in self.site.inventory.nodes if n.role == "active"]
        banned = [n for n in actives if status.fail_counts.get((n, self.resource), 0) >= BANNED]
        if banned:
            return (
                f"a fail count bans the validator from {', '.join(banned)}: no failover can go there "
                f"(crm_resource --cleanup --resource {self.resource} clears it once the cause is "
                f"known)"
            )
        return None

    # -- evidence --

    def keep_evidence(self, name: str, what: str, record: dict[str, Any], error: BaseException | None = None) -> str:
        """Keep a failure's evidence in ``evidence/<name>`` of the report directory
        (see :mod:`highlander.drill.evidence`); returns that folder, relative to it."""
        if self.report_dir is None:
            self.report_dir = Path(tempfile.mkdtemp(prefix="highlander-drill-"))
        folder = self.report_dir / "evidence" / name
        self.say(f"  keeping the evidence in {folder}")
        evidence.write_drill_part(folder, self.say.lines, record, error)
        try:
            problems = self.site.collect(folder, self.started)
        except Exception as exc:  # noqa: BLE001 (what was kept stays; the index says where it stopped)
            problems = [f"collecting stopped: {type(exc).__name__}: {exc}"]
        evidence.write_index(folder, what, problems)
        return str(folder.relative_to(self.report_dir))


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str  # one line of the CLI's help
    step: Callable[[Drill, int, str], dict[str, Any]]  # one iteration
    needs: str | None = "power"  # the failure (a key of FAILURES) the site must be able to cause


def _failover(name: str, summary: str, failure: Failure) -> Scenario:
    return Scenario(name, summary, functools.partial(Drill.failover, failure=failure), needs=failure.kind)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        _failover(
            "power-cut-active",
            "power off the active node by its BMC: fenced, the validator moves",
            Failure("cutting its power through its BMC", "power"),
        ),
        _failover(
            "freeze-active",
            "SIGSTOP the active node until the validator moves; it never signs again",
            Failure("freezing every process of it (SIGSTOP)", "freeze"),
        ),
        _failover(
            "partition-active",
            "pull the active node's cable: the majority fences it, the validator moves",
            Failure("pulling its cable (its switch port down)", "cable"),
        ),
        _failover(
            "bmc-down-and-power-cut-active",
            f"silence its BMC, cut its power: nothing moves for {HOLD:g} s, then the BMC is back",
            Failure("silencing its BMC (SIGSTOP) and cutting its power without it", "bmc", hold=HOLD),
        ),
        Scenario(
            "kill-signer",
            "SIGKILL the signer: restarted (a promotable one: promoted anew), nobody fenced",
            Drill.kill_signer,
            needs=None,
        ),
        Scenario(
            "power-cut-standby",
            "power off the standby: signing goes on, the standby is fenced",
            functools.partial(Drill.power_cut_bystander, role="standby"),
        ),
        Scenario(
            "power-cut-witness",
            "power off the witness: signing goes on, the witness is fenced",
            functools.partial(Drill.power_cut_bystander, role="witness"),
        ),
        Scenario(
            "two-nodes-down",
            "power off standby and witness: quorum lost, nobody signs until back",
            Drill.two_nodes_down,
        ),
    )
}
