"""Running programs on a cluster node over SSH, with the runner's interface.

The drills on a real cluster look at it exactly as they look at the lab:
``crm_mon`` through a :class:`~highlander.adapters.runner.CommandRunner`-shaped
object. :class:`SshRunner` is that object for a remote node: one paramiko
connection, kept open between commands (a drill polls every fraction of a
second) and opened again when the node went away, as it does when the drill
cuts its power.

Host keys are checked, never learned: an unknown or changed key refuses the
connection, and the error says which known_hosts file was used.
"""

from __future__ import annotations

import shlex
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from highlander.adapters.runner import CommandError, Result

if TYPE_CHECKING:
    import paramiko

CONNECT_TIMEOUT = 5.0


class SshError(RuntimeError):
    """The node's host key or our credentials are wrong: retrying cannot help,
    so this is raised, and the message says how to fix it. A node that does
    not answer is no error of this kind: its commands exit 255, as with ssh(1)."""


class SshRunner:
    """Runs argv on ``host`` as ``user``; argv is quoted for the remote shell.

    ``known_hosts`` None uses the system's and the user's known_hosts files;
    ``key_file`` None lets paramiko try the user's keys and agent. A host that
    did not answer is not asked again for ``retry_after`` seconds (its commands
    exit 255 at once): a caller polling several hosts a second would otherwise
    wait out a connect timeout for every question to a powered-off one.
    """

    def __init__(self, host: str, *, user: str = "root", port: int = 22, key_file: Path | None = None,
                 known_hosts: Path | None = None, retry_after: float = 0.0) -> None:  # fmt: skip
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

        client = paramiko.SSHClient()
        try:
            if self.known_hosts is None:
                client.load_system_host_keys()
            else:
                client.load_host_keys(str(self.known_hosts))
        except OSError as exc:
            raise SshError(f"cannot read the known_hosts file {self.known_hosts}: {exc.strerror}") from None
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        where = f"{self.user}@{self.host}:{self.port}"
        try:
            client.connect(
                self.host, port=self.port, username=self.user, timeout=CONNECT_TIMEOUT,
                banner_timeout=CONNECT_TIMEOUT, auth_timeout=CONNECT_TIMEOUT,
                key_filename=str(self.key_file) if self.key_file else None,
            )  # fmt: skip
        except paramiko.BadHostKeyException:
            client.close()
            raise SshError(f"{where}: the host key differs from the one in "
                           f"{self.known_hosts or '~/.ssh/known_hosts'}; check the host, then fix that file") from None  # fmt: skip
        except paramiko.AuthenticationException as exc:
            client.close()
            raise SshError(f"{where}: authentication failed ({exc}); check the user and --ssh-key") from None
        except paramiko.SSHException as exc:
            client.close()
            if "not found in known_hosts" in str(exc):
                raise SshError(f"{where}: unknown host key; add it to {self.known_hosts or '~/.ssh/known_hosts'} "
                               f"(ssh-keyscan, then compare the fingerprint with the host's own)") from None  # fmt: skip
            raise
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
