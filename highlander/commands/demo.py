"""The single-node demo: Pacemaker recovers a crashed validator.

A real one-node cluster in namespaces runs ``ocf:highlander:validator``
managing the demo chain; the demo kills the daemon with SIGKILL and shows
Pacemaker detecting the failure and starting it again. The steps are
separate functions because the integration tests take the same ones.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from highlander.adapters.pacemaker import ClusterStatus, Pacemaker
from highlander.adapters.runner import CommandRunner
from highlander.lab.cluster import LocalCluster

RESOURCE = "validator"
PIDFILE = "/run/highlander/demo-chain.pid"
STATUS_PORT = 26657


def chain_command(block_time: float = 1.0, catch_up: float = 3.0) -> str:
    """The demo chain daemon, run by this environment's ``highlander``."""
    highlander = Path(sys.prefix) / "bin" / "highlander"
    return (
        f"{highlander} demo-chain --listen 127.0.0.1:{STATUS_PORT} "
        f"--block-time {block_time:g} --catch-up {catch_up:g}"
    )


def create_validator(runner: CommandRunner, resource: str = RESOURCE, command: str | None = None) -> None:
    """``pcs resource create`` the validator with a process monitor every 2 s
    and a health monitor every 5 s."""
    runner.run(
        [
            "pcs", "resource", "create", resource, "ocf:highlander:validator",
            f"command={command or chain_command()}",
            f"health_url=http://127.0.0.1:{STATUS_PORT}/status",
            f"pidfile={PIDFILE}",
            "op", "monitor", "interval=2s", "timeout=20s",
            "op", "monitor", "interval=5s", "timeout=20s", "OCF_CHECK_LEVEL=10",
        ],
        check=True,
    )  # fmt: skip


def daemon_pid(runner: CommandRunner) -> int | None:
    """The demo daemon's PID inside the node, from the agent's PID file."""
    result = runner.run(["cat", PIDFILE])
    text = result.stdout.strip()
    return int(text) if result.ok and text.isdigit() else None


def wait_started(pacemaker: Pacemaker, resource: str = RESOURCE, timeout: float = 60) -> ClusterStatus:
    return pacemaker.wait_for(f"{resource} Started", lambda s: bool(s.started_on(resource)), timeout)


def crash_and_recover(
    runner: CommandRunner, resource: str = RESOURCE, timeout: float = 60
) -> tuple[int, int, float, float]:
    """SIGKILL the daemon, then wait for Pacemaker to notice and restart it.

    Returns (old PID, new PID, seconds to detection, seconds to recovery).
    """
    pacemaker = Pacemaker(runner)
    old = daemon_pid(runner)
    if old is None:
        raise RuntimeError(f"no daemon PID in {PIDFILE}: is {resource} running?")
    failures = pacemaker.status().fail_count(resource)
    killed = time.monotonic()
    runner.run(["kill", "-KILL", str(old)], check=True)
    pacemaker.wait_for(f"{resource} failure detected", lambda s: s.fail_count(resource) > failures, timeout)
    detected = time.monotonic() - killed

    def restarted(status: ClusterStatus) -> bool:
        return bool(status.started_on(resource)) and daemon_pid(runner) not in (None, old)

    pacemaker.wait_for(f"{resource} recovered", restarted, timeout)
    new = daemon_pid(runner)
    assert new is not None
    return old, new, detected, time.monotonic() - killed


def run(say: Callable[[str], None]) -> None:
    """The whole demo; everything it started is stopped when it ends,
    fails or is interrupted."""
    workdir = Path(tempfile.mkdtemp(prefix="highlander-demo-"))
    cluster = LocalCluster(workdir, cluster_name="highlander-demo", node_name="demo1", disable_stonith=True)
    say("Starting a one-node Pacemaker/Corosync cluster in its own namespaces ...")
    say("(one node has nobody to fence, so this demo alone runs with stonith-enabled=false)")
    try:
        cluster.start()
        say(f"Cluster up in {cluster.startup_seconds:.1f} s; node demo1 is the DC.")
        say("Creating ocf:highlander:validator with pcs, managing the demo chain ...")
        create_validator(cluster.runner)
        wait_started(cluster.pacemaker)
        say(cluster.pacemaker.show())
        say(f"The daemon runs as PID {daemon_pid(cluster.runner)} inside the node. Killing it with SIGKILL ...")
        old, new, detected, recovered = crash_and_recover(cluster.runner)
        say(f"Pacemaker's monitor noticed PID {old} was gone after {detected:.1f} s;")
        say(f"the validator runs again as PID {new}, healthy, {recovered:.1f} s after the kill.")
        say(cluster.pacemaker.show())
    except BaseException:
        say(f"The demo failed; the node's logs are kept in {workdir}")
        raise
    finally:
        say("Stopping the cluster ...")
        cluster.stop()
    shutil.rmtree(workdir, ignore_errors=True)
    say("Done: every process, namespace and mount the demo started is gone.")
