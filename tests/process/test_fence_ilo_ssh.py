"""fence_highlander_ilo_ssh against the iLO simulator, side by side with fence_ilo_ssh.

The device is :class:`highlander.lab.ilosim.ILOSimulator` on 127.0.0.1
(checked against Debian's ``fence_ilo_ssh`` in test_ilosim.py), started and
stopped by each test.

- driver level: :class:`IloSshDriver` straight against the simulator: power
  changes, host-key checking, key login, the device's error text, output
  split every way;
- agent level (needs the fence framework, ``highlander.fencing.run``): our
  executable and Debian's ``fence_ilo_ssh`` get the same stdin and must
  agree on exit codes and on the power state the simulator records — for
  every action from both power states, a wrong password, an unreachable and
  a silent device;
- where they must not agree: with output that arrives in pieces
  fence_ilo_ssh reads a running server as off (``status`` exits 2, ``off``
  "succeeds" without powering anything off, ``reboot`` "succeeds" without a
  power cycle); ours reads it right;
- host keys, secrecy (process command lines, stderr, the debug file) and
  bad input (one line, exit 1, no connection to the device).

The stdin both agents get carries ``ssh_options`` (fence_ilo_ssh's only way
to check the host key, see :func:`simulators.ssh_options`) and
``known_hosts`` (ours); each ignores the other's.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from fence_agents import SYSTEM_PATH, Run, ours, run, stdin_text
from simulators import (
    ILO_PASSWORD,
    ILO_USERNAME,
    debian_options,
    fence_ilo_ssh,
    known_hosts_for,
    running_ilo,
)

from highlander.fencing.agents.ilo_ssh import IloSshDriver
from highlander.fencing.driver import (
    OFF,
    ON,
    DeviceFailure,
    FenceError,
    LoginDenied,
    Unreachable,
)
from highlander.lab.ilosim import (
    LINE_BY_LINE,
    Fragmentation,
    ILOSimulator,
    PowerHooks,
    generate_host_key,
)

AGENT_NAME = "fence_highlander_ilo_ssh"


def our_agent() -> list[str]:
    return ours(AGENT_NAME)


pytestmark = pytest.mark.usefixtures("user_known_hosts_untouched")


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel's backlog) and never says a word."""
    listener = socket.socket()
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]
    finally:
        listener.close()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def driver(sim: ILOSimulator, **changes: object) -> IloSshDriver:
    options: dict[str, object] = {
        "ip": sim.host,
        "ipport": sim.port,
        "username": sim.username,
        "password": sim.password,
        "ssh_fingerprint": sim.fingerprint,
        "login_timeout": 10,
        "shell_timeout": 10,
        "power_timeout": 10,
    }
    options.update(changes)
    return IloSshDriver.from_options({k: v for k, v in options.items() if v is not None})


def status_once(sim: ILOSimulator, **changes: object) -> str:
    with driver(sim, **changes) as drv:
        return drv.power_status(None)


# -- driver level --------------------------------------------------------------------------------


def test_driver_off_on_reset(ilo: ILOSimulator) -> None:
    with driver(ilo) as drv:
        assert drv.power_status(None) == ON
        drv.set_power(None, OFF)
        assert drv.power_status(None) == OFF
        assert ilo.power.read() == "off"
        drv.set_power(None, OFF)  # "Server power already off." is what was asked for
        drv.set_power(None, ON)
        assert drv.power_status(None) == ON
        drv.reset(None)
        assert drv.plugs() == {}
    drv.close()  # idempotent
    assert ilo.commands[:4] == ["show /system1", "power off hard", "show /system1", "power off hard"]
    assert "start /system1" in ilo.commands and "reset /system1 hard" in ilo.commands
    assert ilo.power_events == ["off", "on", "reset"]
    assert ilo.connections == 1  # one session for all of it


def test_driver_reports_the_devices_error_text(tmp_path: Path) -> None:
    def refuse() -> None:
        raise RuntimeError("Server power is locked by the Onboard Administrator.")

    with running_ilo(tmp_path / "ilo", hooks=PowerHooks(off=refuse)) as sim:
        with driver(sim) as drv:
            with pytest.raises(DeviceFailure) as caught:
                drv.set_power(None, OFF)
            sim.power.write("off")
            with pytest.raises(DeviceFailure, match="Server power off"):
                drv.reset(None)  # a reset of an off server: refused by the device
    assert str(caught.value) == (
        "iLO refused 'power off hard': Server power is locked by the Onboard Administrator. "
        "(status=2, COMMAND PROCESSING FAILED, COMMAND ERROR-UNSPECIFIED)"
    )


def test_driver_wrong_password_is_login_denied(ilo: ILOSimulator) -> None:
    with pytest.raises(LoginDenied, match=re.escape(f"refused the login of '{ILO_USERNAME}'")) as caught:
        status_once(ilo, password="not-" + ILO_PASSWORD)
    assert ILO_PASSWORD not in str(caught.value)
    assert ilo.auth_attempts == [(ILO_USERNAME, "password", False)]
    assert ilo.commands == []


def test_driver_without_credentials_does_not_connect(ilo: ILOSimulator) -> None:
    with pytest.raises(LoginDenied, match="give password"):
        status_once(ilo, password=None)
    with pytest.raises(LoginDenied, match="give username"):
        status_once(ilo, username=None)
    assert ilo.connections == 0


def test_driver_unreachable(closed_port: int, silent_port: int, ilo: ILOSimulator) -> None:
    with pytest.raises(Unreachable, match="connection refused"):
        status_once(ilo, ipport=closed_port)
    with pytest.raises(Unreachable, match="no SSH answer within 1 s"):
        status_once(ilo, ipport=silent_port, login_timeout=1)
    with pytest.raises(Unreachable, match="cannot resolve"):
        status_once(ilo, ip="no-such-host.invalid")


@pytest.mark.parametrize(
    "fragmentation",
    [
        Fragmentation(size=1, pause=0.0005),
        Fragmentation(size=16, pause=0.01),
        Fragmentation(after=("enabledstate=",), pause=0.2),
        LINE_BY_LINE,
    ],
    ids=["byte-by-byte", "16-bytes", "cut-after-enabledstate=", "line-by-line"],
)
def test_driver_reads_split_output_right(tmp_path: Path, fragmentation: Fragmentation) -> None:
    with running_ilo(tmp_path / "ilo", fragmentation=fragmentation) as sim:
        assert status_once(sim) == ON
        sim.power.write("off")
        assert status_once(sim) == OFF


def test_driver_drops_a_late_answer(tmp_path: Path) -> None:
    """A command that timed out is still answered later; that answer must not
    be taken for the next command's (it would be a stale power state)."""
    slow = Fragmentation(after=("enabledstate=",), pause=3)
    with running_ilo(tmp_path / "ilo", fragmentation=slow) as sim:
        with driver(sim, shell_timeout=0.5) as drv:
            with pytest.raises(DeviceFailure, match=r"no prompt within 0\.5 s waiting for the answer"):
                drv.power_status(None)  # its answer (enabled) is still on its way
            sim.power.write("off")
            drv.shell_timeout = 60
            assert drv.power_status(None) == OFF
    assert [c for c in sim.commands if c != "exit"] == ["show /system1", "show /system1"]


def test_driver_timeouts_of_zero_mean_no_limit(ilo: ILOSimulator) -> None:
    drv = driver(ilo, login_timeout=0, shell_timeout=0, power_timeout=0)
    assert drv.login_timeout == drv.shell_timeout == drv.power_timeout == 24 * 3600
    drv = driver(ilo, login_timeout=None, shell_timeout=None, power_timeout=None)
    assert (drv.login_timeout, drv.shell_timeout, drv.power_timeout) == (5, 3, 20)


def test_driver_state_property_spelling(tmp_path: Path) -> None:
    with running_ilo(tmp_path / "ilo", state_property="EnabledState") as sim:
        assert status_once(sim) == ON
    with (
        running_ilo(tmp_path / "ilo2", state_property="PowerState") as sim,
        pytest.raises(DeviceFailure, match="no enabledstate= property"),
    ):
        status_once(sim)


def test_driver_waits_for_its_prompt_no_longer_than_told(ilo: ILOSimulator) -> None:
    with pytest.raises(DeviceFailure, match="no prompt within 1 s waiting for the CLI prompt after login"):
        status_once(ilo, command_prompt="NotThisPrompt>", login_timeout=1)
    with pytest.raises(FenceError, match="not a valid regular expression"):
        driver(ilo, command_prompt="([")


def write_key(path: Path, passphrase: str | None = None) -> paramiko.PKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    private = ed25519.Ed25519PrivateKey.generate()
    encryption = (
        serialization.BestAvailableEncryption(passphrase.encode()) if passphrase else serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption))
    return paramiko.PKey.from_path(path, password=passphrase.encode() if passphrase else None)


def test_driver_identity_file(tmp_path: Path) -> None:
    plain = write_key(tmp_path / "id_plain")
    locked = write_key(tmp_path / "id_locked", passphrase=ILO_PASSWORD)
    with running_ilo(tmp_path / "ilo", authorized_keys=[plain, locked]) as sim:
        assert status_once(sim, password=None, identity_file=str(tmp_path / "id_plain")) == ON
        assert status_once(sim, identity_file=str(tmp_path / "id_locked")) == ON  # password: passphrase
        with pytest.raises(LoginDenied, match="encrypted: give its passphrase"):
            status_once(sim, password=None, identity_file=str(tmp_path / "id_locked"))
        with pytest.raises(LoginDenied, match="no such file"):
            status_once(sim, identity_file=str(tmp_path / "nothing"))
        write_key(tmp_path / "id_stranger")
        with pytest.raises(LoginDenied, match="refused the key"):
            status_once(sim, password=None, identity_file=str(tmp_path / "id_stranger"))
    assert [method for _, method, _ in sim.auth_attempts] == ["publickey"] * 3
    assert [ok for _, _, ok in sim.auth_attempts] == [True, True, False]


# -- host keys (driver level) --------------------------------------------------------------------


def test_unknown_host_key_is_refused_before_any_credential(ilo: ILOSimulator, tmp_path: Path) -> None:
    for known_hosts in (tmp_path / "missing", tmp_path / "empty"):
        if known_hosts.name == "empty":
            known_hosts.write_text("")
        with pytest.raises(FenceError) as caught:
            status_once(ilo, ssh_fingerprint=None, known_hosts=str(known_hosts))
        message = str(caught.value)
        assert f"unknown host key ssh-rsa {ilo.fingerprint}" in message
        assert f"ssh_fingerprint={ilo.fingerprint}" in message
        assert f"[127.0.0.1]:{ilo.port} ssh-rsa" in message
    assert ilo.connections == 2
    assert ilo.auth_attempts == []


def test_pinned_fingerprint(ilo: ILOSimulator, tmp_path: Path) -> None:
    assert status_once(ilo, ssh_fingerprint=ilo.fingerprint) == ON
    # The whole line of ssh-keygen -lf is accepted too.
    assert status_once(ilo, ssh_fingerprint=f"2048 {ilo.fingerprint} ilo (RSA)") == ON
    other = "SHA256:" + "x" * 43
    with pytest.raises(FenceError, match=re.escape(f"host key ssh-rsa {ilo.fingerprint} does not match")) as caught:
        status_once(ilo, ssh_fingerprint=other)
    assert f"set ssh_fingerprint={ilo.fingerprint}" in str(caught.value)
    # A pin overrides known_hosts: a matching known_hosts does not save a wrong pin.
    known = known_hosts_for(ilo, tmp_path / "known_hosts")
    with pytest.raises(FenceError, match="does not match"):
        status_once(ilo, ssh_fingerprint=other, known_hosts=str(known))
    assert [ok for _, _, ok in ilo.auth_attempts] == [True, True]


def test_known_hosts(ilo: ILOSimulator, tmp_path: Path) -> None:
    known = known_hosts_for(ilo, tmp_path / "known_hosts")
    assert status_once(ilo, ssh_fingerprint=None, known_hosts=str(known)) == ON
    # Hashed entries (ssh-keygen -H, HashKnownHosts yes) too.
    hashed = tmp_path / "hashed"
    name = f"[{ilo.host}]:{ilo.port}"
    hashed.write_text(f"{paramiko.HostKeys.hash_host(name)} {ilo.host_key.get_name()} {ilo.host_key.get_base64()}\n")
    assert status_once(ilo, ssh_fingerprint=None, known_hosts=str(hashed)) == ON


def test_changed_host_key_is_refused(ilo: ILOSimulator, tmp_path: Path) -> None:
    impostor = generate_host_key()
    known = tmp_path / "known_hosts"
    known.write_text(f"[{ilo.host}]:{ilo.port} {impostor.get_name()} {impostor.get_base64()}\n")
    with pytest.raises(FenceError, match="is not the one .* lists") as caught:
        status_once(ilo, ssh_fingerprint=None, known_hosts=str(known))
    assert ilo.fingerprint in str(caught.value)
    assert ilo.auth_attempts == []


def test_known_host_key_type_is_negotiated(tmp_path: Path) -> None:
    """A host with an Ed25519 key listed: that type is asked for first."""
    with running_ilo(tmp_path / "ilo", host_key=generate_host_key(kind="ed25519")) as sim:
        known = known_hosts_for(sim, tmp_path / "known_hosts")
        assert known.read_text().split()[1] == "ssh-ed25519"
        assert status_once(sim, ssh_fingerprint=None, known_hosts=str(known)) == ON


def test_bad_fingerprint_option_is_refused_without_connecting(ilo: ILOSimulator) -> None:
    with pytest.raises(FenceError, match="ssh-keygen -lf"):
        status_once(ilo, ssh_fingerprint="MD5:12:34:56")
    assert ilo.connections == 0


# -- agent level ---------------------------------------------------------------------------------


def both_options(sim: ILOSimulator, tmp_path: Path, **extra: object) -> dict[str, object]:
    """The same stdin for both agents: each checks the host key its own way."""
    known = known_hosts_for(sim, tmp_path / "known_hosts")
    options = debian_options(sim, known, **extra)
    options["known_hosts"] = known
    return options


def one_line_failure(result: Run) -> str:
    assert result.returncode == 1, result
    assert result.stdout == "", result
    assert len(result.error_lines) == 1, result
    return result.error_lines[0]


ACTIONS = [
    ("status", {}),
    ("monitor", {}),
    ("off", {}),
    ("on", {}),
    ("reboot", {}),
    ("reboot", {"method": "cycle"}),
]


@pytest.mark.parametrize("initial", ["on", "off"])
@pytest.mark.parametrize(("action", "extra"), ACTIONS, ids=["status", "monitor", "off", "on", "reboot", "cycle"])
def test_differential(paced_ilo: ILOSimulator, tmp_path: Path, initial: str, action: str, extra: dict) -> None:
    options = both_options(paced_ilo, tmp_path, action=action, **extra)
    outcome = {}
    for name, command in (("fence_ilo_ssh", fence_ilo_ssh()), ("ours", our_agent())):
        paced_ilo.power.write(initial)
        paced_ilo.power_events.clear()
        result = run(command, options)
        outcome[name] = (result.returncode, paced_ilo.power.read())
        assert "Traceback" not in result.stderr, result
        if name == "ours":
            assert result.stderr == "", result
    if action == "reboot" and extra and initial == "off":
        # --method cycle of a node that is already off: fence_ilo_ssh sends a
        # reset the iLO refuses ("Server power off."), does not check it, and
        # leaves the node off; ours powers it on like an onoff reboot does.
        # Both report the fencing done.
        assert outcome == {"fence_ilo_ssh": (0, "off"), "ours": (0, "on")}
        return
    assert outcome["ours"] == outcome["fence_ilo_ssh"], outcome
    expected_rc = 2 if action == "status" and initial == "off" else 0
    assert outcome["ours"][0] == expected_rc


def test_differential_reboot_power_cycles(paced_ilo: ILOSimulator, tmp_path: Path) -> None:
    options = both_options(paced_ilo, tmp_path, action="reboot")
    for command in (fence_ilo_ssh(), our_agent()):
        paced_ilo.power_events.clear()
        result = run(command, options)
        assert (result.returncode, result.stdout.strip()) == (0, "Success: Rebooted"), result
        assert paced_ilo.power_events == ["off", "on"]


def test_differential_wrong_password(paced_ilo: ILOSimulator, tmp_path: Path) -> None:
    options = both_options(paced_ilo, tmp_path, action="off", password="not-" + ILO_PASSWORD, login_timeout=2)
    theirs = run(fence_ilo_ssh(), options)
    ours = run(our_agent(), options)
    assert theirs.returncode == ours.returncode == 1, (theirs, ours)
    line = one_line_failure(ours)
    assert line.startswith("Failed: Unable to connect/login to fencing device:")
    assert "check username and password" in line
    assert paced_ilo.power.read() == "on"
    assert paced_ilo.commands == []


def test_differential_unreachable(closed_port: int, silent_port: int, tmp_path: Path) -> None:
    with running_ilo(tmp_path / "ilo") as sim:
        base = both_options(sim, tmp_path, action="status", login_timeout=1)
    for port, words in ((closed_port, "connection refused"), (silent_port, "no SSH answer within 1 s")):
        options = {**base, "ipport": port}
        theirs = run(fence_ilo_ssh(), options)
        ours = run(our_agent(), options)
        assert theirs.returncode == ours.returncode == 1, (theirs, ours)
        assert words in one_line_failure(ours)


# -- where fence_ilo_ssh and ours part: output that arrives in pieces -----------------------------

SPLIT = [
    Fragmentation(after=("enabledstate=",), pause=0.2),
    Fragmentation(size=16, pause=0.02),
]
SPLIT_IDS = ["cut-after-enabledstate=", "16-byte-writes"]


@pytest.mark.parametrize("fragmentation", SPLIT, ids=SPLIT_IDS)
def test_split_output_status(tmp_path: Path, fragmentation: Fragmentation) -> None:
    """fence_ilo_ssh matches ``EnabledState=(.*)`` as soon as ``EnabledState=``
    has arrived: the value it captures is what has arrived of it ("" or
    "enab"), which does not start with "enabled", so a running server is OFF."""
    with running_ilo(tmp_path / "ilo", fragmentation=fragmentation) as sim:
        options = both_options(sim, tmp_path, action="status", shell_timeout=10)
        theirs = run(fence_ilo_ssh(), options)
        ours = run(our_agent(), options)
        assert sim.power.read() == "on"
    assert (theirs.returncode, theirs.stdout.strip()) == (2, "Status: OFF"), theirs
    assert (ours.returncode, ours.stdout.strip()) == (0, "Status: ON"), ours


@pytest.mark.parametrize("fragmentation", SPLIT, ids=SPLIT_IDS)
def test_split_output_off(tmp_path: Path, fragmentation: Fragmentation) -> None:
    """The dangerous consequence: fence_ilo_ssh's off "succeeds" (exit 0,
    "Already OFF") without sending a power command; the server still runs."""
    with running_ilo(tmp_path / "ilo", fragmentation=fragmentation) as sim:
        options = both_options(sim, tmp_path, action="off", shell_timeout=10)
        theirs = run(fence_ilo_ssh(), options)
        assert (theirs.returncode, theirs.stdout.strip()) == (0, "Success: Already OFF"), theirs
        assert sim.power.read() == "on"
        assert "power off hard" not in sim.commands
        ours = run(our_agent(), options)
        assert (ours.returncode, ours.stdout.strip()) == (0, "Success: Powered OFF"), ours
        assert sim.power.read() == "off"
        assert sim.power_events == ["off"]


def test_split_output_reboot(tmp_path: Path) -> None:
    """fence_ilo_ssh's reboot reads OFF, skips the power off, sends ``start``
    (refused: already on; not checked), waits power_timeout for an ON it
    cannot read, and still exits 0 "Rebooted": no power cycle happened."""
    with running_ilo(tmp_path / "ilo", fragmentation=SPLIT[0]) as sim:
        options = both_options(sim, tmp_path, action="reboot", shell_timeout=10, power_timeout=2)
        theirs = run(fence_ilo_ssh(), options)
        assert (theirs.returncode, theirs.stdout.strip()) == (0, "Success: Rebooted"), theirs
        assert sim.power_events == []
        ours = run(our_agent(), options)
        assert (ours.returncode, ours.stdout.strip()) == (0, "Success: Rebooted"), ours
        assert sim.power_events == ["off", "on"]


# -- host keys (agent level) ---------------------------------------------------------------------


def ours_with(sim: ILOSimulator, **options: object) -> Run:
    base: dict[str, object] = {
        "ip": sim.host,
        "ipport": sim.port,
        "username": sim.username,
        "password": sim.password,
        "action": "status",
    }
    base.update(options)
    return run(our_agent(), base)


def test_agent_host_keys(ilo: ILOSimulator, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("")
    line = one_line_failure(ours_with(ilo, known_hosts=empty))
    assert f"unknown host key ssh-rsa {ilo.fingerprint}" in line
    assert f"pin it with ssh_fingerprint={ilo.fingerprint}" in line
    assert ilo.auth_attempts == []

    assert ours_with(ilo, ssh_fingerprint=ilo.fingerprint).returncode == 0
    line = one_line_failure(ours_with(ilo, ssh_fingerprint="SHA256:" + "y" * 43))
    assert f"host key ssh-rsa {ilo.fingerprint} does not match ssh_fingerprint" in line

    known = known_hosts_for(ilo, tmp_path / "known_hosts")
    assert ours_with(ilo, known_hosts=known).returncode == 0
    impostor = generate_host_key(kind="ecdsa")
    changed = tmp_path / "changed"
    changed.write_text(
        f"[{ilo.host}]:{ilo.port} ssh-rsa {generate_host_key().get_base64()}\n"
        f"[{ilo.host}]:{ilo.port} {impostor.get_name()} {impostor.get_base64()}\n"
    )
    line = one_line_failure(ours_with(ilo, known_hosts=changed))
    assert "is not the one" in line and ilo.fingerprint in line
    assert [ok for _, _, ok in ilo.auth_attempts] == [True, True]  # the two accepted runs only


# -- secrecy -------------------------------------------------------------------------------------


def test_secrecy(paced_ilo: ILOSimulator, tmp_path: Path) -> None:
    """The password is on stdin only: never in any process's command line
    while the agent runs (sampled throughout), nor in its stderr (verbose)
    or its debug file."""
    debug_file = tmp_path / "debug.log"
    options = both_options(paced_ilo, tmp_path, action="off", verbose=1, debug_file=debug_file, delay=1)
    proc = subprocess.Popen(
        our_agent(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"},
    )
    seen_agent = threading.Event()
    leaks: list[str] = []
    done = threading.Event()

    def sample() -> None:
        secret = ILO_PASSWORD.encode()
        while not done.is_set():
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    cmdline = Path(entry.path, "cmdline").read_bytes()
                except OSError:
                    continue
                if entry.name == str(proc.pid) and cmdline:
                    seen_agent.set()
                if secret in cmdline:
                    leaks.append(f"{entry.name}: {cmdline!r}")

    sampler = threading.Thread(target=sample, name="cmdline-sampler")
    sampler.start()
    try:
        stdout, stderr = proc.communicate(stdin_text(options).encode(), timeout=120)
    finally:
        done.set()
        sampler.join(timeout=30)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, (stdout, stderr)
    assert seen_agent.is_set(), "the sampler never saw the agent running"
    assert leaks == []
    assert ILO_PASSWORD.encode() not in stdout + stderr
    assert b"sent: power off hard" in stderr  # verbose did log the exchange
    assert debug_file.stat().st_mode & 0o777 == 0o600
    text = debug_file.read_text()
    assert "sent: show /system1" in text
    assert ILO_PASSWORD not in text
    assert paced_ilo.power.read() == "off"


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stdin", "words"),
    [
        (b"\x00\xff\xfegarbage\n\x01", "stdin"),
        (None, "Unrecognised action"),
        (None, "You have to enter fence address"),
        (None, "ipport"),
        (None, "ssh_fingerprint"),
        (None, "give password"),
    ],
    ids=["garbage", "unknown-action", "missing-ip", "port-not-a-number", "bad-fingerprint", "no-password"],
)
def test_bad_input(ilo: ILOSimulator, request: pytest.FixtureRequest, stdin: bytes | None, words: str) -> None:
    case = request.node.callspec.id
    options: dict[str, object] = {
        "ip": ilo.host,
        "ipport": ilo.port,
        "username": ilo.username,
        "password": ilo.password,
        "ssh_fingerprint": ilo.fingerprint,
        "action": "off",
    }
    if case == "unknown-action":
        options["action"] = "explode"
    elif case == "missing-ip":
        del options["ip"]
    elif case == "port-not-a-number":
        options["ipport"] = "twenty-two"
    elif case == "bad-fingerprint":
        options["ssh_fingerprint"] = "MD5:de:ad:be:ef"
    elif case == "no-password":
        del options["password"]
    data = stdin if stdin is not None else stdin_text(options).encode()
    completed = subprocess.run(
        our_agent(),
        input=data,
        capture_output=True,
        check=False,
        env={"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"},
        timeout=120,
    )
    result = Run(completed.returncode, completed.stdout.decode(), completed.stderr.decode())
    assert words in one_line_failure(result)
    assert ILO_PASSWORD not in result.stderr
    assert ilo.connections == 0
    assert ilo.power.read() == "on"
