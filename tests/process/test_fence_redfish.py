"""fence_highlander_redfish against a real Redfish service, side by side with fence_redfish.

The BMC is sushy-tools' ``sushy-emulator`` (fake systems driver, TLS with a
CA made per test, basic auth) on 127.0.0.1, started and stopped by PID by
:class:`RedfishSimulator`. Its fake systems change power 1 to 11 s after a
request, like hardware, so every "off" and "on" here is verified by polling.

- driver level: :class:`RedfishDriver` straight against the emulator
  (discovery, reset actions, every error's one line);
- agent level: our installed executable and Debian's ``fence_redfish`` get
  the same stdin and must agree on exit codes and on the PowerState the
  emulator reports afterwards; then a wrong password, an unreachable
  device, TLS verification, several systems, secrecy and bad input.

``fence_redfish`` verifies TLS with python-requests, which has no stdin
option for a CA file but reads ``REQUESTS_CA_BUNDLE`` from the environment:
the verified runs give it the emulator's CA that way, the insecure runs
``ssl_insecure=1`` on stdin, the same as ours.
"""

from __future__ import annotations

import base64
import os
import subprocess
import time
from pathlib import Path

import pytest
from fence_agents import AGENT_TIMEOUT, SYSTEM_PATH, Run, debian, ours, run

from highlander.adapters.waiting import wait_until
from highlander.fencing.agents.redfish import RedfishDriver
from highlander.fencing.driver import (
    OFF,
    ON,
    DeviceFailure,
    FenceError,
    LoginDenied,
    Unreachable,
)
from highlander.lab.redfishsim import RedfishSimulator, make_certificates

FENCE_REDFISH = "/usr/sbin/fence_redfish"
AGENT_NAME = "fence_highlander_redfish"


def our_agent() -> list[str]:
    return ours(AGENT_NAME)


def fence_redfish() -> list[str]:
    return debian(FENCE_REDFISH)


# The emulator of the tests with several systems: node-a (on) and node-b (off).
with_two_systems = pytest.mark.parametrize(
    "redfish_bmc", [(("node-a", "On"), ("node-b", "Off"))], ids=["two-systems"], indirect=True
)


def driver(sim: RedfishSimulator, **changes: object) -> RedfishDriver:
    settings: dict[str, object] = {
        "username": sim.username,
        "password": sim.password,
        "ssl_ca_file": str(sim.ca_file),
        "timeout": 10,
    }
    settings.update(changes)
    return RedfishDriver(sim.host, sim.port, **settings)  # type: ignore[arg-type]


def wait_state(drv: RedfishDriver, state: str) -> None:
    """Poll through the driver, as the framework does (bounded by the emulator's 11 s)."""
    wait_until(
        lambda: drv.power_status(None) == state,
        timeout=30,
        what=f"the system to be {state}",
        interval=0.5,
    )


# -- simulator -----------------------------------------------------------------------------------


def test_simulator_files_keep_secrets_to_their_owner(redfish_bmc: RedfishSimulator) -> None:
    for name in ("htpasswd", "server.key", "emulator.conf"):
        assert (redfish_bmc.workdir / name).stat().st_mode & 0o077 == 0, name
    for path in redfish_bmc.workdir.rglob("*"):
        if path.is_file():
            assert redfish_bmc.password.encode() not in path.read_bytes(), path
    assert redfish_bmc.password.encode() not in Path(f"/proc/{redfish_bmc.pid}/cmdline").read_bytes()
    assert redfish_bmc.password.encode() not in Path(f"/proc/{redfish_bmc.pid}/environ").read_bytes()
    assert (redfish_bmc.workdir / "htpasswd").read_text().startswith(f"{redfish_bmc.username}:$2b$")


def test_simulator_answers_only_with_credentials(redfish_bmc: RedfishSimulator) -> None:
    status, _ = redfish_bmc.request("GET", "/redfish/v1/Systems", auth=False)
    assert status == 401
    status, data = redfish_bmc.request("GET", "/redfish/v1/Systems")
    assert status == 200
    assert [m["@odata.id"] for m in data["Members"]] == [redfish_bmc.systems[0].uri]  # type: ignore[index]
    assert redfish_bmc.power_state() == "On"
    assert ("GET", "/redfish/v1/Systems", 401) in [(r.method, r.path, r.status) for r in redfish_bmc.requests()]


# -- driver level --------------------------------------------------------------------------------


def test_driver_off_on_reset(redfish_bmc: RedfishSimulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    with driver(redfish_bmc) as drv:
        assert drv.power_status(None) == ON
        drv.set_power(None, OFF)
        wait_state(drv, OFF)
        assert redfish_bmc.power_state() == "Off"
        drv.set_power(None, ON)
        wait_state(drv, ON)
        assert redfish_bmc.power_state() == "On"
        drv.reset(None)  # ForceRestart: the fake system reads Off until it is back on
        wait_state(drv, ON)
        assert drv.plugs() == {}
    drv.close()  # idempotent
    posts = [r for r in redfish_bmc.requests() if r.method == "POST"]
    assert [r.path for r in posts] == [f"{redfish_bmc.systems[0].uri}/Actions/ComputerSystem.Reset"] * 3
    assert all(r.status == 204 for r in posts)
    token = base64.b64encode(f"{redfish_bmc.username}:{redfish_bmc.password}".encode()).decode()
    assert "GET /redfish/v1/Systems" in caplog.text  # the exchanges are logged...
    assert redfish_bmc.password not in caplog.text and token not in caplog.text  # ...never the secret


def test_driver_wrong_password_is_login_denied(redfish_bmc: RedfishSimulator) -> None:
    drv = driver(redfish_bmc, password="not-" + redfish_bmc.password)
    with pytest.raises(LoginDenied) as caught, drv:
        pass
    message = str(caught.value)
    assert "HTTP 401 Unauthorized: check username and password" in message
    assert "\n" not in message
    assert redfish_bmc.password not in message
    assert "/redfish/v1/Systems" in message


def test_driver_verifies_tls_by_default(redfish_bmc: RedfishSimulator) -> None:
    before = len(redfish_bmc.requests())
    drv = driver(redfish_bmc, ssl_ca_file=None)
    with pytest.raises(Unreachable) as caught, drv:
        pass
    message = str(caught.value)
    assert "certificate" in message and "ssl_ca_file" in message and "ssl_insecure" in message
    assert "\n" not in message
    assert len(redfish_bmc.requests()) == before  # the handshake failed: no request was sent


def test_driver_rejects_a_certificate_of_another_ca(redfish_bmc: RedfishSimulator, tmp_path: Path) -> None:
    other_ca, _, _ = make_certificates(tmp_path / "other")
    with pytest.raises(Unreachable) as caught, driver(redfish_bmc, ssl_ca_file=str(other_ca)):
        pass
    assert str(other_ca) in str(caught.value)


def test_driver_insecure_skips_verification(redfish_bmc: RedfishSimulator) -> None:
    with driver(redfish_bmc, ssl_ca_file=None, ssl_insecure=True) as drv:
        assert drv.power_status(None) == ON


def test_driver_ca_file_and_insecure_together_are_refused(redfish_bmc: RedfishSimulator) -> None:
    before = len(redfish_bmc.requests())
    with pytest.raises(FenceError, match="contradict"):
        driver(redfish_bmc, ssl_insecure=True)
    assert len(redfish_bmc.requests()) == before


@pytest.mark.parametrize("content", [None, b"not a certificate\n"], ids=["missing", "not-pem"])
def test_driver_unusable_ca_file(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(FenceError) as caught:
        RedfishDriver("127.0.0.1", 443, ssl_ca_file=str(path))
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_driver_unreachable(reserved_port: int) -> None:
    drv = RedfishDriver("127.0.0.1", reserved_port, username="admin", password="x", timeout=5)
    with pytest.raises(Unreachable, match="refused the connection"), drv:
        pass


@with_two_systems
def test_driver_several_systems_need_a_choice(redfish_bmc: RedfishSimulator) -> None:
    a, b = redfish_bmc.systems
    with pytest.raises(DeviceFailure) as caught, driver(redfish_bmc):
        pass
    message = str(caught.value)
    assert a.uri in message and b.uri in message
    assert "systems_uri" in message and "plug" in message

    for choice, state in (
        ({"plug": "node-b"}, OFF),  # by Name
        ({"plug": a.uuid}, ON),  # by Id
        ({"systems_uri": b.uri}, OFF),
        ({"systems_uri": a.uri, "plug": "node-b"}, ON),  # systems_uri wins, as in fence_redfish
    ):
        with driver(redfish_bmc, **choice) as drv:
            assert drv.power_status(None) == state, choice

    with pytest.raises(DeviceFailure) as caught, driver(redfish_bmc, plug="node-z"):
        pass
    assert "node-z" in str(caught.value) and a.uri in str(caught.value)


def test_driver_plug_on_a_single_system_bmc(redfish_bmc: RedfishSimulator) -> None:
    """Pacemaker passes the node name as plug; a one-system BMC has nothing to choose."""
    with driver(redfish_bmc, plug="whatever-node") as drv:
        assert drv.power_status("whatever-node") == ON


def test_driver_answers_without_expected_keys(redfish_bmc: RedfishSimulator) -> None:
    # Real answers of the emulator that are not what the agent needs.
    managers_root = driver(redfish_bmc, redfish_uri="/redfish/v1/Managers")
    with pytest.raises(DeviceFailure, match="/redfish/v1/Managers has no Systems"), managers_root:
        pass

    with driver(redfish_bmc, systems_uri="/redfish/v1/Registries") as drv:
        with pytest.raises(DeviceFailure, match="reports no PowerState"):
            drv.power_status(None)

    _, managers = redfish_bmc.request("GET", "/redfish/v1/Managers")
    manager = managers["Members"][0]["@odata.id"]  # type: ignore[index]
    with driver(redfish_bmc, systems_uri=manager) as drv:  # a Manager has a PowerState, no ComputerSystem.Reset
        assert drv.power_status(None) == ON
        with pytest.raises(DeviceFailure, match=r"no Actions/#ComputerSystem.Reset/target"):
            drv.set_power(None, OFF)
    assert redfish_bmc.power_state() == "On"


def test_driver_http_errors_are_one_line(redfish_bmc: RedfishSimulator) -> None:
    nowhere = driver(redfish_bmc, systems_uri="/redfish/v1/Systems/nope")
    with pytest.raises(DeviceFailure) as caught, nowhere:
        pass
    message = str(caught.value)
    assert "HTTP 404" in message and "/redfish/v1/Systems/nope" in message
    assert "\n" not in message


def test_driver_follows_the_emulators_redirect_from_name_to_id(redfish_bmc: RedfishSimulator) -> None:
    """sushy-emulator redirects /Systems/<name> to /Systems/<uuid> (HTTP 307)."""
    with driver(redfish_bmc, systems_uri="/redfish/v1/Systems/node-a") as drv:
        assert drv.power_status(None) == ON


# -- agent level ---------------------------------------------------------------------------------


def run_variant(variant: tuple[list[str], dict, dict]) -> Run:
    command, options, env = variant
    return run(command, options, env)


def base_options(sim: RedfishSimulator, **extra: object) -> dict[str, object]:
    return {
        "ip": sim.host,
        "ipport": sim.port,
        "username": sim.username,
        "password": sim.password,
        **extra,
    }


def ours_verified(sim: RedfishSimulator, **extra: object) -> tuple[list[str], dict, dict]:
    return our_agent(), base_options(sim, ssl_ca_file=sim.ca_file, **extra), {}


def theirs_verified(sim: RedfishSimulator, **extra: object) -> tuple[list[str], dict, dict]:
    return fence_redfish(), base_options(sim, **extra), {"REQUESTS_CA_BUNDLE": str(sim.ca_file)}


def ours_insecure(sim: RedfishSimulator, **extra: object) -> tuple[list[str], dict, dict]:
    return our_agent(), base_options(sim, ssl_insecure=1, **extra), {}


def theirs_insecure(sim: RedfishSimulator, **extra: object) -> tuple[list[str], dict, dict]:
    return fence_redfish(), base_options(sim, ssl_insecure=1, **extra), {}


# status and monitor, then off (twice: the second finds it off already), on and reboot.
SEQUENCE = ("status", "monitor", "off", "status", "off", "on", "status", "reboot")


@pytest.mark.parametrize(
    "variants",
    [(ours_verified, theirs_verified), (ours_insecure, theirs_insecure)],
    ids=["tls-verified", "ssl-insecure"],
)
def test_differential_power_sequence(redfish_bmc: RedfishSimulator, variants: tuple) -> None:
    """Each action by our agent, then by fence_redfish, on the same emulator."""
    outcomes: dict[str, list[tuple[str, int, str]]] = {"ours": [], "fence_redfish": []}
    for action in SEQUENCE:
        for who, variant in zip(outcomes, variants):
            command, options, env = variant(redfish_bmc, action=action)
            result = run(command, options, env)
            assert "Traceback" not in result.stderr, (who, action, result.stderr)
            outcomes[who].append((action, result.returncode, redfish_bmc.power_state()))
    assert outcomes["ours"] == outcomes["fence_redfish"]
    assert outcomes["ours"] == [
        ("status", 0, "On"),
        ("monitor", 0, "On"),
        ("off", 0, "Off"),
        ("status", 2, "Off"),
        ("off", 0, "Off"),
        ("on", 0, "On"),
        ("status", 0, "On"),
        ("reboot", 0, "On"),
    ]


def test_reboot_cycle_is_one_force_restart(redfish_bmc: RedfishSimulator) -> None:
    command, options, env = ours_verified(redfish_bmc, action="reboot", method="cycle")
    before = len(redfish_bmc.requests())
    result = run(command, options, env)
    assert result.returncode == 0, result.stderr
    posts = [r for r in redfish_bmc.requests()[before:] if r.method == "POST"]
    assert len(posts) == 1
    redfish_bmc.wait_power("On")


def test_wrong_password(redfish_bmc: RedfishSimulator, capsys: pytest.CaptureFixture[str]) -> None:
    wrong = "not-" + redfish_bmc.password
    command, options, env = ours_verified(redfish_bmc, action="status", password=wrong)
    ours = run(command, options, env)
    command, options, env = theirs_verified(redfish_bmc, action="status", password=wrong)
    theirs = run(command, options, env)

    assert ours.returncode == theirs.returncode == 1
    assert len(ours.error_lines) == 1, ours.stderr
    assert "HTTP 401 Unauthorized: check username and password" in ours.error_lines[0]
    assert "Traceback" not in ours.stderr
    assert wrong not in ours.stderr + ours.stdout
    # Debian's fence_redfish (fence-agents 4.12) crashes here: the 401 answer has no Members.
    with capsys.disabled():
        print(f"\nfence_redfish, wrong password: exit {theirs.returncode}\n{theirs.stderr}")
    if "Traceback" in theirs.stderr:
        assert "KeyError: 'Members'" in theirs.stderr


def test_unreachable_device(redfish_bmc: RedfishSimulator, reserved_port: int) -> None:
    port = reserved_port  # nothing listens there
    ours = run_variant(ours_verified(redfish_bmc, action="status", ipport=port))
    theirs = run_variant(theirs_verified(redfish_bmc, action="status", ipport=port))
    assert ours.returncode == theirs.returncode == 1
    assert len(ours.error_lines) == 1, ours.stderr
    assert "refused the connection" in ours.error_lines[0]
    assert "Connection refused" in theirs.stderr


def test_tls_is_verified_by_default(redfish_bmc: RedfishSimulator) -> None:
    before = len(redfish_bmc.requests())
    ours = run(our_agent(), base_options(redfish_bmc, action="status"))
    theirs = run(fence_redfish(), base_options(redfish_bmc, action="status"))
    assert ours.returncode == theirs.returncode == 1
    assert len(ours.error_lines) == 1, ours.stderr
    line = ours.error_lines[0]
    assert "certificate" in line and "ssl_ca_file" in line and "ssl_insecure" in line
    assert "CERTIFICATE_VERIFY_FAILED" in theirs.stderr
    assert len(redfish_bmc.requests()) == before  # neither got past the TLS handshake


@with_two_systems
def test_several_systems(redfish_bmc: RedfishSimulator) -> None:
    a, b = redfish_bmc.systems
    ours = run_variant(ours_verified(redfish_bmc, action="status"))
    assert ours.returncode == 1
    assert len(ours.error_lines) == 1 and a.uri in ours.stderr and b.uri in ours.stderr
    # fence_redfish takes the last system the collection lists, whichever that is.
    theirs = run_variant(theirs_verified(redfish_bmc, action="status"))
    assert theirs.returncode in (0, 2)

    for extra, code in (
        ({"systems_uri": b.uri}, 2),
        ({"systems_uri": a.uri}, 0),
    ):
        for variant in (ours_verified, theirs_verified):
            result = run_variant(variant(redfish_bmc, action="status", **extra))
            assert result.returncode == code, (variant.__name__, extra, result.stderr)
    assert run_variant(ours_verified(redfish_bmc, action="status", plug="node-b")).returncode == 2
    assert run_variant(ours_verified(redfish_bmc, action="status", plug=a.uuid)).returncode == 0

    # Fencing one system leaves the other alone.
    result = run_variant(ours_verified(redfish_bmc, action="off", plug="node-a"))
    assert result.returncode == 0, result.stderr
    assert (redfish_bmc.power_state("node-a"), redfish_bmc.power_state("node-b")) == ("Off", "Off")
    result = run_variant(ours_verified(redfish_bmc, action="on", plug="node-b"))
    assert result.returncode == 0, result.stderr
    assert (redfish_bmc.power_state("node-a"), redfish_bmc.power_state("node-b")) == ("Off", "On")


def test_secrecy(redfish_bmc: RedfishSimulator, tmp_path: Path) -> None:
    """The password is on no command line, in no output and not in the debug file."""
    debug_file = tmp_path / "agent-debug.log"
    command, options, _ = ours_verified(redfish_bmc, action="off", verbose=1, debug_file=debug_file)
    stdin = "".join(f"{k}={v}\n" for k, v in options.items())
    secret = redfish_bmc.password.encode()
    basic = base64.b64encode(f"{redfish_bmc.username}:{redfish_bmc.password}".encode())
    with open(tmp_path / "out", "w+b") as out, open(tmp_path / "err", "w+b") as err:
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=err,
            env={"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"},
        )
        try:
            assert process.stdin is not None
            process.stdin.write(stdin.encode())
            process.stdin.close()
            samples = 0
            deadline = time.monotonic() + AGENT_TIMEOUT
            while process.poll() is None and time.monotonic() < deadline:
                for entry in os.listdir("/proc"):
                    if not entry.isdigit():
                        continue
                    for name in ("cmdline", "environ"):
                        try:
                            data = Path(f"/proc/{entry}/{name}").read_bytes()
                        except OSError:
                            continue
                        assert secret not in data, f"password in /proc/{entry}/{name}"
                samples += 1
                time.sleep(0.05)
            process.wait(timeout=AGENT_TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        out.seek(0)
        err.seek(0)
        output = out.read() + err.read()
    assert process.returncode == 0, output
    assert samples > 0
    assert redfish_bmc.power_state() == "Off"
    logged = debug_file.read_bytes()
    assert logged, "the debug file is empty"
    for text, where in ((output, "stdout/stderr"), (logged, "debug file")):
        assert secret not in text, where
        assert basic not in text, f"the Authorization header in the {where}"


BAD_INPUT: dict[str, str | dict[str, object]] = {
    "garbage": "this is not an option\n\x01\x02\x03 ===\n",
    "unknown-action": {"action": "explode"},
    "missing-ip": {"action": "status", "ip": None},
    "non-numeric-port": {"action": "status", "ipport": "https"},
}


@pytest.mark.parametrize("case", BAD_INPUT, ids=list(BAD_INPUT))
@pytest.mark.parametrize("who", ["ours", "fence_redfish"])
def test_bad_input(redfish_bmc: RedfishSimulator, case: str, who: str) -> None:
    given = BAD_INPUT[case]
    if isinstance(given, str):
        stdin: str | dict[str, object] = given
        command = our_agent() if who == "ours" else fence_redfish()
        env: dict[str, str] = {}
    else:
        variant = ours_verified if who == "ours" else theirs_verified
        command, options, env = variant(redfish_bmc)
        options.update(given)
        stdin = {k: v for k, v in options.items() if v is not None}
    before = len(redfish_bmc.requests())
    result = run(command, stdin, env)
    assert result.returncode == 1, result
    assert len(redfish_bmc.requests()) == before, "the agent sent a request despite bad input"
    if who == "ours":
        assert len(result.error_lines) == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert redfish_bmc.password not in result.stderr + result.stdout


def test_answers_without_expected_keys(redfish_bmc: RedfishSimulator) -> None:
    """A systems_uri that is not a ComputerSystem: both fail, ours naming what is missing."""
    wrong = {"action": "status", "systems_uri": "/redfish/v1/Registries"}
    ours = run_variant(ours_verified(redfish_bmc, **wrong))
    theirs = run_variant(theirs_verified(redfish_bmc, **wrong))
    assert ours.returncode == theirs.returncode == 1
    assert len(ours.error_lines) == 1, ours.stderr
    assert "reports no PowerState" in ours.error_lines[0]
    assert "Unable to get PowerState" in theirs.stderr
