"""Looking at and acting on a running lab, by its records: what ``lab status``,
``lab exec`` and the drills do.

Enter a node (:func:`node_runner`), pull its cable, freeze its BMC, cut its
power with or without the BMC, ask the BMC over IPMI as an operator would,
and read it all back (:func:`status`). Each call finds the lab anew in its
directory, so any process can make it, not only the one that ran ``lab up``.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from highlander.adapters.runner import CommandRunner, system_env
from highlander.adapters.waiting import wait_until
from highlander.lab.cleanup import kill
from highlander.lab.node import pid_namespace_of, processes_in, same_process
from highlander.lab.plan import load_plan
from highlander.lab.records import LabError, read_node_record


def node_init(directory: Path, name: str) -> int | None:
    """The host PID of ``name``'s init while the node is powered on."""
    plan, _ = load_plan(directory)
    plan.node(name)
    record = read_node_record(directory.absolute(), name)
    if record is None:
        return None
    init, ns = record.get("init_pid"), record.get("pid_namespace")
    return init if init and ns and pid_namespace_of(init) == ns else None


def node_runner(directory: Path, name: str) -> CommandRunner:
    """Runs programs inside node ``name`` (its network, mounts, hostname and PIDs)."""
    pid = node_init(directory, name)
    if pid is None:
        raise LabError(f"node {name} is powered off")
    prefix = ("nsenter", f"--target={pid}", "--net", "--mount", "--uts", "--pid", "--")
    return CommandRunner(prefix=prefix, env=system_env())


def set_link(directory: Path, name: str, up: bool) -> None:
    """Set node ``name``'s port on the switch up or down: pulling its cable.

    The port lives in the switch's network namespace, which no power cycle of
    the node touches, so a cable pulled stays pulled until it is put back."""
    plan, _ = load_plan(directory)
    port = plan.node(name).switch_port
    CommandRunner(env=system_env()).run(
        ["ip", "-n", plan.switch, "link", "set", port, "up" if up else "down"], check=True
    )


def freeze_bmc(directory: Path, name: str, frozen: bool) -> None:
    """SIGSTOP (``frozen``) or SIGCONT node ``name``'s ipmi_sim, by the PID the
    lab recorded: a stopped BMC answers nothing, as one that lost its network."""
    _, state = load_plan(directory)
    bmc = state.get("bmcs", {}).get(name, {})
    if not same_process(bmc.get("pid"), bmc.get("start_time")):
        raise LabError(f"the BMC of {name} is not running")
    os.kill(bmc["pid"], signal.SIGSTOP if frozen else signal.SIGCONT)


def kill_node(directory: Path, name: str, timeout: float = 15.0) -> None:
    """Cut node ``name``'s power without its BMC: SIGKILL its init (every process
    of its PID namespace dies with it) and wait until none is left. Its BMC still
    records "on", as one would after a power supply failed behind it."""
    init = node_init(directory, name)
    if init is None:
        raise LabError(f"node {name} is already powered off")
    namespace = pid_namespace_of(init)
    kill(init)
    if namespace is not None:
        wait_until(lambda: not processes_in(namespace), timeout=timeout, what=f"the processes of {name} to exit")


def bmc_power(directory: Path, name: str) -> str:
    """What node ``name``'s simulated BMC records: "on" or "off"."""
    try:
        text = (directory.absolute() / "bmc" / name / "power").read_text().strip()
    except FileNotFoundError:
        return "unknown"
    return "on" if text == "1" else "off"


def bmc_chassis(directory: Path, name: str, action: str, *, cipher: str = "3", timeout: float = 30.0) -> None:
    """Ask node ``name``'s simulated BMC for ``chassis power ACTION`` ("off", "on")
    over IPMI from the switch, as an operator (or a drill) would: "off" runs the
    BMC's power-off hook, a power cut of the node. The password is the one the
    lab installed for the cluster's fence agent (given to ipmitool by the
    environment, never on a command line); cipher suite 3, as ipmi_sim has no 17."""
    if action not in ("off", "on"):
        raise LabError(f"chassis power {action!r}: give off or on")
    plan, _ = load_plan(directory)
    n = plan.node(name)
    secret = directory.absolute() / "nodes" / name / "root" / n.password_file.lstrip("/")
    try:
        password = secret.read_text().strip()
    except OSError as exc:
        raise LabError(f"{name}: cannot read its BMC password {secret}: {exc.strerror}") from None
    argv = [
        "ip",
        "netns",
        "exec",
        plan.switch,
        "ipmitool",
        "-I",
        "lanplus",
        "-H",
        n.bmc_address,
        "-p",
        str(n.bmc_port),
        "-U",
        n.bmc_username,
        "-E",
        "-C",
        cipher,
        "chassis",
        "power",
        action,
    ]
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**system_env(), "IPMI_PASSWORD": password},
    )
    if result.returncode != 0:
        raise LabError(f"BMC of {name}: chassis power {action} failed: {(result.stderr or result.stdout).strip()}")


def status(directory: Path) -> dict[str, Any]:
    """The lab's phase, each node's and BMC's state, and crm_mon from a running node."""
    plan, state = load_plan(directory)
    nodes = {}
    crm_mon = None
    for n in plan.nodes:
        init = node_init(directory, n.name)
        bmc = state.get("bmcs", {}).get(n.name, {})
        nodes[n.name] = {
            "role": n.role,
            "address": n.address,
            "netns": n.netns,
            "state": "running" if init else "off",
            "init_pid": init,
            "bmc": f"{n.bmc_address}:{n.bmc_port}",
            "bmc_power": bmc_power(directory, n.name),
            "bmc_running": same_process(bmc.get("pid"), bmc.get("start_time")),
        }
        if init and crm_mon is None:
            result = node_runner(directory, n.name).run(["crm_mon", "-1", "--inactive"], timeout=20)
            crm_mon = result.stdout if result.ok else None
    sup = state.get("supervisor", {})
    return {
        "directory": str(directory.absolute()),
        "run_id": plan.run_id,
        "phase": state.get("phase"),
        "switch": plan.switch,
        "supervisor": sup.get("pid") if same_process(sup.get("pid"), sup.get("start_time")) else None,
        "nodes": nodes,
        "crm_mon": crm_mon,
        "timings": state.get("timings", {}),
    }
