"""Taking a lab down by its records, whatever state its processes are in.

Everything is found through what the run recorded (:mod:`highlander.lab.records`):
the supervisor and the BMCs by PID and start time, each node by its init's
PID and PID namespace, the namespaces and switch ports by the plan's names.
A PID is signalled only while its start time still matches the record.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from highlander.adapters.runner import CommandRunner, system_env
from highlander.adapters.waiting import wait_until
from highlander.lab.node import init_alive, processes_in, same_process, start_time
from highlander.lab.plan import LabPlan
from highlander.lab.records import read_node_record, read_state


def netns_list(runner: CommandRunner) -> set[str]:
    """The network namespaces on this host, as ip lists them."""
    listing = runner.run(["ip", "netns", "list"], check=True).stdout
    return {line.split()[0] for line in listing.splitlines() if line.strip()}


def _node_records(directory: Path, plan: LabPlan) -> list[dict[str, Any]]:
    return [record for n in plan.nodes if (record := read_node_record(directory, n.name)) is not None]


def kill(pid: int, signum: int = signal.SIGKILL, group: bool = False) -> None:
    """Send ``signum`` to ``pid`` (its process group with ``group``); one already gone is no error."""
    try:
        os.killpg(pid, signum) if group else os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def cleanup(
    directory: Path, runner: CommandRunner | None = None, *, own_pid: int | None = None, timeout: float = 60.0
) -> list[str]:
    """Remove what the records in ``directory`` name: the supervisor, nodes, BMCs,
    network namespaces, created mount points. Idempotent; returns what it did."""
    runner = runner or CommandRunner(env=system_env())
    state = read_state(directory)
    if state is None:
        return []
    done: list[str] = []
    plan = LabPlan.from_dict(state["plan"])
    sup = state.get("supervisor", {})
    pid, started = sup.get("pid"), sup.get("start_time")
    if pid is not None and pid != own_pid and same_process(pid, started):
        kill(pid, signal.SIGTERM)

        def gone() -> bool:
            return not same_process(pid, started)

        try:
            wait_until(gone, timeout=timeout, what="the lab supervisor to take the lab down")
            done.append(f"supervisor {pid} took the lab down")
        except TimeoutError:
            kill(pid)
            done.append(f"supervisor {pid} killed")
        state = read_state(directory) or state
    for name, bmc in state.get("bmcs", {}).items():
        if same_process(bmc.get("pid"), bmc.get("start_time")):
            kill(bmc["pid"], group=True)
            done.append(f"BMC of {name} (pid {bmc['pid']}) killed")
    for name, process in state.get("chain", {}).get("processes", {}).items():
        if same_process(process.get("pid"), process.get("start_time")):
            kill(process["pid"])
            done.append(f"CometBFT validator {name} (pid {process['pid']}) killed")
    for record in _node_records(directory, plan):
        if not init_alive(record):
            continue  # the namespace died with its init; its number may be another lab's by now
        init = int(record["init_pid"])
        members = [(pid, start_time(pid)) for pid in processes_in(int(record["pid_namespace"]))]
        kill(init)
        done.append(f"{record['name']} powered off (init {init})")

        def members_gone(members: list[tuple[int, int | None]] = members) -> bool:
            return not any(same_process(pid, started) for pid, started in members)

        try:
            wait_until(members_gone, timeout=15, what=f"{record['name']}'s processes")
        except TimeoutError:
            for pid, started in members:
                if same_process(pid, started):
                    kill(pid)
    present = netns_list(runner)
    for name in plan.netns:
        if name in present:
            runner.run(["ip", "netns", "delete", name], check=True)
            done.append(f"network namespace {name} deleted")
    for path in state.get("created_dirs", []):
        try:
            os.rmdir(path)
            done.append(f"mount point {path} removed")
        except FileNotFoundError:
            pass
        except OSError as exc:
            done.append(f"mount point {path} kept: {exc.strerror}")
    return done


def leftovers(directory: Path, runner: CommandRunner | None = None) -> list[str]:
    """Anything of the recorded lab still on the host (empty: nothing)."""
    runner = runner or CommandRunner(env=system_env())
    state = read_state(directory)
    if state is None:
        return []
    plan = LabPlan.from_dict(state["plan"])
    found = []
    names = set(plan.netns)
    found += [f"network namespace {name}" for name in sorted(names & netns_list(runner))]
    with open("/proc/self/mountinfo") as f:
        found += [f"mount {line.split()[4]}" for line in f if any(name in line for name in names)]
    sup = state.get("supervisor", {})
    if same_process(sup.get("pid"), sup.get("start_time")):
        found.append(f"supervisor pid {sup['pid']}")
    for name, bmc in state.get("bmcs", {}).items():
        if same_process(bmc.get("pid"), bmc.get("start_time")):
            found.append(f"BMC of {name} pid {bmc['pid']}")
    for name, process in state.get("chain", {}).get("processes", {}).items():
        if same_process(process.get("pid"), process.get("start_time")):
            found.append(f"CometBFT validator {name} pid {process['pid']}")
    for record in _node_records(directory, plan):
        if init_alive(record):
            found.append(f"processes of {record['name']}: {processes_in(record['pid_namespace'])}")
    links = runner.run(["ip", "-o", "link", "show"], check=True).stdout
    ports = [n.switch_port for n in plan.nodes] + [v.switch_port for v in plan.validators]
    found += [f"host link {port}" for port in ports if f" {port}@" in links]
    return found
