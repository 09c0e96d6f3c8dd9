"""The lab's stacks as changes of the rendered CIB (no cluster: the XML only)."""

from __future__ import annotations

import shlex
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from highlander.commands.render import render_files
from highlander.inventory import load
from highlander.lab.stacks import NO_GUARD, StackError, reconfigure, without_guard

LAB = Path(__file__).resolve().parents[2] / "examples" / "lab.yml"


@pytest.fixture
def configuration() -> ET.Element:
    (cib,) = {f.text for f in render_files(load(LAB)) if f.name == "cib.xml"}
    found = ET.fromstring(cib).find("configuration")
    assert found is not None
    return found


def attributes(configuration: ET.Element, rid: str) -> dict[str, str]:
    return {
        p.get("name", ""): p.get("value", "")
        for p in configuration.iterfind(f".//primitive[@id='{rid}']/instance_attributes/nvpair")
    }


def primitive(configuration: ET.Element, rid: str) -> ET.Element:
    found = configuration.find(f".//primitive[@id='{rid}']")
    assert found is not None
    return found


def stonith_enabled(configuration: ET.Element) -> str | None:
    pair = configuration.find("crm_config/cluster_property_set/nvpair[@name='stonith-enabled']")
    return None if pair is None else pair.get("value")


def test_highlander_is_the_rendered_cib(configuration: ET.Element) -> None:
    before = ET.tostring(configuration)
    reconfigure(configuration, "highlander")
    assert ET.tostring(configuration) == before


def test_stock_uses_fence_ipmilan_and_anything_without_a_password(configuration: ET.Element) -> None:
    ours = attributes(configuration, "fence-node-a-1")
    command = attributes(configuration, "validator")["command"]
    reconfigure(configuration, "stock")
    for node in ("node-a", "node-b", "node-w"):
        device = primitive(configuration, f"fence-{node}-1")
        assert device.get("type") == "fence_ipmilan"
        assert attributes(configuration, f"fence-{node}-1")["lanplus"] == "1"
    stock = attributes(configuration, "fence-node-a-1")
    assert {k: stock[k] for k in ours} == ours  # same BMC, user, cipher, password_script
    assert "password" not in stock and stock["password_script"].startswith("/bin/cat /etc/highlander/secrets/")
    validator = primitive(configuration, "validator")
    assert (validator.get("class"), validator.get("provider"), validator.get("type")) == (
        "ocf",
        "heartbeat",
        "anything",
    )
    params = attributes(configuration, "validator")
    assert set(params) == {"binfile", "cmdline_options", "logfile"}
    # anything runs "$binfile $cmdline_options" through a shell: the same words, plus --no-guard
    assert [params["binfile"], *shlex.split(params["cmdline_options"])] == shlex.split(without_guard(command))
    assert stonith_enabled(configuration) == "true"
    assert configuration.find(".//clone[@id='signstate-clone']") is not None  # the drills wait for it


def test_unguarded_keeps_our_agents_with_every_guard_off(configuration: ET.Element) -> None:
    reconfigure(configuration, "unguarded")
    assert stonith_enabled(configuration) == "false"
    assert primitive(configuration, "fence-node-a-1").get("type") == "fence_highlander_ipmi"
    assert primitive(configuration, "validator").get("type") == "validator"
    params = attributes(configuration, "validator")
    assert params["signstate"] == "false"
    assert shlex.split(params["command"])[-1].endswith(f" {NO_GUARD}")


def test_without_guard_adds_the_flag_once() -> None:
    assert without_guard("/bin/sh -c 'exec signer --node $(hostname)'") == (
        "/bin/sh -c 'exec signer --node $(hostname) --no-guard'"
    )
    assert without_guard("signer --node a") == "signer --node a --no-guard"
    assert without_guard("signer --no-guard") == "signer --no-guard"


def test_an_unknown_stack_or_a_cib_without_the_validator_is_refused(configuration: ET.Element) -> None:
    with pytest.raises(StackError, match="unknown stack"):
        reconfigure(configuration, "other")
    resources = configuration.find("resources")
    assert resources is not None
    resources.remove(primitive(configuration, "validator"))
    with pytest.raises(StackError, match="no primitive 'validator'"):
        reconfigure(configuration, "stock")
