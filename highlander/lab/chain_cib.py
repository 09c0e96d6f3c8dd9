"""The lab's Pacemaker configuration for the CometBFT chain, from the rendered CIB.

``highlander render`` writes the CIB of a trio whose ``validator`` runs one
signing daemon. On the lab's chain the validator is two parts instead
(:mod:`highlander.lab.chain`), and :func:`for_chain` turns the rendered
``<configuration>`` into that, in place, before it is loaded:

- ``privval-clone``: ``ocf:highlander:privval`` as a promotable clone on the
  active-capable nodes, at most one promoted: the promoted instance signs,
  the other answers PubKey and Ping only. After the sign-state clone.
- ``cometbft-clone``: the CometBFT full node on the same nodes, always
  running (``ocf:highlander:validator`` with the register gate off: the node
  holds no key, its signer does). Started after the signer when both start
  together (the node exits at start when no signer answers), but an
  *optional* order: a signer restarted alone does not restart its node.

The ``validator`` primitive and its constraints are dropped; the fence
devices, the sign-state clone and the cluster options stay as rendered.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable

from highlander.lab.chain import COMETBFT, HEALTH_URL, NODE_HOME, PRIVVAL_CONFIG

VALIDATOR = "validator"
PRIVVAL = "privval"
COMETBFT_RESOURCE = "cometbft"
SIGNSTATE_CLONE = "signstate-clone"
PRIVVAL_LOG = "/var/log/highlander/privval.log"
PRIVVAL_PIDFILE = "/run/highlander/privval.pid"
COMETBFT_LOG = "/var/log/highlander/cometbft.log"
COMETBFT_PIDFILE = "/run/highlander/cometbft.pid"
FAILURE_TIMEOUT = "60s"
# Seconds a full node gets after SIGTERM: one waiting for a signer that is gone does
# not exit on it, and a node killed is safe (its state is written ahead).
STOP_TIMEOUT = "10"


def _nvpairs(parent: ET.Element, tag: str, pid: str, values: dict[str, str]) -> None:
    block = ET.SubElement(parent, tag, id=f"{pid}-{tag}")
    for name, value in values.items():
        ET.SubElement(block, "nvpair", id=f"{pid}-{tag}-{name}", name=name, value=value)


def _op(ops: ET.Element, rid: str, name: str, interval: str, timeout: str, role: str | None = None) -> None:
    attributes = {"id": f"{rid}-{name}-interval-{interval}", "name": name, "interval": interval, "timeout": timeout}
    if role is not None:
        attributes["role"] = role
    ET.SubElement(ops, "op", attributes)


def _clone(
    resources: ET.Element,
    rid: str,
    agent: str,
    params: dict[str, str],
    meta: dict[str, str],
    ops: Iterable[tuple[str, str, str, str | None]],
) -> None:
    clone = ET.SubElement(resources, "clone", id=f"{rid}-clone")
    _nvpairs(
        clone,
        "meta_attributes",
        f"{rid}-clone",
        {"interleave": "true", "clone-max": "2", "clone-node-max": "1", **meta},
    )
    provider, kind = agent.split(":")
    primitive = ET.SubElement(clone, "primitive", id=rid, **{"class": "ocf", "provider": provider, "type": kind})
    _nvpairs(primitive, "instance_attributes", rid, params)
    operations = ET.SubElement(primitive, "operations")
    for name, interval, timeout, role in ops:
        _op(operations, rid, name, interval, timeout, role)


def for_chain(configuration: ET.Element, witnesses: Iterable[str]) -> None:
    """Turn the rendered ``<configuration>`` into the lab chain's, in place."""
    resources = configuration.find("resources")
    constraints = configuration.find("constraints")
    if resources is None or constraints is None:
        raise ValueError("the CIB has no resources or constraints section")
    for primitive in resources.findall(f"primitive[@id='{VALIDATOR}']"):
        resources.remove(primitive)
    for constraint in list(constraints):
        if VALIDATOR in (
            constraint.get("rsc"),
            constraint.get("with-rsc"),
            constraint.get("first"),
            constraint.get("then"),
        ):
            constraints.remove(constraint)
    _clone(
        resources,
        PRIVVAL,
        "highlander:privval",
        {"config": PRIVVAL_CONFIG, "logfile": PRIVVAL_LOG, "pidfile": PRIVVAL_PIDFILE},
        {
            "promotable": "true",
            "promoted-max": "1",
            "promoted-node-max": "1",
            "resource-stickiness": "100",
            "failure-timeout": FAILURE_TIMEOUT,
        },
        [
            ("start", "0s", "30s", None),
            ("stop", "0s", "30s", None),
            ("promote", "0s", "30s", None),
            ("demote", "0s", "30s", None),
            ("monitor", "5s", "20s", "Unpromoted"),
            ("monitor", "4s", "20s", "Promoted"),
        ],
    )
    _clone(
        resources,
        COMETBFT_RESOURCE,
        "highlander:validator",
        {
            "command": f"{COMETBFT} start --home {NODE_HOME}",
            "health_url": HEALTH_URL,
            "signstate": "false",
            "logfile": COMETBFT_LOG,
            "pidfile": COMETBFT_PIDFILE,
            "stop_timeout": STOP_TIMEOUT,
        },
        {"failure-timeout": FAILURE_TIMEOUT},
        [("start", "0s", "180s", None), ("stop", "0s", "60s", None), ("monitor", "10s", "20s", None)],
    )
    for witness in witnesses:
        for rid in (f"{PRIVVAL}-clone", f"{COMETBFT_RESOURCE}-clone"):
            ET.SubElement(
                constraints,
                "rsc_location",
                id=f"location-{rid}-avoids-{witness}",
                rsc=rid,
                node=witness,
                score="-INFINITY",
            )
    ET.SubElement(
        constraints,
        "rsc_order",
        id=f"order-{SIGNSTATE_CLONE}-then-{PRIVVAL}-clone",
        first=SIGNSTATE_CLONE,
        then=f"{PRIVVAL}-clone",
        kind="Mandatory",
    )
    ET.SubElement(
        constraints,
        "rsc_colocation",
        id=f"colocation-{PRIVVAL}-clone-with-{SIGNSTATE_CLONE}",
        rsc=f"{PRIVVAL}-clone",
        **{"with-rsc": SIGNSTATE_CLONE},
        score="INFINITY",
    )
    ET.SubElement(
        constraints,
        "rsc_order",
        id=f"order-{PRIVVAL}-clone-then-{COMETBFT_RESOURCE}-clone",
        first=f"{PRIVVAL}-clone",
        then=f"{COMETBFT_RESOURCE}-clone",
        kind="Optional",
    )
