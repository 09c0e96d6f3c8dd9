"""Every name and address of one lab run, fixed from the inventory before anything is created.

The plan is the first thing a run records (in ``state.json``): whoever
cleans up after a crashed supervisor knows from it which namespaces,
switch ports and BMCs the run may have left.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path
from typing import Any

from highlander.lab.chain import FIRST_HOST, VALIDATORS, ChainHost
from highlander.lab.node import netns_name
from highlander.lab.records import LabError, read_state

PREFIX_LEN = 24


@dataclasses.dataclass(frozen=True)
class PlannedNode:
    """One node of a lab run: its address, namespace, switch port and BMC."""

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
class LabPlan:
    """Every name and address of one lab run, fixed before anything is created."""

    directory: Path
    inventory: Path
    run_id: str
    switch: str
    nodes: tuple[PlannedNode, ...]
    validators: tuple[ChainHost, ...] = ()  # the chain's ordinary validators (none: no chain)

    @classmethod
    def make(cls, directory: Path, inventory_path: Path, run_id: str, *, chain: bool = False) -> LabPlan:
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
                raise LabError(
                    f"{node.name}: the lab simulates IPMI BMCs: give an ipmi fence device with a password_file"
                )
            device = ipmi[0]
            for address in (node.addresses[0], device.address):
                if ipaddress.ip_address(address) not in first:
                    raise LabError(f"{node.name}: {address} is not in the lab subnet {first}")
            nodes.append(
                PlannedNode(
                    name=node.name,
                    role=node.role,
                    address=node.addresses[0],
                    netns=netns_name(run_id, node.name),
                    switch_port=f"v{i}-{node.name}"[:15],
                    bmc_address=device.address,
                    bmc_port=device.port,
                    bmc_username=device.username,
                    password_file=device.password_file or "",
                )
            )
        validators = []
        for i in range(VALIDATORS if chain else 0):
            name = f"val-{i + 1}"
            address = str(first.network_address + FIRST_HOST + i)
            if address in {n.address for n in nodes} | {n.bmc_address for n in nodes}:
                raise LabError(
                    f"{address} is taken by a node or a BMC: the lab's chain puts its validators at "
                    f".{FIRST_HOST} to .{FIRST_HOST + VALIDATORS - 1} of {first}"
                )
            validators.append(ChainHost(name, address, netns_name(run_id, name), f"v{len(nodes) + i}-{name}"[:15]))
        return cls(directory, inventory_path, run_id, netns_name(run_id, "switch"), tuple(nodes), tuple(validators))

    def node(self, name: str) -> PlannedNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise LabError(f"no node {name!r} in the lab (nodes: {', '.join(n.name for n in self.nodes)})")

    @property
    def netns(self) -> list[str]:
        """Every network namespace of the run: the nodes', the validators', the switch's."""
        return [n.netns for n in self.nodes] + [v.netns for v in self.validators] + [self.switch]

    def to_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "inventory": str(self.inventory),
            "run_id": self.run_id,
            "switch": self.switch,
            "nodes": [dataclasses.asdict(n) for n in self.nodes],
            "validators": [dataclasses.asdict(v) for v in self.validators],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabPlan:
        return cls(
            Path(data["directory"]),
            Path(data["inventory"]),
            data["run_id"],
            data["switch"],
            tuple(PlannedNode(**n) for n in data["nodes"]),
            tuple(ChainHost(**v) for v in data.get("validators", [])),
        )


def load_plan(directory: Path) -> tuple[LabPlan, dict[str, Any]]:
    """The plan and the whole state a lab (running, or left by a crashed supervisor) recorded in ``directory``."""
    state = read_state(directory.absolute())
    if state is None:
        raise LabError(f"no lab in {directory} (run highlander lab up)")
    return LabPlan.from_dict(state["plan"]), state
