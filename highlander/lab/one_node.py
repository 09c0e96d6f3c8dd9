"""A real one-node Pacemaker/Corosync cluster on loopback, in namespaces.

For the single-node demo and for integration tests of the agents: one
:class:`~highlander.lab.node.NamespacedNode` with corosync bound to 127.0.0.1 inside
its own network namespace, configured with the files of
:mod:`highlander.lab.cluster_files` like each node of the three-node lab.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from highlander.adapters.pacemaker import ClusterStatus, Pacemaker
from highlander.adapters.runner import CommandRunner, system_env
from highlander.adapters.waiting import wait_until
from highlander.lab.cluster_files import (
    AUTHKEY,
    CIB_XML,
    COROSYNC_CONF,
    CorosyncNode,
    generate_authkey,
    render_corosync_conf,
    seed_cib,
)
from highlander.lab.node import NamespacedNode, NodeError

log = logging.getLogger(__name__)


class ClusterError(RuntimeError):
    """The cluster did not come up (or could not be configured)."""


class OneNodeCluster:
    """A one-node cluster in ``workdir``; :meth:`stop` it whatever happens.

    ``disable_stonith`` sets ``stonith-enabled=false`` after the DC is
    elected. It is never implied: a single node has nobody to fence, and a
    caller that wants resources to start without fencing must say so.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        cluster_name: str = "highlander",
        node_name: str = "node1",
        token_ms: int = 3000,
        dc_deadtime: str = "2s",
        disable_stonith: bool = False,
        start_timeout: float = 90.0,
        run_id: str | None = None,
        runner: CommandRunner | None = None,
    ) -> None:
        """``dc_deadtime`` is seeded into a fresh CIB: with the default 20 s a
        single node waits that long for a DC that cannot exist."""
        self.workdir = Path(workdir).absolute()
        self.cluster_name = cluster_name
        self.token_ms = token_ms
        self.dc_deadtime = dc_deadtime
        self.disable_stonith = disable_stonith
        self.start_timeout = start_timeout
        self.host = runner or CommandRunner(env=system_env())
        self.node = NamespacedNode(node_name, self.workdir / node_name, run_id=run_id, runner=self.host)
        self.startup_seconds: float | None = None

    def __repr__(self) -> str:
        return f"OneNodeCluster({self.cluster_name!r}, node={self.node!r})"

    @property
    def runner(self) -> CommandRunner:
        """Runs programs inside the node (pcs, crm_mon, crm_resource, cibadmin)."""
        return self.node.runner

    def configure(self) -> None:
        """corosync.conf, authkey and the seeded CIB, in the node's own directories.

        The key and the CIB are kept when they exist: a restarted cluster
        keeps its configuration like a real one keeps its disk.
        """
        node = self.node
        node.prepare()
        text = render_corosync_conf(
            self.cluster_name,
            [CorosyncNode(node.name, 1, "127.0.0.1")],
            token_ms=self.token_ms,
        )
        conf = node.host_path(COROSYNC_CONF)
        conf.write_text(text)
        os.chmod(conf, 0o644)
        key = node.host_path(AUTHKEY)
        if not key.exists():
            generate_authkey(self.host, key)
        cib = node.host_path(CIB_XML)
        if not cib.exists():
            seed_cib(self.host, cib, {"dc-deadtime": self.dc_deadtime})

    def start(self) -> None:
        """Configure, boot the node and wait until it is online and the DC.

        Raises :class:`ClusterError` with the tail of the node's logs when it
        does not get there within ``start_timeout``; the node is then
        stopped again.
        """
        started = time.monotonic()
        deadline = started + self.start_timeout
        try:
            self.configure()
            self.node.start(timeout=deadline - time.monotonic())
            self.wait_until_ready(timeout=max(deadline - time.monotonic(), 1.0))
            self.startup_seconds = time.monotonic() - started
            log.info("cluster %s up in %.1f s", self.cluster_name, self.startup_seconds)
            if self.disable_stonith:
                self.set_property("stonith-enabled", "false")
        except BaseException as exc:
            self.stop()
            if isinstance(exc, (NodeError, TimeoutError, OSError)):
                raise ClusterError(f"cluster {self.cluster_name} did not start: {exc}") from exc
            raise

    @property
    def pacemaker(self) -> Pacemaker:
        """The cluster's state and tools, seen from the node."""
        return Pacemaker(self.runner)

    def wait_until_ready(self, timeout: float = 60.0) -> ClusterStatus:
        """Wait until a DC is elected with quorum and the node is online."""
        name = self.node.name

        def ready() -> ClusterStatus | None:
            if not self.node.running:
                raise NodeError(f"node {name} stopped: {(self.node.status() or {}).get('detail')}")
            state = self.pacemaker.try_status()
            if state and state.dc and state.quorate and name in state.online:
                return state
            return None

        try:
            return wait_until(ready, timeout=timeout, what=f"{name} online with a DC")
        except (TimeoutError, NodeError) as exc:
            raise ClusterError(f"{exc}\n{self.node.log_tail()}") from exc

    def set_property(self, name: str, value: str) -> None:
        """Set a cluster property (crm_config) in the live CIB."""
        self.runner.run(
            ["crm_attribute", "--type", "crm_config", "--name", name, "--update", value],
            check=True,
        )

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Wait until the cluster has no pending actions (every transition done)."""
        self.runner.run(
            ["crm_resource", "--wait", f"--timeout={int(timeout)}s"],
            timeout=timeout + 10,
            check=True,
        )

    def stop(self) -> None:
        """Power the node off and remove its namespaces; idempotent."""
        self.node.stop()
