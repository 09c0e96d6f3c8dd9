"""A node of the three-node lab: a namespaced node with sshd and highlander's directories.

Like a real server it is reached over SSH (its own sshd on its own
address, with host keys of its own and root's key from the lab), and its
corosync waits for its configuration, so that the Ansible rollout can
configure a node that booted without it.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path
from typing import Any

from highlander.adapters.files import write_file
from highlander.adapters.waiting import wait_until
from highlander.lab.init import InitSpec, Mount, Program
from highlander.lab.node import NamespacedNode, NodeError, StateDir

# Directories of a node that are its own (bind-mounted from its work directory),
# on top of Corosync's and Pacemaker's (highlander.lab.node.STATE_DIRS).
LAB_DIRS: tuple[StateDir, ...] = (
    StateDir("/etc/highlander", 0o755, mounted=True),
    StateDir("/etc/highlander/secrets", 0o700),
    StateDir("/etc/highlander/pki", 0o755),
    StateDir("/var/lib/highlander", 0o755, mounted=True),
    StateDir("/var/log/highlander", 0o755, mounted=True),
    StateDir("/etc/ssh", 0o755, mounted=True),
)
SSHD_CONFIG = """\
# Written by highlander lab: this node's own sshd (root with the lab's key only).
ListenAddress {address}
Port 22
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AuthorizedKeysFile /etc/ssh/authorized_keys/%u
PidFile /run/sshd.pid
Subsystem sftp internal-sftp
"""


def write_node_file(path: Path, data: str | bytes, mode: int) -> None:
    """Write ``path`` with ``mode`` (never wider for a moment) by the durable writer, making its directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file(path, data, mode=mode)


class LabNode(NamespacedNode):
    """A lab node: a :class:`~highlander.lab.node.NamespacedNode` with sshd and the highlander directories of its own.

    Its programs are sshd, corosync and pacemakerd. corosync waits for its
    configuration (corosync.conf and authkey) before it starts, so a node
    can also be booted first and configured over SSH afterwards (the Ansible
    rollout), like a real machine whose corosync service waits to be
    configured.
    """

    def __init__(self, name: str, workdir: Path, *, address: str, config_timeout: float = 300.0, **kwargs: Any) -> None:
        super().__init__(name, workdir, **kwargs)
        self.address = address
        self.config_timeout = config_timeout
        self._power_lock = threading.RLock()

    def host_path(self, inner: str) -> Path:
        for top in (d.path for d in LAB_DIRS if d.mounted):
            if inner == top or inner.startswith(top + "/"):
                return self.root / inner.lstrip("/")
        return super().host_path(inner)

    def prepare(self) -> None:
        super().prepare()
        for d in LAB_DIRS:
            path = self.root / d.path.lstrip("/")
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, d.mode)

    def init_spec(self) -> InitSpec:
        spec = super().init_spec()
        binds = [m for m in spec.mounts if m.source is not None]
        tmpfs = [m for m in spec.mounts if m.source is None]
        binds += [Mount(target=d.path, source=str(self.root / d.path.lstrip("/"))) for d in LAB_DIRS if d.mounted]
        by_name = {p.name: p for p in spec.programs}
        corosync = by_name["corosync"]
        waiting = (
            "until [ -s /etc/corosync/corosync.conf ] && [ -s /etc/corosync/authkey ]; do sleep 0.2; done; "
            "exec " + " ".join(corosync.argv)
        )
        programs = (
            Program("sshd", ("/bin/sh", "-c", "mkdir -p -m 0755 /run/sshd && exec /usr/sbin/sshd -D -e")),
            dataclasses.replace(corosync, argv=("/bin/sh", "-c", waiting), ready_timeout=self.config_timeout),
            by_name["pacemakerd"],
        )
        return dataclasses.replace(spec, mounts=tuple(binds + tmpfs), programs=programs)

    def prepare_ssh(self, authorized_key: str) -> str:
        """This node's sshd: config, a host key (kept across reboots), root's authorized key.

        Returns the public host key line ("ssh-ed25519 AAAA...").
        """
        self.prepare()
        etc = self.host_path("/etc/ssh")
        write_node_file(etc / "sshd_config", SSHD_CONFIG.format(address=self.address), 0o644)
        key = etc / "ssh_host_ed25519_key"
        if not key.exists():
            self.host.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{self.name}", "-f", str(key)], check=True
            )
        keys = etc / "authorized_keys"
        keys.mkdir(mode=0o755, exist_ok=True)
        write_node_file(keys / "root", authorized_key.strip() + "\n", 0o644)
        return " ".join((etc / "ssh_host_ed25519_key.pub").read_text().split()[:2])

    def power_off(self, timeout: float = 15.0) -> None:
        with self._power_lock:
            super().power_off(timeout)

    def boot_unconfigured(self, timeout: float = 60.0) -> None:
        """Boot the node and return once its sshd listens, without waiting for
        corosync (which waits for its configuration) or pacemakerd: the node
        is then configured over SSH (the Ansible rollout)."""

        def listening() -> bool:
            status = self.status() or {}
            if status.get("phase") in ("stopping", "exited") or not self._init_alive():
                raise NodeError(f"init stopped: {status.get('detail', 'no status')}")
            found = self.host.run(["ip", "netns", "exec", self.netns, "ss", "-Hltn", "sport = :22"], timeout=10)
            return found.ok and bool(found.stdout.strip())

        self.boot(
            timeout,
            lambda deadline: wait_until(
                listening, timeout=max(deadline - time.monotonic(), 1.0), what=f"sshd on {self.name}"
            ),
        )
