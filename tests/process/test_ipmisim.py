"""OpenIPMI's ipmi_sim as our simulated BMC, and the IPMI driver straight against it.

- the simulator: its files and their modes, what it records (power, chassis
  events), its power hooks (commands and callables, failing ones), ipmitool
  (a client nobody here wrote) agreeing with it, what it cannot do (cipher
  suite 17);
- the driver (:class:`IpmiDriver`, pyghmi underneath): one RMCP+ session for
  many commands, wrong credentials and a silent device as one-line errors,
  lost packets retried, nothing of the password in its output or logs.

Nothing here needs root; every ipmi_sim is stopped by PID by its fixture.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from simulators import running

from highlander.adapters.waiting import wait_until
from highlander.fencing.agents.ipmi import IpmiDriver, make_driver
from highlander.fencing.driver import (
    OFF,
    ON,
    DeviceFailure,
    FenceError,
    LoginDenied,
    Unreachable,
)
from highlander.lab.ipmisim import IpmiSim, SimulatorError, free_udp_port

pytestmark = pytest.mark.skipif(shutil.which("ipmi_sim") is None, reason="ipmi_sim (openipmi) missing")


def driver(sim: IpmiSim, **changes: object) -> IpmiDriver:
    options: dict[str, object] = {
        "ip": sim.address,
        "ipport": sim.port,
        "username": sim.username,
        "password": sim.password,
        "lanplus": True,
        "cipher": "3",
        "login_timeout": 5,
    }
    options.update(changes)
    return make_driver(options)


def sessions_started(sim: IpmiSim) -> int:
    return sim.log_file.read_text(errors="replace").count("Session started")


def ipmitool(sim: IpmiSim, *command: str, cipher: str = "3") -> subprocess.CompletedProcess[str]:
    """ipmitool against the simulator; the password goes in the environment (-E), never argv."""
    argv = [
        "ipmitool",
        "-I",
        "lanplus",
        "-C",
        cipher,
        "-H",
        sim.address,
        "-p",
        str(sim.port),
        "-U",
        sim.username,
        "-E",
        "-R",
        "2",
        "-N",
        "2",
        *command,
    ]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "IPMI_PASSWORD": sim.password}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)


# -- the simulator -------------------------------------------------------------------------------


def test_simulator_files_and_process(ipmi_bmc: IpmiSim) -> None:
    assert ipmi_bmc.running and ipmi_bmc.pid is not None
    assert os.path.basename(os.readlink(f"/proc/{ipmi_bmc.pid}/exe")) == "ipmi_sim"
    assert ipmi_bmc.workdir.stat().st_mode & 0o777 == 0o700
    assert ipmi_bmc.lan_conf.stat().st_mode & 0o777 == 0o600  # it holds the password
    assert ipmi_bmc.password.encode() not in Path(f"/proc/{ipmi_bmc.pid}/cmdline").read_bytes()
    assert ipmi_bmc.password.encode() not in Path(f"/proc/{ipmi_bmc.pid}/environ").read_bytes()
    for path in ipmi_bmc.workdir.rglob("*"):
        if path.is_file() and path != ipmi_bmc.lan_conf:
            assert ipmi_bmc.password.encode() not in path.read_bytes(), path
    assert "mc_enable 0x20" in (ipmi_bmc.workdir / "sim.emu").read_text()
    assert ipmi_bmc.power == ON
    pid = ipmi_bmc.pid
    ipmi_bmc.stop()
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    assert not ipmi_bmc.lan_conf.exists()  # the password does not outlive the simulator
    ipmi_bmc.stop()  # idempotent


def test_simulator_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        bmc = IpmiSim(tmp_path / "bmc", port=taken.getsockname()[1])
        try:
            with pytest.raises(SimulatorError, match="exited|bind"):
                bmc.start(timeout=10)
            assert not bmc.running
        finally:
            bmc.stop()


def test_simulator_refuses_unsafe_credentials(tmp_path: Path) -> None:
    for bad in (
        {"password": 'has "quote'},
        {"password": "has space"},
        {"password": "x" * 21},
        {"username": "u" * 17},
        {"privilege": "root"},
    ):
        with pytest.raises(ValueError):
            IpmiSim(tmp_path / "bmc", **bad)  # type: ignore[arg-type]


def test_ipmitool_sees_the_power_the_simulator_records(ipmi_bmc: IpmiSim) -> None:
    """A reference client nobody here wrote: the simulator is a BMC to it."""
    result = ipmitool(ipmi_bmc, "chassis", "power", "status")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Chassis Power is on"
    result = ipmitool(ipmi_bmc, "chassis", "power", "off")
    assert result.returncode == 0, result.stderr
    assert ipmi_bmc.power == OFF
    assert ipmitool(ipmi_bmc, "chassis", "power", "status").stdout.strip() == "Chassis Power is off"
    ipmi_bmc.set_power(True)  # behind the BMC's back, as a test set-up does
    assert ipmitool(ipmi_bmc, "chassis", "power", "status").stdout.strip() == "Chassis Power is on"
    assert ipmi_bmc.events() == ["off"]


def test_simulator_offers_no_cipher_suite_17(ipmi_bmc: IpmiSim) -> None:
    """ipmi_sim 2.0.33 has no HMAC-SHA256: suite 17 is refused, by ipmitool's account too."""
    result = ipmitool(ipmi_bmc, "chassis", "power", "status", cipher="17")
    assert result.returncode != 0
    assert "invalid authentication algorithm" in (result.stdout + result.stderr).lower()
    drv = driver(ipmi_bmc, cipher="17")
    with pytest.raises(LoginDenied, match="cipher suite 17"):
        drv.connect()
    drv.close()
    drv = driver(ipmi_bmc, cipher=None)  # unset: 17 first, then 3
    try:
        drv.connect()
        assert drv.power_status(None) == ON
    finally:
        drv.close()


def test_power_hooks_commands_and_callables(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    calls: list[str] = []
    bmc = IpmiSim(
        tmp_path / "bmc",
        on_power_off=lambda: calls.append("off"),
        on_power_on=["sh", "-c", f"echo on >> {marks}"],
        on_reset=lambda: calls.append("reset"),
    )
    with running(bmc), closing(driver(bmc)) as drv:
        drv.connect()
        drv.set_power(None, OFF)
        assert bmc.power == OFF and calls == ["off"]
        drv.set_power(None, OFF)  # already off: no hook
        assert calls == ["off"]
        drv.set_power(None, ON)
        assert bmc.power == ON and marks.read_text() == "on\n"
        bmc.set_power(True)
        # chassis control "hard reset" (3) is what on_reset serves; the driver
        # itself power-cycles (2), as fence_ipmilan does.
        drv._command("hard reset", 0x02, (0x03,))
        assert calls == ["off", "reset"]
        drv.reset(None)  # power cycle: off now, on about a second later (ipmi_sim's timer)
        wait_until(lambda: bmc.events()[-1:] == ["on"], timeout=15, what="power on after the cycle")
        assert calls == ["off", "reset", "off"]
        assert marks.read_text() == "on\non\n"
    assert bmc.events() == ["off", "off (already off)", "on", "reset", "off", "on"]


def test_a_failing_hook_fails_the_request_and_keeps_the_power(tmp_path: Path) -> None:
    def refuse() -> None:
        raise RuntimeError("the node cannot be switched off")

    bmc = IpmiSim(tmp_path / "bmc", on_power_off=refuse, on_power_on=["false"])
    with running(bmc), closing(driver(bmc)) as drv:
        drv.connect()
        with pytest.raises(DeviceFailure, match="refused chassis power off"):
            drv.set_power(None, OFF)
        assert bmc.power == ON
        bmc.set_power(False)
        with pytest.raises(DeviceFailure, match="refused chassis power on"):
            drv.set_power(None, ON)
        assert bmc.power == OFF
        assert drv.power_status(None) == OFF  # the session survives a refused request
    assert bmc.events() == ["off FAILED: hook", "on FAILED: hook"]
    assert "the node cannot be switched off" in (bmc.workdir / "hooks.log").read_text()


# -- the driver ----------------------------------------------------------------------------------


def test_one_session_for_the_whole_action(ipmi_bmc: IpmiSim) -> None:
    drv = driver(ipmi_bmc)
    try:
        drv.connect()
        assert [drv.power_status(None) for _ in range(20)] == [ON] * 20
        drv.set_power(None, OFF)
        assert drv.power_status(None) == OFF and ipmi_bmc.power == OFF
        drv.set_power(None, ON)
        assert drv.power_status(None) == ON and ipmi_bmc.power == ON
        assert drv.plugs() == {}
    finally:
        drv.close()
    drv.close()  # idempotent
    # and logged out (a BMC has few session slots); ipmi_sim logs it a moment later
    wait_until(
        lambda: "Session closed" in ipmi_bmc.log_file.read_text(errors="replace"),
        timeout=10,
        what="ipmi_sim to log the Close Session",
    )
    log = ipmi_bmc.log_file.read_text(errors="replace")
    assert log.count("Session started") == 1
    assert log.count("Session closed") == 1
    assert ipmi_bmc.events() == ["off", "on"]


def test_many_agents_in_a_row_do_not_exhaust_the_sessions(ipmi_bmc: IpmiSim) -> None:
    """ipmi_sim has a handful of session slots; each driver must give its own back."""
    for _ in range(40):
        drv = driver(ipmi_bmc)
        try:
            drv.connect()
            assert drv.power_status(None) == ON
        finally:
            drv.close()
    assert sessions_started(ipmi_bmc) == 40


@pytest.mark.parametrize("wrong", ["password", "username"])
def test_wrong_credentials_are_login_denied(ipmi_bmc: IpmiSim, wrong: str) -> None:
    bad = {"password": "not-" + ipmi_bmc.password} if wrong == "password" else {"username": "nobody"}
    drv = driver(ipmi_bmc, **bad)
    with pytest.raises(LoginDenied) as caught:
        drv.connect()
    drv.close()
    message = str(caught.value)
    assert "\n" not in message and "refused the login" in message
    assert ipmi_bmc.password not in message and bad.get("password", ipmi_bmc.password) not in message
    assert ipmi_bmc.events() == []


def test_privilege_user_cannot_switch_power(ipmi_bmc: IpmiSim) -> None:
    drv = driver(ipmi_bmc, privlvl="user")
    try:
        drv.connect()
        assert drv.power_status(None) == ON
        with pytest.raises(DeviceFailure, match="(?i)privilege"):
            drv.set_power(None, OFF)
    finally:
        drv.close()
    assert ipmi_bmc.power == ON


def test_a_closed_port_is_unreachable(ipmi_bmc: IpmiSim) -> None:
    drv = driver(ipmi_bmc, ipport=free_udp_port(), login_timeout=1)
    with pytest.raises(Unreachable, match="no answer from the BMC at 127.0.0.1:") as caught:
        drv.connect()
    assert "\n" not in str(caught.value)
    with pytest.raises(Unreachable):  # a driver whose BMC went silent stays failed
        drv.power_status(None)
    drv.close()


def test_an_unknown_host_is_unreachable() -> None:
    drv = make_driver({"ip": "no-such-bmc.invalid", "username": "u", "password": "p"})
    with pytest.raises(Unreachable, match="cannot reach the BMC at no-such-bmc.invalid:623"):
        drv.connect()
    drv.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lanplus": False}, "lanplus=0 .IPMI 1.5. is not supported"),
        ({"hexadecimal_kg": "zz"}, "not a hexadecimal string"),
        ({"hexadecimal_kg": "00" * 21}, "1 to 20 bytes"),
        ({"cipher": "1"}, "cipher 1 is not supported"),
    ],
)
def test_refused_before_any_traffic(ipmi_bmc: IpmiSim, options: dict, message: str) -> None:
    before = ipmi_bmc.received_packets()
    with pytest.raises(FenceError, match=message):
        driver(ipmi_bmc, **options)
    assert ipmi_bmc.received_packets() == before


def test_a_wrong_kg_is_refused_and_a_right_one_is_not_needed_here(ipmi_bmc: IpmiSim) -> None:
    """ipmi_sim has no BMC key (Kg) set: the password is the key, so any other Kg fails RAKP."""
    drv = driver(ipmi_bmc, hexadecimal_kg="0102030405")
    with pytest.raises(LoginDenied):
        drv.connect()
    drv.close()
    drv = driver(ipmi_bmc, hexadecimal_kg=ipmi_bmc.password.encode().hex())  # Kg = password: the default
    try:
        drv.connect()
        assert drv.power_status(None) == ON
    finally:
        drv.close()


class LossyRelay:
    """A UDP relay between the driver and the BMC that drops the packets it is told to."""

    def __init__(self, target_port: int) -> None:
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.port = self.front.getsockname()[1]
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.connect(("127.0.0.1", target_port))
        self.drop_requests = 0  # drop this many of the next client packets
        self.drop_replies = 0  # and of the next BMC packets
        self.blackout = False  # drop everything, both ways
        self.dropped: list[str] = []
        self.client: tuple[str, int] | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.front, self.back], [], [], 0.05)
            for sock in ready:
                data, source = sock.recvfrom(4096)
                with self._lock:
                    if self.blackout:
                        self.dropped.append("blackout")
                        continue
                    if sock is self.front:
                        self.client = source
                        if self.drop_requests:
                            self.drop_requests -= 1
                            self.dropped.append("request")
                            continue
                        self.back.send(data)
                    else:
                        if self.drop_replies:
                            self.drop_replies -= 1
                            self.dropped.append("reply")
                            continue
                        if self.client is not None:
                            self.front.sendto(data, self.client)

    def silence(self, on: bool) -> None:
        with self._lock:
            self.blackout = on

    def lose(self, requests: int = 0, replies: int = 0) -> None:
        with self._lock:
            self.drop_requests, self.drop_replies = requests, replies

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.front.close()
        self.back.close()


@pytest.mark.parametrize("lost", ["request", "reply"])
def test_lost_packets_are_retried(ipmi_bmc: IpmiSim, lost: str) -> None:
    relay = LossyRelay(ipmi_bmc.port)
    drv = driver(ipmi_bmc, ipport=relay.port)
    try:
        drv.connect()
        loss = {"requests": 1} if lost == "request" else {"replies": 1}
        relay.lose(**loss)
        assert drv.power_status(None) == ON
        relay.lose(**loss)
        drv.set_power(None, OFF)
        assert drv.power_status(None) == OFF and ipmi_bmc.power == OFF
    finally:
        drv.close()
        relay.close()
    assert relay.dropped == [lost, lost]
    assert sessions_started(ipmi_bmc) == 1  # retried inside the session, not by a new login


def test_a_bmc_silent_for_a_while_is_unreachable_then_a_new_session(ipmi_bmc: IpmiSim) -> None:
    """A BMC busy for longer than the timeout (as some are around a power change):
    that command fails as Unreachable, the next one logs in anew and succeeds."""
    relay = LossyRelay(ipmi_bmc.port)
    drv = driver(ipmi_bmc, ipport=relay.port, login_timeout=1)
    try:
        drv.connect()
        relay.silence(True)
        with pytest.raises(Unreachable, match="to get chassis status within 1 s"):
            drv.power_status(None)
        with pytest.raises(Unreachable, match="within 1 s"):  # the new login, silent too
            drv.power_status(None)
        relay.silence(False)
        assert drv.power_status(None) == ON
        drv.set_power(None, OFF)
        assert ipmi_bmc.power == OFF
    finally:
        drv.close()
        relay.close()
    assert "blackout" in relay.dropped
    # a new login (the abandoned one may still get through once the BMC answers again)
    assert sessions_started(ipmi_bmc) >= 2


def test_nothing_of_the_password_in_output_or_logs(
    ipmi_bmc: IpmiSim, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """pyghmi prints in a few places and its errors name the user: never the password."""
    caplog.set_level(logging.DEBUG)
    wrong = "not-" + ipmi_bmc.password
    for password in (wrong, ipmi_bmc.password):
        drv = driver(ipmi_bmc, password=password)
        try:
            drv.connect()
            drv.power_status(None)
            drv.set_power(None, OFF)
            drv.set_power(None, ON)
        except FenceError as exc:
            logging.getLogger("test").error("driver said: %s (%r)", exc, drv)
        finally:
            drv.close()
    out, err = capfd.readouterr()
    for secret in (ipmi_bmc.password, wrong):
        assert secret not in caplog.text
        assert secret not in out + err
    # The wrong password's failure was there to be logged (the BMC's refusal,
    # or, now and then with ipmi_sim, no answer to the login at all).
    assert "driver said:" in caplog.text


@pytest.fixture
def netns() -> Iterator[str]:
    """A network namespace of its own with loopback up (the lab's switch, in small)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: creates a network namespace")
    name = f"hl-ipmi-{os.getpid()}-{threading.get_ident() % 10000}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)


def test_simulator_in_another_network_namespace_with_callable_hooks(tmp_path: Path, netns: str) -> None:
    """As the lab runs it: in a namespace through a prefix, its hooks calling back
    into this process over a Unix socket (which crosses network namespaces)."""
    calls: list[str] = []
    bmc = IpmiSim(
        tmp_path / "bmc",
        prefix=("ip", "netns", "exec", netns),
        on_power_off=lambda: calls.append("off"),
        on_power_on=lambda: calls.append("on"),
    )
    with running(bmc):
        assert os.readlink(f"/proc/{bmc.pid}/ns/net") != os.readlink("/proc/self/ns/net")
        # not on this namespace's loopback ...
        drv = driver(bmc, login_timeout=1)
        with pytest.raises(Unreachable):
            drv.connect()
        drv.close()
        # ... but on the namespace's own, where ipmitool (run there) finds it
        result = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                netns,
                "ipmitool",
                "-I",
                "lanplus",
                "-C",
                "3",
                "-H",
                "127.0.0.1",
                "-p",
                str(bmc.port),
                "-U",
                bmc.username,
                "-E",
                "chassis",
                "power",
                "off",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "IPMI_PASSWORD": bmc.password},
        )
        assert result.returncode == 0, result.stderr
        assert bmc.power == OFF and calls == ["off"]
    assert not (bmc.workdir / "hooks.sock").exists()
