"""Fencing a node by hand: directly through its fence devices, or via Pacemaker.

Directly, the same fence agents Pacemaker runs are used, in-process, with
their options on an in-memory standard input: no password on a command
line, and it works while the cluster itself is down. The node's devices are
tried in the inventory's order (its fencing levels) until one succeeds.
"""

from __future__ import annotations

import importlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from highlander.adapters.runner import CommandRunner
from highlander.fencing.spec import FenceAgent, succeeded
from highlander.inventory.model import FenceDevice

# What an operator can ask ``highlander fence`` for (a subset of the agents' actions).
OPERATOR_ACTIONS = ("off", "on", "reboot", "status")
STONITH_ADMIN = {"off": "--fence", "reboot": "--reboot", "on": "--unfence"}


@dataclass(frozen=True)
class Attempt:
    """One device tried: the device, the action, the agent's exit status and what it printed."""

    device: FenceDevice
    action: str
    code: int
    output: str

    @property
    def succeeded(self) -> bool:
        """Whether the agent did what was asked (:func:`highlander.fencing.spec.succeeded`)."""
        return succeeded(self.action, self.code)


def agent_for(method: str) -> FenceAgent:
    """The fence agent declaration for a device method."""
    agent: FenceAgent = importlib.import_module(f"highlander.fencing.agents.{method}").AGENT
    return agent


def stdin_for(
    device: FenceDevice, node: str, action: str, password: str | None, metrics_dir: Path | None = None
) -> str:
    """The agent's options, as Pacemaker would hand them over (``metrics_dir``
    overrides the device's own, to count the outcome where the operator says)."""
    lines = {
        "action": action,
        "ip": device.address,
        "ipport": str(device.port),
        "username": device.username,
        "plug": node,
        **device.options,
    }
    if device.password_file:
        lines["password_script"] = f"/bin/cat {device.password_file}"
    if password is not None:
        lines["password"] = password
    if metrics_dir is not None:
        lines["metrics_dir"] = str(metrics_dir)
    return "".join(f"{key}={value}\n" for key, value in lines.items())


def run_agent(
    device: FenceDevice, node: str, action: str, password: str | None, metrics_dir: Path | None = None
) -> Attempt:
    """Run the device's agent in-process; capture its output."""
    import contextlib

    from highlander.fencing.run import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(agent_for(device.method), [], io.StringIO(stdin_for(device, node, action, password, metrics_dir)))
    return Attempt(device, action, code, out.getvalue().strip())


def fence_directly(
    node: str,
    devices: tuple[FenceDevice, ...],
    action: str,
    password_for: Callable[[FenceDevice], str | None],
    metrics_dir: Path | None = None,
) -> list[Attempt]:
    """Try each device in order until one succeeds; every attempt is returned
    (and counted in ``metrics_dir``'s textfile when given)."""
    attempts = []
    for device in devices:
        attempt = run_agent(device, node, action, password_for(device), metrics_dir)
        attempts.append(attempt)
        if attempt.succeeded:
            break
    return attempts


def fence_via_cluster(runner: CommandRunner, node: str, action: str, timeout: int = 120) -> tuple[int, str]:
    """Ask Pacemaker's fencer (stonith_admin) to do it, with its devices and levels."""
    if action == "status":
        argv = ["stonith_admin", "--history", node, "--verbose"]
    else:
        argv = ["stonith_admin", STONITH_ADMIN[action], node, f"--timeout={timeout}"]
    result = runner.run(argv, timeout=timeout + 30)
    return result.returncode, (result.stdout + result.stderr).strip()
