"""The lab: a real three-node Pacemaker/Corosync trio in namespaces on this host.

``highlander lab up`` builds, from an inventory (``examples/lab.yml`` by
default), what design.md calls the lab::

    switch netns hl-<run>-switch          (connected to nothing else)
      bridge br0  10.213.0.111/24 10.213.0.112/24 10.213.0.113/24   (the BMCs)
      v0-node-a --veth-- eth0 10.213.0.11/24 in netns hl-<run>-node-a
      v1-node-b --veth-- eth0 10.213.0.12/24 in netns hl-<run>-node-b
      v2-node-w --veth-- eth0 10.213.0.13/24 in netns hl-<run>-node-w
      ipmi_sim per node on its BMC address (UDP 623): power off = power cut
      of that node (its PID namespace is killed), power on = boot it again

Each node (:class:`LabNode`, a :class:`~highlander.lab.node.Node`) runs
sshd (own host keys, on the node's address; root logs in with a key the lab
generated), corosync and pacemakerd, with private /etc/corosync,
/etc/highlander, /etc/ssh, /var/lib/highlander, /var/log/highlander and the
Pacemaker directories. Its configuration comes from the same inventory and
templates as a real rollout: ``highlander render --check``, the sign-state
PKI, the fence password files; :func:`install_configuration` puts them in
place (the one step the Ansible rollout replaces), and the rendered CIB is
loaded on one node once the trio is quorate. ``lab up --no-configure`` boots
the nodes without it (only the BMC password files are written) and returns
once their sshd listens; corosync waits for its files, for Ansible.

Processes: ``lab up`` starts a *supervisor* (``python -m
highlander.lab.trio supervise DIR``), detached in its own session, which
builds the lab, boots the nodes, owns the BMCs (their power hooks are
callables run in it) and stays until SIGTERM, when it takes everything down.
``lab up`` prints the supervisor's progress (``events.jsonl``) and returns
once the validator runs. Every PID and name is recorded in the lab
directory (``state.json``, ``nodes/<node>/node.json``) before or as it is
created, so ``status``, ``exec`` and ``down`` in other processes find the
lab, and a lab whose supervisor died is still cleaned up by those records:
never by a name pattern.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import highlander
from highlander.adapters.pacemaker import ClusterStatus, Pacemaker
from highlander.adapters.runner import CommandRunner, system_env
from highlander.adapters.waiting import wait_until
from highlander.lab.init import InitSpec, Mount, Program
from highlander.lab.node import (
    RECORD_FILE,
    Node,
    NodeError,
    StateDir,
    init_alive,
    netns_name,
    new_run_id,
    pid_namespace_of,
    processes_in,
    same_process,
    start_time,
)

log = logging.getLogger(__name__)

DEFAULT_DIR = Path(os.environ.get("HIGHLANDER_LAB_DIR", "/var/lib/highlander-lab"))
STATE_FILE = "state.json"
EVENTS_FILE = "events.jsonl"
SUPERVISOR_LOG = "supervisor.log"
BRIDGE = "br0"
NODE_IFACE = "eth0"
PREFIX_LEN = 24
VALIDATOR = "validator"
SIGNSTATE = "signstate"
SSH_KEY = "id_ed25519"
DC_DEADTIME = "5s"
# `lab up --no-configure`: how long a node's corosync waits for its configuration
# (the Ansible rollout) before its init gives up.
UNCONFIGURED_WAIT = 3600.0
UNCONFIGURED_FLAG = "--no-configure"
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


class LabError(RuntimeError):
    """The lab could not be built, reached or taken down; the message says why."""


# --- small helpers ----------------------------------------------------------------


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


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _write_file(path: Path, data: str | bytes, mode: int) -> None:
    """Write ``path`` created with ``mode`` (never wider for a moment)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data.encode() if isinstance(data, str) else data)
    finally:
        os.close(fd)


def read_state(directory: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((directory / STATE_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return state


def netns_list(runner: CommandRunner) -> set[str]:
    listing = runner.run(["ip", "netns", "list"], check=True).stdout
    return {line.split()[0] for line in listing.splitlines() if line.strip()}


# --- one node -----------------------------------------------------------------------


class LabNode(Node):
    """A lab node: a :class:`Node` with sshd and the highlander directories of its own.

    Its programs are sshd, corosync and pacemakerd. corosync waits for its
    configuration (corosync.conf and authkey) before it starts, so a node
    can also be booted first and configured over SSH afterwards (the Ansible
    rollout), like a real machine whose corosync service waits to be
    configured.
    """

    def __init__(self, name: str, workdir: Path, *, address: str, config_timeout: float = 300.0,
                 **kwargs: Any) -> None:  # fmt: skip
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
        binds += [
            Mount(target=d.path, source=str(self.root / d.path.lstrip("/"))) for d in LAB_DIRS if d.mounted
        ]
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
        _write_file(etc / "sshd_config", SSHD_CONFIG.format(address=self.address), 0o644)
        key = etc / "ssh_host_ed25519_key"
        if not key.exists():
            self.host.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{self.name}",
                           "-f", str(key)], check=True)  # fmt: skip
        keys = etc / "authorized_keys"
        keys.mkdir(mode=0o755, exist_ok=True)
        _write_file(keys / "root", authorized_key.strip() + "\n", 0o644)
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

        self.boot(timeout, lambda deadline: wait_until(listening, timeout=max(deadline - time.monotonic(), 1.0),
                                                       what=f"sshd on {self.name}"))  # fmt: skip


# --- the lab's description -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NodePlan:
    name: str
    role: str
    address: str
    netns: str
    switch_port: str  # the veth end on the bridge
    bmc_address: str
    bmc_port: int
    bmc_username: str
    password_file: str


@dataclasses.dataclass(frozen=True)
class Plan:
    """Every name and address of one lab run, fixed before anything is created."""

    directory: Path
    inventory: Path
    run_id: str
    switch: str
    nodes: tuple[NodePlan, ...]

    @classmethod
    def make(cls, directory: Path, inventory_path: Path, run_id: str) -> Plan:
        from highlander.inventory import load

        inventory = load(inventory_path)
        if inventory.quorum != "votequorum":
            raise LabError("the lab runs a three-node votequorum trio: set cluster.quorum to votequorum")
        first = ipaddress.ip_interface(f"{inventory.nodes[0].addresses[0]}/{PREFIX_LEN}").network
        nodes = []
        for i, node in enumerate(inventory.nodes):
            if len(node.addresses) != 1:
                raise LabError(f"{node.name}: the lab cables one link per node: give one address")
            ipmi = [d for d in node.fence if d.method == "ipmi"]
            if not ipmi or not ipmi[0].password_file:
                raise LabError(f"{node.name}: the lab simulates IPMI BMCs: give an ipmi fence device "
                               "with a password_file")  # fmt: skip
            device = ipmi[0]
            for address in (node.addresses[0], device.address):
                if ipaddress.ip_address(address) not in first:
                    raise LabError(f"{node.name}: {address} is not in the lab subnet {first}")
            nodes.append(NodePlan(
                name=node.name, role=node.role, address=node.addresses[0],
                netns=netns_name(run_id, node.name), switch_port=f"v{i}-{node.name}"[:15],
                bmc_address=device.address, bmc_port=device.port, bmc_username=device.username,
                password_file=device.password_file or "",
            ))  # fmt: skip
        return cls(directory, inventory_path, run_id, netns_name(run_id, "switch"), tuple(nodes))

    def node(self, name: str) -> NodePlan:
        for node in self.nodes:
            if node.name == name:
                return node
        raise LabError(f"no node {name!r} in the lab (nodes: {', '.join(n.name for n in self.nodes)})")

    def to_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "inventory": str(self.inventory),
            "run_id": self.run_id,
            "switch": self.switch,
            "nodes": [dataclasses.asdict(n) for n in self.nodes],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        return cls(
            Path(data["directory"]), Path(data["inventory"]), data["run_id"], data["switch"],
            tuple(NodePlan(**n) for n in data["nodes"]),
        )  # fmt: skip


# --- the supervisor: builds the lab, owns it, takes it down ---------------------------


class Supervisor:
    """Runs in its own process for as long as the lab is up."""

    def __init__(self, directory: Path, inventory: Path, run_id: str, *, timeout: float = 240.0,
                 configure: bool = True) -> None:  # fmt: skip
        self.directory = directory
        self.plan = Plan.make(directory, inventory, run_id)
        self.timeout = timeout
        self.configure = configure
        self.host = CommandRunner(env=system_env())
        self.nodes: dict[str, LabNode] = {}
        self.bmcs: dict[str, Any] = {}
        self.state: dict[str, Any] = {
            "plan": self.plan.to_dict(),
            "phase": "starting",
            "supervisor": {"pid": os.getpid(), "start_time": start_time(os.getpid())},
            "bmcs": {},
            "created_dirs": [],
            "timings": {},
            "configured": configure,
        }
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._events = open(directory / EVENTS_FILE, "a")  # noqa: SIM115 (open while the lab is)

    # -- bookkeeping --

    def save(self) -> None:
        _write_json(self.directory / STATE_FILE, self.state)

    def event(self, kind: str, message: str, **fields: Any) -> None:
        record = {"kind": kind, "t": round(time.monotonic() - self.started, 2), "message": message, **fields}
        self._events.write(json.dumps(record) + "\n")
        self._events.flush()
        log.info("%s: %s", kind, message)

    def step(self, message: str) -> None:
        self.event("step", message)

    # -- the run --

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, lambda *_: self._stop.set())
        self.save()  # the names, before anything of them exists
        try:
            self.build()
        except BaseException as exc:
            detail = f"{type(exc).__name__}: {exc}"
            log.exception("lab up failed")
            self.event("failed", detail.splitlines()[0], detail=detail)
            self.state["phase"] = "failed"
            self.save()
            self.teardown()
            return 1
        self.state["phase"] = "up"
        self.save()
        self.event("ready", "the lab is up", timings=self.state["timings"])
        while not self._stop.wait(1.0):
            pass
        self.step("taking the lab down")
        self.teardown()
        self.event("down", "the lab is down")
        return 0

    def check_stop(self) -> None:
        if self._stop.is_set():
            raise LabError("interrupted")

    def build(self) -> None:
        plan = self.plan
        self.step(f"run {plan.run_id}: nodes {', '.join(n.name for n in plan.nodes)} from {plan.inventory}")
        rendered = self.directory / "rendered"
        self.step("rendering the configuration (highlander render --check)")
        from highlander.commands.render import render

        render(plan.inventory, rendered, check_files=True, runner=self.host)
        self.check_stop()
        self.step("creating the switch (bridge, BMC addresses) and cabling the nodes")
        self.create_topology()
        self.check_stop()
        self.step("generating secrets: corosync authkey, sign-state CA and certificates, BMC passwords, SSH keys")
        secrets_ = self.generate_secrets()
        if not self.configure:
            self.step("writing only the BMC password files: the rest of the configuration is left to Ansible")
            install_bmc_passwords(self.nodes, plan, secrets_)
            self.seed_cibs()
            self.step("starting the BMCs (ipmi_sim) on the switch")
            self.start_bmcs(secrets_["bmc_passwords"])
            self.step("booting the nodes (sshd; corosync waits for its configuration)")
            self.boot_all(configured=False)
            self.step("nodes booted and reachable over SSH; corosync waits for corosync.conf and the authkey")
            return
        self.step("installing the configuration on the nodes")
        install_configuration(self.nodes, plan, rendered, secrets_)
        self.check_stop()
        self.seed_cibs()
        self.step("starting the BMCs (ipmi_sim) on the switch")
        self.start_bmcs(secrets_["bmc_passwords"])
        self.step("booting the nodes (sshd, corosync, pacemakerd)")
        self.boot_all()
        self.step("nodes booted; waiting for the trio to form with quorum")
        first = self.nodes[plan.nodes[0].name]
        pacemaker = Pacemaker(first.runner)
        names = [n.name for n in plan.nodes]

        def formed(s: ClusterStatus) -> bool:
            return bool(s.dc) and s.quorate and all(n in s.online for n in names)

        self.wait(pacemaker, "all three online, quorate, with a DC", formed, 120)
        self.state["timings"]["quorate"] = round(time.monotonic() - self.started, 1)
        self.step(f"quorate with {', '.join(names)} online; loading the rendered CIB on {first.name}")
        cib = rendered / first.name / "cib.xml"
        first.runner.run(["cibadmin", "--replace", "--scope", "configuration", "--xml-file", str(cib)],
                         check=True)  # fmt: skip
        self.step("waiting for the fence devices, the signstate clone and the validator")
        fences = [f"fence-{n.name}-1" for n in plan.nodes]
        actives = {n.name for n in plan.nodes if n.role == "active"}

        def started(s: ClusterStatus) -> bool:
            return (
                all(s.started_on(f) for f in fences)
                and set(s.clone_nodes(SIGNSTATE)) == set(names)
                and bool(set(s.started_on(VALIDATOR)) & actives)
            )

        status = self.wait(pacemaker, "fence devices, signstate on all three, validator started", started, 150)
        self.state["timings"]["validator"] = round(time.monotonic() - self.started, 1)
        self.step(f"validator started on {', '.join(status.started_on(VALIDATOR))}")

    def wait(self, pacemaker: Pacemaker, what: str, predicate: Callable[[ClusterStatus], bool],
             timeout: float) -> ClusterStatus:  # fmt: skip
        def check() -> ClusterStatus | None:
            self.check_stop()
            for node in self.nodes.values():
                if not node.running:
                    raise LabError(f"{node.name} stopped: {(node.status() or {}).get('detail')}\n{node.log_tail()}")
            status = pacemaker.try_status()
            return status if status is not None and predicate(status) else None

        try:
            return wait_until(check, timeout=timeout, what=what, interval=0.5)
        except TimeoutError as exc:
            shown = pacemaker.runner.run(["crm_mon", "-1", "--inactive"]).stdout
            raise LabError(f"{exc}\n{shown}") from exc

    # -- building blocks --

    def ensure_mountpoints(self) -> None:
        """The targets of the nodes' bind mounts must exist on the host; create
        (and record, for removal) the ones that do not."""
        for d in LAB_DIRS:
            if d.mounted and not Path(d.path).exists():
                Path(d.path).mkdir(parents=True)
                self.state["created_dirs"].append(d.path)
                self.save()

    def create_topology(self) -> None:
        plan, run = self.plan, self.host.run
        sw = plan.switch
        run(["ip", "netns", "add", sw], check=True)
        run(["ip", "-n", sw, "link", "set", "lo", "up"], check=True)
        run(["ip", "-n", sw, "link", "add", BRIDGE, "type", "bridge"], check=True)
        run(["ip", "-n", sw, "link", "set", BRIDGE, "up"], check=True)
        self.ensure_mountpoints()
        for n in plan.nodes:
            run(["ip", "-n", sw, "address", "add", f"{n.bmc_address}/{PREFIX_LEN}", "dev", BRIDGE], check=True)
            node = LabNode(n.name, self.directory / "nodes" / n.name, address=n.address, run_id=plan.run_id,
                           runner=self.host, config_timeout=300.0 if self.configure else UNCONFIGURED_WAIT)  # fmt: skip
            self.nodes[n.name] = node
            node.create_netns()
            run(["ip", "-n", sw, "link", "add", n.switch_port, "type", "veth",
                 "peer", "name", NODE_IFACE, "netns", n.netns], check=True)  # fmt: skip
            run(["ip", "-n", sw, "link", "set", n.switch_port, "master", BRIDGE, "up"], check=True)
            run(["ip", "-n", n.netns, "address", "add", f"{n.address}/{PREFIX_LEN}", "dev", NODE_IFACE], check=True)
            run(["ip", "-n", n.netns, "link", "set", NODE_IFACE, "up"], check=True)

    def generate_secrets(self) -> dict[str, Any]:
        from highlander.inventory import load
        from highlander.lab.cluster import generate_authkey
        from highlander.signstate import pki

        inventory = load(self.plan.inventory)
        authkey = self.directory / "secrets" / "authkey"
        (self.directory / "secrets").mkdir(mode=0o700, exist_ok=True)
        generate_authkey(self.host, authkey)
        ca = self.directory / "ca"
        pki.init_ca(ca, inventory.cluster_name)
        for n in self.plan.nodes:
            pki.issue(ca, n.name, addresses=[n.address])
        passwords = {n.name: secrets.token_urlsafe(12) for n in self.plan.nodes}
        ssh = self.directory / "ssh"
        ssh.mkdir(mode=0o700, exist_ok=True)
        key = ssh / SSH_KEY
        self.host.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"highlander-lab-{self.plan.run_id}",
                       "-f", str(key)], check=True)  # fmt: skip
        public = (ssh / f"{SSH_KEY}.pub").read_text()
        known_hosts = []
        for n in self.plan.nodes:
            host_key = self.nodes[n.name].prepare_ssh(public)
            known_hosts.append(f"{n.address} {host_key}")
        (ssh / "known_hosts").write_text("\n".join(known_hosts) + "\n")
        (ssh / "ssh_config").write_text("".join(
            f"Host {n.name}\n    HostName {n.address}\n    User root\n    IdentityFile {key}\n"
            f"    UserKnownHostsFile {ssh / 'known_hosts'}\n    StrictHostKeyChecking yes\n"
            for n in self.plan.nodes
        ))  # fmt: skip
        return {"authkey": authkey, "ca": ca, "bmc_passwords": passwords}

    def seed_cibs(self) -> None:
        """An empty CIB with a short dc-deadtime on each fresh node, so the first
        election does not wait Pacemaker's default 20 s for a DC; the rendered
        configuration replaces it once the trio is quorate."""
        from highlander.lab.cluster import CIB_XML, seed_cib

        for node in self.nodes.values():
            cib = node.host_path(CIB_XML)
            if not cib.exists():
                seed_cib(self.host, cib, {"dc-deadtime": DC_DEADTIME})

    def start_bmcs(self, passwords: dict[str, str]) -> None:
        from highlander.lab.ipmisim import IpmiSim

        for n in self.plan.nodes:
            node = self.nodes[n.name]
            bmc = IpmiSim(
                self.directory / "bmc" / n.name, address=n.bmc_address, port=n.bmc_port,
                username=n.bmc_username, password=passwords[n.name], power_on=True,
                on_power_off=functools.partial(self.power_off, node),
                on_power_on=functools.partial(self.power_on, node),
                prefix=("ip", "netns", "exec", self.plan.switch), name=f"bmc-{n.name}",
            )  # fmt: skip
            self.bmcs[n.name] = bmc
            bmc.start()
            self.state["bmcs"][n.name] = {
                "pid": bmc.pid, "start_time": start_time(bmc.pid) if bmc.pid else None,
                "address": n.bmc_address, "port": n.bmc_port, "workdir": str(bmc.workdir),
            }  # fmt: skip
            self.save()

    def boot_all(self, configured: bool = True) -> None:
        errors: dict[str, BaseException] = {}

        def boot(node: LabNode) -> None:
            try:
                if configured:
                    node.start(timeout=120)
                else:
                    node.boot_unconfigured(timeout=120)
            except BaseException as exc:  # noqa: BLE001 (collected and raised below)
                errors[node.name] = exc

        threads = [threading.Thread(target=boot, args=(node,), name=f"boot-{name}")
                   for name, node in self.nodes.items()]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(130)
        if errors:
            raise LabError("\n".join(f"{name}: {exc}" for name, exc in errors.items()))

    # -- the BMCs' power hooks (run in the hook server's thread) --

    def power_off(self, node: LabNode) -> None:
        """A power cut: every process of the node dies at once."""
        self.event("power", f"BMC: {node.name} powered off")
        node.power_off(timeout=8)

    def power_on(self, node: LabNode) -> None:
        """Start booting and return at once: a BMC reports "on" long before the OS is up."""
        self.event("power", f"BMC: {node.name} powered on; booting")

        def boot() -> None:
            try:
                node.start(timeout=120)
                self.event("power", f"{node.name} booted")
            except Exception as exc:  # noqa: BLE001 (reported; the BMC stays on, like a real one)
                self.event("power", f"{node.name} did not boot: {exc}")

        threading.Thread(target=boot, name=f"boot-{node.name}", daemon=True).start()

    # -- down --

    def teardown(self) -> None:
        """BMCs first (no power hook runs meanwhile), then every node, then the switch."""
        for bmc in self.bmcs.values():
            bmc.stop()
        threads = [threading.Thread(target=_quietly, args=(node.stop,)) for node in self.nodes.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        cleanup(self.directory, self.host, own_pid=os.getpid())
        self.state["phase"] = "down"
        self.save()


def _quietly(function: Callable[[], object]) -> None:
    try:
        function()
    except Exception:
        log.exception("during teardown")


# --- cleaning up by the records ------------------------------------------------------


def _node_records(directory: Path, plan: Plan) -> list[dict[str, Any]]:
    records = []
    for n in plan.nodes:
        try:
            records.append(json.loads((directory / "nodes" / n.name / RECORD_FILE).read_text()))
        except (FileNotFoundError, json.JSONDecodeError):
            pass
    return records


def _kill(pid: int, signum: int = signal.SIGKILL, group: bool = False) -> None:
    try:
        os.killpg(pid, signum) if group else os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def cleanup(directory: Path, runner: CommandRunner | None = None, *, own_pid: int | None = None,
            timeout: float = 60.0) -> list[str]:  # fmt: skip
    """Remove what the records in ``directory`` name: the supervisor, nodes, BMCs,
    network namespaces, created mount points. Idempotent; returns what it did."""
    runner = runner or CommandRunner(env=system_env())
    state = read_state(directory)
    if state is None:
        return []
    done: list[str] = []
    plan = Plan.from_dict(state["plan"])
    sup = state.get("supervisor", {})
    pid, started = sup.get("pid"), sup.get("start_time")
    if pid is not None and pid != own_pid and same_process(pid, started):
        _kill(pid, signal.SIGTERM)

        def gone() -> bool:
            return not same_process(pid, started)

        try:
            wait_until(gone, timeout=timeout, what="the lab supervisor to take the lab down")
            done.append(f"supervisor {pid} took the lab down")
        except TimeoutError:
            _kill(pid)
            done.append(f"supervisor {pid} killed")
        state = read_state(directory) or state
    for name, bmc in state.get("bmcs", {}).items():
        if same_process(bmc.get("pid"), bmc.get("start_time")):
            _kill(bmc["pid"], group=True)
            done.append(f"BMC of {name} (pid {bmc['pid']}) killed")
    for record in _node_records(directory, plan):
        if not init_alive(record):
            continue  # the namespace died with its init; its number may be another lab's by now
        init = int(record["init_pid"])
        members = [(pid, start_time(pid)) for pid in processes_in(int(record["pid_namespace"]))]
        _kill(init)
        done.append(f"{record['name']} powered off (init {init})")

        def members_gone(members: list[tuple[int, int | None]] = members) -> bool:
            return not any(same_process(pid, started) for pid, started in members)

        try:
            wait_until(members_gone, timeout=15, what=f"{record['name']}'s processes")
        except TimeoutError:
            for pid, started in members:
                if same_process(pid, started):
                    _kill(pid)
    present = netns_list(runner)
    for name in [n.netns for n in plan.nodes] + [plan.switch]:
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
    plan = Plan.from_dict(state["plan"])
    found = []
    names = {n.netns for n in plan.nodes} | {plan.switch}
    found += [f"network namespace {name}" for name in sorted(names & netns_list(runner))]
    with open("/proc/self/mountinfo") as f:
        found += [f"mount {line.split()[4]}" for line in f if any(name in line for name in names)]
    sup = state.get("supervisor", {})
    if same_process(sup.get("pid"), sup.get("start_time")):
        found.append(f"supervisor pid {sup['pid']}")
    for name, bmc in state.get("bmcs", {}).items():
        if same_process(bmc.get("pid"), bmc.get("start_time")):
            found.append(f"BMC of {name} pid {bmc['pid']}")
    for record in _node_records(directory, plan):
        if init_alive(record):
            found.append(f"processes of {record['name']}: {processes_in(record['pid_namespace'])}")
    links = runner.run(["ip", "-o", "link", "show"], check=True).stdout
    found += [f"host link {n.switch_port}" for n in plan.nodes if f" {n.switch_port}@" in links]
    return found


# --- what the CLI calls -----------------------------------------------------------------


def install_configuration(nodes: dict[str, LabNode], plan: Plan, rendered: Path, secrets_: dict[str, Any]) -> None:
    """Put the rollout's files on the nodes (the step the Ansible rollout replaces).

    corosync.conf and the one authkey, signstate.toml, the sign-state PKI
    (ca.crt and the node's own certificate and key) and every BMC's
    password file (0600) at the path the CIB's password_script reads.
    Written into the nodes' own directories from the host; a node whose
    corosync waits for its configuration picks it up.
    """
    from highlander.lab.cluster import AUTHKEY, COROSYNC_CONF
    from highlander.signstate import store
    from highlander.signstate.config import load_config

    authkey = Path(secrets_["authkey"]).read_bytes()
    ca = Path(secrets_["ca"])
    for n in plan.nodes:
        node = nodes[n.name]
        node.prepare()
        source = rendered / n.name
        _write_file(node.host_path("/etc/highlander/signstate.toml"), (source / "signstate.toml").read_text(), 0o644)
        config = load_config(source / "signstate.toml")
        pki_dir = node.host_path(str(config.pki_dir))
        _write_file(pki_dir / "ca.crt", (ca / "ca.crt").read_bytes(), 0o644)
        _write_file(pki_dir / f"{n.name}.crt", (ca / f"{n.name}.crt").read_bytes(), 0o644)
        _write_file(pki_dir / f"{n.name}.key", (ca / f"{n.name}.key").read_bytes(), 0o600)
        state_dir = node.host_path(str(config.state_dir))
        if not state_dir.exists():  # the lab's cluster is new: its replicas are initialised once
            store.create(state_dir, n.name).close()
        _write_bmc_passwords(node, plan, secrets_)
        # corosync last: it starts as soon as both files are there
        _write_file(node.host_path(AUTHKEY), authkey, 0o400)
        _write_file(node.host_path(COROSYNC_CONF), (source / "corosync.conf").read_text(), 0o644)


def _write_bmc_passwords(node: LabNode, plan: Plan, secrets_: dict[str, Any]) -> None:
    for other in plan.nodes:
        _write_file(node.host_path(other.password_file), secrets_["bmc_passwords"][other.name] + "\n", 0o600)


def install_bmc_passwords(nodes: dict[str, LabNode], plan: Plan, secrets_: dict[str, Any]) -> None:
    """Only every BMC's password file (0600), on every node: what the operator
    provisions before a rollout whose inventory names them (password_file)."""
    for n in plan.nodes:
        node = nodes[n.name]
        node.prepare()
        _write_bmc_passwords(node, plan, secrets_)


def supervise(directory: Path, inventory: Path, run_id: str, configure: bool = True) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(threadName)s %(levelname)s %(message)s")  # fmt: skip
    return Supervisor(directory, inventory, run_id, configure=configure).run()


def prepare_directory(directory: Path) -> list[str]:
    """Clean up after an earlier (possibly aborted) run and empty the lab directory."""
    directory = directory.absolute()
    done = cleanup(directory) if read_state(directory) else []
    if directory.exists():
        if any(directory.iterdir()) and not (directory / STATE_FILE).exists() and not (directory / EVENTS_FILE).exists():
            raise LabError(f"{directory} is not empty and not a lab directory: choose another --dir")
        shutil.rmtree(directory)
    directory.mkdir(mode=0o700, parents=True)
    return done


def up(directory: Path, inventory: Path | None, say: Callable[[str], None], *, timeout: float = 300.0,
       configure: bool = True) -> dict[str, Any]:  # fmt: skip
    """Build the lab: returns the state once the validator runs; raises LabError otherwise.

    With ``configure=False`` the nodes boot without their configuration (only
    the BMC password files are written) and the state is returned once each
    node's sshd listens: corosync waits for corosync.conf and the authkey, for
    the Ansible rollout to install them over SSH."""
    directory = directory.absolute()
    inventory = (inventory or default_inventory()).absolute()
    started = time.monotonic()
    for line in prepare_directory(directory):
        say(f"[{time.monotonic() - started:6.1f}s] cleaned up the earlier run: {line}")
    run_id = new_run_id()
    package_parent = str(Path(highlander.__file__).resolve().parent.parent)
    with open(directory / SUPERVISOR_LOG, "ab") as logfile:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "highlander.lab.trio", "supervise", str(directory), str(inventory), run_id,
             *([] if configure else [UNCONFIGURED_FLAG])],
            stdin=subprocess.DEVNULL, stdout=logfile, stderr=logfile, cwd="/", start_new_session=True,
            env={**system_env(), "PYTHONPATH": package_parent},
        )  # fmt: skip
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
                        raise LabError(f"lab up failed: {event.get('detail', event['message'])}\n"
                                       f"(logs in {directory})")  # fmt: skip
            if supervisor.poll() is not None:
                raise LabError(f"the lab supervisor exited with {supervisor.returncode}; see "
                               f"{directory / SUPERVISOR_LOG}")  # fmt: skip
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


def load_plan(directory: Path) -> tuple[Plan, dict[str, Any]]:
    state = read_state(directory.absolute())
    if state is None:
        raise LabError(f"no lab in {directory} (run highlander lab up)")
    return Plan.from_dict(state["plan"]), state


def node_init(directory: Path, name: str) -> int | None:
    """The host PID of ``name``'s init while the node is powered on."""
    plan, _ = load_plan(directory)
    plan.node(name)
    try:
        record = json.loads((directory.absolute() / "nodes" / name / RECORD_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
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
    _kill(init)
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
    argv = ["ip", "netns", "exec", plan.switch, "ipmitool", "-I", "lanplus", "-H", n.bmc_address,
            "-p", str(n.bmc_port), "-U", n.bmc_username, "-E", "-C", cipher, "chassis", "power", action]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                            env={**system_env(), "IPMI_PASSWORD": password})  # fmt: skip
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
            "role": n.role, "address": n.address, "netns": n.netns,
            "state": "running" if init else "off", "init_pid": init,
            "bmc": f"{n.bmc_address}:{n.bmc_port}", "bmc_power": bmc_power(directory, n.name),
            "bmc_running": same_process(bmc.get("pid"), bmc.get("start_time")),
        }  # fmt: skip
        if init and crm_mon is None:
            result = node_runner(directory, n.name).run(["crm_mon", "-1", "--inactive"], timeout=20)
            crm_mon = result.stdout if result.ok else None
    sup = state.get("supervisor", {})
    return {
        "directory": str(directory.absolute()), "run_id": plan.run_id, "phase": state.get("phase"),
        "switch": plan.switch, "supervisor": sup.get("pid") if same_process(sup.get("pid"), sup.get("start_time")) else None,
        "nodes": nodes, "crm_mon": crm_mon, "timings": state.get("timings", {}),
    }  # fmt: skip


def main(argv: Iterable[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    configure = UNCONFIGURED_FLAG not in args
    args = [a for a in args if a != UNCONFIGURED_FLAG]
    if len(args) != 4 or args[0] != "supervise":
        print(f"usage: python -m highlander.lab.trio supervise DIR INVENTORY RUN_ID [{UNCONFIGURED_FLAG}]",
              file=sys.stderr)  # fmt: skip
        return 2
    return supervise(Path(args[1]), Path(args[2]), args[3], configure=configure)


if __name__ == "__main__":
    sys.exit(main())
