"""``highlander lab up`` and ``lab down``: the client side of the lab's supervisor.

``up`` starts the supervisor (:mod:`highlander.lab.supervisor`) detached in
its own session, prints its progress from ``events.jsonl`` and returns once
the validator runs (or, unconfigured, once the nodes answer SSH); should it
fail or be interrupted, it takes the lab down. ``down`` takes it down by its
records (:mod:`highlander.lab.cleanup`) and says what, if anything, is left.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import highlander
from highlander.adapters.runner import CommandRunner, system_env
from highlander.lab.cleanup import cleanup, leftovers
from highlander.lab.node import new_run_id
from highlander.lab.records import EVENTS_FILE, STATE_FILE, SUPERVISOR_LOG, LabError, read_state
from highlander.lab.supervisor import command_line


def default_inventory() -> Path:
    """examples/lab.yml of this checkout, or the copy installed with the package."""
    root = Path(highlander.__file__).resolve().parent.parent
    candidates = [
        root / "examples" / "lab.yml",
        Path(sysconfig.get_path("data")) / "share" / "highlander" / "examples" / "lab.yml",
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise LabError(f"no lab inventory found (looked for {', '.join(map(str, candidates))}): give --inventory")


def prepare_directory(directory: Path) -> list[str]:
    """Clean up after an earlier (possibly aborted) run and empty the lab directory."""
    directory = directory.absolute()
    done = cleanup(directory) if read_state(directory) else []
    if directory.exists():
        if (
            any(directory.iterdir())
            and not (directory / STATE_FILE).exists()
            and not (directory / EVENTS_FILE).exists()
        ):
            raise LabError(f"{directory} is not empty and not a lab directory: choose another --dir")
        shutil.rmtree(directory)
    directory.mkdir(mode=0o700, parents=True)
    return done


def up(
    directory: Path,
    inventory: Path | None,
    say: Callable[[str], None],
    *,
    timeout: float = 300.0,
    configure: bool = True,
    workload: str = "chain",
) -> dict[str, Any]:
    """Build the lab: returns the state once the validator runs; raises LabError otherwise.

    With ``configure=False`` the nodes boot without their configuration (only
    the BMC password files are written) and the state is returned once each
    node's sshd listens: corosync waits for corosync.conf and the authkey, for
    the Ansible rollout to install them over SSH. ``workload`` is what the
    validator is: the CometBFT chain (:mod:`highlander.lab.chain`) or the
    synthetic ``demo-signer``."""
    directory = directory.absolute()
    inventory = (inventory or default_inventory()).absolute()
    started = time.monotonic()
    for line in prepare_directory(directory):
        say(f"[{time.monotonic() - started:6.1f}s] cleaned up the earlier run: {line}")
    run_id = new_run_id()
    package_parent = str(Path(highlander.__file__).resolve().parent.parent)
    with open(directory / SUPERVISOR_LOG, "ab") as logfile:
        supervisor = subprocess.Popen(
            command_line(directory, inventory, run_id, configure, workload),
            stdin=subprocess.DEVNULL,
            stdout=logfile,
            stderr=logfile,
            cwd="/",
            start_new_session=True,
            env={**system_env(), "PYTHONPATH": package_parent},
        )
    events = directory / EVENTS_FILE
    position = 0
    try:
        while True:
            if events.exists():
                with open(events) as f:
                    f.seek(position)
                    chunk = f.read()
                complete, _, _ = chunk.rpartition("\n")
                position += len(complete) + (1 if complete else 0)
                for line in complete.splitlines():
                    event = json.loads(line)
                    say(f"[{time.monotonic() - started:6.1f}s] {event['message']}")
                    if event["kind"] == "ready":
                        state = read_state(directory) or {}
                        state["up_seconds"] = round(time.monotonic() - started, 1)
                        return state
                    if event["kind"] == "failed":
                        supervisor.wait(90)
                        raise LabError(f"lab up failed: {event.get('detail', event['message'])}\n(logs in {directory})")
            if supervisor.poll() is not None:
                raise LabError(
                    f"the lab supervisor exited with {supervisor.returncode}; see {directory / SUPERVISOR_LOG}"
                )
            if time.monotonic() - started > timeout:
                raise LabError(f"the lab was not up after {timeout:g} s (logs in {directory}); taking it down")
            time.sleep(0.2)
    except BaseException:
        if supervisor.poll() is None:
            supervisor.send_signal(signal.SIGTERM)
            try:
                supervisor.wait(90)
            except subprocess.TimeoutExpired:
                supervisor.kill()
                supervisor.wait(10)
        cleanup(directory)
        raise


def down(directory: Path) -> tuple[list[str], list[str]]:
    """Take the lab down; (what was done, what is left: empty when nothing)."""
    directory = directory.absolute()
    runner = CommandRunner(env=system_env())
    done = cleanup(directory, runner)
    return done, leftovers(directory, runner)
