"""One simulated IPMI BMC: OpenIPMI's ``ipmi_sim`` on a loopback UDP port.

Nobody here wrote the simulator (Debian's ``openipmi``): our IPMI fence
agent and fence-agents' ``fence_ipmilan`` are checked against the same
device. This module configures one BMC, starts it, records its chassis power
and stops it, by PID. The three-node lab uses it too, with power hooks that
cut and boot a node.

What ipmi_sim is given (all of it in ``workdir``, a 0700 directory)::

    lan.conf      LAN channel 1 on <address>:<port>, one user (0600: it holds
                  the password, in the clear: ipmi_sim has no other way)
    sim.emu       the emulated BMC: one MC at 0x20, enabled (``mc_enable``:
                  without it the BMC answers nothing)
    chassis       the ``chassis_control`` program (see below)
    power         the chassis power: "1" or "0", the single source of truth
    events.log    one line per chassis power change asked for (and its hooks)
    hooks.log     the output of command hooks
    sim.log       ipmi_sim's own output (with ``debug``: every packet it got)
    state/        ipmi_sim's state directory (persistence is off)

How ipmi_sim asks for the power: when ``chassis_control "<prog>"`` is set,
ipmi_sim runs ``<prog> get power`` through ``/bin/sh`` for every Get Chassis
Status and reads ``power:1`` or ``power:0`` from its output; for a Chassis
Control request it runs ``<prog> set power "0"`` (off), ``set power "1"``
(on), ``set reset "1"`` (hard reset) and, for a power cycle, ``set power "0"``
followed about a second later by ``set power "1"`` once ``get power`` says
off. A non-zero exit makes ipmi_sim answer the request with an error
completion code. ipmi_sim waits for the program (it is single-threaded), so
``get`` is answered by the shell alone, without starting anything.

Power hooks make the chassis drive something: ``on_power_off``,
``on_power_on`` and ``on_reset`` are each either a command (argv, run by the
chassis program under ``timeout``) or a callable run in this process (the
chassis program asks for it over a Unix socket in ``workdir`` and waits for
the answer). Hooks run synchronously, before the new state is recorded, and
must return within ``hook_timeout``: ipmi_sim answers nothing meanwhile. A
failing hook leaves the recorded state unchanged and fails the request, as a
BMC that cannot switch would. So a hook that boots a node should start the
boot and return; a real BMC also reports "on" long before the OS is up
(and a fence reboot waits for "on" after power-on). A request for the state
the chassis is already in runs no hook. A hard reset of a powered chassis
runs ``on_reset`` or, without one, ``on_power_off`` then ``on_power_on``; of an
unpowered one, nothing.

Cipher suites: ipmi_sim 2.0.33 implements the RMCP+ suites 0 to 14 (HMAC-SHA1
and HMAC-MD5); it has no HMAC-SHA256, so suite 17 is refused with "invalid
authentication algorithm". Suite 3 (what the agents use) works. It cannot be
told to refuse suite 0 (no authentication: any password is accepted), so
tests of wrong credentials must not use suite 0. IPMI 1.5 sessions are
allowed with MD5 only, never "none" or "straight" (a clear-text password).
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Union

from highlander.adapters.waiting import wait_until

LOOPBACK = "127.0.0.1"
PROGRAM = "ipmi_sim"
PRIVILEGES = ("callback", "user", "operator", "admin")
ON, OFF = "on", "off"

Hook = Union[Sequence[str], Callable[[], object], None]

# lan.conf reads a name or password as one whitespace-free token in quotes.
_TOKEN = re.compile(r"^[!#-&(-~]+$")  # printable ASCII without space, " and '
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./+-]+$")  # ipmi_sim runs the program through sh

EMU = """\
# Written by highlander.lab.ipmisim: one BMC at IPMB address 0x20.
mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02
mc_enable 0x20
"""

HOOK_CLIENT = """\
# Written by highlander.lab.ipmisim: asks the owner of the simulator to run a
# power hook and waits for its answer. Run with -I -S: the standard library only.
import socket, sys
path, event, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(timeout)
try:
    s.connect(path)
    s.sendall(event.encode() + b"\\n")
    reply = b""
    while not reply.endswith(b"\\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        reply += chunk
except OSError as exc:
    sys.stderr.write("hook %s: %s\\n" % (event, exc))
    sys.exit(1)
answer = reply.decode(errors="replace").strip()
if answer != "ok":
    sys.stderr.write("hook %s: %s\\n" % (event, answer or "no answer"))
    sys.exit(1)
"""


class SimulatorError(RuntimeError):
    """The simulator could not be set up, started or stopped."""


def free_udp_port(address: str = LOOPBACK) -> int:
    """A UDP port nobody has bound on ``address`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def _write(path: Path, text: str, mode: int) -> None:
    """Write ``text`` to ``path`` created with ``mode`` (never wider for a moment)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets ``pid`` holds open (from /proc/PID/fd)."""
    inodes: set[str] = set()
    try:
        entries = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for entry in entries:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{entry}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _udp_inode(pid: int, address: str, port: int) -> str | None:
    """Inode of the UDP socket bound to address:port in ``pid``'s network namespace."""
    want = f"{int.from_bytes(socket.inet_aton(address), 'little'):08X}:{port:04X}"
    try:
        with open(f"/proc/{pid}/net/udp") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) > 9 and fields[1] == want:
            return fields[9]
    return None


class IpmiSim:
    """One ``ipmi_sim`` BMC; :meth:`stop` it whatever happens (or use ``with``).

    ``prefix`` runs the simulator elsewhere, e.g. ``("ip", "netns", "exec",
    "sw")`` or ``("nsenter", "--target=PID", "--net", "--")``: it must exec
    ipmi_sim (not fork it) so the PID started is the simulator's.
    ``debug`` makes ipmi_sim log every packet it receives to ``sim.log``.
    ``password`` defaults to a random one; ``power_on`` is the chassis power
    at the first start (a restarted simulator keeps what ``power`` holds).
    ``privilege`` is the user's highest: callback, user, operator or admin.
    """

    def __init__(
        self,
        workdir: Path | str,
        *,
        address: str = LOOPBACK,
        port: int | None = None,
        username: str = "admin",
        password: str | None = None,
        privilege: str = "admin",
        power_on: bool = True,
        on_power_off: Hook = None,
        on_power_on: Hook = None,
        on_reset: Hook = None,
        hook_timeout: float = 10.0,
        prefix: Sequence[str] = (),
        debug: bool = False,
        name: str = "highlander",
    ) -> None:
        self.workdir = Path(workdir).absolute()
        if not _SAFE_PATH.match(str(self.workdir)):
            raise ValueError(
                f"{self.workdir}: ipmi_sim runs programs from it through sh; use letters, digits and ._+/- only"
            )
        if not _TOKEN.match(username) or len(username) > 16:
            raise ValueError("IPMI user name: 1 to 16 printable characters, no space or quote")
        self.password = password if password is not None else secrets.token_urlsafe(12)
        if not _TOKEN.match(self.password) or len(self.password) > 20:
            raise ValueError("IPMI password: 1 to 20 printable characters, no space or quote")
        if privilege not in PRIVILEGES:
            raise ValueError(f"privilege must be one of {', '.join(PRIVILEGES)}")
        self.address = address
        self.port = port or free_udp_port(address if not prefix else LOOPBACK)
        self.username = username
        self.privilege = privilege
        self.initial_power = power_on
        self.hooks: dict[str, Hook] = {"off": on_power_off, "on": on_power_on, "reset": on_reset}
        self.hook_timeout = hook_timeout
        self.prefix = tuple(prefix)
        self.debug = debug
        self.name = name
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._server: socket.socket | None = None
        self._server_thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def __repr__(self) -> str:  # never the password
        return f"IpmiSim({self.address}:{self.port}, user={self.username!r}, pid={self.pid})"

    # -- paths -------------------------------------------------------------

    @property
    def lan_conf(self) -> Path:
        return self.workdir / "lan.conf"

    @property
    def power_file(self) -> Path:
        return self.workdir / "power"

    @property
    def events_file(self) -> Path:
        return self.workdir / "events.log"

    @property
    def log_file(self) -> Path:
        return self.workdir / "sim.log"

    @property
    def hook_socket(self) -> Path:
        return self.workdir / "hooks.sock"

    # -- configuration -----------------------------------------------------

    def lan_conf_text(self) -> str:
        """lan.conf: channel 1 on address:port, the chassis program, one user (a secret)."""
        auths = "md5"  # IPMI 1.5: never "none" or "straight" (a clear-text password)
        return "\n".join(
            [
                "# Written by highlander.lab.ipmisim. Holds a password: keep it 0600.",
                f'name "{self.name}"',
                "set_working_mc 0x20",
                "  startlan 1",
                f"    addr {self.address} {self.port}",
                "    priv_limit admin",
                f"    allowed_auths_callback {auths}",
                f"    allowed_auths_user {auths}",
                f"    allowed_auths_operator {auths}",
                f"    allowed_auths_admin {auths}",
                "    guid a123456789abcdefa123456789abcdef",
                "  endlan",
                f'  chassis_control "{self.workdir / "chassis"}"',
                f'  user 2 true "{self.username}" "{self.password}" {self.privilege} 10',
                "",
            ]
        )

    def _hook_shell(self, event: str) -> str:
        """The shell commands that run the ``event`` hook (``:`` for none)."""
        hook = self.hooks[event]
        if hook is None:
            return ":"
        limit = f"{self.hook_timeout:g}"
        if callable(hook):
            client = [
                sys.executable,
                "-I",
                "-S",
                str(self.workdir / "hookclient.py"),
                str(self.hook_socket),
                event,
                limit,
            ]
            return f'{shlex.join(client)} 2>>"$dir/hooks.log"'
        argv = ["timeout", limit, *hook]
        return f'{shlex.join(argv)} >>"$dir/hooks.log" 2>&1 </dev/null'

    def chassis_script(self) -> str:
        """The ``chassis_control`` program ipmi_sim runs (see the module doc)."""
        reset = (
            self._hook_shell("reset")
            if self.hooks["reset"] is not None
            else f"{self._hook_shell('off')} && {self._hook_shell('on')}"
        )
        return f"""#!/bin/sh
# Written by highlander.lab.ipmisim: ipmi_sim's chassis_control program.
# ipmi_sim runs it as "<this> get power" and "<this> set power <0|1>" / "set reset 1".
dir={shlex.quote(str(self.workdir))}
state="$dir/power"
current() {{ p=0; read -r p < "$state" || p=0; }}
record() {{ printf '%s\\n' "$1" > "$state.new" && mv -f "$state.new" "$state"; }}
event() {{ printf '%s %s\\n' "$(date +%s.%N)" "$*" >> "$dir/events.log"; }}
hook_off() {{ {self._hook_shell("off")}; }}
hook_on() {{ {self._hook_shell("on")}; }}
hook_reset() {{ {reset}; }}
case "$1" in
get)
    shift
    for item in "$@"; do
        case "$item" in
        power) current; echo "power:$p" ;;
        boot) echo "boot:none" ;;
        *) echo "$item:0" ;;
        esac
    done ;;
set)
    shift
    while [ $# -ge 2 ]; do
        name=$1; value=$2; shift 2
        case "$name" in
        power)
            current
            if [ "$value" = 0 ]; then
                if [ "$p" = 0 ]; then event "off (already off)"
                elif hook_off; then record 0; event off
                else event "off FAILED: hook"; exit 1; fi
            else
                if [ "$p" = 1 ]; then event "on (already on)"
                elif hook_on; then record 1; event on
                else event "on FAILED: hook"; exit 1; fi
            fi ;;
        reset)
            current
            if [ "$p" = 0 ]; then event "reset (off: nothing to reset)"
            elif hook_reset; then event reset
            else event "reset FAILED: hook"; exit 1; fi ;;
        *) event "$name $value (ignored)" ;;
        esac
    done ;;
check) ;;
*) exit 1 ;;
esac
exit 0
"""

    def prepare(self) -> None:
        """Write the configuration, the emulation, the chassis program and the power state."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o700)
        (self.workdir / "state").mkdir(mode=0o700, exist_ok=True)
        _write(self.lan_conf, self.lan_conf_text(), 0o600)
        _write(self.workdir / "sim.emu", EMU, 0o644)
        _write(self.workdir / "chassis", self.chassis_script(), 0o700)
        _write(self.workdir / "hookclient.py", HOOK_CLIENT, 0o644)
        if not self.power_file.exists():  # a restarted BMC keeps the chassis as it was
            self.set_power(self.initial_power)

    # -- life cycle --------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The simulator's PID while it runs."""
        if self._process is None or self._process.poll() is not None:
            return None
        return self._process.pid

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self, *, timeout: float = 15.0) -> None:
        """Start the simulator; return once it holds its UDP socket.

        Raises :class:`SimulatorError` with the tail of its log if it exits
        or does not bind within ``timeout``; it is stopped again then.
        """
        if self.running:
            return
        self.prepare()
        self._start_hook_server()
        argv = [
            *self.prefix,
            PROGRAM,
            "-c",
            str(self.lan_conf),
            "-f",
            str(self.workdir / "sim.emu"),
            "-s",
            str(self.workdir / "state"),
            "-p",
        ]
        argv += ["-d"] if self.debug else ["-n"]  # -n: no console on stdin/stdout
        self._log = open(self.log_file, "ab")
        try:
            self._process = subprocess.Popen(
                argv,
                # With debug the console stays on a pipe nobody writes to; its
                # output and the packet log go to sim.log.
                stdin=subprocess.PIPE if self.debug else subprocess.DEVNULL,
                stdout=self._log,
                stderr=self._log,
                cwd=self.workdir,
                start_new_session=True,  # its own process group: hooks die with it
                close_fds=True,
            )
        except FileNotFoundError as exc:
            self.stop()
            raise SimulatorError(f"{argv[0]} not found (Debian package openipmi)") from exc
        try:
            wait_until(self._bound, timeout=timeout, what=f"ipmi_sim on udp {self.address}:{self.port}", interval=0.02)
        except (TimeoutError, SimulatorError) as exc:
            tail = self.log_tail()
            self.stop()
            raise SimulatorError(f"{exc}\n{tail}") from exc

    def _bound(self) -> bool:
        process = self._process
        assert process is not None
        if process.poll() is not None:
            raise SimulatorError(f"ipmi_sim exited with {process.returncode}")
        try:
            if os.path.basename(os.readlink(f"/proc/{process.pid}/exe")) != PROGRAM:
                return False  # the prefix has not exec'd it yet
        except OSError:
            return False
        inode = _udp_inode(process.pid, self.address, self.port)
        return inode is not None and inode in _socket_inodes(process.pid)

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop the simulator (its process group) by PID; idempotent, never raises.

        lan.conf, which holds the password, is removed; the logs stay.
        """
        process = self._process
        if process is not None:
            if process.poll() is None:
                self._signal_group(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self._signal_group(process.pid, signal.SIGKILL)
                    process.wait(timeout=timeout)
            # (one that died on its own is not signalled: its PID is no longer its;
            # a hook it left running ends by itself, every hook being bounded)
            if process.stdin is not None:
                process.stdin.close()
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        self._stop_hook_server()
        try:
            self.lan_conf.unlink()
        except FileNotFoundError:
            pass

    @staticmethod
    def _signal_group(pid: int, signum: int) -> None:
        """Signal the process group led by ``pid``, a simulator still alive (or not yet
        reaped): the group's ID is its PID, not reusable meanwhile."""
        try:
            os.killpg(pid, signum)  # the group it leads (start_new_session)
        except (ProcessLookupError, PermissionError):
            pass

    def __enter__(self) -> IpmiSim:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- callable hooks ----------------------------------------------------

    def _start_hook_server(self) -> None:
        if not any(callable(h) for h in self.hooks.values()) or self._server is not None:
            return
        self.hook_socket.unlink(missing_ok=True)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(self.hook_socket))
        os.chmod(self.hook_socket, 0o600)
        server.listen(4)
        server.settimeout(0.1)
        self._stopping.clear()
        self._server = server
        self._server_thread = threading.Thread(target=self._serve_hooks, name=f"ipmisim-hooks-{self.port}", daemon=True)
        self._server_thread.start()

    def _serve_hooks(self) -> None:
        server = self._server
        assert server is not None
        while not self._stopping.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with connection:
                connection.settimeout(self.hook_timeout)
                try:
                    event = connection.makefile("r").readline().strip()
                    hook = self.hooks.get(event)
                    if not callable(hook):
                        answer = f"error no callable hook for {event!r}"
                    else:
                        try:
                            hook()
                            answer = "ok"
                        except Exception as exc:  # reported to ipmi_sim as a failure
                            answer = f"error {type(exc).__name__}: {exc}".replace("\n", " ")
                    connection.sendall(answer.encode() + b"\n")
                except OSError:
                    continue

    def _stop_hook_server(self) -> None:
        self._stopping.set()
        if self._server_thread is not None:
            self._server_thread.join(timeout=self.hook_timeout + 1)
            self._server_thread = None
        if self._server is not None:
            self._server.close()
            self._server = None
        self.hook_socket.unlink(missing_ok=True)

    # -- the chassis -------------------------------------------------------

    @property
    def power(self) -> str:
        """The chassis power the simulator records: ``"on"`` or ``"off"``."""
        try:
            return ON if self.power_file.read_text().strip() == "1" else OFF
        except FileNotFoundError:
            return OFF

    def set_power(self, on: bool) -> None:
        """Set the recorded chassis power directly, without hooks (test set-up)."""
        temporary = self.power_file.with_name("power.new")
        temporary.write_text("1\n" if on else "0\n")
        os.replace(temporary, self.power_file)

    def wait_power(self, state: str, *, timeout: float = 10.0) -> str:
        """Wait until the recorded power is ``state`` (``"on"``/``"off"``)."""
        wait_until(lambda: self.power == state, timeout=timeout, what=f"simulated chassis power {state}", interval=0.05)
        return state

    def events(self) -> list[str]:
        """The chassis events recorded so far: "off", "on", "reset", "off (already off)", ..."""
        try:
            lines = self.events_file.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [line.split(" ", 1)[1] for line in lines if " " in line]

    def received_packets(self) -> int:
        """How many UDP packets ipmi_sim logged as received (``debug`` only)."""
        if not self.debug:
            raise SimulatorError("received_packets needs IpmiSim(debug=True)")
        try:
            return self.log_file.read_text(errors="replace").count("Raw LAN receive from")
        except FileNotFoundError:
            return 0

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return "(no simulator log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- what a fence agent needs ------------------------------------------

    def fence_options(self, **extra: object) -> dict[str, str]:
        """The fence-agent options (stdin names) that reach this BMC with IPMI 2.0, suite 3."""
        options: dict[str, object] = {
            "ip": self.address,
            "ipport": self.port,
            "username": self.username,
            "password": self.password,
            "lanplus": 1,
            "cipher": 3,
        }
        options.update(extra)
        return {k: str(v) for k, v in options.items() if v is not None}

    def fence_stdin(self, action: str, **extra: object) -> str:
        """``fence_options`` and ``action`` as fence-agent standard input."""
        return stdin_text({"action": action, **self.fence_options(**extra)})


def stdin_text(options: Mapping[str, object]) -> str:
    """``name=value`` lines, the fence-agent calling convention."""
    return "".join(f"{name}={value}\n" for name, value in options.items())
