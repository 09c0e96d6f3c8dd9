"""Three sign-state replicas on loopback, as real processes: a harness, not a rollout.

For the demo, the tests and the benchmarks: a cluster CA and node
certificates, one configuration and state directory per node, and one
``highlander signstate serve`` process per node, each stopped by its PID.
Nodes can be killed (SIGKILL, a crash), stopped (SIGSTOP) and restarted
to exercise the register the way failing replicas would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from functools import partial
from pathlib import Path

from highlander.adapters.waiting import wait_until
from highlander.lab.ports import free_ports
from highlander.signstate import pki, store

NODES = ("node-a", "node-b", "node-c")


class LoopbackReplicas:
    """Daemons for :data:`NODES` under ``workdir``; :meth:`stop` them whatever happens."""

    def __init__(self, workdir: Path, *, timeout: float = 1.0) -> None:
        self.workdir = Path(workdir)
        self.timeout = timeout
        self.pki_dir = self.workdir / "pki"
        self.ports = dict(zip(NODES, free_ports(len(NODES))))
        # The port a node reaches a peer at, where a test puts a relay between them.
        self.routes: dict[tuple[str, str], int] = {}
        # Where a node serves /metrics, for the nodes a test asks it of.
        self.metrics_ports: dict[str, int] = {}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def socket(self, node: str) -> Path:
        return self.workdir / node / "signstate.sock"

    def state_dir(self, node: str) -> Path:
        return self.workdir / node / "state"

    def config(self, node: str) -> Path:
        return self.workdir / node / "signstate.toml"

    def log(self, node: str) -> Path:
        return self.workdir / node / "signstate.log"

    def prepare(self) -> None:
        """CA, certificates and configuration files (kept across restarts)."""
        new = not (self.pki_dir / "ca.crt").exists()
        if new:
            pki.init_ca(self.pki_dir, "highlander-local")
            for node in NODES:
                pki.issue(self.pki_dir, node, addresses=["127.0.0.1"])
        for node in NODES:
            (self.workdir / node).mkdir(parents=True, exist_ok=True)
            peers = "\n".join(
                f'{peer} = "127.0.0.1:{self.routes.get((node, peer), self.ports[peer])}"'
                for peer in NODES
                if peer != node
            )
            self.config(node).write_text(
                f'node = "{node}"\n'
                f'listen = "127.0.0.1:{self.ports[node]}"\n'
                f'state_dir = "{self.state_dir(node)}"\n'
                f'pki_dir = "{self.pki_dir}"\n'
                f'socket = "{self.socket(node)}"\n'
                f"timeout = {self.timeout}\n"
                + (f'metrics = "127.0.0.1:{self.metrics_ports[node]}"\n' if node in self.metrics_ports else "")
                + f"\n[peers]\n{peers}\n"
            )
            if new:  # once: a state directory lost later must be rejoined, as on a real node
                store.create(self.state_dir(node), node).close()

    def start(self, node: str | None = None) -> None:
        """Start one node (or all) and wait until its signer socket answers."""
        self.prepare()
        for name in [node] if node else NODES:
            if name in self.processes and self.processes[name].poll() is None:
                continue
            with open(self.log(name), "ab") as log:
                self.processes[name] = subprocess.Popen(
                    [sys.executable, "-m", "highlander", "signstate", "serve", "--config", str(self.config(name))],
                    stdout=log,
                    stderr=log,
                    stdin=subprocess.DEVNULL,
                )
            wait_until(partial(self._listening, name), timeout=15, what=f"sign-state daemon {name}")

    def _listening(self, node: str) -> bool:
        process = self.processes[node]
        if process.poll() is not None:
            raise RuntimeError(f"sign-state daemon {node} exited with {process.returncode}: {self.log_tail(node)}")
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(str(self.socket(node)))
            return True
        except OSError:
            return False
        finally:
            probe.close()

    def pid(self, node: str) -> int:
        return self.processes[node].pid

    def signal(self, node: str, signum: int) -> None:
        process = self.processes.get(node)
        if process is not None and process.poll() is None:
            os.kill(process.pid, signum)

    def kill(self, node: str) -> None:
        """SIGKILL, as a crash or a power cut would."""
        self.signal(node, signal.SIGKILL)
        if node in self.processes:
            self.processes[node].wait()

    def stop(self, node: str | None = None) -> None:
        """SIGTERM (SIGKILL after 10 s) by PID; idempotent."""
        for name in [node] if node else list(self.processes):
            process = self.processes.get(name)
            if process is None:
                continue
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def log_tail(self, node: str, lines: int = 15) -> str:
        try:
            return "\n".join(self.log(node).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
