"""Real etcd and PostgreSQL servers on loopback, and sign-state daemons that use them.

For the tests and the benchmarks, like :mod:`.replicas`: a three-member
etcd cluster (Debian's ``etcd-server``) and a PostgreSQL cluster made with
``initdb`` in a temporary directory (Debian's ``postgresql``), each server
a process of ours, stopped by its PID. Both speak TLS with certificates of a
throw-away CA (:mod:`.pki`) and require a password; :meth:`store_toml`
gives the ``signstate.toml`` section that reaches them. PostgreSQL refuses
to run as root: as root its files belong to, and it runs as, the
``postgres`` user the Debian package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from highlander.adapters.waiting import wait_until
from highlander.signstate import pki
from highlander.lab.ports import free_ports
from highlander.lab.replicas import NODES, LoopbackReplicas

PASSWORD = "signstate-password"
USER = "highlander"


class LocalCA:
    """A CA with a server certificate for loopback and a client certificate."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        if not (directory / "ca.crt").exists():
            pki.init_ca(directory, "highlander-stores")
            pki.issue(directory, "localhost", addresses=["127.0.0.1"])
            pki.issue(directory, USER)
        self.ca = directory / "ca.crt"
        self.server_key, self.server_cert = pki.node_paths(directory, "localhost")
        self.client_key, self.client_cert = pki.node_paths(directory, USER)
        self.password_file = directory / "password"
        self.password_file.write_text(PASSWORD + "\n")
        self.password_file.chmod(0o600)


class Processes:
    """Server processes by name, stopped by PID whatever happens."""

    def __init__(self) -> None:
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def running(self, name: str) -> bool:
        process = self.processes.get(name)
        return process is not None and process.poll() is None

    def send(self, name: str, signum: int) -> None:
        if self.running(name):
            os.kill(self.processes[name].pid, signum)

    def end(self, name: str, signum: int = signal.SIGTERM, timeout: float = 20) -> None:
        """``signum`` to the process (woken first), SIGKILL if it does not exit in time."""
        process = self.processes.get(name)
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGCONT)
        os.kill(process.pid, signum)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def end_all(self) -> None:
        for name in list(self.processes):
            self.end(name)


class LocalEtcd(Processes):
    """Three etcd members on loopback: clients over TLS with a certificate of our CA
    (``--trusted-ca-file``), etcd's authentication on, user :data:`USER`
    allowed under ``/highlander/``. (With ``--client-cert-auth`` etcd's gateway
    refuses to take a user from the certificate: users log in with a password.)"""

    MEMBERS = ("etcd-1", "etcd-2", "etcd-3")

    def __init__(self, workdir: Path) -> None:
        super().__init__()
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ca = LocalCA(self.workdir / "pki")
        ports = free_ports(2 * len(self.MEMBERS))
        self.client_ports = dict(zip(self.MEMBERS, ports[::2]))
        self.peer_ports = dict(zip(self.MEMBERS, ports[1::2]))
        self.started_once = False

    def endpoints(self) -> list[str]:
        return [f"https://127.0.0.1:{self.client_ports[m]}" for m in self.MEMBERS]

    def start(self, member: str | None = None) -> None:
        """Start one member (or all) and wait until the cluster answers through it."""
        cluster = ",".join(f"{m}=http://127.0.0.1:{self.peer_ports[m]}" for m in self.MEMBERS)
        for name in [member] if member else self.MEMBERS:
            if self.running(name):
                continue
            client = f"https://127.0.0.1:{self.client_ports[name]}"
            peer = f"http://127.0.0.1:{self.peer_ports[name]}"
            argv = [
                "etcd",
                "--name",
                name,
                "--data-dir",
                str(self.workdir / name),
                "--listen-client-urls",
                client,
                "--advertise-client-urls",
                client,
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
                "--initial-cluster",
                cluster,
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                "highlander-test",
                "--cert-file",
                str(self.ca.server_cert),
                "--key-file",
                str(self.ca.server_key),
                "--trusted-ca-file",
                str(self.ca.ca),
            ]
            with open(self.workdir / f"{name}.log", "ab") as log:
                self.processes[name] = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        if member is None and not self.started_once:
            wait_until(
                lambda: self._ctl("endpoint", "health", "--cluster", check=False) == 0,
                timeout=30,
                what="a healthy etcd cluster",
                interval=0.2,
            )
            self._enable_auth()
        self.started_once = True

    def _ctl(self, *args: str, check: bool = True, root: bool = False) -> int:
        argv = [
            "etcdctl",
            "--endpoints",
            ",".join(self.endpoints()),
            "--cacert",
            str(self.ca.ca),
            "--cert",
            str(self.ca.client_cert),
            "--key",
            str(self.ca.client_key),
            "--command-timeout",
            "5s",
        ]
        if root:
            argv += ["--user", f"root:{PASSWORD}"]
        done = subprocess.run(
            [*argv, *args],
            capture_output=True,
            text=True,
            env={**os.environ, "ETCDCTL_API": "3"},
            timeout=30,
            check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"etcdctl {' '.join(args)}: {done.stderr.strip()}")
        return done.returncode

    def _enable_auth(self) -> None:
        self._ctl("user", "add", "root", "--new-user-password", PASSWORD)
        self._ctl("user", "add", USER, "--new-user-password", PASSWORD)
        self._ctl("role", "add", "signstate")
        self._ctl("role", "grant-permission", "signstate", "readwrite", "--prefix=true", "/highlander/")
        self._ctl("user", "grant-role", USER, "signstate")
        self._ctl("auth", "enable")

    def store_toml(self, password_file: Path | None = None) -> str:
        """The ``[etcd]`` section of a node that reaches this cluster."""
        return (
            f'backend = "etcd"\n\n[etcd]\nendpoints = [{", ".join(f"{e!r}" for e in self.endpoints())}]\n'
            f'ca_file = "{self.ca.ca}"\ncert_file = "{self.ca.client_cert}"\nkey_file = "{self.ca.client_key}"\n'
            f'user = "{USER}"\npassword_file = "{password_file or self.ca.password_file}"\n'
        ).replace("'", '"')

    def stop(self) -> None:
        self.end_all()


class LocalPostgres(Processes):
    """One PostgreSQL server on loopback: TLS only, a password for :data:`USER`,
    who owns the database ``highlander``; fsync and synchronous_commit on."""

    NAME = "postgres"

    def __init__(self, workdir: Path) -> None:
        super().__init__()
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ca = LocalCA(self.workdir / "pki")
        self.bin = _postgres_bin()
        self.port = free_ports(1)[0]
        self.account = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        # Owned by the server's user, and reachable by it (a test's tmp_path may not be).
        self.base = Path(tempfile.mkdtemp(prefix="hl-postgres-"))
        self.data = self.base / "data"
        self.sockets = self.base / "sockets"

    def _user(self) -> dict[str, object]:
        if self.account is None:
            return {}
        return {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}

    def _own(self, path: Path) -> None:
        if self.account is not None:
            os.chown(path, self.account.pw_uid, self.account.pw_gid)

    def _init(self) -> None:
        self._own(self.base)
        self.sockets.mkdir()
        self._own(self.sockets)
        subprocess.run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--auth-local=trust",
                "--auth-host=reject",
                "--no-instructions",
            ],
            capture_output=True,
            check=True,
            timeout=120,
            **self._user(),
        )  # type: ignore[arg-type]
        for name, source in (("server.crt", self.ca.server_cert), ("server.key", self.ca.server_key)):
            shutil.copy(source, self.data / name)
            (self.data / name).chmod(0o600)
            self._own(self.data / name)
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = '{self.sockets}'\n"
                "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
                "fsync = on\nsynchronous_commit = on\nmax_connections = 60\nshared_buffers = 32MB\n"
                "password_encryption = 'scram-sha-256'\n"
            )
        (self.data / "pg_hba.conf").write_text("local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n")
        self._launch()
        self.admin(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'", f"CREATE DATABASE {USER} OWNER {USER}")

    def start(self) -> None:
        """Create the cluster the first time, start the server, wait until it answers."""
        if not self.data.exists():
            self._init()
        elif not self.running(self.NAME):
            self._launch()

    def _launch(self) -> None:
        with open(self.workdir / "postgres.log", "ab") as log:
            self.processes[self.NAME] = subprocess.Popen(
                [str(self.bin / "postgres"), "-D", str(self.data)],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                **self._user(),  # type: ignore[arg-type]
            )
        wait_until(self._ready, timeout=30, what="PostgreSQL accepting connections", interval=0.1)

    def _ready(self) -> bool:
        if not self.running(self.NAME):
            raise RuntimeError(f"postgres exited: {(self.workdir / 'postgres.log').read_text()[-2000:]}")
        done = subprocess.run(
            [str(self.bin / "pg_isready"), "-h", str(self.sockets), "-p", str(self.port)],
            capture_output=True,
            check=False,
            timeout=10,
        )
        return done.returncode == 0

    def admin(self, *statements: str, dbname: str = "postgres") -> list[tuple[object, ...]]:
        """Run statements as the superuser over the local socket; the last one's rows."""
        import psycopg

        rows: list[tuple[object, ...]] = []
        with psycopg.connect(
            host=str(self.sockets), port=self.port, user="postgres", dbname=dbname, autocommit=True
        ) as connection:
            for statement in statements:
                cursor = connection.execute(statement)
                rows = cursor.fetchall() if cursor.description else []
        return rows

    def cut_connections(self) -> int:
        """Terminate every connection of the sign-state daemons; how many there were."""
        rows = self.admin(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name LIKE 'highlander-signstate%'"
        )
        return int(rows[0][0])  # type: ignore[call-overload]

    def crash(self) -> None:
        """An immediate shutdown (SIGQUIT): no checkpoint, recovery from the WAL at the next start."""
        self.end(self.NAME, signal.SIGQUIT)

    def stop(self) -> None:
        self.end(self.NAME, signal.SIGINT)  # a fast shutdown

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def store_toml(self, password_file: Path | None = None) -> str:
        """The ``[postgresql]`` section of a node that reaches this server."""
        return (
            f'backend = "postgresql"\n\n[postgresql]\nhost = "127.0.0.1"\nport = {self.port}\ndbname = "{USER}"\n'
            f'user = "{USER}"\npassword_file = "{password_file or self.ca.password_file}"\nca_file = "{self.ca.ca}"\n'
        )


def _postgres_bin() -> Path:
    """The newest installed PostgreSQL's programs (Debian keeps them off PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql; ./bootstrap does)")
    return Path(found[-1]).parent


class LocalStoreNodes(LoopbackReplicas):
    """A sign-state daemon on each of :data:`NODES`, all on one external store.

    The same processes as :class:`LoopbackReplicas` (start, kill, signal, stop by
    PID), configured with ``store_toml`` instead of the trio's fields.
    """

    def __init__(self, workdir: Path, store_toml: str, *, timeout: float = 1.0) -> None:
        super().__init__(workdir, timeout=timeout)
        self.store_toml = store_toml

    def prepare(self) -> None:
        for node in NODES:
            (self.workdir / node).mkdir(parents=True, exist_ok=True)
            self.config(node).write_text(
                f'node = "{node}"\nsocket = "{self.socket(node)}"\ntimeout = {self.timeout}\n{self.store_toml}'
            )


@contextmanager
def local_register(
    backend: str, workdir: Path, timeout: float = 1.0
) -> Iterator[tuple[LoopbackReplicas, LocalEtcd | LocalPostgres | None]]:
    """The register of ``backend`` ("trio", "etcd", "postgresql") with a daemon on each
    node, the store's schema initialised; everything stopped by PID whatever happens."""
    from highlander.commands.signstate import init

    store: LocalEtcd | LocalPostgres | None = None
    nodes: LoopbackReplicas | None = None
    try:
        if backend == "trio":
            nodes = LoopbackReplicas(workdir / "trio", timeout=timeout)
        else:
            store = LocalEtcd(workdir / "etcd") if backend == "etcd" else LocalPostgres(workdir / "postgres")
            store.start()
            nodes = LocalStoreNodes(workdir / "nodes", store.store_toml(), timeout=timeout)
            nodes.prepare()
            init(nodes.config("node-a"), backend)
        nodes.start()
        yield nodes, store
    finally:
        if nodes is not None:
            nodes.stop()
        if isinstance(store, LocalPostgres):
            store.cleanup()
        elif store is not None:
            store.stop()
