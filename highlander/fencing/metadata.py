"""The fence-agent meta-data XML of an agent, derived from its declaration.

The layout is fence-agents' (``/usr/share/cluster/relaxng/metadata.rng``):
what Pacemaker (``stonith_admin --metadata``) and pcs (``pcs stonith
describe``) read from ``fence_ipmilan``, they read from ours the same way.
A deprecated stdin name gets its own ``<parameter deprecated="1">`` and the
current name says ``obsoletes="<old name>"``, so pcs shows which replaces
which. Only the metadata and manpage actions import this module (and with
it ``xml.etree``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from highlander.fencing.spec import FenceAgent, Option

LANG = "en"


def format_value(option: Option, value: object) -> str:
    """A value as it stands in the meta-data and on stdin (booleans as 1/0)."""
    if option.type == "boolean":
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def getopt_mixed(option: Option) -> str:
    """The command-line spelling: ``-a, --ip=[ip]``, ``-v, --verbose``, ``--delay=[seconds]``."""
    spelling = "--" + option.long
    if option.type != "boolean":
        spelling += f"=[{option.metavar}]"
    if option.short:
        spelling = f"-{option.short}, {spelling}"
    return spelling


def entries(agent: FenceAgent) -> list[tuple[str, Option, bool]]:
    """``(stdin name, option, deprecated)`` for every name an option is known
    by, sorted by (order, name) as fence-agents sorts them."""
    found = []
    for option in agent.options:
        found.append((option.name, option, False))
        found.extend((alias, option, True) for alias in option.aliases)
    return sorted(found, key=lambda entry: (entry[1].order, entry[0]))


def _content(parent: ET.Element, option: Option) -> None:
    content = ET.SubElement(parent, "content", type=option.type)
    if option.default is not None:
        content.set("default", format_value(option, option.default))
    for choice in option.choices:
        ET.SubElement(content, "option", value=choice)


def _parameter(parent: ET.Element, name: str, option: Option, deprecated: bool) -> None:
    element = ET.SubElement(parent, "parameter", name=name, unique="0", required="1" if option.required else "0")
    if deprecated:
        element.set("deprecated", "1")
    elif option.aliases:
        element.set("obsoletes", option.aliases[0])
    ET.SubElement(element, "getopt", mixed=getopt_mixed(option))
    _content(element, option)
    ET.SubElement(element, "shortdesc", lang=LANG).text = option.shortdesc


def render_fence_metadata(agent: FenceAgent) -> str:
    """The meta-data document, as ``-o metadata`` prints it."""
    root = ET.Element("resource-agent", name=agent.name, shortdesc=agent.shortdesc)
    ET.SubElement(root, "longdesc").text = agent.longdesc
    ET.SubElement(root, "vendor-url").text = agent.vendor_url
    parameters = ET.SubElement(root, "parameters")
    for name, option, deprecated in entries(agent):
        _parameter(parameters, name, option, deprecated)
    actions = ET.SubElement(root, "actions")
    for action in agent.actions:
        element = ET.SubElement(actions, "action", name=action)
        if action == "on":
            # Not run by Pacemaker on its own: unfencing is for fabric agents.
            element.set("automatic", "0")
    ET.indent(root, space="\t")
    return '<?xml version="1.0" ?>\n' + ET.tostring(root, encoding="unicode") + "\n"
