"""The single-node demo: Pacemaker recovers a crashed validator, and the
sign-state register keeps it from ever signing twice.

Three sign-state daemons run on loopback; a real one-node cluster in
namespaces runs ``ocf:highlander:validator`` with the sign-state gate,
managing ``highlander demo-signer``. The demo kills the signer with SIGKILL,
shows Pacemaker detecting the failure and starting it again (a new
promotion, signing on above the last mark), and checks the signature
journal for double signs. The steps are separate functions because the
integration tests take the same ones.
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
from highlander.drill.journal import check_journals
from highlander.lab.one_node import OneNodeCluster
from highlander.lab.replicas import LoopbackReplicas

RESOURCE = "validator"
PIDFILE = "/run/highlander/demo-signer.pid"
STATUS_PORT = 26657
CHAIN_ID = "highlander-demo"
KEY_ID = "validator"


def signer_command(socket: Path, journal: Path, node: str = "demo1", block_time: float = 0.5) -> str:
    """The demo signer, run by this environment's ``highlander``."""
    highlander = Path(sys.prefix) / "bin" / "highlander"
    return (
        f"{highlander} demo-signer --socket {socket} --chain-id {CHAIN_ID} --key-id {KEY_ID} "
        f"--node {node} --journal {journal} --block-time {block_time:g} "
        f"--status-listen 127.0.0.1:{STATUS_PORT}"
    )


def create_validator(runner: CommandRunner, socket: Path, journal: Path, resource: str = RESOURCE) -> None:
    """``pcs resource create`` the validator, guarded by the sign-state
    register at ``socket``, with a process monitor every 2 s and a health
    monitor every 5 s."""
    runner.run(
        [
            "pcs",
            "resource",
            "create",
            resource,
            "ocf:highlander:validator",
            f"command={signer_command(socket, journal)}",
            f"health_url=http://127.0.0.1:{STATUS_PORT}/status",
            f"pidfile={PIDFILE}",
            f"chain_id={CHAIN_ID}",
            f"key_id={KEY_ID}",
            f"signstate_socket={socket}",
            "op",
            "monitor",
            "interval=2s",
            "timeout=20s",
            "op",
            "monitor",
            "interval=5s",
            "timeout=20s",
            "OCF_CHECK_LEVEL=10",
        ],
        check=True,
    )


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
    replicas = LoopbackReplicas(workdir / "signstate")
    cluster = OneNodeCluster(workdir, cluster_name="highlander-demo", node_name="demo1", disable_stonith=True)
    journal = workdir / "journal-demo1.jsonl"
    socket = replicas.socket("node-a")
    try:
        say("Starting three sign-state replicas on loopback (mutual TLS under a fresh cluster CA) ...")
        replicas.start()
        say("Starting a one-node Pacemaker/Corosync cluster in its own namespaces ...")
        say("(one node has nobody to fence, so this demo alone runs with stonith-enabled=false)")
        cluster.start()
        say(f"Cluster up in {cluster.startup_seconds:.1f} s; node demo1 is the DC.")
        say("Creating ocf:highlander:validator with pcs: demo-signer behind the sign-state gate ...")
        create_validator(cluster.runner, socket, journal)
        wait_started(cluster.pacemaker)
        say(cluster.pacemaker.show())
        say(f"The signer runs as PID {daemon_pid(cluster.runner)} inside the node. Killing it with SIGKILL ...")
        old, new, detected, recovered = crash_and_recover(cluster.runner)
        say(f"Pacemaker's monitor noticed PID {old} was gone after {detected:.1f} s;")
        say(f"the validator was promoted again and signs as PID {new}, {recovered:.1f} s after the kill.")
        time.sleep(2)  # a few more signatures for the journal
        say(cluster.pacemaker.show())
        say("Checking the signature journal for double signs:")
        report = check_journals([journal])
        for line in report.lines():
            say(f"  {line}")
        if not report.ok:
            raise RuntimeError("the journal shows a double sign")
    except BaseException:
        say(f"The demo failed; its logs are kept in {workdir}")
        raise
    finally:
        say("Stopping the cluster and the sign-state replicas ...")
        cluster.stop()
        replicas.stop()
    shutil.rmtree(workdir, ignore_errors=True)
    say("Done: every process, namespace and mount the demo started is gone.")
