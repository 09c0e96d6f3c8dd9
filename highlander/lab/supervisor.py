"""The lab's supervisor: builds the lab, owns it while it is up, takes it down.

``highlander lab up`` (:mod:`highlander.lab.lifecycle`) builds, from an
inventory (``examples/lab.yml`` by default), what design.md calls the lab::

    switch netns hl-<run>-switch          (connected to nothing else)
      bridge br0  10.213.0.111/24 10.213.0.112/24 10.213.0.113/24   (the BMCs)
      v0-node-a --veth-- eth0 10.213.0.11/24 in netns hl-<run>-node-a
      v1-node-b --veth-- eth0 10.213.0.12/24 in netns hl-<run>-node-b
      v2-node-w --veth-- eth0 10.213.0.13/24 in netns hl-<run>-node-w
      ipmi_sim per node on its BMC address (UDP 623): power off = power cut
      of that node (its PID namespace is killed), power on = boot it again

Each node is a :class:`~highlander.lab.lab_node.LabNode` (sshd, corosync,
pacemakerd, private directories). Its configuration comes from the same
inventory and templates as a real rollout: ``highlander render --check``,
the sign-state PKI, the fence password files;
:func:`~highlander.lab.configure.install_configuration` puts them in place
(the one step the Ansible rollout replaces), and the rendered CIB is loaded
on one node once the trio is quorate. ``lab up --no-configure`` boots the
nodes without it (only the BMC password files are written) and returns once
their sshd listens; corosync waits for its files, for Ansible.

The supervisor runs as ``python -m highlander.lab.supervisor supervise DIR
...`` (:func:`command_line`), detached in its own session: it builds the lab,
boots the nodes, owns the BMCs (their power hooks are callables run in it)
and stays until SIGTERM, when it takes everything down. It reports its
progress in ``events.jsonl`` and records every PID and name before or as it
creates it (:mod:`highlander.lab.records`).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from highlander.adapters.pacemaker import ClusterStatus, Pacemaker
from highlander.adapters.runner import CommandRunner, system_env
from highlander.adapters.waiting import wait_until
from highlander.lab.chain import CHAIN_ID
from highlander.lab.chain_run import LabChain
from highlander.lab.cleanup import cleanup
from highlander.lab.configure import install_bmc_passwords, install_configuration
from highlander.lab.lab_node import LAB_DIRS, LabNode
from highlander.lab.node import start_time
from highlander.lab.plan import PREFIX_LEN, LabPlan
from highlander.lab.records import EVENTS_FILE, LabError, write_state

log = logging.getLogger(__name__)

MODULE = "highlander.lab.supervisor"
BRIDGE = "br0"
NODE_IFACE = "eth0"
VALIDATOR = "validator"
SIGNSTATE = "signstate"
SSH_KEY = "id_ed25519"
DC_DEADTIME = "5s"
# `lab up --no-configure`: how long a node's corosync waits for its configuration
# (the Ansible rollout) before its init gives up.
UNCONFIGURED_WAIT = 3600.0
UNCONFIGURED_FLAG = "--no-configure"
# What the validator is: the CometBFT chain (the default) or the synthetic demo-signer.
WORKLOADS = ("chain", "demo-signer")
DEMO_FLAG = "--demo-signer"


class Supervisor:
    """Runs in its own process for as long as the lab is up."""

    def __init__(
        self,
        directory: Path,
        inventory: Path,
        run_id: str,
        *,
        timeout: float = 240.0,
        configure: bool = True,
        workload: str = "chain",
    ) -> None:
        self.directory = directory
        self.workload = workload if configure else "demo-signer"
        self.plan = LabPlan.make(directory, inventory, run_id, chain=self.workload == "chain")
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
            "workload": self.workload,
        }
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._events = open(directory / EVENTS_FILE, "a")  # noqa: SIM115 (open while the lab is)
        self.chain: LabChain | None = None
        if self.plan.validators:
            self.chain = LabChain(directory, self.plan, self.host, self.state, self.save)

    # -- bookkeeping --

    def save(self) -> None:
        write_state(self.directory, self.state)

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
        from highlander.commands.render import render_cluster

        render_cluster(plan.inventory, rendered, check_files=True, runner=self.host)
        self.check_stop()
        self.step("creating the switch (bridge, BMC addresses) and cabling the nodes")
        self.create_topology()
        if self.chain is not None:
            self.step(
                f"cabling the chain's ordinary validators: "
                f"{', '.join(f'{v.name} {v.address}' for v in self.plan.validators)}"
            )
            self.chain.cable()
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
        if self.chain is not None:
            self.step(
                f"creating the CometBFT network {CHAIN_ID}: genesis with our validator and "
                f"{len(plan.validators)} FilePV validators of equal power, a full node on each active "
                "node"
            )
            info = self.chain.build(self.nodes)
            self.step(
                f"our validator is {info['address']}: its key and privval.toml on "
                f"{', '.join(n.name for n in plan.nodes if n.role == 'active')}"
            )
            self.step("starting the FilePV validators (CometBFT, kvstore) on their hosts")
            self.chain.start()
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
        if self.chain is not None:
            cib = self.chain_cib(cib)
        first.runner.run(["cibadmin", "--replace", "--scope", "configuration", "--xml-file", str(cib)], check=True)
        if self.chain is not None:
            self.wait_chain(pacemaker)
            return
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

    def chain_cib(self, rendered: Path) -> Path:
        """The rendered CIB with the chain's signer and full nodes instead of the validator."""
        import xml.etree.ElementTree as ET

        from highlander.lab.chain_cib import for_chain

        tree = ET.parse(rendered)
        configuration = tree.getroot().find("configuration")
        assert configuration is not None
        for_chain(configuration, [n.name for n in self.plan.nodes if n.role == "witness"])
        path = self.directory / "rendered" / "chain-cib.xml"
        tree.write(path)
        return path

    def wait_chain(self, pacemaker: Pacemaker) -> None:
        """Until the signer is promoted, both full nodes run and the chain commits our signatures."""
        from highlander.drill.chain_check import ChainReader, CurlRpc
        from highlander.lab.chain_cib import COMETBFT_RESOURCE, PRIVVAL
        from highlander.lab.chain_run import rpc_runner

        assert self.chain is not None
        plan = self.plan
        self.step(
            "waiting for the fence devices, the signstate clone, privval promoted and CometBFT on the active nodes"
        )
        fences = [f"fence-{n.name}-1" for n in plan.nodes]
        names = [n.name for n in plan.nodes]
        actives = {n.name for n in plan.nodes if n.role == "active"}

        def started(s: ClusterStatus) -> bool:
            self.chain.check()  # type: ignore[union-attr]
            return (
                all(s.started_on(f) for f in fences)
                and set(s.clone_nodes(SIGNSTATE)) == set(names)
                and bool(set(s.promoted_on(PRIVVAL)) & actives)
                and set(s.clone_nodes(COMETBFT_RESOURCE)) == actives
            )

        status = self.wait(pacemaker, "privval promoted and CometBFT on both active nodes", started, 240)
        self.state["timings"]["validator"] = round(time.monotonic() - self.started, 1)
        self.step(
            f"privval promoted on {', '.join(status.promoted_on(PRIVVAL))}; waiting for the chain to commit "
            f"our validator's signature"
        )
        reader = ChainReader(CurlRpc(rpc_runner(plan)))
        address = self.state["chain"]["address"]

        def signed() -> int | None:
            self.check_stop()
            self.chain.check()  # type: ignore[union-attr]
            latest = reader.latest()
            if latest < 3:
                return None
            verdict = reader.verdict(address, max(1, latest - 5), latest - 1)
            return next((h.height for h in verdict.heights if h.ours == "committed"), None)

        height = wait_until(signed, timeout=120, what="the chain to commit a signature of our validator", interval=1.0)
        self.state["timings"]["signing"] = round(time.monotonic() - self.started, 1)
        self.save()
        self.step(f"the chain {CHAIN_ID} commits our validator's signatures (height {height})")

    def wait(
        self, pacemaker: Pacemaker, what: str, predicate: Callable[[ClusterStatus], bool], timeout: float
    ) -> ClusterStatus:
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
            node = LabNode(
                n.name,
                self.directory / "nodes" / n.name,
                address=n.address,
                run_id=plan.run_id,
                runner=self.host,
                config_timeout=300.0 if self.configure else UNCONFIGURED_WAIT,
            )
            self.nodes[n.name] = node
            node.create_netns()
            run(
                [
                    "ip",
                    "-n",
                    sw,
                    "link",
                    "add",
                    n.switch_port,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    NODE_IFACE,
                    "netns",
                    n.netns,
                ],
                check=True,
            )
            run(["ip", "-n", sw, "link", "set", n.switch_port, "master", BRIDGE, "up"], check=True)
            run(["ip", "-n", n.netns, "address", "add", f"{n.address}/{PREFIX_LEN}", "dev", NODE_IFACE], check=True)
            run(["ip", "-n", n.netns, "link", "set", NODE_IFACE, "up"], check=True)

    def generate_secrets(self) -> dict[str, Any]:
        from highlander.inventory import load
        from highlander.lab.cluster_files import generate_authkey
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
        self.host.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"highlander-lab-{self.plan.run_id}", "-f", str(key)],
            check=True,
        )
        public = (ssh / f"{SSH_KEY}.pub").read_text()
        known_hosts = []
        for n in self.plan.nodes:
            host_key = self.nodes[n.name].prepare_ssh(public)
            known_hosts.append(f"{n.address} {host_key}")
        (ssh / "known_hosts").write_text("\n".join(known_hosts) + "\n")
        (ssh / "ssh_config").write_text(
            "".join(
                f"Host {n.name}\n    HostName {n.address}\n    User root\n    IdentityFile {key}\n"
                f"    UserKnownHostsFile {ssh / 'known_hosts'}\n    StrictHostKeyChecking yes\n"
                for n in self.plan.nodes
            )
        )
        return {"authkey": authkey, "ca": ca, "bmc_passwords": passwords}

    def seed_cibs(self) -> None:
        """An empty CIB with a short dc-deadtime on each fresh node, so the first
        election does not wait Pacemaker's default 20 s for a DC; the rendered
        configuration replaces it once the trio is quorate."""
        from highlander.lab.cluster_files import CIB_XML, seed_cib

        for node in self.nodes.values():
            cib = node.host_path(CIB_XML)
            if not cib.exists():
                seed_cib(self.host, cib, {"dc-deadtime": DC_DEADTIME})

    def start_bmcs(self, passwords: dict[str, str]) -> None:
        from highlander.lab.ipmisim import IpmiSim

        for n in self.plan.nodes:
            node = self.nodes[n.name]
            bmc = IpmiSim(
                self.directory / "bmc" / n.name,
                address=n.bmc_address,
                port=n.bmc_port,
                username=n.bmc_username,
                password=passwords[n.name],
                power_on=True,
                on_power_off=functools.partial(self.power_off, node),
                on_power_on=functools.partial(self.power_on, node),
                prefix=("ip", "netns", "exec", self.plan.switch),
                name=f"bmc-{n.name}",
            )
            self.bmcs[n.name] = bmc
            bmc.start()
            self.state["bmcs"][n.name] = {
                "pid": bmc.pid,
                "start_time": start_time(bmc.pid) if bmc.pid else None,
                "address": n.bmc_address,
                "port": n.bmc_port,
                "workdir": str(bmc.workdir),
            }
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

        threads = [
            threading.Thread(target=boot, args=(node,), name=f"boot-{name}") for name, node in self.nodes.items()
        ]
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
        """BMCs first (no power hook runs meanwhile), then the chain's validators,
        then every node, then the switch."""
        for bmc in self.bmcs.values():
            bmc.stop()
        if self.chain is not None:
            _quietly(self.chain.stop)
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


def supervise(directory: Path, inventory: Path, run_id: str, configure: bool = True, workload: str = "chain") -> int:
    """Build the lab in ``directory`` and keep it until SIGTERM; the exit status of the supervisor."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(threadName)s %(levelname)s %(message)s"
    )
    return Supervisor(directory, inventory, run_id, configure=configure, workload=workload).run()


def command_line(
    directory: Path, inventory: Path, run_id: str, configure: bool = True, workload: str = "chain"
) -> list[str]:
    """The command line that runs the supervisor of the lab in ``directory`` (what :func:`main` parses)."""
    return [
        sys.executable,
        "-m",
        MODULE,
        "supervise",
        str(directory),
        str(inventory),
        run_id,
        *([] if configure else [UNCONFIGURED_FLAG]),
        *([DEMO_FLAG] if workload == "demo-signer" else []),
    ]


def main(argv: Iterable[str] | None = None) -> int:
    """The supervisor's entry point: parses what :func:`command_line` gives it."""
    args = list(sys.argv[1:] if argv is None else argv)
    configure = UNCONFIGURED_FLAG not in args
    workload = "demo-signer" if DEMO_FLAG in args else "chain"
    args = [a for a in args if a not in (UNCONFIGURED_FLAG, DEMO_FLAG)]
    if len(args) != 4 or args[0] != "supervise":
        print(
            f"usage: python -m {MODULE} supervise DIR INVENTORY RUN_ID [{UNCONFIGURED_FLAG}] [{DEMO_FLAG}]",
            file=sys.stderr,
        )
        return 2
    return supervise(Path(args[1]), Path(args[2]), args[3], configure=configure, workload=workload)


if __name__ == "__main__":
    sys.exit(main())
