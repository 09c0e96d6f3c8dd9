"""One Pacemaker/Corosync node isolated in Linux namespaces on this host.

A node is a network namespace (its "machine with a network card", which
outlives power cycles so the lab can cable it to a bridge) plus, while it is
powered on, mount, UTS and PID namespaces created together by ``unshare``.
The PID namespace's init is :mod:`highlander.lab.init`; it binds the node's
own state directories (from the node's work directory) over the paths
Corosync and Pacemaker use, puts fresh tmpfs on /run and /dev/shm (libqb's
IPC files are named after PIDs, which repeat across PID namespaces), then
starts corosync and pacemakerd.

Powering off kills that init by PID: the kernel then kills every process
of the node at once, exactly like a power cut. Nothing is ever killed by
name or pattern, only by PIDs this object recorded, and only after checking
they still belong to the node's PID namespace.
"""

from __future__ import annotations

import grp
import json
import logging
import os
import pwd
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from xml.etree import ElementTree

import highlander
from highlander.adapters.runner import SYSTEM_PATH, CommandError, CommandRunner, system_env
from highlander.adapters.waiting import wait_until
from highlander.lab.init import STATUS_FILE, InitSpec, Mount, Program, read_status

log = logging.getLogger(__name__)


CLUSTER_USER = "hacluster"
CLUSTER_GROUP = "haclient"


@dataclass(frozen=True)
class StateDir:
    """A directory of the node's own state, bind-mounted over ``path`` inside."""

    path: str
    mode: int
    cluster_owned: bool = False  # hacluster:haclient, as the Debian packages ship it
    mounted: bool = False  # the top of a bind mount (subdirectories are not)


STATE_DIRS: tuple[StateDir, ...] = (
    StateDir("/etc/corosync", 0o755, mounted=True),
    StateDir("/var/lib/corosync", 0o755, mounted=True),
    StateDir("/var/log/corosync", 0o755, mounted=True),
    StateDir("/var/lib/pacemaker", 0o755, mounted=True),
    StateDir("/var/lib/pacemaker/cib", 0o750, cluster_owned=True),
    StateDir("/var/lib/pacemaker/pengine", 0o750, cluster_owned=True),
    StateDir("/var/lib/pacemaker/blackbox", 0o750, cluster_owned=True),
    StateDir("/var/lib/pacemaker/cores", 0o750, cluster_owned=True),
    StateDir("/var/log/pacemaker", 0o770, cluster_owned=True, mounted=True),
    StateDir("/var/log/pacemaker/bundles", 0o770, cluster_owned=True),
)

# Fresh per boot, like on a real machine: nothing survives a power cycle here.
TMPFS_MOUNTS: dict[str, str] = {
    "/run": "mode=0755,nosuid,nodev",
    "/dev/shm": "mode=1777,nosuid,nodev",
}

COROSYNC_LOG = "/var/log/corosync/corosync.log"
PACEMAKER_LOG = "/var/log/pacemaker/pacemaker.log"
NODE_LOG = "node.log"  # the init's, corosync's and pacemakerd's own output
RECORD_FILE = "node.json"  # PIDs and names, for cleaning up after a crashed owner

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")


class NodeError(RuntimeError):
    """A node could not be started, reached or stopped."""


def new_run_id() -> str:
    """A short random token; namespaces of one run share it, runs never do."""
    return secrets.token_hex(3)


def netns_name(run_id: str, node: str) -> str:
    """The network namespace name of ``node`` in run ``run_id``."""
    return f"hl-{run_id}-{node}"


def pid_namespace_of(pid: int) -> int | None:
    """The inode of ``pid``'s PID namespace; None if it is gone (or a zombie)."""
    try:
        return os.stat(f"/proc/{pid}/ns/pid").st_ino
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot); None if it is gone.

    A PID plus its start time names one process for good: a reused PID has
    another start time. A zombie counts as gone.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else int(fields[19])  # a zombie is gone
    except (OSError, IndexError, ValueError):
        return None


def same_process(pid: int | None, started: int | None) -> bool:
    return pid is not None and started is not None and start_time(pid) == started


def init_alive(record: dict[str, Any]) -> bool:
    """Whether the init a node record names still runs, in the recorded PID namespace.

    Only then may the namespace's processes be taken for the node's: once the
    init is gone the kernel has killed them all, and the namespace's number
    can name another lab's namespace (gVisor reuses them)."""
    init, ns = record.get("init_pid"), record.get("pid_namespace")
    return bool(init and ns and same_process(init, record.get("init_start_time")) and pid_namespace_of(init) == ns)


def processes_in(pid_namespace: int) -> list[int]:
    """Host PIDs of every live process in the PID namespace ``pid_namespace``."""
    return [
        int(entry) for entry in os.listdir("/proc") if entry.isdigit() and pid_namespace_of(int(entry)) == pid_namespace
    ]


def children_of(parent: int) -> list[int]:
    """Host PIDs whose parent is ``parent`` (read from /proc/*/stat)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name may contain spaces and parentheses: split after the last ")"
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == parent:
            found.append(int(entry))
    return found


def mount_table() -> set[tuple[str, str, str]]:
    """This mount namespace's mounts as (mount point, file system type, source).

    Two snapshots, before and after a node ran, show whether it leaked a
    mount to the host.
    """
    mounts = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            before, _, after = line.partition(" - ")
            fstype, source = after.split()[:2]
            mounts.add((before.split()[4], fstype, source))
    return mounts


def tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of ``path``, or a note that it does not exist."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 256 * lines))
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return "(no such file)"
    return "\n".join(text.splitlines()[-lines:])


class NamespacedNode:
    """One namespaced cluster node, reusable for every node of the lab.

    Life cycle: :meth:`start` (boot: netns, namespaces, corosync, then
    pacemakerd), :meth:`power_off` (a power cut; the netns and its cabling
    stay, the state directories stay like a disk, so :meth:`start` boots it
    again), :meth:`shutdown` (orderly), :meth:`stop` (power off and remove
    the netns: nothing of the node is left on the host).
    """

    def __init__(
        self,
        name: str,
        workdir: Path,
        *,
        run_id: str | None = None,
        runner: CommandRunner | None = None,
        python: str | None = None,
        environment: Mapping[str, str] | None = None,
        grace: float = 30.0,
    ) -> None:
        """``workdir`` holds the node's state directories and logs.

        ``runner`` runs host-side programs (ip); ``python`` is the
        interpreter for the init (default: this one, which can import this
        package); ``environment`` adds variables (``PCMK_*``) for the
        daemons; ``grace`` is the init's per-program shutdown grace period.
        """
        if not NAME_RE.match(name):
            raise ValueError(f"invalid node name {name!r}: use [a-z][a-z0-9-]*, at most 32")
        self.name = name
        self.workdir = Path(workdir).absolute()
        self.run_id = run_id or new_run_id()
        self.netns = netns_name(self.run_id, name)
        self.host = runner or CommandRunner(env=system_env())
        self.python = python or sys.executable
        self.environment = dict(environment or {})
        self.grace = grace
        self._launcher: subprocess.Popen[bytes] | None = None
        self._init_pid: int | None = None
        self._pid_namespace: int | None = None
        self._log_file: IO[bytes] | None = None

    def __repr__(self) -> str:
        return f"NamespacedNode({self.name!r}, netns={self.netns!r}, init_pid={self._init_pid})"

    # -- paths -------------------------------------------------------------

    @property
    def root(self) -> Path:
        """Host directory holding the node's state directories."""
        return self.workdir / "root"

    def host_path(self, inner: str) -> Path:
        """The host path of ``inner``, a path inside one of the node's state directories.

        Lets the host write corosync.conf or read the node's logs without
        entering the node (and while it is powered off).
        """
        for top in (d.path for d in STATE_DIRS if d.mounted):
            if inner == top or inner.startswith(top + "/"):
                return self.root / inner.lstrip("/")
        raise ValueError(f"{inner} is not in one of the node's own directories")

    def prepare(self) -> None:
        """Create the state directories with the ownership the packages ship.

        Idempotent: existing contents (the CIB, keys, logs) are kept like a
        disk across reboots.
        """
        user = pwd.getpwnam(CLUSTER_USER).pw_uid
        group = grp.getgrnam(CLUSTER_GROUP).gr_gid
        for d in STATE_DIRS:
            path = self.root / d.path.lstrip("/")
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, d.mode)
            if d.cluster_owned:
                os.chown(path, user, group)

    # -- network namespace -------------------------------------------------

    def netns_exists(self) -> bool:
        """Whether the node's network namespace exists (asked of ip, the authority)."""
        listing = self.host.run(["ip", "netns", "list"], check=True).stdout
        return any(line.split()[0] == self.netns for line in listing.splitlines() if line)

    def create_netns(self) -> None:
        """Create the node's network namespace with loopback up (idempotent)."""
        if not self.netns_exists():
            self.host.run(["ip", "netns", "add", self.netns], check=True)
        self.host.run(["ip", "-n", self.netns, "link", "set", "lo", "up"], check=True)

    def delete_netns(self) -> None:
        """Remove the network namespace and its mount under /run/netns (idempotent)."""
        if self.netns_exists():
            self.host.run(["ip", "netns", "delete", self.netns], check=True)

    # -- processes ---------------------------------------------------------

    @property
    def init_pid(self) -> int | None:
        """Host PID of the node's init while it runs."""
        return self._init_pid if self._init_alive() else None

    @property
    def pid_namespace(self) -> int | None:
        """Inode of the node's (last) PID namespace.

        Kept after power-off so callers can check that nothing of it is left;
        the kernel may reuse the number for a later namespace.
        """
        return self._pid_namespace

    @property
    def running(self) -> bool:
        """Whether the node is powered on (its init is alive)."""
        return self.init_pid is not None

    def pids(self) -> list[int]:
        """Host PIDs of every process of the node (its PID namespace)."""
        if self._pid_namespace is None:
            return []
        return processes_in(self._pid_namespace)

    def _init_alive(self) -> bool:
        return (
            self._init_pid is not None
            and self._pid_namespace is not None
            and pid_namespace_of(self._init_pid) == self._pid_namespace
        )

    @property
    def runner(self) -> CommandRunner:
        """Runs programs inside the node: its network, mounts, hostname and PIDs.

        ``pcs``, ``crm_mon``, ``crm_resource``, ``cibadmin`` run through it
        see the node's own corosync.conf, CIB and daemons.
        """
        pid = self.init_pid
        if pid is None:
            raise NodeError(f"node {self.name} is not running")
        prefix = ("nsenter", f"--target={pid}", "--net", "--mount", "--uts", "--pid", "--")
        return CommandRunner(prefix=prefix, env=self.host.env)

    # -- start -------------------------------------------------------------

    def init_spec(self) -> InitSpec:
        """What the init mounts and runs: corosync (ready once it serves IPC), then pacemakerd."""
        env = {
            "PATH": SYSTEM_PATH,
            "LANG": "C.UTF-8",
            "HOME": "/root",
            # the node has no syslog of its own: never write to the host's /dev/log
            "PCMK_logfile": PACEMAKER_LOG,
            "PCMK_logfacility": "none",
            **self.environment,
        }
        mounts = [Mount(target=d.path, source=str(self.root / d.path.lstrip("/"))) for d in STATE_DIRS if d.mounted]
        mounts += [Mount(target=t, options=o) for t, o in TMPFS_MOUNTS.items()]
        programs = (
            Program(
                "corosync",
                ("corosync", "-f"),
                ready=("corosync-cmapctl", "-g", "totem.cluster_name"),
            ),
            Program("pacemakerd", ("pacemakerd",)),
        )
        return InitSpec(
            hostname=self.name,
            status_dir=str(self.workdir),
            programs=programs,
            mounts=tuple(mounts),
            env=env,
            grace=self.grace,
        )

    def start(self, timeout: float = 60.0) -> None:
        """Boot the node; return once pacemakerd runs and answers.

        On failure the node is powered off again and :class:`NodeError`
        carries the tail of its logs; :meth:`stop` still has to remove the
        network namespace (it is safe to call after any failure).
        """

        def started(deadline: float) -> None:
            self._wait_for_phase("running", deadline)
            self.wait_for_pacemakerd(max(deadline - time.monotonic(), 1.0))

        self.boot(timeout, started, "start")

    def boot(self, timeout: float, until: Callable[[float], object], what: str = "boot") -> None:
        """Power the node on and wait for its init, then ``until(deadline)``: the
        one way a node boots, whatever it must reach before the caller goes on.

        On failure the node is powered off again and :class:`NodeError` carries
        the tail of its logs."""
        if self.running:
            return
        deadline = time.monotonic() + timeout
        self.power_off()  # collect what a crashed previous boot left
        self.prepare()
        self.create_netns()
        try:
            self._launch()
            self._wait_for_init(deadline)
            until(deadline)
        except BaseException as exc:
            detail = f"node {self.name} did not {what}: {exc}\n{self.log_tail()}"
            self.power_off()
            if isinstance(exc, (NodeError, TimeoutError, CommandError, OSError)):
                raise NodeError(detail) from exc
            raise

    def _launch(self) -> None:
        spec_path = self.workdir / "init.json"
        self.init_spec().dump(spec_path)
        (self.workdir / STATUS_FILE).unlink(missing_ok=True)
        package_parent = str(Path(highlander.__file__).resolve().parent.parent)
        argv = [
            "ip",
            "netns",
            "exec",
            self.netns,
            "unshare",
            "--mount",
            "--uts",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--",
            self.python,
            "-m",
            "highlander.lab.init",
            str(spec_path),
        ]
        self._log_file = open(self.workdir / NODE_LOG, "ab")
        self._launcher = self.host.spawn(
            argv,
            stdout=self._log_file,
            stderr=self._log_file,
            env={"PYTHONPATH": package_parent},
            cwd="/",
            new_session=True,
        )

    def _wait_for_init(self, deadline: float) -> None:
        """Find the init: the one child of ``unshare`` (ip execs unshare in place)."""
        launcher = self._launcher
        assert launcher is not None
        own_namespace = pid_namespace_of(os.getpid())

        def found() -> int | None:
            if launcher.poll() is not None:
                raise NodeError(f"unshare exited with {launcher.returncode}")
            for pid in children_of(launcher.pid):
                namespace = pid_namespace_of(pid)
                if namespace is not None and namespace != own_namespace:
                    self._init_pid, self._pid_namespace = pid, namespace
                    return pid
            return None

        remaining = max(deadline - time.monotonic(), 0)
        wait_until(found, timeout=remaining, what="the init", interval=0.02)
        self._record()

    def _record(self) -> None:
        """Write the PIDs to the work directory: a crashed owner can still be cleaned up by PID."""
        record = {
            "name": self.name,
            "netns": self.netns,
            "launcher_pid": self._launcher.pid if self._launcher else None,
            "init_pid": self._init_pid,
            "pid_namespace": self._pid_namespace,
            "init_start_time": start_time(self._init_pid) if self._init_pid else None,
        }
        (self.workdir / RECORD_FILE).write_text(json.dumps(record) + "\n")

    def status(self) -> dict[str, Any] | None:
        """The init's last reported status (phase, PIDs inside, detail)."""
        return read_status(self.workdir)

    def _wait_for_phase(self, phase: str, deadline: float) -> None:
        def reached() -> bool:
            status = self.status() or {}
            if status.get("phase") == phase:
                return True
            if status.get("phase") in ("stopping", "exited") or not self._init_alive():
                raise NodeError(f"init stopped: {status.get('detail', 'no status')}")
            return False

        wait_until(reached, timeout=max(deadline - time.monotonic(), 0), what=f"init phase {phase}")

    def pacemakerd_state(self) -> str | None:
        """pacemakerd's own state ("running", "wait_for_ping", ...), None if it does not answer."""
        result = self.runner.run(["crmadmin", "--pacemakerd", "--output-as=xml"], timeout=10)
        if not result.ok:
            return None
        try:
            element = ElementTree.fromstring(result.stdout).find("pacemakerd")
        except ElementTree.ParseError:
            return None
        return None if element is None else element.get("state")

    def wait_for_pacemakerd(self, timeout: float = 30.0) -> None:
        """Wait until pacemakerd reports that it runs all its subdaemons."""

        def running() -> bool:
            if not self._init_alive():
                raise NodeError(f"node {self.name} stopped: {(self.status() or {}).get('detail')}")
            return self.pacemakerd_state() == "running"

        wait_until(running, timeout=timeout, what=f"pacemakerd on {self.name}")

    # -- stop --------------------------------------------------------------

    def shutdown(self, timeout: float = 60.0) -> None:
        """Orderly power-down: pacemakerd stops its resources, then corosync stops.

        Falls back to a power cut after ``timeout`` seconds.
        """
        if self._init_alive():
            assert self._init_pid is not None
            os.kill(self._init_pid, signal.SIGTERM)
            if self._launcher is not None:
                try:
                    self._launcher.wait(timeout)
                except subprocess.TimeoutExpired:
                    log.warning("%s did not shut down in %g s: cutting power", self.name, timeout)
        self.power_off()

    def power_off(self, timeout: float = 15.0) -> None:
        """Kill the node's init (every process of the node dies with it) and wait.

        Idempotent, and safe after a failed start: without a known init it
        kills the launcher, whose ``--kill-child`` takes the init along.
        """
        if self._init_alive():
            assert self._init_pid is not None
            os.kill(self._init_pid, signal.SIGKILL)
        elif self._launcher is not None and self._launcher.poll() is None:
            self._launcher.kill()
        self._reap_launcher(timeout)
        if self._pid_namespace is not None:
            what = f"the processes of {self.name} to exit"
            wait_until(lambda: not self.pids(), timeout=timeout, what=what)
        self._init_pid = None

    def _reap_launcher(self, timeout: float) -> None:
        launcher, self._launcher = self._launcher, None
        if launcher is not None:
            try:
                launcher.wait(timeout)
            except subprocess.TimeoutExpired:
                launcher.kill()
                launcher.wait(timeout)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def stop(self) -> None:
        """Power off and remove the network namespace: nothing of the node stays on the host.

        Idempotent and safe to call whatever state a failed start left.
        """
        try:
            self.power_off()
        finally:
            self.delete_netns()

    # -- diagnostics -------------------------------------------------------

    def log_tail(self, lines: int = 20) -> str:
        """The end of the node's own output, corosync's and pacemaker's logs."""
        sources = {
            NODE_LOG: self.workdir / NODE_LOG,
            COROSYNC_LOG: self.host_path(COROSYNC_LOG),
            PACEMAKER_LOG: self.host_path(PACEMAKER_LOG),
        }
        return "\n".join(f"--- {self.name}: {label} ---\n{tail(path, lines)}" for label, path in sources.items())
