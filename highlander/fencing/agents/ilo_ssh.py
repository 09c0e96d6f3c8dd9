"""fence_highlander_ilo_ssh: power fencing through HPE iLO's SMASH CLP over SSH.

Takes fence-agents' ``fence_ilo_ssh`` options (``ssh``/``secure`` is implied,
``identity_file``, ``command_prompt``/``cmd_prompt``, ``login_timeout``,
``shell_timeout``) and speaks the same CLP: ``show /system1`` for the state
(its ``enabledstate=`` property), ``power off hard`` to fence, ``start
/system1`` to unfence, ``reset /system1 hard`` for ``--method cycle``. What it
does differently, on purpose:

- The iLO's host key is checked before a credential is sent, and an unknown or
  changed key is refused, never accepted: pin it with ``ssh_fingerprint``
  (``SHA256:…`` as ``ssh-keygen -lf`` prints it) or list it in ``known_hosts``
  (default ``/etc/highlander/known_hosts``, the file highlander renders for
  the cluster). The refusal names the fingerprint the device showed and how to
  pin it. (``fence_ilo_ssh`` answers "yes" to OpenSSH's unknown-host question.)
  The rule is highlander's one host-key policy,
  :class:`highlander.adapters.ssh.HostKeyPolicy`, as for the drills' SSH.
- A response is read up to the next prompt and parsed line by line, only once
  complete. ``fence_ilo_ssh`` matches ``EnabledState=(.*)`` against whatever
  part of the output has arrived, so when a read ends inside the value it
  reads ``enab`` and reports a running server as off (and ``off`` then
  "succeeds" without powering anything off).
- Every command's ``status=``/``status_tag=`` is checked; the device's own
  error text (``Server power already on.``) is what the operator reads.
- Only ``enabledstate=disabled`` is off; any other value naming a running
  state is on, an unknown one is an error, never a guess.

SSH is paramiko in-process: one TCP connection, one shell channel, no
``ssh`` child process, so no password is ever on a command line or in a
pseudo-terminal. Password login, keyboard-interactive with the password, or
a private key (``identity_file``; ``password`` is then its passphrase).
paramiko 5 has no ssh-rsa (SHA-1) signatures and no SHA-1 key exchange: an
iLO firmware that offers nothing newer cannot be reached by this agent (nor
by OpenSSH 9 without ``HostKeyAlgorithms=+ssh-rsa``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from highlander.fencing import address
from highlander.fencing.driver import (
    OFF,
    ON,
    DeviceFailure,
    FenceError,
    LoginDenied,
    PowerDriver,
    Unreachable,
)
from highlander.fencing.spec import COMMON, FenceAgent, Option

# Only the declaration is needed for metadata, manpage and bad input: what
# talking to a device takes (paramiko, sockets, hashing, logging) is imported
# when a driver is built.
if TYPE_CHECKING:
    import logging
    import socket
    from collections.abc import Mapping, Sequence
    from typing import Any

    import paramiko


def _log() -> logging.Logger:
    import logging

    return logging.getLogger(__name__)


DEFAULT_PORT = 22
DEFAULT_KNOWN_HOSTS = "/etc/highlander/known_hosts"
CLOSE_WAIT = 2.0  # seconds for paramiko's reader thread to end after the socket closed
# iLO's CLP prompt: "</>hpiLO-> ", "</system1>hpiLO-> " after a cd; iLO 7 says
# "hpeiLO->". Matched against the last, unterminated line of the output only.
DEFAULT_PROMPT = r"<[^<>\r\n]*>[A-Za-z]*iLO->"
EOL = "\r"  # what iLO's CLI takes as the end of a command line (fence_ilo_ssh sends it too)

# enabledstate values (DMTF CIM_EnabledLogicalElement.EnabledState, as words):
# only Disabled means the power is off; the transitional and degraded states
# all still have power. Anything else is not understood, so not guessed.
ENABLED_STATES = {
    "enabled": ON,
    "disabled": OFF,
    "enabled but offline": ON,
    "shutting down": ON,
    "starting": ON,
    "in test": ON,
    "deferred": ON,
    "quiesce": ON,
}

DATE_LINE = re.compile(r"^[A-Z][a-z]{2} [A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d \d{4}$")
ALREADY = re.compile(r"already (on|off)\b", re.IGNORECASE)
NO_LIMIT = 24 * 3600.0  # a timeout of 0: "no limit", bounded all the same


def _seconds(value: object, default: float) -> float:
    """A timeout option: unset is the default; 0 waits without a limit, as in
    fence-agents (Pacemaker's own timeout for the agent still applies)."""
    if value is None or value == "":
        return default
    seconds = float(value)  # type: ignore[arg-type]
    return NO_LIMIT if seconds == 0 else seconds


class PromptReader:
    """Collects a CLP session's output up to the next prompt.

    Bytes are decoded incrementally (a character split across reads is
    completed by the next one) and cut into lines only at a newline; the
    prompt is looked for in the unterminated rest only, so a line is never
    parsed before all of it has arrived, however the output was split.
    """

    def __init__(self, prompt: str | re.Pattern[str]) -> None:
        import codecs

        self.prompt = re.compile(prompt) if isinstance(prompt, str) else prompt
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._tail = ""
        self.lines: list[str] = []

    def feed(self, data: bytes) -> bool:
        """Add output; True once the prompt ends it."""
        text = self._tail + self._decoder.decode(data)
        *complete, self._tail = text.split("\n")
        self.lines.extend(line.rstrip("\r") for line in complete)
        return self.at_prompt()

    def at_prompt(self) -> bool:
        tail = self._tail.replace("\r", "")
        match = self.prompt.search(tail)
        return match is not None and not tail[match.end() :].strip()

    def take(self) -> list[str]:
        """The complete lines before the prompt; the reader starts afresh."""
        lines, self.lines, self._tail = self.lines, [], ""
        return lines

    @property
    def pending(self) -> str:
        return self._tail


class ClpResponse:
    """One CLP command's answer: its status header and the lines after it."""

    def __init__(self, command: str, status: int, status_tag: str = "", error_tag: str = "") -> None:
        self.command = command
        self.status = status
        self.status_tag = status_tag
        self.error_tag = error_tag
        self.body: list[str] = []

    @property
    def ok(self) -> bool:
        return self.status == 0 and self.status_tag.upper() == "COMMAND COMPLETED"

    @property
    def message(self) -> str:
        return " ".join(line for line in self.body if not DATE_LINE.match(line)) or "(no message)"

    def property(self, name: str) -> str | None:
        """The value of ``name=`` among the body's lines (case-insensitive name)."""
        wanted = name.lower() + "="
        for line in self.body:
            if line.lower().startswith(wanted):
                return line[len(wanted) :].strip()
        return None

    def failure(self) -> str:
        tags = self.status_tag + (f", {self.error_tag}" if self.error_tag else "")
        return f"iLO refused '{self.command}': {self.message} (status={self.status}, {tags})"


def parse_response(command: str, lines: Sequence[str]) -> ClpResponse:
    """The CLP response in ``lines`` (the echoed command line and all), checked for its header."""
    stripped = [line.strip() for line in lines]
    start = next((i for i, line in enumerate(stripped) if line.startswith("status=")), None)
    if start is None:
        seen = " | ".join(line for line in stripped if line and line != command)[:200]
        raise DeviceFailure(f"'{command}': the answer has no status= line (not a SMASH CLP?): {seen or '(nothing)'}")
    try:
        status = int(stripped[start].partition("=")[2])
    except ValueError:
        raise DeviceFailure(f"'{command}': unreadable {stripped[start]!r}") from None
    response = ClpResponse(command, status)
    for line in stripped[start + 1 :]:
        key, sep, value = line.partition("=")
        if sep and key == "status_tag" and not response.status_tag:
            response.status_tag = value.strip()
        elif sep and key == "error_tag" and not response.error_tag:
            response.error_tag = value.strip()
        elif line:
            response.body.append(line)
    if not response.status_tag:
        raise DeviceFailure(f"'{command}': the answer has status={status} but no status_tag= line")
    return response


def power_state(response: ClpResponse) -> str:
    """ON or OFF from ``show /system1``'s enabledstate property."""
    value = response.property("enabledstate")
    if value is None:
        raise DeviceFailure(f"'{response.command}': no enabledstate= property in the answer")
    state = ENABLED_STATES.get(value.lower())
    if state is None:
        raise DeviceFailure(f"'{response.command}': enabledstate={value} is not a power state this agent knows")
    return state


class IloSshDriver(PowerDriver):
    """One iLO, reached over one SSH connection and one CLP shell."""

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        username: str | None = None,
        password: str | None = None,
        identity_file: str | None = None,
        known_hosts: str | None = DEFAULT_KNOWN_HOSTS,
        ssh_fingerprint: str | None = None,
        prompt: str = DEFAULT_PROMPT,
        login_timeout: float = 5.0,
        shell_timeout: float = 3.0,
        power_timeout: float = 20.0,
    ) -> None:
        from highlander.adapters.ssh import HostKeyPolicy

        self.host = host
        self.port = port
        self.username = username
        self._password = password
        self.identity_file = identity_file
        self.host_keys = HostKeyPolicy(
            host,
            port,
            fingerprint=ssh_fingerprint,
            known_hosts=(known_hosts,) if known_hosts else (),
            pin_option="ssh_fingerprint",
        )
        try:
            self.prompt = re.compile(prompt)
        except re.error as error:
            raise FenceError(f"command_prompt {prompt!r} is not a valid regular expression: {error}") from None
        self.login_timeout = login_timeout
        self.shell_timeout = shell_timeout
        self.power_timeout = power_timeout
        self._transport: paramiko.Transport | None = None
        self._channel: paramiko.Channel | None = None
        self._reader = PromptReader(self.prompt)
        self._owed = 0  # prompts the device still has to send (see _read_until_prompt)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> IloSshDriver:
        """The driver for the parsed options of :data:`AGENT`."""
        from highlander.adapters.ssh import parse_fingerprint

        fingerprint_text = options.get("ssh_fingerprint")
        try:
            pinned = parse_fingerprint(str(fingerprint_text)) if fingerprint_text else None
        except ValueError as error:
            raise FenceError(f"ssh_fingerprint {error}") from None
        return cls(
            str(options["ip"]),
            int(options.get("ipport") or DEFAULT_PORT),
            username=options.get("username"),
            password=options.get("password"),
            identity_file=options.get("identity_file") or None,
            known_hosts=options.get("known_hosts") or DEFAULT_KNOWN_HOSTS,
            ssh_fingerprint=pinned,
            prompt=str(options.get("command_prompt") or DEFAULT_PROMPT),
            login_timeout=_seconds(options.get("login_timeout"), 5),
            shell_timeout=_seconds(options.get("shell_timeout"), 3),
            power_timeout=_seconds(options.get("power_timeout"), 20),
        )

    def __repr__(self) -> str:  # never the password
        return f"IloSshDriver({self.where}, user={self.username!r})"

    @property
    def where(self) -> str:
        return address.join(self.host, self.port)

    # -- PowerDriver

    def connect(self) -> None:
        """Connect, check the host key, log in, open the CLP shell and wait for its prompt."""
        import paramiko

        from highlander.adapters.ssh import SshError

        key = self._identity() if self.identity_file else None
        if key is None and self._password is None:
            raise LoginDenied("give password (or password_script), or identity_file")
        if not self.username:
            raise LoginDenied("give username: the iLO account to log in as")
        sock = self._open_socket()
        transport = paramiko.Transport(sock)
        self._transport = transport
        transport.banner_timeout = self.login_timeout
        transport.handshake_timeout = self.login_timeout
        transport.auth_timeout = self.login_timeout
        try:
            self.host_keys.prefer_known_types(transport)  # reads known_hosts: fails before the handshake
        except SshError as error:
            raise FenceError(str(error)) from None
        try:
            transport.start_client(timeout=self.login_timeout)
        except paramiko.SSHException as error:
            text = str(error)
            if "banner" in text.lower() or "timed out" in text.lower():
                raise Unreachable(f"{self.where}: no SSH answer within {self.login_timeout:g} s ({text})") from None
            raise DeviceFailure(f"{self.where}: SSH negotiation failed: {text}") from None
        except (EOFError, OSError) as error:
            raise Unreachable(
                f"{self.where}: the connection closed during the SSH handshake ({error or 'EOF'})"
            ) from None
        if not (transport.is_active() and transport.initial_kex_done):
            # start_client's timeout ends the wait without an error of its own.
            raise Unreachable(f"{self.where}: no SSH answer within {self.login_timeout:g} s")
        try:
            self.host_keys.check(transport.get_remote_server_key())
        except SshError as error:
            raise FenceError(str(error)) from None
        self._authenticate(transport, key)
        try:
            channel = transport.open_session(timeout=self.login_timeout)
            channel.get_pty(term="vt100", width=200, height=24)
            channel.invoke_shell()
        except (paramiko.SSHException, EOFError, OSError) as error:
            raise DeviceFailure(f"{self.where}: the iLO would not open a CLI shell: {error}") from None
        self._channel = channel
        self._owed = 1
        banner = self._read_until_prompt(self.login_timeout, "the CLI prompt after login")
        _log().debug("login banner: %s", " | ".join(line for line in banner if line.strip()))

    def power_status(self, plug: str | None) -> str:
        return power_state(self._run("show /system1", self.shell_timeout))

    def set_power(self, plug: str | None, state: str) -> None:
        command = "start /system1" if state == ON else "power off hard"
        self._run(command, self.power_timeout, already=state)

    def reset(self, plug: str | None) -> None:
        self._run("reset /system1 hard", self.power_timeout)

    def plugs(self) -> Mapping[str, str]:
        return {}

    def close(self) -> None:
        channel, transport = self._channel, self._transport
        self._channel = self._transport = None
        try:
            if channel is not None and not channel.closed:
                channel.sendall((f"exit{EOL}").encode())
        except Exception as error:  # noqa: BLE001 - logging out is a courtesy
            _log().debug("logout: %s", error)
        for thing in (channel, transport):
            try:
                if thing is not None:
                    thing.close()
            except Exception as error:  # noqa: BLE001 - close never raises
                _log().debug("close: %s", error)
        if transport is not None and transport.is_alive():
            # paramiko's reader thread may still be failing on the closed socket (a
            # device that never sent its banner): its last log record must reach the
            # agent's log while that is still bridged, not Python's last-resort
            # stderr, where it would break the agent's one-line result.
            transport.join(CLOSE_WAIT)

    # -- connection

    def _open_socket(self) -> socket.socket:
        import socket

        try:
            return socket.create_connection((self.host, self.port), timeout=self.login_timeout)
        except socket.gaierror as error:
            raise Unreachable(f"{self.host}: cannot resolve the address ({error.strerror})") from None
        except ConnectionRefusedError:
            raise Unreachable(f"{self.where}: connection refused (is SSH enabled on the iLO?)") from None
        except TimeoutError:
            raise Unreachable(f"{self.where}: no answer within {self.login_timeout:g} s") from None
        except OSError as error:
            raise Unreachable(f"{self.where}: {error.strerror or error}") from None

    def _identity(self) -> paramiko.PKey:
        import paramiko

        path = str(self.identity_file)
        try:
            passphrase = None if self._password is None else self._password.encode()
            return paramiko.PKey.from_path(path, password=passphrase)
        except FileNotFoundError:
            raise LoginDenied(f"identity_file {path}: no such file") from None
        except PermissionError:
            raise LoginDenied(f"identity_file {path}: not readable") from None
        except (paramiko.PasswordRequiredException, TypeError):
            raise LoginDenied(f"identity_file {path} is encrypted: give its passphrase as password") from None
        except (paramiko.SSHException, ValueError) as error:
            raise LoginDenied(f"identity_file {path}: cannot load the key ({error}; wrong passphrase?)") from None

    def _authenticate(self, transport: paramiko.Transport, key: paramiko.PKey | None) -> None:
        import paramiko

        user = str(self.username)
        denied = f"{self.where}: the iLO refused the login of {user!r} (check username and password)"
        try:
            if key is not None:
                denied = f"{self.where}: the iLO refused the key in {self.identity_file} for {user!r}"
                transport.auth_publickey(user, key)
            else:
                try:
                    transport.auth_password(user, str(self._password))
                except paramiko.BadAuthenticationType as error:
                    if "keyboard-interactive" not in error.allowed_types:
                        raise
                    password = str(self._password)
                    transport.auth_interactive(user, lambda _t, _i, prompts: [password for _ in prompts])
        except paramiko.BadAuthenticationType as error:
            raise LoginDenied(
                f"{self.where}: the iLO does not accept this login method (it offers: "
                f"{', '.join(error.allowed_types) or 'nothing'})"
            ) from None
        except paramiko.AuthenticationException:
            raise LoginDenied(denied) from None
        except (paramiko.SSHException, EOFError, OSError) as error:
            raise Unreachable(f"{self.where}: the connection failed during login: {error or 'EOF'}") from None
        if not transport.is_authenticated():
            raise LoginDenied(denied)

    # -- the CLP

    def _run(self, command: str, timeout: float, already: str | None = None) -> ClpResponse:
        """Send one command line, read its answer up to the prompt, check its status."""
        if self._channel is None:
            raise DeviceFailure("not connected")
        while self._owed:
            # An earlier command timed out: its answer is read (and dropped)
            # before this command is sent, so it cannot pass for this one's.
            late = self._read_until_prompt(timeout, "the late answer to an earlier command")
            _log().debug("dropped a late answer: %s", " | ".join(x.strip() for x in late if x.strip()))
        _log().debug("sent: %s", command)
        try:
            self._channel.sendall((command + EOL).encode())
        except (OSError, EOFError) as error:
            raise DeviceFailure(f"'{command}': the iLO closed the session ({error or 'EOF'})") from None
        self._owed += 1
        lines = self._read_until_prompt(timeout, f"the answer to '{command}'")
        _log().debug("received: %s", " | ".join(line.strip() for line in lines if line.strip()))
        response = parse_response(command, lines)
        if response.ok:
            return response
        match = ALREADY.search(response.message)
        if already is not None and match and match.group(1).lower() == already:
            _log().info("%s: %s", command, response.message)
            return response
        raise DeviceFailure(response.failure())

    def _read_until_prompt(self, timeout: float, what: str) -> list[str]:
        """The output up to the next prompt.

        Every command line (and the login) is answered by exactly one prompt;
        :attr:`_owed` counts those not yet read. A command is only sent once
        nothing is owed, so a prompt always ends the output read so far.
        """
        import time

        import paramiko

        channel = self._channel
        assert channel is not None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                partial = " | ".join(line.strip() for line in self._reader.lines[-3:] if line.strip())
                raise DeviceFailure(
                    f"{self.where}: no prompt within {timeout:g} s waiting for {what}"
                    + (f" (last output: {partial})" if partial else "")
                )
            channel.settimeout(min(left, 0.5))
            try:
                data = channel.recv(4096)
            except TimeoutError:
                continue
            except (OSError, EOFError, paramiko.SSHException) as error:
                raise DeviceFailure(f"{self.where}: the session failed waiting for {what}: {error}") from None
            if not data:
                raise DeviceFailure(f"{self.where}: the iLO closed the session waiting for {what}")
            if self._reader.feed(data):
                self._owed = max(0, self._owed - 1)
                return self._reader.take()


OPTIONS = (
    *(option.replace(default=DEFAULT_PORT) if name == "ipport" else option for name, option in COMMON.items()),
    Option(
        "ssh",
        "Use SSH connection",
        short="x",
        aliases=("secure",),
        type="boolean",
        default=True,
        longdesc="Always on: this agent only speaks SSH (accepted for fence_ilo_ssh's "
        "configurations; 0 changes nothing).",
    ),
    Option(
        "identity_file",
        "Identity file (private key) for SSH",
        short="k",
        metavar="filename",
        longdesc="Log in with this private key instead of a password; password is then the "
        "key's passphrase, if it has one.",
    ),
    Option(
        "known_hosts",
        "OpenSSH known_hosts file to check the iLO's host key against",
        default=DEFAULT_KNOWN_HOSTS,
        metavar="file",
        longdesc="The host key must be listed there for the ip (as [ip]:port for a port other "
        "than 22); an unknown or different key is refused, never added. Not used when "
        "ssh_fingerprint is set.",
    ),
    Option(
        "ssh_fingerprint",
        "Pinned SHA256 fingerprint of the iLO's SSH host key",
        metavar="SHA256:...",
        longdesc="The host key's fingerprint as 'ssh-keygen -lf' prints it (SHA256:...). When "
        "set, the host key must match it and known_hosts is not consulted.",
    ),
    Option(
        "command_prompt",
        "Force Python regex for command prompt",
        short="c",
        aliases=("cmd_prompt",),
        default=DEFAULT_PROMPT,
        metavar="prompt",
        longdesc="Regular expression for the CLI prompt, matched against the last, unterminated line of output.",
    ),
    Option("shell_timeout", "Wait X seconds for cmd prompt after issuing command", type="second", default=3, order=200),
)

AGENT = FenceAgent(
    "fence_highlander_ilo_ssh",
    "Fence agent for HP iLO over SSH",
    "fence_highlander_ilo_ssh powers a machine off, on or resets it through its HPE iLO's SMASH "
    "CLP over SSH (power off hard, start /system1, reset /system1 hard) and reads show /system1's "
    "enabledstate to verify the result. The iLO's host key must be pinned (ssh_fingerprint) or "
    "listed in known_hosts; an unknown or changed key is refused. Options follow fence_ilo_ssh's "
    "names.",
    vendor_url="https://www.hpe.com",
    options=OPTIONS,
    driver=IloSshDriver.from_options,
)
