"""The OCF 1.1 meta-data XML of an agent, derived from its declaration.

Only the ``meta-data`` action imports this module (and with it
``xml.etree``), so the XML machinery never weighs on monitor.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

TYPE_CHECKING = False  # typing's constant, without importing typing: see highlander/__init__.py
if TYPE_CHECKING:
    from highlander.ocf.spec import Agent

OCF_VERSION = "1.1"
LANG = "en"
# Tools of the 1.0 era (Debian's ocf-tester) validate meta-data against the
# 1.0 DTD named here. The internal subset declares the two parameter
# attributes 1.1 added, so the same document passes both that DTD check and
# the 1.1 RelaxNG schema. (A 'select' parameter's <option> children cannot be
# declared this way: the 1.0 DTD makes <content> empty.)
DOCTYPE = """<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd" [
<!ATTLIST parameter unique-group CDATA #IMPLIED reloadable (1|0) "0">
]>"""


def _text(parent: ET.Element, tag: str, text: str) -> None:
    ET.SubElement(parent, tag, lang=LANG).text = text


def _flag(value: bool) -> str:
    return "1" if value else "0"


def render_ocf_metadata(agent: Agent) -> str:
    """The meta-data document, as ``pcs resource describe`` and Pacemaker read it."""
    root = ET.Element("resource-agent", name=agent.name, version=agent.version)
    ET.SubElement(root, "version").text = OCF_VERSION
    _text(root, "longdesc", agent.longdesc)
    _text(root, "shortdesc", agent.shortdesc)

    parameters = ET.SubElement(root, "parameters")
    for p in agent.parameters:
        attrs = {"name": p.name, "required": _flag(p.required), "reloadable": _flag(p.reloadable)}
        if p.unique_group:
            attrs["unique-group"] = p.unique_group
        element = ET.SubElement(parameters, "parameter", attrs)
        _text(element, "longdesc", p.longdesc)
        _text(element, "shortdesc", p.shortdesc)
        content = ET.SubElement(element, "content", type=p.type)
        if p.default is not None:
            content.set("default", p.format(p.default))
        for choice in p.choices:
            ET.SubElement(content, "option", value=choice)

    actions = ET.SubElement(root, "actions")
    for a in agent.actions:
        attrs = {"name": a.name, "timeout": f"{a.timeout}s"}
        if a.interval is not None:
            attrs["interval"] = f"{a.interval}s"
        if a.depth is not None:
            attrs["depth"] = str(a.depth)
        if a.role is not None:
            attrs["role"] = a.role
        ET.SubElement(actions, "action", attrs)

    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0"?>\n{DOCTYPE}\n{body}\n'
