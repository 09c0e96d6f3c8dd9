"""SSH with paramiko: the one host-key policy, and running programs on a cluster node.

:class:`HostKeyPolicy` is the rule for every SSH connection highlander
makes (to a cluster node, to an iLO): a host key is accepted only if it is
the pinned one (a SHA256 fingerprint, as ``ssh-keygen -lf`` prints it) or,
without a pin, one that a known_hosts file lists for the host. An unknown
or changed key is refused, never learned, and the refusal names the key
the host showed and how to pin it once checked on the host itself.

The drills on a real cluster look at it exactly as they look at the lab:
``crm_mon`` through a :class:`~highlander.adapters.runner.CommandRunner`-shaped
object. :class:`SshRunner` is that object for a remote node: one paramiko
connection, kept open between commands (a drill polls every fraction of a
second) and opened again when the node went away, as it does when the drill
cuts its power.
"""

from __future__ import annotations

import logging
import re
import shlex
import socket
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from highlander.adapters.runner import CommandError, Result

if TYPE_CHECKING:
    import paramiko

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
# OpenSSH's own files, the system's and the user's: the default of a policy without known_hosts.
SYSTEM_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts", "~/.ssh/known_hosts")
FINGERPRINT = re.compile(r"SHA256:([A-Za-z0-9+/]{43})=?")


class SshError(RuntimeError):
    """The host key or our credentials are wrong: retrying cannot help, so
    this is raised, and the message says how to fix it. A node that does
    not answer is no error of this kind: its commands exit 255, as with ssh(1)."""


def fingerprint(key: paramiko.PKey) -> str:
    """``SHA256:…``, the way ``ssh-keygen -lf`` and OpenSSH print it."""
    import base64
    import hashlib

    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def parse_fingerprint(text: str) -> str:
    """The ``SHA256:…`` in ``text`` (a bare fingerprint or a whole ``ssh-keygen -lf`` line).

    Raises ValueError for anything else: an MD5 fingerprint names a key too
    weakly to pin it.
    """
    match = FINGERPRINT.search(text)
    if not match:
        raise ValueError(
            f"{text.strip()!r} is not a SHA256 fingerprint: give it as 'ssh-keygen -lf' prints it "
            "(SHA256: and 43 base64 characters); MD5 fingerprints are not accepted"
        )
    return "SHA256:" + match.group(1)


class HostKeyPolicy:
    """Which host key ``host``:``port`` may show: the pinned one, or one known_hosts lists.

    ``fingerprint`` (``SHA256:…``) pins the key; known_hosts is then not read.
    Without it the key must be listed for the host (as ``host`` on port 22,
    ``[host]:port`` otherwise; hashed names too) in one of ``known_hosts``
    (default: OpenSSH's system and user files; a missing file lists
    nothing). ``pin_option`` is the name under which the caller's operator
    sets a fingerprint, for the refusal's advice. Use it with a paramiko
    Transport (:meth:`prefer_known_types` before the handshake, :meth:`check`
    after) or an SSHClient (:meth:`apply_to`).
    """

    def __init__(
        self,
        host: str,
        port: int = 22,
        *,
        fingerprint: str | None = None,
        known_hosts: Iterable[str | Path] = SYSTEM_KNOWN_HOSTS,
        pin_option: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.fingerprint = fingerprint
        self.known_hosts = tuple(str(Path(f).expanduser()) for f in known_hosts)
        self.pin_option = pin_option
        self._known: dict[str, paramiko.PKey] | None = None

    @property
    def name(self) -> str:
        """The host's name in an OpenSSH known_hosts file."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    @property
    def where(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def _files(self) -> str:
        return " or ".join(self.known_hosts) or "a known_hosts file"

    def known_keys(self) -> dict[str, paramiko.PKey]:
        """The keys the known_hosts files list for this host, by key type (none with a pin)."""
        if self._known is None:
            import paramiko

            keys = paramiko.HostKeys()
            if not self.fingerprint:
                for path in self.known_hosts:
                    try:
                        keys.load(path)
                    except FileNotFoundError:
                        continue
                    except (OSError, paramiko.SSHException) as error:
                        raise SshError(f"known_hosts {path}: cannot read it: {error}") from None
            entry = keys.lookup(self.name)
            self._known = dict(entry) if entry else {}
        return self._known

    def prefer_known_types(self, transport: paramiko.Transport) -> None:
        """Negotiate a known key's type first (a host can have several keys)."""
        known = self.known_keys()
        if not known:
            return
        wanted: list[str] = []
        for kind in known:
            wanted += ["rsa-sha2-512", "rsa-sha2-256"] if kind == "ssh-rsa" else [kind]
        options = transport.get_security_options()
        available = list(options.key_types)
        first = [k for k in wanted if k in available]
        options.key_types = first + [k for k in available if k not in first]

    def check(self, key: paramiko.PKey) -> None:
        """Accept the pinned fingerprint, else a key known_hosts lists; raise SshError for any other."""
        refused = self.refusal(key)
        if refused is not None:
            raise refused

    def refusal(self, key: paramiko.PKey) -> SshError | None:
        """Why ``key`` is refused (an SshError to raise), or None if it is accepted."""
        import hmac

        seen = fingerprint(key)
        kind = key.get_name()
        if self.fingerprint:
            if hmac.compare_digest(seen, self.fingerprint):
                log.debug("%s: host key %s %s is the pinned one", self.where, kind, seen)
                return None
            pinned = f"{self.pin_option} {self.fingerprint}" if self.pin_option else f"the pinned {self.fingerprint}"
            repin = f"set {self.pin_option}={seen}" if self.pin_option else f"pin {seen}"
            return SshError(
                f"{self.where}: host key {kind} {seen} does not match {pinned}; refusing to log in (if the "
                f"host's key really changed, check the new one on the host itself, then {repin})"
            )
        known = self.known_keys()
        listed = known.get(kind)
        if listed is not None and listed.asbytes() == key.asbytes():
            log.debug("%s: host key %s %s is listed in %s", self.where, kind, seen, self._files)
            return None
        if known:
            others = ", ".join(f"{k} {fingerprint(v)}" for k, v in known.items())
            pin = f" or set {self.pin_option}={seen}" if self.pin_option else ""
            return SshError(
                f"{self.where}: host key {kind} {seen} is not the one {self._files} lists for {self.name} "
                f"({others}); refusing to log in: the key changed or someone is in between. If the host's key "
                f"really changed, check it on the host itself, then update {self._files}{pin}"
            )
        pin = f"pin it with {self.pin_option}={seen} or " if self.pin_option else ""
        return SshError(
            f"{self.where}: unknown host key {kind} {seen}; refusing to log in. After checking that fingerprint "
            f"on the host itself, {pin}add the key to {self._files} as '{self.name} {kind} <base64 key>' "
            "(ssh-keyscan prints that line)"
        )

    def apply_to(self, client: paramiko.SSHClient) -> None:
        """Make an SSHClient follow this policy: it knows this host's listed keys
        only (so it negotiates their type first and refuses another as changed,
        a BadHostKeyException to be turned into :meth:`check`'s refusal), and
        asks :meth:`missing_host_key` about a host it knows no key of."""
        host_keys = client.get_host_keys()
        for kind, key in self.known_keys().items():
            host_keys.add(self.name, kind, key)
        client.set_missing_host_key_policy(self)  # type: ignore[arg-type]

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        """paramiko's MissingHostKeyPolicy interface: accept the pinned key, refuse any other."""
        self.check(key)


class SshRunner:
    """Runs argv on ``host`` as ``user``; argv is quoted for the remote shell.

    Host keys follow :class:`HostKeyPolicy`: ``known_hosts`` None uses the
    system's and the user's known_hosts files; ``key_file`` None lets
    paramiko try the user's keys and agent. A host that
    did not answer is not asked again for ``retry_after`` seconds (its commands
    exit 255 at once): a caller polling several hosts a second would otherwise
    wait out a connect timeout for every question to a powered-off one.
    """

    def __init__(
        self,
        host: str,
        *,
        user: str = "root",
        port: int = 22,
        key_file: Path | None = None,
        known_hosts: Path | None = None,
        retry_after: float = 0.0,
    ) -> None:
        self.host = host
        self.user = user
        self.port = port
        self.key_file = key_file
        self.known_hosts = known_hosts
        self.retry_after = retry_after
        self._silent_until = 0.0
        self._client: paramiko.SSHClient | None = None
        # Threads may share the connection (a drill cuts two nodes' power at once
        # from one peer); only opening it needs one at a time.
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SshRunner({self.user}@{self.host}:{self.port})"

    def _connect(self) -> paramiko.SSHClient:
        import paramiko

        policy = HostKeyPolicy(
            self.host, self.port, known_hosts=SYSTEM_KNOWN_HOSTS if self.known_hosts is None else (self.known_hosts,)
        )
        client = paramiko.SSHClient()
        where = f"{self.user}@{self.host}:{self.port}"
        try:
            policy.apply_to(client)
            client.connect(
                self.host,
                port=self.port,
                username=self.user,
                timeout=CONNECT_TIMEOUT,
                banner_timeout=CONNECT_TIMEOUT,
                auth_timeout=CONNECT_TIMEOUT,
                key_filename=str(self.key_file) if self.key_file else None,
            )
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise policy.refusal(exc.key) or SshError(f"{where}: paramiko refused the host key {exc}") from None
        except paramiko.AuthenticationException as exc:
            client.close()
            raise SshError(f"{where}: authentication failed ({exc}); check the user and --ssh-key") from None
        except BaseException:
            client.close()
            raise
        return client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def gone(self) -> None:
        """The host went away (its power was cut): drop the connection, which would
        otherwise wait for a timeout, and do not ask for ``retry_after`` seconds."""
        self.close()
        self._silent_until = time.monotonic() + self.retry_after

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: str | None = None,
        timeout: float | None = 60,
        check: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> Result:
        """Like :meth:`CommandRunner.run`; a node that does not answer is exit 255, as with ssh(1).

        Raises :class:`SshError` for a wrong host key or credentials."""
        command = shlex.join([*(["env", *(f"{k}={v}" for k, v in env.items())] if env else []), *argv])
        full = (f"ssh:{self.host}", *argv)
        if time.monotonic() < self._silent_until:
            result = Result(full, 255, "", f"{self.host}: did not answer; asked again after {self.retry_after:g} s")
        else:
            result = self._run(command, full, stdin, timeout)
        if check and not result.ok:
            raise CommandError(result)
        return result

    def _run(self, command: str, full: tuple[str, ...], stdin: str | None, timeout: float | None) -> Result:
        import paramiko

        try:
            with self._lock:
                if self._client is None or not self._transport_alive():
                    self.close()
                    self._client = self._connect()
                client = self._client
            channel_in, channel_out, channel_err = client.exec_command(command, timeout=timeout)
            if stdin is not None:
                channel_in.write(stdin.encode())
            channel_in.channel.shutdown_write()
            stdout = channel_out.read().decode(errors="replace")
            stderr = channel_err.read().decode(errors="replace")
            code = channel_out.channel.recv_exit_status()
        except (socket.timeout, TimeoutError):
            self.gone()
            return Result(full, 124, "", f"{self.host}: timed out after {timeout} s")
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.gone()
            return Result(full, 255, "", f"{self.host}: {exc}")
        return Result(full, code, stdout, stderr)

    def _transport_alive(self) -> bool:
        transport = self._client.get_transport() if self._client is not None else None
        return transport is not None and transport.is_active()
