"""The one way highlander runs external programs (pcs, crm_*, cibadmin, ip, ...).

Every adapter takes a :class:`CommandRunner` so that tests of the layers above
can substitute a fake, and so that logging, timeouts and the environment are
handled in one place. Secrets are passed on standard input, never in argv.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Mapping, Sequence
from typing import IO, NamedTuple, Protocol, Union

Output = Union[int, IO[bytes], None]

log = logging.getLogger(__name__)

# Where Debian puts the cluster tools and everything they call.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def system_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with the sbin directories on PATH.

    Cluster tools live in /usr/sbin, which a non-login root shell or a
    virtual environment's PATH may lack.
    """
    env = dict(os.environ if base is None else base)
    path = env.get("PATH", "").split(":") if env.get("PATH") else []
    for directory in SYSTEM_PATH.split(":"):
        if directory not in path:
            path.append(directory)
    env["PATH"] = ":".join(path)
    env.setdefault("LANG", "C.UTF-8")
    return env


class Result(NamedTuple):
    """What a finished program left behind."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class CommandError(RuntimeError):
    """A program failed where the caller needed it to succeed."""

    def __init__(self, result: Result) -> None:
        self.result = result
        detail = (result.stderr or result.stdout).strip().splitlines()
        super().__init__(f"{result.argv[0]} exited with {result.returncode}" + (f": {detail[-1]}" if detail else ""))


class Runs(Protocol):
    """What an adapter that only runs programs to their end needs: a
    :class:`CommandRunner` here, or :class:`~highlander.adapters.ssh.SshRunner`
    on another machine."""

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: str | None = None,
        timeout: float | None = 60,
        check: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> Result: ...


class CommandRunner:
    """Runs programs with a fixed base environment and an optional prefix.

    ``prefix`` lets one runner execute everything inside a namespace
    (``nsenter --target PID ...``) without the callers knowing.
    """

    def __init__(
        self,
        prefix: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.prefix = tuple(prefix)
        self.env = dict(os.environ if env is None else env)

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: str | None = None,
        timeout: float | None = 60,
        check: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> Result:
        full = self.prefix + tuple(argv)
        log.debug("running %s", " ".join(full))
        environment = {**self.env, **(env or {})}
        try:
            proc = subprocess.run(
                full,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=environment,
            )
        except FileNotFoundError:
            result = Result(full, 127, "", f"{full[0]}: command not found")
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
            result = Result(full, 124, out, f"{full[0]}: timed out after {timeout} s")
        else:
            result = Result(full, proc.returncode, proc.stdout, proc.stderr)
        if check and not result.ok:
            raise CommandError(result)
        return result

    def spawn(
        self,
        argv: Sequence[str],
        *,
        stdout: Output = None,
        stderr: Output = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        new_session: bool = False,
    ) -> subprocess.Popen[bytes]:
        """Start a long-running program and return without waiting for it.

        For daemons and supervisors whose lifetime the caller manages: the
        caller owns the returned process and must wait for it. Standard input
        is /dev/null so the program never competes for a terminal;
        ``new_session`` keeps a terminal's Ctrl-C away from it, leaving its
        shutdown to the caller. A missing program raises :class:`CommandError`
        with return code 127, like :meth:`run` reports it.
        """
        full = self.prefix + tuple(argv)
        log.debug("spawning %s", " ".join(full))
        environment = {**self.env, **(env or {})}
        try:
            return subprocess.Popen(
                full,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env=environment,
                cwd=cwd,
                start_new_session=new_session,
            )
        except FileNotFoundError:
            raise CommandError(Result(full, 127, "", f"{full[0]}: command not found")) from None
