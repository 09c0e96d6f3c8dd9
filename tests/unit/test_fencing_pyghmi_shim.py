"""The pyghmi shim holds for the installed pyghmi, and refuses one it is not proven with.

The shim (highlander/fencing/agents/pyghmi_shim.py) reaches into pyghmi's
private session code. These checks run against the pyghmi installed here:
its version is inside the shim's range, setup.cfg pins that same range, every
private name the shim uses exists, and the private behaviour it counts on is
still written the way it was when the shim was proven. The negative controls
show the refusal itself: a version outside the range, or a missing name,
stops the agent with one line that says what to install.
"""

from __future__ import annotations

import configparser
import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import pyghmi.ipmi.private.session as session
import pytest

from highlander.fencing.agents import pyghmi_shim
from highlander.fencing.agents.pyghmi_shim import PRIVATE, REQUIREMENT, UnsupportedPyghmi

SETUP_CFG = Path(__file__).resolve().parents[2] / "setup.cfg"


@pytest.fixture
def fresh_shim(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shim as in a new process: nothing checked or patched yet (restored afterwards)."""
    monkeypatch.setattr(pyghmi_shim, "_SESSION", None)


def test_the_installed_pyghmi_is_inside_the_proven_range() -> None:
    version = pyghmi_shim.installed_version()
    assert version is not None, "no pyghmi-*.dist-info found beside the pyghmi package"
    assert pyghmi_shim.supported(version), f"pyghmi {version} is outside {REQUIREMENT}"


def test_setup_cfg_pins_the_range_the_shim_is_proven_for() -> None:
    config = configparser.ConfigParser()
    config.read(SETUP_CFG)
    requirements = [line.strip() for line in config["options"]["install_requires"].splitlines()]
    assert [r for r in requirements if r.startswith("pyghmi")] == [REQUIREMENT]
    lowest, below = re.fullmatch(r"pyghmi>=([0-9.]+),<([0-9.]+)", REQUIREMENT).groups()  # type: ignore[union-attr]
    assert pyghmi_shim.LOWEST == tuple(map(int, lowest.split(".")))
    assert pyghmi_shim.BELOW == tuple(map(int, below.split(".")))


@pytest.mark.parametrize(("module", "path"), PRIVATE, ids=[f"{m}.{p}" for m, p in PRIVATE])
def test_every_private_name_the_shim_uses_exists(module: str, path: str) -> None:
    target: Any = importlib.import_module(module)
    for name in path.split("."):
        assert hasattr(target, name), f"{module}.{path}: no {name}"
        target = getattr(target, name)


def source(path: str) -> str:
    target: Any = session
    for name in path.split("."):
        target = getattr(target, name)
    return inspect.getsource(target)


def test_the_private_behaviour_the_shim_counts_on() -> None:
    # The logins being set up are keyed (bmc, userid, password, port, kg): forget_logins reads key[0], key[3].
    assert "initting_sessions[(bmc, userid, password, port, kg)]" in source("Session.__new__")
    # A session starts unbroken, and is told apart by that flag.
    assert "self.broken = False" in source("Session.__init__")
    # attemptedhash 256 offers suite 17 and falls back to 3; 1 offers suite 3.
    assert "self.attemptedhash = 256" in source("Session._initsession")
    fall_back = re.search(
        r"if self\.attemptedhash == 256:\s+self\.attemptedhash = 1\b", source("Session._got_rmcp_response")
    )
    assert fall_back is not None
    assert "if self.attemptedhash == 1:" in source("Session._open_rmcpplus_request")
    # The waits the shim caps take (timeout, myaddr, evq).
    assert list(inspect.signature(session._io_wait).parameters) == ["timeout", "myaddr", "evq"]


def test_the_shim_patches_once_and_pins_cipher_suites() -> None:
    patched = pyghmi_shim.session_module()
    assert patched is session and pyghmi_shim.session_module() is patched
    assert pyghmi_shim.session_class(None) is session.Session
    for cipher in ("3", "17"):
        pinned = pyghmi_shim.session_class(cipher)
        assert issubclass(pinned, session.Session) and pinned.__name__ == f"Session{cipher}"
        assert pyghmi_shim.session_class(cipher) is pinned


@pytest.mark.parametrize("version", ["1.5.76", "1.7.0", "2.0", "1.4.1"])
def test_a_version_outside_the_range_is_refused(
    fresh_shim: None, monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    monkeypatch.setattr(pyghmi_shim, "installed_version", lambda: version)
    with pytest.raises(UnsupportedPyghmi) as caught:
        pyghmi_shim.session_module()
    message = str(caught.value)
    assert f"pyghmi {version} is installed" in message and f"pip install '{REQUIREMENT}'" in message
    assert "\n" not in message


@pytest.mark.parametrize("version", ["1.5.77", "1.6.0", "1.6.19", "1.6.19.dev3"])
def test_versions_inside_the_range(version: str) -> None:
    assert pyghmi_shim.supported(version)


def test_an_unknown_version_is_refused(fresh_shim: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pyghmi_shim, "installed_version", lambda: None)
    with pytest.raises(UnsupportedPyghmi, match="cannot tell which pyghmi is installed"):
        pyghmi_shim.session_module()


def test_a_missing_private_name_is_refused(fresh_shim: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(session.Session, "initting_sessions")
    with pytest.raises(UnsupportedPyghmi, match=r"has no pyghmi\.ipmi\.private\.session\.Session\.initting_sessions"):
        pyghmi_shim.session_module()


def test_the_agent_reports_an_unproven_pyghmi_in_one_line(
    fresh_shim: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    from highlander.fencing.agents.ipmi import AGENT
    from highlander.fencing.run import main

    monkeypatch.setattr(pyghmi_shim, "installed_version", lambda: "1.7.0")
    code = main(AGENT, [], io.StringIO("action=status\nip=192.0.2.1\nusername=admin\npassword=pw\n"))
    assert code == 1
    assert capsys.readouterr().err == (
        f"Failed: pyghmi 1.7.0 is installed, but this agent reaches into pyghmi's private session code and is "
        f"proven with {REQUIREMENT} only: install that (pip install '{REQUIREMENT}')\n"
    )
