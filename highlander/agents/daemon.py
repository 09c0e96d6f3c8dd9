"""The life of one resource instance's daemon, shared by the agents.

Where its PID file and log go, reading its configuration file, starting it
detached and waiting until it is ready (or leaving nothing behind), finding
it again on monitor, and stopping every process of it: SIGTERM, then
SIGKILL in time for the stop to finish within Pacemaker's timeout. Only
``os`` and ``/proc`` are used on the monitor path.
"""

from __future__ import annotations

from highlander.adapters import process
from highlander.ocf import codes
from highlander.ocf.codes import OCFError

TYPE_CHECKING = False  # typing's constant, without importing typing: see highlander/__init__.py
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path
    from subprocess import Popen
    from typing import TypeVar

    from highlander.ocf.runtime import Resource

    Config = TypeVar("Config")

RUN_DIR = "/run/highlander"
LOG_DIR = "/var/log/highlander"
# How often start asks whether the daemon is ready: a failover waits on it
# (each poll is one cheap health request), so well under a block of a chain.
POLL_SECONDS = 0.1


def read_config(res: Resource, load: Callable[[Path], Config]) -> Config:
    """The daemon's configuration file (the ``config`` parameter), read by ``load``.

    As OCF sees its problems: a file that cannot be read is not installed
    (OCF_ERR_INSTALLED: the resource may run on a node that has it); any
    other problem is the configuration's (OCF_ERR_CONFIGURED).
    """
    from pathlib import Path

    from highlander.signstate.config import CONFIG_UNREADABLE, ConfigError

    try:
        return load(Path(str(res.params["config"])))
    except ConfigError as exc:
        code = codes.ERR_INSTALLED if CONFIG_UNREADABLE in exc.codes else codes.ERR_CONFIGURED
        raise OCFError(code, str(exc)) from None


class Daemon:
    """One resource instance's daemon (and anything it forked)."""

    def __init__(self, agent: str, res: Resource, pidfile: object = None, logfile: object = None) -> None:
        self.res = res
        self.tag = process.marker(agent, res.instance)
        safe = res.instance.replace("/", "_")
        self.pidfile = str(pidfile or f"{RUN_DIR}/{agent}-{safe}.pid")
        self.logfile = str(logfile or f"{LOG_DIR}/{agent}-{safe}.log")

    def pid(self) -> int | None:
        """The daemon's PID when it runs."""
        return process.running_pid(self.pidfile, self.tag)

    def tagged(self, env: Mapping[str, str]) -> dict[str, str]:
        """``env`` plus the marker every process of this resource carries."""
        key, _, value = self.tag.partition("=")
        return {**env, key: value}

    def spawn(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str = "/",
        user: str | None = None,
        stdin: bytes | None = None,
    ) -> Popen[bytes]:
        """Start the daemon detached and record its PID; ``stdin`` is what
        it reads on standard input (default: nothing)."""
        try:
            daemon = process.spawn(argv, env=self.tagged(env), cwd=cwd, logfile=self.logfile, user=user, stdin=stdin)
        except OSError as exc:
            # Permission problems are the host's; anything else (exec format
            # error, a broken interpreter line) means the program is not usable.
            code = codes.ERR_PERM if isinstance(exc, PermissionError) else codes.ERR_INSTALLED
            raise OCFError(code, f"cannot run {argv[0]!r}: {exc.strerror or exc}") from None
        process.write_pidfile(self.pidfile, daemon.pid)
        self.res.log.info(f"started {argv[0]} as PID {daemon.pid}")
        return daemon

    def wait_ready(self, daemon: Popen[bytes], ready: Callable[[], bool], state: str = "ready") -> None:
        """Poll ``ready()`` until it is true. It raises OCFError with the
        reason while the daemon is not ready yet. If the daemon exits or the
        start timeout comes near, every process of it is stopped and the start
        fails with the last reason."""
        import time

        margin = min(5.0, self.res.timeout * 0.1)
        last = "no answer yet"
        try:
            while True:
                status = daemon.poll()
                if status is not None:
                    raise OCFError(
                        codes.ERR_GENERIC, f"daemon exited with status {status} during start; see {self.logfile}"
                    )
                try:
                    if ready():
                        return
                except OCFError as exc:
                    last = exc.reason
                if self.res.time_left() <= margin:
                    raise OCFError(codes.ERR_GENERIC, f"daemon not {state} within the start timeout: {last}")
                time.sleep(POLL_SECONDS)
        except OCFError:
            self.terminate(grace=min(5.0, max(self.res.time_left() - 1.0, 0.0)))
            raise

    def terminate(self, grace: float) -> list[int]:
        """SIGTERM every process of the resource, SIGKILL what is left after
        ``grace`` seconds; returns the processes that survived even that."""
        import signal

        leader = self.pid()
        process.signal_processes(process.find_tagged(self.tag), signal.SIGTERM, leader)
        left = process.wait_gone(self.tag, grace)
        if left:
            self.res.log.warning(f"processes {left} still running {grace:.0f} s after SIGTERM; sending SIGKILL")
            process.signal_processes(left, signal.SIGKILL, leader)
            left = process.wait_gone(self.tag, min(5.0, max(self.res.time_left() - 0.5, 0.5)))
        return left

    def stop(self, stop_timeout: int = 0) -> int:
        """Stop every process of the resource; succeeds only when none is left."""
        if self.pid() is None and not process.find_tagged(self.tag):
            process.remove_file(self.pidfile)
            self.res.log.info("already stopped")
            return codes.SUCCESS
        kill_reserve = min(5.0, self.res.timeout * 0.25)
        grace = max(self.res.time_left() - kill_reserve, 0.0)
        if stop_timeout:
            grace = min(grace, stop_timeout)
        left = self.terminate(grace)
        if left:
            raise OCFError(codes.ERR_GENERIC, f"processes {left} survived SIGKILL")
        process.remove_file(self.pidfile)
        self.res.log.info("stopped")
        return codes.SUCCESS

    def running(self) -> bool:
        """Monitor at depth 0: True when the daemon runs, False when it is
        cleanly stopped; raises OCFError for anything in between."""
        if self.pid() is not None:
            return True
        strays = process.find_tagged(self.tag)
        if strays:
            raise OCFError(codes.ERR_GENERIC, f"processes {strays} of this resource run without a valid PID file")
        recorded = process.read_pidfile(self.pidfile)
        if recorded is not None and not self.res.is_probe:
            raise OCFError(codes.NOT_RUNNING, f"daemon (PID {recorded} in {self.pidfile}) is gone")
        return False
