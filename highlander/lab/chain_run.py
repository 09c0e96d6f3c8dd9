"""The chain's part of a lab run, driven by the lab's supervisor.

Cables the ordinary validators' hosts to the switch, builds every CometBFT
home (:func:`highlander.lab.chain.build_network`), puts the validator key
and ``privval.toml`` on node-a and node-b, starts the ordinary validators and
records each by PID and start time in ``state.json`` (``chain.processes``)
as it starts it, so :mod:`highlander.lab.cleanup` finds them whatever
happens to the supervisor. Reads the chain over RPC from the first ordinary
validator's host, the one that is never failed.
"""

from __future__ import annotations

import datetime
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from highlander.adapters.runner import CommandRunner, system_env
from highlander.lab import chain
from highlander.lab.lab_node import LabNode, write_node_file
from highlander.lab.node import start_time
from highlander.lab.plan import PREFIX_LEN, LabPlan

BRIDGE = "br0"
IFACE = "eth0"


def rpc_runner(plan: LabPlan) -> CommandRunner:
    """Runs programs on the first ordinary validator's host, where the chain's RPC answers on loopback."""
    return CommandRunner(prefix=("ip", "netns", "exec", plan.validators[0].netns), env=system_env())


def latest_height(runner: CommandRunner) -> int:
    """The chain's latest height as the first validator sees it (0 while it does not answer)."""
    done = runner.run(["curl", "-s", "--max-time", "3", f"http://127.0.0.1:{chain.RPC_PORT}/status"], timeout=10)
    try:
        return int(json.loads(done.stdout)["result"]["sync_info"]["latest_block_height"])
    except (ValueError, KeyError, TypeError):
        return 0


class LabChain:
    """The lab's CometBFT network while the supervisor owns it."""

    def __init__(
        self, directory: Path, plan: LabPlan, host: CommandRunner, state: dict[str, Any], save: Callable[[], None]
    ) -> None:
        self.directory = directory
        self.plan = plan
        self.host = host
        self.state = state
        self.save = save
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.home = directory / "chain"

    def cable(self) -> None:
        """Each ordinary validator's host: its namespace, loopback up, a veth to the switch."""
        run, sw = self.host.run, self.plan.switch
        for v in self.plan.validators:
            run(["ip", "netns", "add", v.netns], check=True)
            run(["ip", "-n", v.netns, "link", "set", "lo", "up"], check=True)
            run(
                ["ip", "-n", sw, "link", "add", v.switch_port, "type", "veth", "peer", "name", IFACE, "netns", v.netns],
                check=True,
            )
            run(["ip", "-n", sw, "link", "set", v.switch_port, "master", BRIDGE, "up"], check=True)
            run(["ip", "-n", v.netns, "address", "add", f"{v.address}/{PREFIX_LEN}", "dev", IFACE], check=True)
            run(["ip", "-n", v.netns, "link", "set", IFACE, "up"], check=True)

    def build(self, nodes: dict[str, LabNode]) -> dict[str, Any]:
        """Every home, the genesis, the peers; the key and privval.toml on the active-capable nodes."""
        actives = [n for n in self.plan.nodes if n.role == "active"]
        layout = chain.NetworkLayout(
            chain_id=chain.CHAIN_ID,
            ours=self.home / "validator-key",
            full_nodes={n.name: (nodes[n.name].host_path(chain.NODE_HOME), n.address) for n in actives},
            validators={v.name: (self.home / v.name, v.address) for v in self.plan.validators},
        )
        for home, _ in [*layout.full_nodes.values(), *layout.validators.values(), (layout.ours, "")]:
            home.mkdir(parents=True, exist_ok=True)
        info = chain.build_network(layout, datetime.datetime.now(datetime.timezone.utc))
        for n in actives:
            node = nodes[n.name]
            chain.copy_key(Path(info["key_file"]), node.host_path(chain.PRIVVAL_KEY))
            # The node's own FilePV key is ours too: what the unguarded stack signs with (both nodes at once).
            chain.copy_key(Path(info["key_file"]), layout.full_nodes[n.name][0] / "config" / "priv_validator_key.json")
            node.host_path(chain.PRIVVAL_STATE).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            config = chain.privval_config(chain.CHAIN_ID, [n.address for n in actives])
            write_node_file(node.host_path(chain.PRIVVAL_CONFIG), config, 0o644)
        self.state["chain"] = {**info, "processes": {}, "rpc_netns": self.plan.validators[0].netns}
        self.save()
        return info

    def start(self) -> None:
        """Start each ordinary validator, recording its PID as it starts."""
        for v in self.plan.validators:
            process = chain.start_validator(v.netns, self.home / v.name)
            self.processes[v.name] = process
            self.state["chain"]["processes"][v.name] = {"pid": process.pid, "start_time": start_time(process.pid)}
            self.save()

    def check(self) -> None:
        """Raise if an ordinary validator exited, with the end of its log."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                log = (self.home / name / "cometbft.log").read_text(errors="replace").splitlines()[-15:]
                raise chain.ChainError(
                    f"CometBFT validator {name} exited with {process.returncode}:\n" + "\n".join(log)
                )

    def stop(self) -> None:
        chain.stop_validators(self.processes)
