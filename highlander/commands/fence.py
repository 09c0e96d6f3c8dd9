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

from highlander.adapters.runner import CommandRunner
from highlander.fencing.spec import EXIT_OFF, EXIT_OK, FenceAgent
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
        """Whether the agent did what was asked, by the fence-agents API's exit codes.

        0 is success for every action (for off, on and reboot: done and
        verified). 2 answers status only: the device was reached and the
        power is off, an answer like 0's. For off, on and reboot the API has
        no exit 2, so it is not a success: a fence that did not end in 0 was
        not verified.
        """
        return self.code == EXIT_OK or (self.action == "status" and self.code == EXIT_OFF)


def agent_for(method: str) -> FenceAgent:
    """The fence agent declaration for a device method."""
    agent: FenceAgent = importlib.import_module(f"highlander.fencing.agents.{method}").AGENT
    return agent


def stdin_for(device: FenceDevice, node: str, action: str, password: str | None) -> str:
    """The agent's options, as Pacemaker would hand them over."""
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
    return "".join(f"{key}={value}\n" for key, value in lines.items())


def run_agent(device: FenceDevice, node: str, action: str, password: str | None) -> Attempt:
    """Run the device's agent in-process; capture its output."""
    import contextlib

    from highlander.fencing.run import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(agent_for(device.method), [], io.StringIO(stdin_for(device, node, action, password)))
    return Attempt(device, action, code, out.getvalue().strip())


def fence_directly(
    node: str,
    devices: tuple[FenceDevice, ...],
    action: str,
    password_for: Callable[[FenceDevice], str | None],
) -> list[Attempt]:
    """Try each device in order until one succeeds; every attempt is returned."""
    attempts = []
    for device in devices:
        attempt = run_agent(device, node, action, password_for(device))
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
