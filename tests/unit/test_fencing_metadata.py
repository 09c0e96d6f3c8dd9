"""Fence agent meta-data and man page: valid, fence-agents' layout, derived
from the declaration."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from highlander.fencing.manpage import render_fence_manpage
from highlander.fencing.manpage import usage
from highlander.fencing.metadata import entries, getopt_mixed, render_fence_metadata
from highlander.fencing.spec import COMMON, OWN, FenceAgent, Option

FENCE_SCHEMA = Path("/usr/share/cluster/relaxng/metadata.rng")
REAL_AGENTS = ("ipmi", "ilo_ssh", "redfish")

needs_xmllint = pytest.mark.skipif(
    shutil.which("xmllint") is None or not FENCE_SCHEMA.is_file(),
    reason="xmllint or fence-agents' metadata.rng is not installed",
)


def _no_driver(values: object) -> object:
    raise AssertionError("meta-data never builds a driver")


def agent(multi_plug: bool = False, extra: tuple[Option, ...] = ()) -> FenceAgent:
    return FenceAgent(
        "fence_test",
        'Test agent with <markup> & "quotes"',
        "Long description: <b>not markup</b> & 'apostrophes'.\n.TH not a request\n\\fBnot bold",
        vendor_url="https://example.org/?a=1&b=2",
        options=(*COMMON.values(), *extra),
        driver=_no_driver,  # type: ignore[arg-type]
        multi_plug=multi_plug,
    )


EXTRA = (
    Option("lanplus", "Use Lanplus", short="P", type="boolean", default=True),
    Option(
        "privlvl",
        "Privilege level",
        short="L",
        type="select",
        default="administrator",
        choices=("user", "operator", "administrator"),
    ),
    Option("ipmitool_timeout", "Timeout for an IPMI operation", type="second", default=2.5, order=201),
    Option("secure", "Use SSH", short="x", type="boolean", aliases=("ssh_old",)),
)


def xmllint_relaxng(document: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["xmllint", "--noout", "--relaxng", str(FENCE_SCHEMA), "-"],
        input=document,
        capture_output=True,
        text=True,
        check=False,
    )


def parameters(document: str) -> dict[str, ET.Element]:
    root = ET.fromstring(document)
    return {p.get("name", ""): p for p in root.iter("parameter")}


# --- validity ---------------------------------------------------------------------


@needs_xmllint
@pytest.mark.parametrize("multi_plug", [False, True])
def test_metadata_validates_against_fence_agents_schema(multi_plug: bool) -> None:
    result = xmllint_relaxng(render_fence_metadata(agent(multi_plug, EXTRA)))
    assert result.returncode == 0, result.stderr


@needs_xmllint
@pytest.mark.parametrize("module", REAL_AGENTS)
def test_the_real_agents_metadata_validates(module: str) -> None:
    real = importlib.import_module(f"highlander.fencing.agents.{module}").AGENT
    result = xmllint_relaxng(render_fence_metadata(real))
    assert result.returncode == 0, result.stderr
    assert ET.fromstring(render_fence_metadata(real)).get("name") == f"fence_highlander_{module}"


def test_special_characters_survive_as_text() -> None:
    root = ET.fromstring(render_fence_metadata(agent()))
    assert root.get("shortdesc") == 'Test agent with <markup> & "quotes"'
    assert root.findtext("longdesc", "").startswith("Long description: <b>not markup</b> & 'apostrophes'.")
    assert root.findtext("vendor-url") == "https://example.org/?a=1&b=2"


# --- layout -------------------------------------------------------------------------


def test_layout_is_fence_agents() -> None:
    document = render_fence_metadata(agent(extra=EXTRA))
    assert document.startswith('<?xml version="1.0" ?>\n<resource-agent name="fence_test" shortdesc=')
    root = ET.fromstring(document)
    assert [child.tag for child in root] == ["longdesc", "vendor-url", "parameters", "actions"]
    ip = parameters(document)["ip"]
    assert ip.attrib == {"name": "ip", "unique": "0", "required": "1", "obsoletes": "ipaddr"}
    assert [child.tag for child in ip] == ["getopt", "content", "shortdesc"]
    assert ip.find("getopt").get("mixed") == "-a, --ip=[ip]"  # type: ignore[union-attr]
    assert ip.find("content").attrib == {"type": "string"}  # type: ignore[union-attr]
    assert ip.find("shortdesc").attrib == {"lang": "en"}  # type: ignore[union-attr]


def test_deprecated_aliases_are_their_own_parameters() -> None:
    found = parameters(render_fence_metadata(agent()))
    for old, new in [
        ("ipaddr", "ip"),
        ("login", "username"),
        ("passwd", "password"),
        ("passwd_script", "password_script"),
        ("port", "plug"),
        ("debug", "debug_file"),
    ]:
        assert found[old].get("deprecated") == "1"
        assert found[old].get("obsoletes") is None
        assert found[new].get("obsoletes") == old
        assert found[new].get("deprecated") is None
        # The same option under another name: same spelling, type, default, description.
        for tag in ("getopt", "content", "shortdesc"):
            assert found[old].find(tag).attrib == found[new].find(tag).attrib  # type: ignore[union-attr]


def test_content_types_defaults_and_choices() -> None:
    found = parameters(render_fence_metadata(agent(extra=EXTRA)))

    def content(name: str) -> dict[str, str]:
        return dict(found[name].find("content").attrib)  # type: ignore[union-attr]

    assert content("action") == {"type": "string", "default": "reboot"}
    assert content("ipport") == {"type": "integer"}
    assert content("verbose") == {"type": "boolean", "default": "0"}
    assert content("lanplus") == {"type": "boolean", "default": "1"}
    assert content("power_timeout") == {"type": "second", "default": "20"}
    assert content("ipmitool_timeout") == {"type": "second", "default": "2.5"}
    assert content("method") == {"type": "select", "default": "onoff"}
    options = [o.get("value") for o in found["privlvl"].iter("option")]
    assert options == ["user", "operator", "administrator"]


def test_getopt_spellings() -> None:
    spelled = {name: getopt_mixed(option) for name, option, _ in entries(agent(extra=EXTRA))}
    assert spelled["username"] == "-l, --username=[name]"
    assert spelled["password_script"] == "-S, --password-script=[script]"
    assert spelled["verbose"] == "-v, --verbose"
    assert spelled["lanplus"] == "-P, --lanplus"
    assert spelled["delay"] == "--delay=[seconds]"
    assert spelled["retry_on"] == "--retry-on=[attempts]"
    assert spelled["debug_file"] == "-D, --debug-file=[debugfile]"
    assert spelled["plug"] == "-n, --plug=[id]"


def test_parameters_are_sorted_like_fence_agents() -> None:
    names = [p.get("name") for p in ET.fromstring(render_fence_metadata(agent(extra=EXTRA))).iter("parameter")]
    # device options (order 1) by name, then verbose (51), debug and metrics (53), timing (200, 201).
    assert names == [
        "action",
        "ip",
        "ipaddr",
        "ipport",
        "lanplus",
        "login",
        "method",
        "passwd",
        "passwd_script",
        "password",
        "password_script",
        "plug",
        "port",
        "privlvl",
        "secure",
        "ssh_old",
        "username",
        "verbose",
        "debug",
        "debug_file",
        "metrics_dir",
        "delay",
        "login_timeout",
        "power_timeout",
        "power_wait",
        "ipmitool_timeout",
        "retry_on",
    ]


def test_actions_single_plug() -> None:
    actions = ET.fromstring(render_fence_metadata(agent())).find("actions")
    assert [a.attrib for a in actions] == [  # type: ignore[union-attr]
        {"name": "on", "automatic": "0"},
        {"name": "off"},
        {"name": "reboot"},
        {"name": "status"},
        {"name": "monitor"},
        {"name": "metadata"},
        {"name": "manpage"},
        {"name": "validate-all"},
    ]


def test_actions_multi_plug_include_list() -> None:
    actions = ET.fromstring(render_fence_metadata(agent(multi_plug=True))).find("actions")
    assert [a.get("name") for a in actions] == [  # type: ignore[union-attr]
        "on",
        "off",
        "reboot",
        "status",
        "list",
        "list-status",
        "monitor",
        "metadata",
        "manpage",
        "validate-all",
    ]


# --- the same names as fence-agents ------------------------------------------------------


def fence_ipmilan_metadata() -> str:
    program = shutil.which("fence_ipmilan") or "/usr/sbin/fence_ipmilan"
    if not os.access(program, os.X_OK):
        pytest.skip("fence_ipmilan (fence-agents) is not installed")
    result = subprocess.run([program, "-o", "metadata"], capture_output=True, text=True, check=True, timeout=60)
    return result.stdout


def test_common_names_are_fence_ipmilans() -> None:
    theirs = parameters(fence_ipmilan_metadata())
    ours = {name: p for name, p in parameters(render_fence_metadata(agent())).items() if name not in OWN}
    assert set(ours) <= set(theirs)
    for name in ours:
        assert ours[name].get("deprecated") == theirs[name].get("deprecated"), name
        assert ours[name].get("obsoletes") == theirs[name].get("obsoletes"), name
        ours_type = ours[name].find("content").get("type")  # type: ignore[union-attr]
        theirs_type = theirs[name].find("content").get("type")  # type: ignore[union-attr]
        assert ours_type == theirs_type, name
        ours_flag = ours[name].find("getopt").get("mixed", "").split("=")[0]  # type: ignore[union-attr]
        theirs_flag = theirs[name].find("getopt").get("mixed", "").split("=")[0]  # type: ignore[union-attr]
        assert ours_flag == theirs_flag, name


def test_the_real_ipmi_agent_keeps_fence_ipmilans_names() -> None:
    theirs = parameters(fence_ipmilan_metadata())
    ours = parameters(render_fence_metadata(importlib.import_module("highlander.fencing.agents.ipmi").AGENT))
    shared = {
        "ip",
        "ipaddr",
        "ipport",
        "username",
        "login",
        "password",
        "passwd",
        "password_script",
        "passwd_script",
        "plug",
        "port",
        "method",
        "delay",
        "power_timeout",
        "power_wait",
        "login_timeout",
        "retry_on",
        "verbose",
        "debug_file",
        "debug",
        "action",
    }
    assert shared <= set(ours) & set(theirs)


# --- man page ---------------------------------------------------------------------------


def test_manpage_has_the_sections_and_both_spellings() -> None:
    page = render_fence_manpage(agent(multi_plug=True, extra=EXTRA))
    assert page.startswith(".TH FENCE_TEST 8 ")
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "PARAMETERS", "ACTIONS", "STDIN PARAMETERS", "EXIT STATUS"):
        assert f"\n.SH {section}\n" in page
    parameters_part = page.split("\n.SH PARAMETERS\n")[1].split("\n.SH ACTIONS\n")[0]
    stdin_part = page.split("\n.SH STDIN PARAMETERS\n")[1]
    assert ".B \\-a, \\-\\-ip=[ip]" in parameters_part
    assert ".B \\-\\-power\\-timeout=[seconds]" in parameters_part
    assert ".B ip\n" in stdin_part and "Obsoletes: ipaddr" in stdin_part
    assert ".B password_script\n" in stdin_part and "Obsoletes: passwd_script" in stdin_part
    assert ".B nodename\n" in stdin_part
    assert ".B list\\-status\n" in page.split("\n.SH ACTIONS\n")[1]


def test_manpage_escapes_text_that_groff_would_take_for_requests() -> None:
    page = render_fence_manpage(agent())
    assert "\n\\&.TH not a request\n" in page
    assert "\\efBnot bold" in page


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_manpage_renders_without_groff_warnings() -> None:
    result = subprocess.run(
        ["groff", "-man", "-ww", "-z"],
        input=render_fence_manpage(agent(True, EXTRA)),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and result.stderr == ""


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed")
def test_manpage_reads_with_man() -> None:
    result = subprocess.run(
        ["man", "-l", "-"],
        input=render_fence_manpage(agent(extra=EXTRA)),
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "MANPAGER": "cat", "PAGER": "cat", "MANWIDTH": "100"},
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for heading in ("NAME", "DESCRIPTION", "PARAMETERS", "ACTIONS", "STDIN PARAMETERS"):
        assert f"\n{heading}\n" in text
    assert "fence_test - Test agent" in text
    assert "-a, --ip=[ip]" in text
    assert "(Default Value: administrator)" in text
    assert "(user|operator|administrator)" in text


def test_usage_lists_every_command_line_spelling() -> None:
    text = usage(agent(extra=EXTRA))
    assert text.startswith("Usage: fence_test [OPTION]...")
    for name, option, deprecated in entries(agent(extra=EXTRA)):
        if not deprecated:
            assert getopt_mixed(option) in text
    assert "-h, --help" in text
