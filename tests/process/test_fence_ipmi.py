"""fence_highlander_ipmi against OpenIPMI's ipmi_sim, side by side with fence_ipmilan.

The BMC is ``ipmi_sim`` (Debian's openipmi) on 127.0.0.1, started and
stopped by PID by :class:`IpmiSim`; the chassis power it reports is what its
``chassis_control`` program records, so every test reads the simulator's own
account of the power after an agent ran.

- differential: our executable and fence-agents' ``fence_ipmilan`` get the
  same options on stdin (ip, ipport, username, password, lanplus=1,
  cipher=3, action) and must agree, step by step, on the exit code, the power
  the simulator records and the chassis requests it received; also for a
  wrong password and a closed port (both exit 1, nothing switched).
  fence_ipmilan hands the password to ipmitool on its command line
  (``-P``); ipmitool overwrites it in its argv at start-up. That is the
  reference agent's way, outside this project; our agent never does it, and
  the secrecy test checks that while ours runs.
- secrecy: while our agent runs several actions, every process's cmdline
  (and environment) is sampled; its output, its debug file (0600) and the
  simulator's logs are searched: the password is nowhere.
- bad input: exit 1, one line on stderr, and the simulator received not a
  single packet (ipmi_sim logs every packet it gets in debug mode).

Pacemaker running the agent is tests/cluster/test_fence_ipmi_pacemaker.py.
"""

from __future__ import annotations

import os
import shutil
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
from fence_agents import debian, ours, run

from highlander.lab.ipmisim import IpmiSim, free_udp_port, stdin_text

AGENT_NAME = "fence_highlander_ipmi"
FENCE_IPMILAN = "/usr/sbin/fence_ipmilan"


def our_agent() -> list[str]:
    return ours(AGENT_NAME)


def fence_ipmilan() -> list[str]:
    return debian(FENCE_IPMILAN)


pytestmark = pytest.mark.skipif(shutil.which("ipmi_sim") is None, reason="ipmi_sim (openipmi) missing")


# -- running agents ------------------------------------------------------------------------------


def without_python_warnings(stderr: str) -> list[str]:
    """fence_ipmilan's stderr minus Python's DeprecationWarning about its 'pipes' import."""
    lines = stderr.splitlines()
    return [
        line
        for i, line in enumerate(lines)
        if "DeprecationWarning" not in line and not (i and "DeprecationWarning" in lines[i - 1])
    ]


# -- differential --------------------------------------------------------------------------------


def metadata_parameters(command: list[str]) -> dict[str, ET.Element]:
    result = run(command, "action=metadata\n")
    assert result.returncode == 0, result.stderr
    return {p.get("name"): p for p in ET.fromstring(result.stdout).iter("parameter")}  # type: ignore[misc]


def test_options_are_spelled_as_fence_ipmilan_spells_them() -> None:
    """A device configured for fence_ipmilan keeps its option names and flags with ours."""
    ours = metadata_parameters(our_agent())
    theirs = metadata_parameters(fence_ipmilan())
    for name in (
        "lanplus",
        "cipher",
        "privlvl",
        "hexadecimal_kg",
        "ip",
        "ipaddr",
        "ipport",
        "username",
        "login",
        "password",
        "passwd",
        "password_script",
        "method",
        "delay",
        "login_timeout",
        "power_timeout",
        "power_wait",
        "retry_on",
    ):
        assert name in ours, name
        flags = [p.find("getopt").get("mixed") for p in (ours[name], theirs[name])]  # type: ignore[union-attr]
        assert flags[0] == flags[1], name
    levels = [[o.get("value") for o in p.iter("option")] for p in (ours["privlvl"], theirs["privlvl"])]
    assert levels[0] == levels[1]
    assert ours["ipport"].find("content").get("default") == "623"  # type: ignore[union-attr]
    # the deliberate differences: IPMI 2.0 by default, no fixed wait, no ipmitool, no IPMI 1.5 auth
    assert ours["lanplus"].find("content").get("default") == "1"  # type: ignore[union-attr]
    assert theirs["lanplus"].find("content").get("default") == "0"  # type: ignore[union-attr]
    assert ours["power_wait"].find("content").get("default") == "0"  # type: ignore[union-attr]
    assert not {"auth", "ipmitool_path", "ipmitool_timeout", "target"} & set(ours)


# From "on": status and monitor, off (twice: the second finds it off), status off,
# monitor of an off node, on (twice), reboot from on, reboot from off, a power cycle.
SEQUENCE: tuple[tuple[str, dict[str, str]], ...] = (
    ("status", {}),
    ("monitor", {}),
    ("off", {}),
    ("off", {}),
    ("status", {}),
    ("monitor", {}),
    ("on", {}),
    ("on", {}),
    ("reboot", {}),
    ("off", {}),
    ("reboot", {}),
    ("reboot", {"method": "cycle"}),
)


@dataclass(frozen=True)
class Step:
    action: str
    returncode: int
    power: str  # what the simulator records afterwards
    requests: tuple[str, ...]  # the chassis requests it received meanwhile
    stdout: tuple[str, ...]


def play(sim: IpmiSim, command: list[str]) -> list[Step]:
    sim.set_power(True)
    steps = []
    for action, extra in SEQUENCE:
        before = len(sim.events())
        result = run(command, sim.fence_stdin(action, **extra))
        if extra.get("method") == "cycle":
            # ipmi_sim powers a cycled chassis on about a second after the request,
            # whether or not the agent waited for it
            sim.wait_power("on", timeout=30)
        steps.append(
            Step(action, result.returncode, sim.power, tuple(sim.events()[before:]), tuple(result.stdout.splitlines()))
        )
    return steps


def test_differential_power_sequence(ipmi_bmc: IpmiSim) -> None:
    ours = play(ipmi_bmc, our_agent())
    theirs = play(ipmi_bmc, fence_ipmilan())
    for mine, reference in zip(ours, theirs):
        assert (mine.action, mine.returncode, mine.power, mine.requests) == (
            reference.action,
            reference.returncode,
            reference.power,
            reference.requests,
        ), f"ours {mine} != fence_ipmilan {reference}"
    # the exit codes the fence-agents API prescribes, and what was switched
    assert [s.returncode for s in ours] == [0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]
    assert [s.requests for s in ours] == [
        (),
        (),
        ("off",),
        (),
        (),
        (),
        ("on",),
        (),
        ("off", "on"),
        ("off",),
        ("on",),
        ("off", "on"),
    ]
    status = [s.stdout for s in ours if s.action == "status"]
    assert status == [("Status: ON",), ("Status: OFF",)]
    assert status == [s.stdout for s in theirs if s.action == "status"]


@pytest.mark.parametrize("who", ["ours", "fence_ipmilan"])
def test_wrong_password(ipmi_bmc: IpmiSim, who: str) -> None:
    command = our_agent() if who == "ours" else fence_ipmilan()
    wrong = "not-" + ipmi_bmc.password
    for action in ("status", "off", "reboot"):
        result = run(command, ipmi_bmc.fence_stdin(action, password=wrong))
        assert result.returncode == 1, result
        assert ipmi_bmc.power == "on"
    assert ipmi_bmc.events() == []
    if who == "ours":
        lines = result.error_lines
        assert len(lines) == 1 and lines[0].startswith("Failed: Unable to connect/login"), lines
        assert "Incorrect password" in lines[0]
        assert wrong not in result.stderr and ipmi_bmc.password not in result.stderr


@pytest.mark.parametrize("who", ["ours", "fence_ipmilan"])
def test_unreachable_device(ipmi_bmc: IpmiSim, who: str) -> None:
    """A closed port on loopback: nobody answers."""
    command = our_agent() if who == "ours" else fence_ipmilan()
    closed = free_udp_port()
    result = run(command, ipmi_bmc.fence_stdin("status", ipport=closed))
    assert result.returncode == 1, result
    if who == "ours":
        lines = result.error_lines
        assert len(lines) == 1, lines
        assert f"no answer from the BMC at 127.0.0.1:{closed}" in lines[0]


# -- secrecy -------------------------------------------------------------------------------------


class ProcSampler:
    """Reads every process's cmdline and environment over and over, looking for a secret."""

    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()
        self.found: list[str] = []
        self.passes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                for name in ("cmdline", "environ"):
                    try:
                        with open(f"/proc/{entry}/{name}", "rb") as f:
                            data = f.read()
                    except OSError:
                        continue
                    if self.secret in data:
                        self.found.append(f"/proc/{entry}/{name}: {data[:200]!r}")
            self.passes += 1

    def __enter__(self) -> ProcSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def secret_forms(password: str) -> list[str]:
    raw = password.encode()
    return [password, raw.hex(), " ".join(f"{b:02x}" for b in raw)]


def test_secrecy(ipmi_bmc: IpmiSim, tmp_path: Path) -> None:
    debug_file = tmp_path / "agent-debug.log"
    outputs: list[str] = []
    with ProcSampler(ipmi_bmc.password) as sampler:
        for action in ("status", "off", "status", "on", "reboot", "monitor", "reboot"):
            extra = {"verbose": 1, "debug_file": str(debug_file)}
            if action == "reboot" and outputs:
                extra["method"] = "cycle"
            result = run(our_agent(), ipmi_bmc.fence_stdin(action, **extra))
            assert result.returncode in (0, 2), result
            outputs.append(result.stdout + result.stderr)
        # and a failing login, whose error path prints the most
        outputs.append(run(our_agent(), ipmi_bmc.fence_stdin("status", username="nobody")).stderr)
    assert sampler.passes > 0
    assert sampler.found == []
    assert debug_file.stat().st_mode & 0o777 == 0o600
    debug_text = debug_file.read_text()
    assert "connecting to 127.0.0.1" in debug_text  # it did record the exchanges
    logs = {"debug file": debug_text, "agent output": "\n".join(outputs)}
    for path in ipmi_bmc.workdir.rglob("*"):
        if path.is_file() and path != ipmi_bmc.lan_conf:
            logs[str(path)] = path.read_text(errors="replace")
    for where, text in logs.items():
        for form in secret_forms(ipmi_bmc.password):
            assert form not in text, f"the password ({form!r}) is in {where}"
    assert ipmi_bmc.lan_conf.stat().st_mode & 0o777 == 0o600  # the one file that must hold it


# -- bad input -----------------------------------------------------------------------------------


def bad_inputs(sim: IpmiSim) -> dict[str, bytes]:
    options = sim.fence_options()
    no_ip = {k: v for k, v in options.items() if k != "ip"}
    return {
        "garbage": b"\x00\xff\xfe\x01garbage\n" + stdin_text(options).encode(),
        "not-name-value": b"this line is not an option\n" + stdin_text(options).encode(),
        "unknown-action": sim.fence_stdin("explode").encode(),
        "missing-ip": stdin_text({"action": "off", **no_ip}).encode(),
        "non-numeric-port": sim.fence_stdin("off", ipport="six-two-three").encode(),
        # what this agent refuses where fence_ipmilan would go on
        "ipmi-1.5": sim.fence_stdin("off", lanplus=0).encode(),
        "cipher-0": sim.fence_stdin("off", cipher=0).encode(),
        "bad-kg": sim.fence_stdin("off", hexadecimal_kg="not-hex").encode(),
        "bad-privilege": sim.fence_stdin("off", privlvl="root").encode(),
    }


BAD_CASES = (
    "garbage",
    "not-name-value",
    "unknown-action",
    "missing-ip",
    "non-numeric-port",
    "ipmi-1.5",
    "cipher-0",
    "bad-kg",
    "bad-privilege",
)


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input(ipmi_bmc: IpmiSim, case: str) -> None:
    before = ipmi_bmc.received_packets()
    result = run(our_agent(), bad_inputs(ipmi_bmc)[case])
    assert result.returncode == 1, result
    assert len(result.error_lines) == 1, result.stderr
    assert result.error_lines[0].startswith("Failed:"), result.stderr
    assert result.stdout == ""
    assert ipmi_bmc.password not in result.stderr
    assert ipmi_bmc.received_packets() == before  # nothing was sent to the device
    assert ipmi_bmc.events() == [] and ipmi_bmc.power == "on"
