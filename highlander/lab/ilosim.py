"""A simulated HPE iLO: its SMASH CLP shell over SSH, on loopback.

What fence agents for iLO over SSH (Debian's ``fence_ilo_ssh``, our
``fence_highlander_ilo_ssh``) talk to: an SSH server (paramiko, server side)
with an RSA host key as iLO 3/4/5 present, password or public-key login, and
an interactive shell with iLO's ``</>hpiLO-> `` prompt that echoes what it is
typed and answers the commands a fence agent sends:

``show /system1``
    ``status=0`` / ``status_tag=COMMAND COMPLETED`` / the date, then the
    target with its Targets, Properties (``enabledstate=enabled|disabled``)
    and Verbs.
``power off hard``, ``stop /system1``, ``power off``
    power off (``Server powering off .......``).
``start /system1``, ``power on``
    power on (``Server powering on .......``).
``reset /system1 hard``, ``reset /system1``, ``power reset``
    a reset of a running server (``Resetting server.``).
``power``
    ``power: server power is currently: On|Off``.
``cd``, ``exit``
    change the default target (and the prompt), end the session.

Anything else is refused the way the CLP refuses it (``status=2``,
``status_tag=COMMAND PROCESSING FAILED``, an ``error_tag`` from DMTF SM CLP
(DSP0214) table 6 and a message line), and so is asking for a state the
server is already in (``Server power already off.``).

The power state lives in a file (``on``/``off``), so other processes (the
lab) can read and change it; hooks run on every power change so a lab BMC can
cut and restore a node. :class:`Fragmentation` delivers every response in
small writes with pauses, the way a slow BMC dribbles its output.

Where the shapes come from: fence-agents' ``fence_ilo_ssh`` (the commands it
sends, the prompt and ``EnabledState=`` it expects); verbatim iLO 3/4
captures published in other projects (``show /system1`` of a DL380 G7 with
lower-case ``enabledstate=enabled``; ``status=0`` / ``status_tag=COMMAND
COMPLETED`` / date / message, e.g. ``Server resetting .......``; refusals
such as ``status=2`` / ``COMMAND PROCESSING FAILED`` / ``error_tag=COMMAND
ERROR-UNSPECIFIED`` / ``Server power already off.``); DMTF DSP0214 for the
error tags. The login banner's wording is approximate.

Delivery matters to one client: ``fence_ilo_ssh`` reads 100 bytes at a time
and matches ``EnabledState=(.*)`` after every read, so when a read ends
inside the value it captures a prefix of ``enabled`` and reports OFF. With a
whole response in one write (the default) whether that happens depends on
byte offsets only (with the default server name it always does); with
:data:`LINE_BY_LINE` its reads end at line ends and it reads right.

In-process (:class:`ILOSimulator`, a few threads, :meth:`~ILOSimulator.stop`
closes everything) or as a program: ``python -m highlander.lab.ilosim``
(SIGTERM stops it). Passwords never appear on a command line or in a log:
the program reads its password from a file.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import logging
import os
import re
import select
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import paramiko

log = logging.getLogger(__name__)
# paramiko reports a client that hangs up ("Socket exception: Connection reset")
# at ERROR; for a simulator that is a normal end. Its records go here, kept
# out of Python's last-resort stderr handler.
TRANSPORT_LOG = f"{__name__}.transport"
logging.getLogger(TRANSPORT_LOG).addHandler(logging.NullHandler())

ON = "on"
OFF = "off"
EOL = "\r\n"
DEFAULT_USERNAME = "Administrator"
# The property fence_ilo_ssh reads (case-insensitively). iLO 3/4 spell it in
# lower case in ``show /system1`` (a verbatim DL380 G7 capture); DMTF's
# profiles spell it EnabledState.
STATE_PROPERTY = "enabledstate"

Hook = Callable[[], None]
_T = TypeVar("_T")


@dataclass(frozen=True)
class Fragmentation:
    """Deliver output in pieces: ``size`` bytes at most per write (0: no size
    limit), and also cut right after every occurrence of a string in
    ``after``; sleep ``pause`` seconds between two pieces."""

    size: int = 0
    pause: float = 0.05
    after: tuple[str, ...] = ()

    def pieces(self, data: str) -> list[str]:
        cuts = {len(data)}
        for marker in self.after:
            cuts.update(m.end() for m in re.finditer(re.escape(marker), data, re.IGNORECASE))
        if self.size > 0:
            cuts.update(range(self.size, len(data), self.size))
        out, start = [], 0
        for cut in sorted(cuts):
            if cut > start:
                out.append(data[start:cut])
                start = cut
        return out


# One write per line with a short pause: how a slow embedded CLI dribbles its
# output. fence_ilo_ssh reads iLO's state right only when its reads end at line
# ends (see the module docstring); this delivery gives it that.
LINE_BY_LINE = Fragmentation(after=("\n",), pause=0.005)


@dataclass
class PowerHooks:
    """Called (in the session's thread, before the CLP answers) on every
    power change the CLP makes. An exception fails the command; its text is
    the message the CLP prints."""

    off: Hook | None = None
    on: Hook | None = None
    reset: Hook | None = None


class CommandHooks(PowerHooks):
    """Hooks that run programs (argument vectors, no shell), for the program form."""

    def __init__(self, off: str | None = None, on: str | None = None, reset: str | None = None) -> None:
        super().__init__(off=self._runner(off), on=self._runner(on), reset=self._runner(reset))

    @staticmethod
    def _runner(command: str | None) -> Hook | None:
        if not command:
            return None
        argv = shlex.split(command)

        def run() -> None:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
            if done.returncode != 0:
                raise RuntimeError((done.stderr or done.stdout).strip() or f"hook exited {done.returncode}")

        return run


def fingerprint(key: paramiko.PKey) -> str:
    """``SHA256:…`` as ``ssh-keygen -lf`` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def generate_host_key(path: Path | None = None, kind: str = "rsa") -> paramiko.PKey:
    """A new host key (RSA 2048 like iLO's; ``ecdsa`` or ``ed25519`` on request),
    written to ``path`` (mode 0600, OpenSSH format) when given."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    if kind == "rsa":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif kind == "ecdsa":
        private = ec.generate_private_key(ec.SECP256R1())
    elif kind == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"host key kind must be rsa, ecdsa or ed25519, not {kind!r}")
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    if path is not None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(pem)
    return load_host_key_text(pem)


def load_host_key_text(pem: str) -> paramiko.PKey:
    import io

    for cls in (paramiko.RSAKey, paramiko.ECDSAKey, paramiko.Ed25519Key):
        try:
            return cls.from_private_key(io.StringIO(pem))
        except (paramiko.SSHException, ValueError):
            continue
    raise ValueError("not an RSA, ECDSA or Ed25519 private key")


def load_host_key(path: Path) -> paramiko.PKey:
    return load_host_key_text(Path(path).read_text())


class PowerState:
    """The server's power, kept in a file other processes may read or change."""

    def __init__(self, path: Path, initial: str = ON) -> None:
        self.path = Path(path)
        if not self.path.exists():
            self.write(initial)

    def read(self) -> str:
        text = self.path.read_text().strip().lower()
        if text not in (ON, OFF):
            raise ValueError(f"{self.path}: power state must be 'on' or 'off', not {text!r}")
        return text

    def write(self, state: str) -> None:
        if state not in (ON, OFF):
            raise ValueError(state)
        fd, tmp = tempfile.mkstemp(prefix=".power-", dir=self.path.parent)
        with os.fdopen(fd, "w") as f:
            f.write(state + "\n")
        os.replace(tmp, self.path)


class _CommandError(Exception):
    def __init__(self, error_tag: str, message: str) -> None:
        super().__init__(message)
        self.error_tag = error_tag
        self.message = message


class SmashCLP:
    """The command interpreter of one CLI session (no I/O of its own)."""

    def __init__(self, sim: ILOSimulator) -> None:
        self.sim = sim
        self.cwd = "/"

    @property
    def prompt(self) -> str:
        return f"<{self.cwd}>hpiLO-> "

    def execute(self, line: str) -> str:
        """The response text (CRLF line ends), without the prompt."""
        words = line.split()
        if not words:
            return ""
        self.sim.commands.append(line.strip())
        try:
            body = self._dispatch([w.lower() for w in words])
        except _CommandError as error:
            return self._response(2, "COMMAND PROCESSING FAILED", [error.message], error.error_tag)
        return self._response(0, "COMMAND COMPLETED", body)

    def _response(self, status: int, tag: str, body: Sequence[str], error_tag: str | None = None) -> str:
        lines = ["", f"status={status}", f"status_tag={tag}"]
        if error_tag:
            lines.append(f"error_tag={error_tag}")
        lines.append(time.strftime("%a %b %d %H:%M:%S %Y"))
        lines.append("")
        if status == 0 and body and body[0].startswith("/"):
            lines += ["", ""]  # a target listing comes after three blank lines
        lines += list(body)
        lines.append("")
        return EOL.join(lines) + EOL

    def _target(self, word: str | None) -> str:
        if word is None:
            return self.cwd
        path = word if word.startswith("/") else f"{self.cwd.rstrip('/')}/{word}"
        path = "/" + "/".join(p for p in path.split("/") if p and p != ".")
        return path

    def _dispatch(self, low: list[str]) -> list[str]:
        verb = low[0]
        args = [a for a in low[1:] if not a.startswith("-")]  # options (stop -f) change nothing here
        if verb == "show":
            return self._show(self._target(args[0] if args else None), args[1:])
        if verb == "cd":
            target = self._target(args[0] if args else "/")
            if target not in ("/", "/system1", "/map1"):
                raise _CommandError("COMMAND ERROR-UNSPECIFIED", "Invalid target.")
            self.cwd = target
            return [target]
        if verb == "power":
            return self._power(args)
        if verb in ("start", "stop", "reset"):
            target = self._target(args[0] if args else None)
            if target != "/system1":
                raise _CommandError("COMMAND NOT SUPPORTED", f"The verb {verb} is not supported on {target}.")
            if verb == "start":
                return self.sim.power_on()
            if verb == "stop":
                return self.sim.power_off()
            return self.sim.power_reset()
        raise _CommandError("COMMAND NOT RECOGNIZED", "Invalid command.")

    def _power(self, args: list[str]) -> list[str]:
        if not args:
            return [f"power: server power is currently: {self.sim.power.read().capitalize()}"]
        if args == ["on"]:
            return self.sim.power_on()
        if args in (["off"], ["off", "hard"]):
            return self.sim.power_off()
        if args in (["reset"], ["warm"], ["cold"]):
            return self.sim.power_reset()
        raise _CommandError("INVALID ARGUMENT", "Invalid option.")

    def _show(self, target: str, properties: list[str]) -> list[str]:
        if target == "/system1":
            state = "enabled" if self.sim.power.read() == ON else "disabled"
            props = [
                ("name", "ProLiant DL360 Gen9"),
                ("number", self.sim.serial),
                ("oemhp_server_name", self.sim.server_name),
                (self.sim.state_property, state),
                ("processor_number", "2"),
                ("oemhp_powerreg", "dynamic"),
                ("oemhp_pwrcap", "0"),
                ("oemhp_server_fqdn", f"{self.sim.server_name}.lab"),
            ]
            targets = [
                "firmware1",
                "bootconfig1",
                "log1",
                "led1",
                "network1",
                "oemhp_power1",
                "cpu1",
                "memory1",
                "slot1",
                "fan1",
                "sensor1",
                "powersupply1",
                "swid1",
            ]
            verbs = "cd version exit show reset start stop"
        elif target == "/":
            props, targets, verbs = [], ["system1", "map1"], "cd version exit show"
        elif target == "/map1":
            props = [("name", "iLO 4"), ("enabledstate", "enabled")]
            targets, verbs = ["firmware1", "accounts1", "log1"], "cd version exit show reset"
        else:
            raise _CommandError("COMMAND ERROR-UNSPECIFIED", "Invalid target.")
        if properties:
            wanted = [p for p in props if p[0].lower() in properties]
            if not wanted:
                raise _CommandError("INVALID OPTION", "Invalid property.")
            return [target, "  Properties"] + [f"    {k}={v}" for k, v in wanted]
        return (
            [target, "  Targets"]
            + [f"    {t}" for t in targets]
            + ["  Properties"]
            + [f"    {k}={v}" for k, v in props]
            + ["  Verbs", f"    {verbs}"]
        )


class _ServerInterface(paramiko.ServerInterface):
    def __init__(self, sim: ILOSimulator) -> None:
        self.sim = sim
        self.ready = threading.Event()
        self.exec_command: str | None = None

    def get_allowed_auths(self, username: str) -> str:
        return "password,publickey" if self.sim.authorized_keys else "password"

    def check_auth_password(self, username: str, password: str) -> int:
        ok = hmac.compare_digest(username.encode(), self.sim.username.encode()) and hmac.compare_digest(
            password.encode(), self.sim.password.encode()
        )
        self.sim.auth_attempts.append((username, "password", ok))
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        ok = username == self.sim.username and any(key.asbytes() == k.asbytes() for k in self.sim.authorized_keys)
        self.sim.auth_attempts.append((username, "publickey", ok))
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_pty_request(self, *args: object) -> bool:
        return True

    def check_channel_window_change_request(self, *args: object) -> bool:
        return True

    def check_channel_env_request(self, *args: object) -> bool:
        return False

    def check_channel_shell_request(self, channel: paramiko.Channel) -> bool:
        self.ready.set()
        return True

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        self.exec_command = command.decode("utf-8", "replace")
        self.ready.set()
        return True


class ILOSimulator:
    """An iLO on ``host:port`` (port 0: any free one, see :attr:`port`).

    ``password`` logs in ``username``; so do ``authorized_keys``. The power
    state is kept in ``state_file`` (created ``initial_state`` if missing).
    Counters for tests: :attr:`connections` (TCP connections accepted),
    :attr:`auth_attempts` (user, method, accepted — never the secret),
    :attr:`commands` (CLP command lines, in order), :attr:`power_events`.
    """

    def __init__(
        self,
        state_file: Path,
        *,
        password: str,
        username: str = DEFAULT_USERNAME,
        host: str = "127.0.0.1",
        port: int = 0,
        host_key: paramiko.PKey | None = None,
        authorized_keys: Iterable[paramiko.PKey] = (),
        hooks: PowerHooks | None = None,
        fragmentation: Fragmentation | None = None,
        initial_state: str = ON,
        state_property: str = STATE_PROPERTY,
        server_name: str = "sim-node",
    ) -> None:
        self.power = PowerState(state_file, initial_state)
        self.username = username
        self.password = password
        self.host = host
        self.port = port
        self.host_key = host_key or generate_host_key()
        self.authorized_keys = list(authorized_keys)
        self.hooks = hooks or PowerHooks()
        self.fragmentation = fragmentation
        self.state_property = state_property
        self.server_name = server_name
        self.serial = "SIM" + hashlib.sha256(server_name.encode()).hexdigest()[:7].upper()
        self.connections = 0
        self.auth_attempts: list[tuple[str, str, bool]] = []
        self.commands: list[str] = []
        self.power_events: list[str] = []
        self._power_lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._transports: list[paramiko.Transport] = []
        self._lock = threading.Lock()

    # --- life cycle -----------------------------------------------------

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.host_key)

    def known_hosts_line(self) -> str:
        """This simulator's entry for an OpenSSH known_hosts file."""
        name = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        return f"{name} {self.host_key.get_name()} {self.host_key.get_base64()}\n"

    def start(self) -> ILOSimulator:
        listener = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._spawn(self._accept_loop, "ilosim-accept")
        return self

    def stop(self) -> None:
        """Close the listener and every session, and wait for every thread."""
        self._stopping.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            transports = list(self._transports)
        for transport in transports:
            transport.close()
        for thread in list(self._threads):
            thread.join(timeout=10)
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            raise RuntimeError(f"iLO simulator threads did not stop: {alive}")

    def __enter__(self) -> ILOSimulator:  # noqa: PYI034
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                readable, _, _ = select.select([self._listener], [], [], 0.1)
                if not readable:
                    continue
                conn, _peer = self._listener.accept()
            except (OSError, ValueError):
                return  # the listener was closed by stop()
            self.connections += 1
            self._spawn(self._serve, f"ilosim-conn-{self.connections}", conn)

    # --- one connection -------------------------------------------------

    def _serve(self, conn: socket.socket) -> None:
        transport = paramiko.Transport(conn)
        transport.set_log_channel(TRANSPORT_LOG)
        with self._lock:
            self._transports.append(transport)
        try:
            transport.add_server_key(self.host_key)
            transport.local_version = "SSH-2.0-mpSSH_0.2.1"  # what iLO 4 announces
            interface = _ServerInterface(self)
            try:
                transport.start_server(server=interface)
            except (paramiko.SSHException, EOFError, OSError):
                return
            channel = self._wait(lambda: transport.accept(timeout=0.1), transport)
            if channel is None or not self._wait(lambda: interface.ready.wait(0.1), transport):
                return
            if interface.exec_command is not None:
                self._exec(channel, interface.exec_command)
            else:
                self._shell(channel)
        except (paramiko.SSHException, EOFError, OSError) as error:
            log.debug("iLO simulator session ended: %s", error)
        finally:
            transport.close()
            with self._lock:
                if transport in self._transports:
                    self._transports.remove(transport)

    def _wait(self, poll: Callable[[], _T], transport: paramiko.Transport, limit: float = 60) -> _T | None:
        """Poll until it yields something, the client goes or the simulator stops."""
        deadline = time.monotonic() + limit
        while not self._stopping.is_set() and transport.is_active() and time.monotonic() < deadline:
            value = poll()
            if value:
                return value
        return None

    def _send(self, channel: paramiko.Channel, text: str, *, fragment: bool = True) -> None:
        pieces = self.fragmentation.pieces(text) if fragment and self.fragmentation else [text]
        for i, piece in enumerate(pieces):
            pause = self.fragmentation.pause if i and self.fragmentation else 0
            if pause > 0 and self._stopping.wait(pause):
                raise EOFError("simulator stopping")
            channel.sendall(piece.encode())

    def _banner(self) -> str:
        power = self.power.read().capitalize()
        return EOL.join(
            [
                "",
                f"User:{self.username} logged-in to ILO{self.serial}.lab(127.0.0.1 / FE80::1)",
                "iLO 4 Advanced 2.82 at  Feb 06 2023",
                f"Server Name: {self.server_name}",
                f"Server Power: {power}",
                "",
                "",
            ]
        )

    def _shell(self, channel: paramiko.Channel) -> None:
        clp = SmashCLP(self)
        self._send(channel, self._banner() + clp.prompt)
        line: list[str] = []
        last = ""
        while not self._stopping.is_set():
            data = channel.recv(1024)
            if not data:
                return
            for ch in data.decode("utf-8", "replace"):
                if ch == "\n" and last == "\r":
                    last = ch
                    continue  # CR LF is one end of line
                last = ch
                if ch in "\r\n":
                    channel.sendall(b"\r\n")
                    command = "".join(line)
                    line.clear()
                    if command.strip().lower() == "exit":
                        self.commands.append("exit")
                        self._send(channel, EOL + "CLI session stopped" + EOL)
                        channel.send_exit_status(0)
                        channel.close()
                        return
                    self._send(channel, clp.execute(command) + clp.prompt)
                elif ch in "\x7f\x08" and line:
                    line.pop()
                    channel.sendall(b"\x08 \x08")
                elif ch == "\x03":
                    line.clear()
                    channel.sendall(b"^C\r\n")
                    self._send(channel, clp.prompt)
                elif ch.isprintable():
                    line.append(ch)
                    channel.sendall(ch.encode())

    def _exec(self, channel: paramiko.Channel, command: str) -> None:
        clp = SmashCLP(self)
        self._send(channel, clp.execute(command))
        channel.send_exit_status(0)
        channel.close()

    # --- power ----------------------------------------------------------

    def _change(self, event: str, hook: Hook | None, new_state: str | None) -> None:
        if hook is not None:
            try:
                hook()
            except Exception as error:  # the hook's text is the CLP's message
                raise _CommandError("COMMAND ERROR-UNSPECIFIED", str(error) or type(error).__name__) from error
        if new_state is not None:
            self.power.write(new_state)
        self.power_events.append(event)

    def power_off(self) -> list[str]:
        with self._power_lock:
            if self.power.read() == OFF:
                raise _CommandError("COMMAND ERROR-UNSPECIFIED", "Server power already off.")
            self._change(OFF, self.hooks.off, OFF)
        return ["Server powering off ......."]

    def power_on(self) -> list[str]:
        with self._power_lock:
            if self.power.read() == ON:
                raise _CommandError("COMMAND ERROR-UNSPECIFIED", "Server power already on.")
            self._change(ON, self.hooks.on, ON)
        return ["Server powering on ......."]

    def power_reset(self) -> list[str]:
        with self._power_lock:
            if self.power.read() == OFF:
                raise _CommandError("COMMAND ERROR-UNSPECIFIED", "Server power off.")
            self._change("reset", self.hooks.reset, None)
        return ["Resetting server."]


# --- the program form ---------------------------------------------------


def _listen_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m highlander.lab.ilosim",
        description="A simulated HPE iLO (SMASH CLP over SSH). Prints 'listening HOST:PORT "
        "FINGERPRINT' once ready; stops on SIGTERM or SIGINT.",
    )
    parser.add_argument("--listen", type=_listen_address, default=("127.0.0.1", 0), metavar="HOST:PORT")
    parser.add_argument("--state-file", type=Path, required=True)
    parser.add_argument("--initial-state", choices=(ON, OFF), default=ON)
    parser.add_argument("--username", default=DEFAULT_USERNAME)
    parser.add_argument(
        "--password-file",
        type=Path,
        required=True,
        help="file whose first line is the password (never on the command line)",
    )
    parser.add_argument("--host-key", type=Path, help="private host key; generated (RSA 2048) if missing")
    parser.add_argument(
        "--authorized-key",
        type=Path,
        action="append",
        default=[],
        help="OpenSSH public key file allowed to log in as the user",
    )
    parser.add_argument("--fragment-size", type=int, default=0)
    parser.add_argument("--fragment-pause", type=float, default=0.05)
    parser.add_argument("--fragment-after", action="append", default=[])
    parser.add_argument("--on-off", help="program run on power off (split like a shell would, not run by one)")
    parser.add_argument("--on-on", help="program run on power on")
    parser.add_argument("--on-reset", help="program run on reset")
    parser.add_argument("--server-name", default="sim-node")
    args = parser.parse_args(argv)

    password = args.password_file.read_text().splitlines()[0] if args.password_file.stat().st_size else ""
    if args.host_key is None:
        host_key = generate_host_key()
    elif args.host_key.exists():
        host_key = load_host_key(args.host_key)
    else:
        host_key = generate_host_key(args.host_key)
    authorized = []
    for path in args.authorized_key:
        kind, blob = path.read_text().split()[:2]
        authorized.append(paramiko.PKey.from_type_string(kind, base64.b64decode(blob)))
    fragmentation = None
    if args.fragment_size or args.fragment_after:
        fragmentation = Fragmentation(args.fragment_size, args.fragment_pause, tuple(args.fragment_after))
    host, port = args.listen
    sim = ILOSimulator(
        args.state_file,
        password=password,
        username=args.username,
        host=host,
        port=port,
        host_key=host_key,
        authorized_keys=authorized,
        fragmentation=fragmentation,
        initial_state=args.initial_state,
        server_name=args.server_name,
        hooks=CommandHooks(args.on_off, args.on_on, args.on_reset),
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    sim.start()
    print(f"listening {sim.host}:{sim.port} {sim.fingerprint}", flush=True)
    try:
        stop.wait()
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
