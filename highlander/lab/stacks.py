"""The cluster stack a lab runs: ours, the stock ClusterLabs one, or ours unguarded.

``highlander lab up --stack`` boots the trio from the rendered CIB (the
``highlander`` stack) and then, for another stack, rewrites the live CIB's
configuration once. Every difference between the stacks is in
:func:`reconfigure`, a pure function of the ``<configuration>`` element:

- ``stock``: what a ClusterLabs user would deploy at the same corosync
  token, the reference of the failover benchmark: ``fence_ipmilan``
  (lanplus, same BMC, same cipher, the password read by ``password_script``
  from the node's 0600 file) and the validator as ``ocf:heartbeat:anything``
  running the same signer without the register (``--no-guard``);
- ``unguarded``: the negative control: our fence devices and agent, but
  ``stonith-enabled=false``, the agent's sign-state gate off and the signer
  run with ``--no-guard``: nothing stops a frozen active node from signing
  again when it wakes up, and the drill must catch it.

The resource keeps the id ``validator`` in every stack: the drills find it
by that name. The stack is recorded in the lab directory for ``lab status``.

On the lab's CometBFT chain (:mod:`highlander.lab.chain_cib`) the validator
is the ``privval`` clone and the ``cometbft`` full nodes instead, and
``unguarded`` is: ``stonith-enabled=false``, no ``privval`` (so no register),
and both full nodes signing with FilePV (``--priv_validator_laddr ""``: the
validator key is in each node's CometBFT home): two nodes with one key, which
the chain itself must catch as a double sign. ``stock`` is the cold standby
people run without highlander: ``fence_ipmilan``, no ``privval`` and no full
node on the standby, and one CometBFT with FilePV as ``ocf:heartbeat:anything``
(resource ``validator``), started on the standby once the active is fenced.
"""

from __future__ import annotations

import shlex
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from highlander.lab.chain import COMETBFT, NODE_HOME
from highlander.lab.chain_cib import COMETBFT_RESOURCE, PRIVVAL

if TYPE_CHECKING:
    from highlander.adapters.pacemaker import ClusterStatus

STACKS = ("highlander", "stock", "unguarded")
DEFAULT = "highlander"
STACK_FILE = "stack"
VALIDATOR = "validator"
NO_GUARD = "--no-guard"
OUR_IPMI = "fence_highlander_ipmi"
STOCK_IPMI = "fence_ipmilan"
STOCK_VALIDATOR = ("ocf", "heartbeat", "anything")
STOCK_LOG = "/var/log/highlander/validator-anything.log"
# CometBFT signing in-process with the key of its home (FilePV), whatever its config.toml says.
FILEPV = '--priv_validator_laddr ""'
# Between the old validator's stop and the new one's start: longer than a block of the lab's chain (0.5 s).
PAUSE_SECONDS = 1.0
WARNING = {
    "stock": "WARNING: the lab now runs the STOCK stack (fence_ipmilan, ocf:heartbeat:anything, the signer "
    "with --no-guard): no sign-state register guards the signer; it is NOT safe against double signs.",
    "unguarded": "WARNING: the lab now runs UNGUARDED (stonith-enabled=false, no sign-state gate or register, the "
    "signer unguarded): the negative control, built to double-sign. It is NOT safe.",
}
CHAIN_WARNING = {
    "stock": "WARNING: the lab's chain now runs the STOCK stack (fence_ipmilan, one CometBFT with FilePV under "
    "ocf:heartbeat:anything, no register): it is NOT safe against double signs.",
    "unguarded": "WARNING: the lab's chain now runs UNGUARDED (stonith-enabled=false, no privval, no register, both "
    "full nodes signing with FilePV): the negative control, built to double-sign. It is NOT safe.",
}


class StackError(RuntimeError):
    """The configuration does not have what a stack changes; the message says what."""


# --- the one place that knows each stack's difference --------------------------------


def reconfigure(configuration: ET.Element, stack: str) -> None:
    """Turn the CIB ``<configuration>`` of our stack into ``stack``'s, in place."""
    if stack not in STACKS:
        raise StackError(f"unknown stack {stack!r} (known: {', '.join(STACKS)})")
    if stack == "highlander":
        return
    if configuration.find(f".//primitive[@id='{COMETBFT_RESOURCE}']") is not None:
        _reconfigure_chain(configuration, stack)
        return
    validator = _primitive(configuration, VALIDATOR)
    command = without_guard(_attribute(validator, "command"))
    if stack == "stock":
        _stock_fencing(configuration)
        program, *arguments = shlex.split(command)
        validator.set("provider", STOCK_VALIDATOR[1])
        validator.set("type", STOCK_VALIDATOR[2])
        attributes = _instance_attributes(validator)
        attributes.clear()
        attributes.set("id", f"{VALIDATOR}-instance_attributes")
        # anything's start evals "nohup $binfile $cmdline_options": quote the arguments for that shell
        for name, value in (("binfile", program), ("cmdline_options", shlex.join(arguments)), ("logfile", STOCK_LOG)):
            _set_attribute(validator, name, value)
    else:
        _property(configuration, "stonith-enabled", "false")
        _set_attribute(validator, "signstate", "false")
        _set_attribute(validator, "command", command)


def _reconfigure_chain(configuration: ET.Element, stack: str) -> None:
    """The chain's stacks: see the module's docstring."""
    resources, constraints = configuration.find("resources"), configuration.find("constraints")
    assert resources is not None and constraints is not None
    gone = {f"{PRIVVAL}-clone"} | ({f"{COMETBFT_RESOURCE}-clone"} if stack == "stock" else set())
    if stack == "stock":  # the witness never runs the validator
        for location in constraints.findall(f"rsc_location[@rsc='{COMETBFT_RESOURCE}-clone']"):
            location.set("rsc", VALIDATOR)
            location.set("id", f"location-{VALIDATOR}-avoids-{location.get('node')}")
    for clone in [c for c in resources.findall("clone") if c.get("id") in gone]:
        resources.remove(clone)
    for constraint in list(constraints):
        if gone & {constraint.get("rsc"), constraint.get("with-rsc"), constraint.get("first"), constraint.get("then")}:
            constraints.remove(constraint)
    if stack == "unguarded":
        _property(configuration, "stonith-enabled", "false")
        node = _primitive(configuration, COMETBFT_RESOURCE)
        command = _attribute(node, "command")
        if FILEPV not in command:
            _set_attribute(node, "command", f"{command} {FILEPV}")
        return
    _stock_fencing(configuration)
    kind = dict(zip(("class", "provider", "type"), STOCK_VALIDATOR))
    validator = ET.SubElement(resources, "primitive", {"id": VALIDATOR, **kind})
    arguments = ["start", "--home", NODE_HOME, "--priv_validator_laddr", ""]
    for name, value in (("binfile", str(COMETBFT)), ("cmdline_options", shlex.join(arguments)), ("logfile", STOCK_LOG)):
        _set_attribute(validator, name, value)
    meta = ET.SubElement(validator, "meta_attributes", id=f"{VALIDATOR}-meta_attributes")
    _set_nvpair(meta, "resource-stickiness", "100")
    operations = ET.SubElement(validator, "operations")
    for name, interval, timeout in (("start", "0s", "60s"), ("stop", "0s", "60s"), ("monitor", "10s", "20s")):
        ET.SubElement(
            operations,
            "op",
            id=f"{VALIDATOR}-{name}-interval-{interval}",
            name=name,
            interval=interval,
            timeout=timeout,
        )


def _stock_fencing(configuration: ET.Element) -> None:
    """fence_ipmilan (lanplus) against the same BMCs, instead of ours."""
    for device in configuration.iterfind(f".//primitive[@class='stonith'][@type='{OUR_IPMI}']"):
        device.set("type", STOCK_IPMI)
        _set_attribute(device, "lanplus", "1")


def without_guard(command: str) -> str:
    """The validator's command line with the signer's ``--no-guard``: added to
    the script of a ``sh -c SCRIPT`` command, otherwise as the last word."""
    if NO_GUARD in command:
        return command
    words = shlex.split(command)
    if len(words) >= 3 and words[-2] == "-c":
        words[-1] = f"{words[-1]} {NO_GUARD}"
    else:
        words.append(NO_GUARD)
    return shlex.join(words)


def _primitive(configuration: ET.Element, rid: str) -> ET.Element:
    found = configuration.find(f".//primitive[@id='{rid}']")
    if found is None:
        raise StackError(f"the CIB has no primitive {rid!r}")
    return found


def _instance_attributes(primitive: ET.Element) -> ET.Element:
    attributes = primitive.find("instance_attributes")
    if attributes is None:
        attributes = ET.SubElement(primitive, "instance_attributes", id=f"{primitive.get('id')}-instance_attributes")
    return attributes


def _attribute(primitive: ET.Element, name: str) -> str:
    pair = _instance_attributes(primitive).find(f"nvpair[@name='{name}']")
    if pair is None:
        raise StackError(f"{primitive.get('id')} has no {name}")
    return pair.get("value", "")


def _set_nvpair(parent: ET.Element, name: str, value: str) -> None:
    pair = parent.find(f"nvpair[@name='{name}']")
    if pair is None:
        pair = ET.SubElement(parent, "nvpair", id=f"{parent.get('id')}-{name}", name=name)
    pair.set("value", value)


def _set_attribute(primitive: ET.Element, name: str, value: str) -> None:
    _set_nvpair(_instance_attributes(primitive), name, value)


def _property(configuration: ET.Element, name: str, value: str) -> None:
    options = configuration.find("crm_config/cluster_property_set[@id='cib-bootstrap-options']")
    if options is None:
        raise StackError("the CIB has no cib-bootstrap-options")
    _set_nvpair(options, name, value)


# --- the live lab --------------------------------------------------------------------------


def current(directory: Path) -> str:
    """The stack the lab in ``directory`` runs (ours unless another was applied)."""
    try:
        return (directory / STACK_FILE).read_text().strip() or DEFAULT
    except FileNotFoundError:
        return DEFAULT


def apply(directory: Path, stack: str, say: Callable[[str], None], *, timeout: float = 180.0) -> None:
    """Rewrite the running lab's CIB to ``stack`` and wait until the cluster
    has settled with the validator running again under it.

    The validator is stopped first and restarted under the new stack a
    moment later: the synthetic chain's height is wall time, and a new
    signer (another epoch, so other sign bytes) starting within the block
    the old one last signed would be a real double sign in the journals."""
    from highlander.adapters.pacemaker import Pacemaker
    from highlander.lab.controls import node_init, node_runner
    from highlander.lab.plan import load_plan

    directory = directory.absolute()
    if stack == current(directory):
        return
    plan, state = load_plan(directory)
    runner = node_runner(directory, next(n.name for n in plan.nodes if node_init(directory, n.name)))
    pacemaker = Pacemaker(runner)
    chain = "chain" in state
    # On the chain the full nodes stop too: they restart with another command (or not at all).
    stopped = [f"{PRIVVAL}-clone", f"{COMETBFT_RESOURCE}-clone"] if chain else [VALIDATOR]
    say(
        f"stopping the {'signer and the full nodes' if chain else 'validator'} to reconfigure the live CIB to the "
        f"{stack} stack"
    )
    for rid in stopped:
        runner.run(
            [
                "crm_resource",
                "--resource",
                rid,
                "--meta",
                "--set-parameter",
                "target-role",
                "--parameter-value",
                "Stopped",
            ],
            check=True,
        )
    primitives = [PRIVVAL, COMETBFT_RESOURCE] if chain else [VALIDATOR]
    pacemaker.wait_for("the validator to stop", lambda s: not any(_active(s, rid) for rid in primitives), timeout)
    time.sleep(PAUSE_SECONDS)
    configuration = ET.fromstring(runner.run(["cibadmin", "--query", "--scope", "configuration"], check=True).stdout)
    reconfigure(configuration, stack)
    for pair in configuration.iterfind(".//meta_attributes/nvpair[@name='target-role']"):
        pair.set("value", "Started")
    runner.run(
        ["cibadmin", "--replace", "--scope", "configuration", "--xml-pipe"],
        stdin=ET.tostring(configuration, encoding="unicode"),
        check=True,
    )
    (directory / STACK_FILE).write_text(stack + "\n")
    agent = ":".join(STOCK_VALIDATOR) if stack == "stock" else "ocf:highlander:validator"
    actives = {n.name for n in plan.nodes if n.role == "active"}

    def running(status: ClusterStatus) -> bool:
        if chain and stack == "unguarded":  # both full nodes, signing with FilePV
            return set(status.clone_nodes(COMETBFT_RESOURCE)) == actives and status.resource(PRIVVAL) is None
        resource = status.resource(VALIDATOR)
        return resource is not None and resource.agent == agent and bool(status.started_on(VALIDATOR))

    pacemaker.wait_for(f"the validator to run under the {stack} stack", running, timeout)
    say((CHAIN_WARNING if chain else WARNING)[stack])


def _active(status: ClusterStatus, rid: str) -> bool:
    return any(r.active for r in status.resources if r.id == rid)
