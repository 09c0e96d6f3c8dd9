"""The meta-data XML: valid against the OCF 1.1 schema and ocf-tester's 1.0
DTD check, and a faithful rendering of the declaration."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from highlander.agents.validator import AGENT as VALIDATOR
from highlander.ocf import codes
from highlander.ocf.metadata import render_ocf_metadata
from highlander.ocf.spec import Action, Agent, Parameter

RESOURCE_AGENTS_DTD_DIR = Path("/usr/share/resource-agents")

needs_xmllint = pytest.mark.skipif(shutil.which("xmllint") is None, reason="xmllint (libxml2-utils) is not installed")


def _ok(res: object) -> int:
    return codes.SUCCESS


SELECTING = Agent(
    "selecting",
    "2.3",
    "An agent with every kind of parameter",
    "Long description with markup-like text: <b> & \"quotes\" 'apostrophes'.",
    parameters=[
        Parameter("mode", "Mode", "How to run.", type="select", choices=("fast", "safe", "a&b"), default="safe"),
        Parameter("count", "Count", "How many.", type="integer", default=3),
        Parameter("enabled", "Enabled", "Whether.", type="boolean", default=False),
        Parameter("name", "Name", "Who.", required=True, unique_group="identity"),
        Parameter("level", "Level", "Changeable at run time.", reloadable=True),
    ],
    actions=[
        Action("start", _ok, timeout=20),
        Action("stop", _ok, timeout=30, strict=False),
        Action("monitor", _ok, timeout=10, interval=10, depth=0),
        Action("monitor", _ok, timeout=10, interval=11, depth=0, role="Promoted"),
        Action("monitor", _ok, timeout=25, interval=60, depth=20),
        Action("promote", _ok, timeout=40),
        Action("demote", _ok, timeout=40),
        Action("reload-agent", _ok, timeout=15),
    ],
)


def xmllint(args: list[str], document: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["xmllint", "--noout", *args, "-"],
        input=document,
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )


def parse(agent: Agent) -> ET.Element:
    return ET.fromstring(render_ocf_metadata(agent))


@needs_xmllint
@pytest.mark.parametrize("agent", [VALIDATOR, SELECTING], ids=lambda a: a.name)
def test_meta_data_validates_against_the_ocf_1_1_schema(agent: Agent, ocf_schema: Path) -> None:
    done = xmllint(["--relaxng", str(ocf_schema)], render_ocf_metadata(agent))
    assert done.returncode == 0, done.stderr
    assert "validates" in done.stderr


@needs_xmllint
def test_validator_meta_data_passes_ocf_testers_dtd_check() -> None:
    dtd = RESOURCE_AGENTS_DTD_DIR / "ra-api-1.dtd"
    if not dtd.is_file():
        pytest.skip(f"{dtd} not found (Debian package resource-agents)")
    # ocf-tester runs exactly this, from that directory, so the DOCTYPE's
    # relative "ra-api-1.dtd" resolves there.
    done = xmllint(["--valid"], render_ocf_metadata(VALIDATOR), cwd=RESOURCE_AGENTS_DTD_DIR)
    assert done.returncode == 0, done.stderr


def test_meta_data_starts_with_the_xml_declaration_and_doctype() -> None:
    text = render_ocf_metadata(VALIDATOR)
    assert text.startswith('<?xml version="1.0"?>\n<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd"')
    assert text.endswith("</resource-agent>\n")


@pytest.mark.parametrize("agent", [VALIDATOR, SELECTING], ids=lambda a: a.name)
def test_the_agent_is_described(agent: Agent) -> None:
    root = parse(agent)
    assert root.tag == "resource-agent"
    assert root.attrib == {"name": agent.name, "version": agent.version}
    assert root.findtext("version") == "1.1"
    longdesc = root.find("longdesc")
    shortdesc = root.find("shortdesc")
    assert longdesc is not None and longdesc.text == agent.longdesc and longdesc.get("lang") == "en"
    assert shortdesc is not None and shortdesc.text == agent.shortdesc and shortdesc.get("lang") == "en"


@pytest.mark.parametrize("agent", [VALIDATOR, SELECTING], ids=lambda a: a.name)
def test_every_declared_parameter_appears_with_its_attributes(agent: Agent) -> None:
    elements = parse(agent).findall("parameters/parameter")
    assert [e.get("name") for e in elements] == [p.name for p in agent.parameters]
    for p, e in zip(agent.parameters, elements):
        assert e.get("required") == ("1" if p.required else "0"), p.name
        assert e.get("reloadable") == ("1" if p.reloadable else "0"), p.name
        assert e.get("unique-group") == p.unique_group, p.name
        assert e.findtext("longdesc") == p.longdesc
        assert e.findtext("shortdesc") == p.shortdesc
        assert [d.get("lang") for d in e if d.tag in ("longdesc", "shortdesc")] == ["en", "en"]
        content = e.find("content")
        assert content is not None
        assert content.get("type") == p.type
        assert content.get("default") == (None if p.default is None else p.format(p.default)), p.name
        assert [o.get("value") for o in content.findall("option")] == list(p.choices)


def test_defaults_are_rendered_in_their_environment_form() -> None:
    contents = {e.get("name"): e.find("content") for e in parse(SELECTING).findall("parameters/parameter")}
    assert contents["mode"].attrib == {"type": "select", "default": "safe"}  # type: ignore[union-attr]
    assert contents["count"].attrib == {"type": "integer", "default": "3"}  # type: ignore[union-attr]
    assert contents["enabled"].attrib == {"type": "boolean", "default": "false"}  # type: ignore[union-attr]
    assert contents["name"].attrib == {"type": "string"}  # type: ignore[union-attr]


@pytest.mark.parametrize("agent", [VALIDATOR, SELECTING], ids=lambda a: a.name)
def test_every_declared_action_appears_with_its_attributes(agent: Agent) -> None:
    elements = parse(agent).findall("actions/action")
    assert len(elements) == len(agent.actions)
    for a, e in zip(agent.actions, elements):
        expected = {"name": a.name, "timeout": f"{a.timeout}s"}
        if a.interval is not None:
            expected["interval"] = f"{a.interval}s"
        if a.depth is not None:
            expected["depth"] = str(a.depth)
        if a.role is not None:
            expected["role"] = a.role
        assert e.attrib == expected


def test_the_validator_advertises_its_monitor_depths_and_builtins() -> None:
    actions = [(e.get("name"), e.get("depth")) for e in parse(VALIDATOR).findall("actions/action")]
    assert actions == [
        ("start", None),
        ("stop", None),
        ("monitor", "0"),
        ("monitor", "10"),
        ("monitor", "20"),
        ("meta-data", None),
        ("validate-all", None),
    ]


def test_the_validator_declares_its_parameters() -> None:
    names = [e.get("name") for e in parse(VALIDATOR).findall("parameters/parameter")]
    assert names == [
        "command",
        "user",
        "directory",
        "environment_file",
        "pidfile",
        "health_url",
        "health_command",
        "health_timeout",
        "stop_timeout",
        "logfile",
        "signstate",
        "chain_id",
        "key_id",
        "signstate_socket",
        "state_file",
        "state_format",
        "height_margin",
        "replication_deadline",
    ]
    required = [e.get("name") for e in parse(VALIDATOR).findall("parameters/parameter[@required='1']")]
    assert required == ["command"]


def test_text_with_markup_characters_survives_rendering() -> None:
    root = parse(SELECTING)
    assert root.findtext("longdesc") == SELECTING.longdesc
    options = [o.get("value") for o in root.findall("parameters/parameter/content/option")]
    assert options == ["fast", "safe", "a&b"]
