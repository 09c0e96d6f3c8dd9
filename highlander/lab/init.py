"""PID 1 of a lab node's PID namespace.

``pacemakerd`` cannot be the namespace's init: it waits only for the
daemons it launched itself, so a process re-parented to it (the orphan of
an agent's double-forked daemon, corosync after it daemonizes) stays a
zombie forever once it dies, and a monitor that looks for the daemon's PID
sees it "alive". This init does what a real machine's init does: it reaps
every child, whoever started it.

It also turns the namespace into a node: it makes every mount private,
bind-mounts the node's own state directories, puts fresh tmpfs on /run and
/dev/shm, sets the hostname, starts the programs in order (each one ready
before the next; the node lives as long as the last one, pacemakerd, does)
and reports its progress in a small JSON status file.

SIGTERM (or SIGINT, SIGHUP) is an orderly shutdown: the programs get
SIGTERM in reverse order, each a grace period to exit. SIGKILL from outside
is a power cut: the kernel kills every process of the namespace with it.

Run as ``python -m highlander.lab.init SPEC.json``; only the standard
library and the command runner are imported.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from highlander.adapters.runner import CommandRunner

log = logging.getLogger("highlander.lab.init")

STATUS_FILE = "init-status.json"


@dataclass(frozen=True)
class Mount:
    """A bind mount of ``source`` on ``target``, or a fresh tmpfs when no source."""

    target: str
    source: str | None = None
    options: str = ""


@dataclass(frozen=True)
class Program:
    """A program the init starts and supervises.

    ``ready`` is a command polled until it exits 0 before the next program
    starts (corosync must serve IPC before pacemakerd connects to it).
    """

    name: str
    argv: tuple[str, ...]
    ready: tuple[str, ...] = ()
    ready_timeout: float = 30.0


@dataclass(frozen=True)
class InitSpec:
    """Everything the init needs, written by the node as JSON."""

    hostname: str
    status_dir: str
    programs: tuple[Program, ...]
    mounts: tuple[Mount, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    grace: float = 30.0

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> InitSpec:
        data = json.loads(path.read_text())
        return cls(
            hostname=data["hostname"],
            status_dir=data["status_dir"],
            programs=tuple(
                Program(
                    name=p["name"],
                    argv=tuple(p["argv"]),
                    ready=tuple(p.get("ready", ())),
                    ready_timeout=float(p.get("ready_timeout", 30.0)),
                )
                for p in data["programs"]
            ),
            mounts=tuple(Mount(**m) for m in data.get("mounts", ())),
            env=dict(data.get("env", {})),
            grace=float(data.get("grace", 30.0)),
        )


def read_status(status_dir: Path) -> dict[str, Any] | None:
    """The init's last reported status, or None before it wrote one."""
    try:
        status: dict[str, Any] = json.loads((status_dir / STATUS_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return status


class StatusFile:
    """Reports the init's phase to the node outside the namespaces.

    The directory is opened before anything is mounted, so the file stays
    reachable even if a mount later hides the directory's path.
    """

    def __init__(self, directory: str) -> None:
        self._dir = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)

    def write(self, phase: str, **fields: Any) -> None:
        data = json.dumps({"phase": phase, "time": time.time(), **fields}).encode()
        tmp = f".{STATUS_FILE}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=self._dir)
        try:
            os.write(fd, data + b"\n")
        finally:
            os.close(fd)
        os.replace(tmp, STATUS_FILE, src_dir_fd=self._dir, dst_dir_fd=self._dir)


class Shutdown(Exception):
    """A signal asked the node to shut down."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class InitError(RuntimeError):
    """The node could not be brought up."""


class Signals:
    """Turns signals into wake-ups of one select loop.

    Handlers only record what arrived; the loop acts on it at points of its
    choosing, so a signal never interrupts the bookkeeping of a reaped
    child. A PID namespace's init receives only signals it has handlers
    for, which is why SIGCHLD gets one too.
    """

    STOP = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self) -> None:
        self.stop: int | None = None
        self._read, write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        for signum in self.STOP:
            signal.signal(signum, self._on_stop)
        signal.signal(signal.SIGCHLD, self._on_child)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        if self.stop is None:
            self.stop = signum

    def _on_child(self, signum: int, frame: FrameType | None) -> None:
        pass  # the wake-up byte is all that is needed

    def check(self) -> None:
        """Raise :class:`Shutdown` if a stop signal has arrived."""
        if self.stop is not None:
            raise Shutdown(self.stop)

    def wait(self, timeout: float | None) -> None:
        """Sleep until any signal arrives or ``timeout`` seconds pass."""
        ready, _, _ = select.select([self._read], [], [], timeout)
        if ready:
            try:
                while os.read(self._read, 512):
                    pass
            except BlockingIOError:
                pass


def exit_code(status: int) -> int:
    """A wait status as a shell would report it (128 + signal when killed)."""
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


class Init:
    """Prepares the namespace, runs the programs and reaps every process."""

    def __init__(self, spec: InitSpec, status: StatusFile, runner: CommandRunner, signals: Signals) -> None:
        self.spec = spec
        self.status = status
        self.runner = runner
        self.signals = signals
        self.children: dict[int, str] = {}  # live programs: pid -> name
        self.pids: dict[str, int] = {}
        self.exit_codes: dict[str, int] = {}
        self._procs: list[object] = []  # keeps Popen objects from polling on collection

    def run(self) -> int:
        """Bring the node up, supervise it, and take it down; the exit code."""
        code = 1
        try:
            self.status.write("preparing")
            self.prepare()
            self.status.write("starting")
            self.start_programs()
            self.status.write("running", pids=self.pids)
            code = self.supervise()
            reason = f"{self.spec.programs[-1].name} exited with {code}"
        except Shutdown as exc:
            code, reason = 0, f"received {exc}"
        except Exception as exc:  # report any failure, then still stop cleanly
            log.exception("node failed")
            reason = f"failed: {exc}"
        log.info("stopping: %s", reason)
        self.status.write("stopping", pids=self.pids, detail=reason)
        self.stop_programs()
        self.status.write("exited", pids=self.pids, detail=reason, code=code)
        return code

    def prepare(self) -> None:
        """Private mounts first, so nothing done here propagates to the host."""
        self._run("mount", "--make-rprivate", "/")
        for m in self.spec.mounts:
            if m.source is not None:
                self._run("mount", "--bind", m.source, m.target)
        # tmpfs last: a bind source below /run must be bound before /run is hidden
        for m in self.spec.mounts:
            if m.source is None:
                self._run("mount", "-t", "tmpfs", "-o", m.options or "mode=0755", "tmpfs", m.target)
        socket.sethostname(self.spec.hostname)
        self.signals.check()

    def _run(self, *argv: str) -> None:
        self.runner.run(argv, check=True, timeout=30)

    def start_programs(self) -> None:
        for program in self.spec.programs:
            self.signals.check()
            proc = self.runner.spawn(program.argv)
            self._procs.append(proc)
            self.children[proc.pid] = program.name
            self.pids[program.name] = proc.pid
            log.info("started %s (pid %d)", program.name, proc.pid)
            if program.ready:
                self.wait_ready(program, proc.pid)

    def wait_ready(self, program: Program, pid: int) -> None:
        """Poll ``program.ready`` until it succeeds; fail if the program dies."""
        deadline = time.monotonic() + program.ready_timeout
        while True:
            self.reap()
            self.signals.check()
            if pid not in self.children:
                raise InitError(f"{program.name} exited with {self.exit_codes[program.name]}")
            if self.runner.run(program.ready, timeout=10).ok:
                log.info("%s is ready", program.name)
                return
            if time.monotonic() >= deadline:
                raise InitError(f"{program.name} not ready after {program.ready_timeout:g} s")
            self.signals.wait(0.1)

    def supervise(self) -> int:
        """Reap until the last program exits; its exit code."""
        main = self.spec.programs[-1].name
        main_pid = self.pids[main]
        while True:
            self.reap()
            if main_pid not in self.children:
                return self.exit_codes.get(main, 1)
            self.signals.check()
            self.signals.wait(None)

    def reap(self) -> None:
        """Collect every exited child, programs and orphans alike."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            name = self.children.pop(pid, None)
            if name is not None:
                self.exit_codes[name] = exit_code(status)
                log.info("%s (pid %d) exited with %d", name, pid, self.exit_codes[name])

    def stop_programs(self) -> None:
        """SIGTERM each live program, newest first, and wait up to the grace period.

        Whatever is still running afterwards dies with the init: the kernel
        kills every process of a PID namespace whose init exits.
        """
        for program in reversed(self.spec.programs):
            pid = self.pids.get(program.name)
            if pid is None or pid not in self.children:
                continue
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + self.spec.grace
            while True:
                self.reap()
                remaining = deadline - time.monotonic()
                if pid not in self.children or remaining <= 0:
                    break
                self.signals.wait(min(remaining, 0.5))
            if pid in self.children:
                log.warning("%s did not exit within %g s", program.name, self.spec.grace)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m highlander.lab.init SPEC.json", file=sys.stderr)
        return 2
    spec = InitSpec.load(Path(args[0]))
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {spec.hostname} init: %(message)s",
        stream=sys.stderr,
    )
    signals = Signals()
    status = StatusFile(spec.status_dir)
    return Init(spec, status, CommandRunner(env=spec.env), signals).run()


if __name__ == "__main__":
    sys.exit(main())
