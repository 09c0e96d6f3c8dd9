"""The iLO simulator, and Debian's fence_ilo_ssh against it (its fidelity check).

The simulator is ours, so it is checked twice: by a plain paramiko client
(the CLP's shapes: echo, prompt, status header, refusals, hooks, the state
file, the program form) and by the client nobody here wrote, fence-agents'
``fence_ilo_ssh`` (login through /usr/bin/ssh, its prompts, its commands):
status, off, on, reboot (both methods) and monitor must behave as on a real
iLO — exit codes, printed result and the power state the simulator records.

fence_ilo_ssh gets the simulator's host key through ``ssh_options`` (see
:func:`simulators.ssh_options`) and the simulator delivers its output line
by line (``LINE_BY_LINE``): with a whole response in one write
fence_ilo_ssh misreads the power state, depending on byte offsets — its
bug, shown in test_fence_ilo_ssh.py, not the simulator's.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from fence_agents import Run, run
from simulators import (
    ILO_PASSWORD,
    ILO_USERNAME,
    debian_options,
    fence_ilo_ssh,
    known_hosts_for,
    running_ilo,
)

from highlander.fencing.agents.ilo_ssh import IloSshDriver, PromptReader, parse_response
from highlander.lab.ilosim import LINE_BY_LINE, Fragmentation, ILOSimulator, PowerHooks

PROMPT = r"<[^<>]*>hpiLO-> $"

pytestmark = pytest.mark.usefixtures("user_known_hosts_untouched")


class Session:
    """A paramiko client's CLI session with the simulator (raw text, no agent logic)."""

    def __init__(self, sim: ILOSimulator, password: str = ILO_PASSWORD) -> None:
        self.transport = paramiko.Transport((sim.host, sim.port))
        try:
            self.transport.start_client(timeout=10)
            assert self.transport.get_remote_server_key().asbytes() == sim.host_key.asbytes()
            self.transport.auth_password(sim.username, password)
            self.channel = self.transport.open_session(timeout=10)
            self.channel.get_pty()
            self.channel.invoke_shell()
            self.channel.settimeout(10)
        except BaseException:
            self.transport.close()
            raise

    def read_to_prompt(self) -> tuple[list[str], str]:
        reader = PromptReader(PROMPT)
        while True:
            data = self.channel.recv(4096)
            assert data, "the session closed before a prompt"
            if reader.feed(data):
                prompt = reader.pending
                return reader.take(), prompt

    def command(self, line: str) -> tuple[list[str], str]:
        self.channel.sendall((line + "\r").encode())
        return self.read_to_prompt()

    def close(self) -> None:
        self.transport.close()


@pytest.fixture
def session(ilo: ILOSimulator) -> Iterator[Session]:
    s = Session(ilo)
    try:
        yield s
    finally:
        s.close()


def exec_command(sim: ILOSimulator, command: str) -> str:
    client = paramiko.Transport((sim.host, sim.port))
    try:
        client.start_client(timeout=10)
        client.auth_password(sim.username, ILO_PASSWORD)
        channel = client.open_session(timeout=10)
        channel.exec_command(command)
        channel.settimeout(10)
        out = b""
        while chunk := channel.recv(4096):
            out += chunk
        return out.decode()
    finally:
        client.close()


# -- the simulator on its own --------------------------------------------------------------------


def test_login_banner_and_prompt(session: Session, ilo: ILOSimulator) -> None:
    # The banner was read by the first read_to_prompt.
    banner, prompt = session.read_to_prompt()
    assert prompt == "</>hpiLO-> "
    assert f"User:{ILO_USERNAME} logged-in to" in banner[1]
    assert "Server Power: On" in banner


def test_show_system1_has_the_shape_fence_agents_parse(session: Session) -> None:
    session.read_to_prompt()
    lines, prompt = session.command("show /system1")
    assert lines[0] == "show /system1"  # the CLI echoes what it is typed
    assert lines[1:4] == ["", "status=0", "status_tag=COMMAND COMPLETED"]
    stripped = [line.strip() for line in lines]
    assert stripped.index("/system1") < stripped.index("Targets") < stripped.index("Properties")
    assert "enabledstate=enabled" in stripped
    assert stripped[-2:] == ["cd version exit show reset start stop", ""]
    assert prompt == "</>hpiLO-> "
    response = parse_response("show /system1", lines)
    assert response.ok and response.property("EnabledState") == "enabled"


def test_power_commands_change_the_state_file(session: Session, ilo: ILOSimulator) -> None:
    session.read_to_prompt()
    lines, _ = session.command("power off hard")
    assert "Server powering off ......." in lines
    assert ilo.power.read() == "off"
    assert (ilo.power.path.read_text()) == "off\n"
    _, _ = session.command("start /system1")
    assert ilo.power.read() == "on"
    lines, _ = session.command("reset /system1 hard")
    assert parse_response("reset", lines).message.endswith("Resetting server.")
    lines, _ = session.command("power")
    assert "power: server power is currently: On" in lines
    assert ilo.power_events == ["off", "on", "reset"]
    assert ilo.commands == ["power off hard", "start /system1", "reset /system1 hard", "power"]


def test_refusals_have_the_clp_error_shape(session: Session, ilo: ILOSimulator) -> None:
    session.read_to_prompt()
    lines, _ = session.command("frobnicate /system1")
    response = parse_response("frobnicate /system1", lines)
    assert (response.status, response.status_tag, response.error_tag) == (
        2,
        "COMMAND PROCESSING FAILED",
        "COMMAND NOT RECOGNIZED",
    )
    response = parse_response("start /system1", session.command("start /system1")[0])
    assert (response.status, response.error_tag) == (2, "COMMAND ERROR-UNSPECIFIED")
    assert response.message.endswith("Server power already on.")
    session.command("power off hard")
    response = parse_response("power off hard", session.command("power off hard")[0])
    assert response.message.endswith("Server power already off.")
    response = parse_response("reset", session.command("reset /system1 hard")[0])
    assert response.message.endswith("Server power off.")
    assert ilo.power_events == ["off"]


def test_cd_changes_the_prompt_and_exit_ends_the_session(session: Session) -> None:
    session.read_to_prompt()
    lines, prompt = session.command("cd /system1")
    assert prompt == "</system1>hpiLO-> "
    lines, _ = session.command("show")
    assert "enabledstate=enabled" in [line.strip() for line in lines]
    session.channel.sendall(b"exit\r")
    out = b""
    while chunk := session.channel.recv(4096):
        out += chunk
    assert b"CLI session stopped" in out
    assert session.channel.recv_exit_status() == 0


def test_exec_request(ilo: ILOSimulator) -> None:
    out = exec_command(ilo, "power")
    assert "status=0" in out and "server power is currently: On" in out


def test_wrong_password_is_refused_and_not_recorded(ilo: ILOSimulator) -> None:
    with pytest.raises(paramiko.AuthenticationException):
        Session(ilo, password="not-" + ILO_PASSWORD)
    assert ilo.auth_attempts == [(ILO_USERNAME, "password", False)]
    assert ilo.connections == 1
    assert ilo.commands == []


def test_hooks_run_on_power_changes_and_their_failure_is_the_message(tmp_path: Path) -> None:
    calls: list[str] = []

    def refuse() -> None:
        calls.append("reset")
        raise RuntimeError("node-b: the namespace is gone")

    hooks = PowerHooks(off=lambda: calls.append("off"), on=lambda: calls.append("on"), reset=refuse)
    with running_ilo(tmp_path / "ilo", hooks=hooks) as sim:
        s = Session(sim)
        try:
            s.read_to_prompt()
            s.command("power off hard")
            s.command("power on")
            response = parse_response("reset", s.command("reset /system1 hard")[0])
        finally:
            s.close()
    assert calls == ["off", "on", "reset"]
    assert not response.ok
    assert response.message.endswith("node-b: the namespace is gone")
    assert sim.power_events == ["off", "on"]  # the failed reset changed nothing


def test_state_file_is_shared(ilo: ILOSimulator, session: Session) -> None:
    session.read_to_prompt()
    ilo.power.write("off")  # another process (the lab) cut the power
    lines, _ = session.command("show /system1 enabledstate")
    assert parse_response("show", lines).property("enabledstate") == "disabled"


def test_fragmentation_cuts_but_keeps_every_byte() -> None:
    text = "status=0\r\n    enabledstate=enabled\r\n</>hpiLO-> "
    cut = Fragmentation(size=4, after=("enabledstate=",)).pieces(text)
    assert "".join(cut) == text
    assert all(len(p) <= 4 for p in cut)
    ends = {sum(len(p) for p in cut[: i + 1]) for i in range(len(cut))}
    assert text.index("enabledstate=") + len("enabledstate=") in ends
    assert LINE_BY_LINE.pieces("a\r\nb\r\n") == ["a\r\n", "b\r\n"]


def test_fragmented_output_reaches_the_client_in_pieces(tmp_path: Path) -> None:
    frag = Fragmentation(size=7, pause=0.001)
    with running_ilo(tmp_path / "ilo", fragmentation=frag) as sim:
        s = Session(sim)
        try:
            s.read_to_prompt()
            lines, _ = s.command("show /system1")
        finally:
            s.close()
    assert "enabledstate=enabled" in [line.strip() for line in lines]


def test_stop_closes_open_sessions(tmp_path: Path) -> None:
    with running_ilo(tmp_path / "ilo") as sim:
        s = Session(sim)
        s.read_to_prompt()
    # stop() joined every thread; the client sees the session end.
    try:
        assert s.channel.recv(4096) == b""
    finally:
        s.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((sim.host, sim.port), timeout=5).close()


# -- the program form ----------------------------------------------------------------------------


@pytest.fixture
def ilo_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, str]]:
    """``python -m highlander.lab.ilosim`` on a free port; stopped by PID whatever happens."""
    password_file = tmp_path / "password"
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(ILO_PASSWORD + "\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "highlander.lab.ilosim",
            "--state-file",
            str(tmp_path / "power"),
            "--username",
            ILO_USERNAME,
            "--password-file",
            str(password_file),
            "--host-key",
            str(tmp_path / "host_key"),
            "--on-off",
            f"touch {tmp_path / 'off-hook-ran'}",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        words = proc.stdout.readline().split()
        assert words[0] == "listening", words
        port = int(words[1].rpartition(":")[2])
        yield proc, port, words[2]
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc.stdout:
            proc.stdout.close()


def test_program_form(ilo_process: tuple[subprocess.Popen[str], int, str], tmp_path: Path) -> None:
    proc, port, fingerprint = ilo_process
    assert ILO_PASSWORD.encode() not in Path(f"/proc/{proc.pid}/cmdline").read_bytes()
    assert (tmp_path / "host_key").stat().st_mode & 0o077 == 0
    transport = paramiko.Transport(("127.0.0.1", port))
    try:
        transport.start_client(timeout=10)
        from highlander.lab.ilosim import fingerprint as fp

        assert fp(transport.get_remote_server_key()) == fingerprint
        transport.auth_password(ILO_USERNAME, ILO_PASSWORD)
    finally:
        transport.close()
    assert (tmp_path / "power").read_text() == "on\n"
    drv = IloSshDriver("127.0.0.1", port, username=ILO_USERNAME, password=ILO_PASSWORD, ssh_fingerprint=fingerprint)
    try:
        drv.connect()
        drv.set_power(None, "off")
    finally:
        drv.close()
    assert (tmp_path / "power").read_text() == "off\n"
    assert (tmp_path / "off-hook-ran").exists()
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


# -- fidelity: Debian's fence_ilo_ssh against the simulator ---------------------------------------


def debian(sim: ILOSimulator, tmp_path: Path, **extra: object) -> Run:
    kh = known_hosts_for(sim, tmp_path / "known_hosts")
    return run(fence_ilo_ssh(), debian_options(sim, kh, **extra))


def test_fence_ilo_ssh_status(paced_ilo: ILOSimulator, tmp_path: Path) -> None:
    result = debian(paced_ilo, tmp_path, action="status")
    assert (result.returncode, result.stdout.strip()) == (0, "Status: ON"), result
    paced_ilo.power.write("off")
    result = debian(paced_ilo, tmp_path, action="status")
    assert (result.returncode, result.stdout.strip()) == (2, "Status: OFF"), result
    # It logged in with a password, once per run, and typed what its source says.
    assert paced_ilo.auth_attempts == [(ILO_USERNAME, "password", True)] * 2
    # ("exit" is sent as it closes the connection: it may or may not arrive.)
    assert [c for c in paced_ilo.commands if c != "exit"] == ["SMCLP", "show /system1"] * 2


def test_fence_ilo_ssh_off_and_on(paced_ilo: ILOSimulator, tmp_path: Path) -> None:
    result = debian(paced_ilo, tmp_path, action="off")
    assert (result.returncode, result.stdout.strip()) == (0, "Success: Powered OFF"), result
    assert paced_ilo.power.read() == "off"
    assert "power off hard" in paced_ilo.commands
    result = debian(paced_ilo, tmp_path, action="off")
    assert (result.returncode, result.stdout.strip()) == (0, "Success: Already OFF"), result
    result = debian(paced_ilo, tmp_path, action="on")
    assert (result.returncode, result.stdout.strip()) == (0, "Success: Powered ON"), result
    assert paced_ilo.power.read() == "on"
    assert "start /system1" in paced_ilo.commands
    assert paced_ilo.power_events == ["off", "on"]


def test_fence_ilo_ssh_reboot(paced_ilo: ILOSimulator, tmp_path: Path) -> None:
    result = debian(paced_ilo, tmp_path, action="reboot")
    assert (result.returncode, result.stdout.strip()) == (0, "Success: Rebooted"), result
    assert paced_ilo.power_events == ["off", "on"]
    assert paced_ilo.power.read() == "on"


def test_fence_ilo_ssh_reboot_cycle(paced_ilo: ILOSimulator, tmp_path: Path) -> None:
    result = debian(paced_ilo, tmp_path, action="reboot", method="cycle")
    assert (result.returncode, result.stdout.strip()) == (0, "Success: Rebooted"), result
    assert paced_ilo.power_events == ["reset"]
    assert "reset /system1 hard" in paced_ilo.commands


def test_fence_ilo_ssh_monitor(paced_ilo: ILOSimulator, tmp_path: Path) -> None:
    result = debian(paced_ilo, tmp_path, action="monitor")
    assert result.returncode == 0, result
    assert paced_ilo.power_events == []


def test_fence_ilo_ssh_wrong_password(paced_ilo: ILOSimulator, tmp_path: Path) -> None:
    result = debian(paced_ilo, tmp_path, action="off", password="not-" + ILO_PASSWORD, login_timeout=2)
    assert result.returncode == 1, result
    assert "Unable to connect/login to fencing device" in result.stderr
    assert paced_ilo.power.read() == "on"
    assert paced_ilo.auth_attempts and not any(ok for _, _, ok in paced_ilo.auth_attempts)
    assert paced_ilo.commands == []


def test_fence_ilo_ssh_refuses_an_unknown_host_key_only_when_told(paced_ilo: ILOSimulator, tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    result = run(fence_ilo_ssh(), debian_options(paced_ilo, empty, action="status"))
    assert result.returncode == 1, result
    assert paced_ilo.connections == 1
    assert paced_ilo.auth_attempts == []  # ssh stopped before sending the password


def test_fence_ilo_ssh_unreachable(tmp_path: Path) -> None:
    with running_ilo(tmp_path / "ilo") as sim:
        port = sim.port
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    options = debian_options(sim, kh, action="status")
    options["ipport"] = port  # nobody listens there any more
    result = run(fence_ilo_ssh(), options)
    assert result.returncode == 1, result
