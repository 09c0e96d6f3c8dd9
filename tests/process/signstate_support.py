"""What the sign-state process tests share.

Not a test module.

- Speaking to a daemon the plain way: a peer or signer written in any
  language would open a socket, wrap it in TLS with a node's certificate and
  exchange length-prefixed JSON frames; these helpers do exactly that,
  without the daemon's own code.
- ``demo-signer`` processes on a fast synthetic chain, and the journal
  checker run over what they signed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

from harness import HIGHLANDER

from highlander.adapters.waiting import wait_until
from highlander.drill.journal import Entry, parse_journal
from highlander.drill.signer import chain_height
from highlander.lab.replicas import NODES, LoopbackReplicas
from highlander.signstate import pki
from highlander.signstate.register import KeyId
from highlander.signstate.wire import HEADER

TIMEOUT = 10.0
BLOCK_TIME = 0.05
CHAIN_ID = "drill-chain"
KEY_ID = "validator"


def tcp(replicas: LoopbackReplicas, node: str = "node-a") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", replicas.ports[node]), timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def tls(replicas: LoopbackReplicas, context: ssl.SSLContext, node: str = "node-a") -> ssl.SSLSocket:
    raw = tcp(replicas, node)
    try:
        return context.wrap_socket(raw, server_hostname=node)
    except BaseException:
        raw.close()
        raise


def as_peer(replicas: LoopbackReplicas, sender: str = "node-b", node: str = "node-a") -> ssl.SSLSocket:
    """Mutual TLS to ``node`` with the cluster certificate of ``sender``."""
    return tls(replicas, pki.client_context(replicas.pki_dir, sender), node)


def frame(document: object) -> bytes:
    data = json.dumps(document, separators=(",", ":")).encode()
    return HEADER.pack(len(data)) + data


def read_frame(sock: socket.socket) -> object:
    """One frame from the daemon (EOFError when it hangs up)."""

    def exactly(size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            if not chunk:
                raise EOFError("connection closed")
            data += chunk
        return data

    (length,) = HEADER.unpack(exactly(HEADER.size))
    return json.loads(exactly(length))


def exchange(sock: socket.socket, data: bytes) -> dict[str, object]:
    sock.sendall(data)
    answer = read_frame(sock)
    assert isinstance(answer, dict)
    return answer


# --- signers and their journals ------------------------------------------------------------


class SignerProcess:
    """One ``demo-signer`` process, its journal and its log."""

    def __init__(self, name: str, node: str, process: subprocess.Popen[bytes], journal: Path, log: Path) -> None:
        self.name = name
        self.node = node
        self.process = process
        self.journal = journal
        self.log = log

    @property
    def pid(self) -> int:
        return self.process.pid

    def entries(self) -> list[Entry]:
        if not self.journal.exists():
            return []
        entries, _ = parse_journal(self.journal.read_bytes(), str(self.journal))
        return entries

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"signer {self.name} exited with {self.process.returncode}:\n{self.log_text()}")
        return True

    def wait_entries(self, count: int, timeout: float = 20) -> list[Entry]:
        """Until the journal holds ``count`` entries (the signer must stay alive)."""

        def enough() -> list[Entry] | None:
            self.alive()
            entries = self.entries()
            return entries if len(entries) >= count else None

        return wait_until(enough, timeout=timeout, what=f"{count} signatures by {self.name}", interval=0.05)

    def kill(self) -> None:
        """SIGKILL by PID: a crash of the signer."""
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self, timeout: float = 15) -> int:
        """SIGTERM by PID and the exit status (SIGKILL if it does not stop)."""
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode


class Signers:
    """Starts demo-signer processes for one synthetic chain; :meth:`stop_all` by PID."""

    def __init__(self, workdir: Path, replicas: LoopbackReplicas | None) -> None:
        self.workdir = workdir
        self.replicas = replicas
        self.genesis = time.time()
        self.key_file = workdir / "validator.pem"
        self.started: list[SignerProcess] = []

    def start(self, node: str, *, guard: bool = True, status_port: int | None = None) -> SignerProcess:
        name = f"{len(self.started) + 1:02d}-{node}"
        journal = self.workdir / f"{name}.jsonl"
        log = self.workdir / f"{name}.log"
        socket_path = self.replicas.socket(node) if self.replicas else self.workdir / "no-daemon.sock"
        argv = [
            *HIGHLANDER,
            "demo-signer",
            "--socket",
            str(socket_path),
            "--chain-id",
            CHAIN_ID,
            "--key-id",
            KEY_ID,
            "--node",
            node,
            "--journal",
            str(journal),
            "--block-time",
            str(BLOCK_TIME),
            "--genesis",
            repr(self.genesis),
            "--key-file",
            str(self.key_file),
        ]
        if not guard:
            argv.append("--no-guard")
        if status_port is not None:
            argv += ["--status-listen", f"127.0.0.1:{status_port}"]
        with open(log, "ab") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        signer = SignerProcess(name, node, process, journal, log)
        self.started.append(signer)
        return signer

    def height_now(self) -> int:
        return chain_height(time.time(), self.genesis, BLOCK_TIME)

    def journals(self) -> list[Path]:
        return [s.journal for s in self.started if s.journal.exists()]

    def stop_all(self) -> None:
        for signer in self.started:
            signer.terminate(timeout=5)

    def logs(self) -> str:
        return "\n".join(f"--- {s.name} (exit {s.process.poll()})\n{s.log_text()[-3000:]}" for s in self.started)


def reset_key(socket_path: Path, key: KeyId, to: str) -> subprocess.CompletedProcess[str]:
    """``highlander signstate reset`` of ``key`` to the mark ``to`` through the daemon at ``socket_path``."""
    where = ["--socket", str(socket_path), "--chain-id", key.chain_id, "--key-id", key.key_id]
    return subprocess.run(
        [*HIGHLANDER, "signstate", "reset", *where, "--to", to, "--yes"], capture_output=True, text=True, timeout=60
    )


def nemesis_seed() -> int:
    """HIGHLANDER_NEMESIS_SEED repeats a nemesis run; otherwise a new seed (each test prints it)."""
    return int(os.environ.get("HIGHLANDER_NEMESIS_SEED") or time.time_ns() % 1_000_000)


class SignerChurn:
    """What both nemeses do to demo-signers: fail over (kill every running
    signer but the kept ones, start one on a random node) and start a second
    one; every step is noted with its time."""

    def __init__(self, signers: Signers, rng: random.Random) -> None:
        self.signers = signers
        self.rng = rng
        self.kept: set[str] = set()  # signers no failover stops (the negative control's)
        self.log: list[str] = []

    def note(self, text: str) -> None:
        self.log.append(f"{time.monotonic():.2f} {text}")

    def failover(self) -> None:
        running = [s for s in self.signers.started if s.process.poll() is None and s.name not in self.kept]
        for signer in running:
            signer.kill()
        node = self.rng.choice(NODES)
        self.signers.start(node)
        self.note(f"failover: killed {len(running)} signer(s), started one on {node}")

    def second_signer(self) -> None:
        node = self.rng.choice(NODES)
        self.signers.start(node)
        self.note(f"a second signer on {node}")


def check_journals(journals: list[Path]) -> tuple[int, dict]:  # type: ignore[type-arg]
    done = subprocess.run(
        [*HIGHLANDER, "check-journals", "--json", *map(str, journals)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


# --- relays between replicas -------------------------------------------------------------------


class Relay:
    """A TCP relay on loopback from one node to a peer's port, for a nemesis to break.

    ``cut`` resets every connection and every new one (a link down);
    ``blackhole`` keeps connections open and drops what they carry (a
    partition the sender cannot see); ``delay`` holds each chunk a random
    time up to the bound (seeded: a run can be repeated); ``heal`` ends all
    of that. Its listening socket is bound once and kept, so its port is
    never taken by anyone else.
    """

    def __init__(self, target_port: int, seed: int) -> None:
        import random
        import threading

        self.target_port = target_port
        self.mode = "up"
        self.max_delay = 0.0
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._connections: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._closed = False
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._start(self._accept)

    def _start(self, target, *args) -> None:  # type: ignore[no-untyped-def]
        import threading

        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            if self.mode == "cut":
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections += [client, upstream]
            self._start(self._pump, client, upstream)
            self._start(self._pump, upstream, client)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                if self.mode == "blackhole":
                    continue
                if self.max_delay:
                    with self._lock:
                        pause = self._random.uniform(0, self.max_delay)
                    time.sleep(pause)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _reset_all(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def cut(self) -> None:
        self.mode = "cut"
        self._reset_all()

    def blackhole(self) -> None:
        self.mode = "blackhole"

    def delay(self, max_delay: float) -> None:
        self.max_delay = max_delay

    def heal(self) -> None:
        self.mode, self.max_delay = "up", 0.0

    def close(self) -> None:
        self.listener.close()
        self._reset_all()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=5)


def relayed(replicas: LoopbackReplicas, seed: int) -> dict[tuple[str, str], Relay]:
    """A relay on every link from a node to a peer (six), routed in ``replicas``' configuration."""
    relays: dict[tuple[str, str], Relay] = {}
    for number, (node, peer) in enumerate((n, p) for n in replicas.ports for p in replicas.ports if n != p):
        relays[node, peer] = Relay(replicas.ports[peer], seed + number)
        replicas.routes[node, peer] = relays[node, peer].port
    return relays


# --- FilePV signers behind the follower -------------------------------------------------------

FILEPV_SIGNER = Path(__file__).with_name("filepv_signer.py")


class FilePVSigners:
    """FilePV-like signers, each started as the validator agent starts one in FilePV mode.

    Promote on the node, raise that node's state file to the register's mark
    plus ``margin`` heights, and run the signer under ``highlander signstate
    follow`` with ``deadline``: a change it cannot replicate in time gets it
    killed. Every signature is a journal line of its run; two runs never sign
    the same bytes, so two runs at one mark are a double sign.
    """

    def __init__(
        self, workdir: Path, replicas: LoopbackReplicas, key: tuple[str, str], margin: int = 20, deadline: float = 1.0
    ) -> None:
        from highlander.signstate.register import KeyId

        self.workdir = workdir / "filepv"
        self.workdir.mkdir(exist_ok=True)
        self.replicas = replicas
        self.key = KeyId(*key)
        self.margin = margin
        self.deadline = deadline
        self.started: list[subprocess.Popen[bytes]] = []
        self.node_of: dict[int, str] = {}  # PID -> node

    def journals(self) -> list[Path]:
        return sorted(self.workdir.glob("run-*.journal"))

    def start(self, node: str, guard: bool = True) -> subprocess.Popen[bytes] | None:
        """A run on ``node``; None when the node cannot be promoted now, or runs one
        already (a node has one validator and one state file)."""
        if any(p.poll() is None and self.node_of[p.pid] == node for p in self.started):
            return None
        from highlander.commands.signstate import raise_state_file, raised_mark
        from highlander.signstate.client import Refused, SignerClient
        from highlander.signstate.follow import Signer

        run = f"run-{len(self.started) + 1:03d}-{node}"
        state = self.workdir / f"{node}.state.json"  # the node's own priv_validator_state.json
        signer = [sys.executable, str(FILEPV_SIGNER), str(state), str(self.workdir / f"{run}.journal"), "0.05", run]
        if not guard:
            process = subprocess.Popen(signer, stdin=subprocess.DEVNULL)
            self.started.append(process)
            self.node_of[process.pid] = node
            return process
        try:
            with SignerClient(self.replicas.socket(node), timeout=5) as client:
                session = client.promote(self.key)
        except (Refused, ConnectionError, OSError):
            return None
        held = raise_state_file(state, "cometbft", raised_mark(session.hwm, self.margin))
        with open(self.workdir / f"{run}.log", "ab") as log:
            process = subprocess.Popen(
                [
                    *HIGHLANDER,
                    "signstate",
                    "follow",
                    "--socket",
                    str(self.replicas.socket(node)),
                    "--chain-id",
                    self.key.chain_id,
                    "--key-id",
                    self.key.key_id,
                    "--epoch",
                    str(session.epoch),
                    "--state-file",
                    str(state),
                    "--since",
                    str(held),
                    "--deadline",
                    str(self.deadline),
                ],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=log,
            )
        assert process.stdin is not None
        process.stdin.write(Signer(signer, dict(os.environ)).to_json().encode())
        process.stdin.close()
        self.started.append(process)
        self.node_of[process.pid] = node
        return process

    def stop_all(self) -> None:
        """SIGTERM by PID (the follower stops its signer), SIGKILL after 10 s."""
        for process in self.started:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def filepv_double_signs(journals: list[Path]) -> dict[str, list[str]]:
    """The marks signed by more than one run, with the runs that signed them."""
    runs: dict[str, set[str]] = {}
    for journal in journals:
        for line in journal.read_text().splitlines():
            _, _, mark = line.partition(" ")
            if mark:
                runs.setdefault(mark, set()).add(journal.stem)
    return {mark: sorted(who) for mark, who in sorted(runs.items()) if len(who) > 1}
