"""Real CometBFT nodes, ``highlander privval`` processes, and a harness that
plays the CometBFT side of the privval protocol — for the remote signer's
process and cluster tests. Every process is started here and stopped by its PID.

CometBFT itself is the pinned release ``./bootstrap`` installs with
``go install`` into /opt/highlander/bin (or $HIGHLANDER_COMETBFT).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.message import Message
from harness import HIGHLANDER

from highlander.adapters.waiting import wait_until
from highlander.lab.ports import free_ports
from highlander.privval import messages, schema
from highlander.privval.transport import Connection, secure

COMETBFT = Path(os.environ.get("HIGHLANDER_COMETBFT", "/opt/highlander/bin/cometbft"))
COMETBFT_VERSION = "0.38.26"
# Short rounds, so that a test chain makes a block about every 0.2 s.
CONSENSUS_TIMEOUTS = {
    "timeout_propose": "1s",
    "timeout_prevote": "300ms",
    "timeout_precommit": "300ms",
    "timeout_commit": "200ms",
}
# For a test that hands the signing over on a chain of one validator.
# CometBFT skips a vote its signer refuses, and with nobody else to move the
# round on, a refused prevote or precommit stalls a lone validator for good
# (on a real chain the others go on and the vote is only missed). With 2 s
# between blocks, a handover asked for just after a block lands between
# heights; a proposal refused meanwhile leaves 5 s (the propose timeout) for
# the new signer before the node asks for its nil prevote.
QUIET_BETWEEN_HEIGHTS = {"timeout_commit": "2s", "timeout_propose": "5s"}


def cometbft() -> Path:
    """The pinned CometBFT; a missing one skips here and fails in CI."""
    if not os.access(COMETBFT, os.X_OK):
        message = f"CometBFT not installed at {COMETBFT} (./bootstrap installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return COMETBFT


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 10) -> None:
    """SIGTERM by PID (SIGKILL after ``timeout``); idempotent."""
    if process is None or process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGCONT)
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _set(text: str, section: str, key: str, value: str) -> str:
    """Set ``key`` in ``[section]`` of a CometBFT config.toml ("" is the top level)."""
    lines, current, done = text.splitlines(), "", False
    for index, line in enumerate(lines):
        header = re.match(r"^\[([a-z0-9_.]+)\]", line)
        if header:
            current = header.group(1)
        elif current == section and re.match(rf"^{key}\s*=", line):
            lines[index], done = f"{key} = {value}", True
            break
    if not done:
        raise KeyError(f"config.toml has no {key} in [{section}]")
    return "\n".join(lines) + "\n"


class CometNode:
    """One CometBFT node with the built-in kvstore app, its privval on a
    listener for ``highlander privval`` to dial."""

    def __init__(self, workdir: Path, name: str = "node", *, scheme: str = "tcp") -> None:
        self.binary = cometbft()
        self.home = Path(workdir) / name
        self.name = name
        self.rpc_port, self.p2p_port, privval_port = free_ports(3)
        self.privval_laddr = (
            f"tcp://127.0.0.1:{privval_port}" if scheme == "tcp" else f"unix://{self.home / 'privval.sock'}"
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.home / "cometbft.log"

    def init(
        self,
        chain_id: str,
        *,
        extensions_height: int = 0,
        genesis_from: CometNode | None = None,
        peer: CometNode | None = None,
        remote_signer: bool = True,
        timeouts: Mapping[str, str] | None = None,
    ) -> None:
        """``cometbft init``, then this test's chain id, ports and short timeouts
        (``remote_signer=False``: the node signs itself with FilePV; ``timeouts``
        replaces some of the [consensus] timeouts, e.g. ``{"timeout_commit": "2s"}``)."""
        subprocess.run([self.binary, "init", "--home", self.home], check=True, capture_output=True)
        genesis_path = self.home / "config" / "genesis.json"
        if genesis_from is not None:
            shutil.copy(genesis_from.home / "config" / "genesis.json", genesis_path)
            shutil.copy(genesis_from.key_file, self.key_file)
        else:
            genesis = json.loads(genesis_path.read_text())
            genesis["chain_id"] = chain_id
            params = genesis["consensus_params"]
            for section in ("abci", "feature"):  # 0.38 / 1.0; 0.37 has no vote extensions
                if section in params:
                    params[section]["vote_extensions_enable_height"] = str(extensions_height)
            genesis_path.write_text(json.dumps(genesis, indent=2))
        config = self.home / "config" / "config.toml"
        text = config.read_text()
        for section, key, value in [
            ("", "proxy_app", '"kvstore"'),
            ("", "moniker", f'"{self.name}"'),
            ("", "priv_validator_laddr", f'"{self.privval_laddr}"' if remote_signer else '""'),
            ("rpc", "laddr", f'"tcp://127.0.0.1:{self.rpc_port}"'),
            ("p2p", "laddr", f'"tcp://127.0.0.1:{self.p2p_port}"'),
            ("p2p", "addr_book_strict", "false"),
            ("p2p", "allow_duplicate_ip", "true"),
            ("p2p", "persistent_peers", f'"{peer.node_id()}@127.0.0.1:{peer.p2p_port}"' if peer else '""'),
            *(("consensus", key, f'"{value}"') for key, value in {**CONSENSUS_TIMEOUTS, **(timeouts or {})}.items()),
        ]:
            text = _set(text, section, key, value)
        config.write_text(text)

    def use_remote_signer(self) -> None:
        """Point a FilePV node at its privval listener (the node stopped)."""
        config = self.home / "config" / "config.toml"
        config.write_text(_set(config.read_text(), "", "priv_validator_laddr", f'"{self.privval_laddr}"'))

    @property
    def state_file(self) -> Path:
        return self.home / "data" / "priv_validator_state.json"

    @property
    def key_file(self) -> Path:
        return self.home / "config" / "priv_validator_key.json"

    def node_id(self) -> str:
        result = subprocess.run([self.binary, "show-node-id", "--home", self.home], check=True, capture_output=True)
        return result.stdout.decode().strip()

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "start", "--home", self.home], stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )

    def stop(self) -> None:
        stop_process(self.process)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def rpc(self, path: str) -> dict[str, object]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.rpc_port}/{path}", timeout=5) as answer:
            result: dict[str, object] = json.loads(answer.read())["result"]
            return result

    def height(self) -> int:
        """The latest committed height, 0 while the RPC is not up."""
        try:
            info = self.rpc("status")["sync_info"]
        except OSError:
            return 0
        return int(info["latest_block_height"])  # type: ignore[index]

    def wait_for_height(self, height: int, timeout: float = 60) -> int:
        def reached() -> int | None:
            if not self.running():
                raise RuntimeError(f"CometBFT {self.name} exited: {self.log_tail()}")
            current = self.height()
            return current if current >= height else None

        return wait_until(reached, timeout=timeout, what=f"{self.name} to reach height {height}")

    def evidence(self, heights: range) -> list[object]:
        """Every piece of evidence (a double sign) committed in ``heights``."""
        found: list[object] = []
        for height in heights:
            block = self.rpc(f"block?height={height}")["block"]
            found += block["evidence"]["evidence"]  # type: ignore[index]
        return found

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class PrivvalProcess:
    """``highlander privval`` with its own configuration, key copy and state."""

    def __init__(
        self, workdir: Path, chain_id: str, key_file: Path, register: Path, nodes: list[str], **settings: object
    ) -> None:
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key_file = self.dir / "priv_validator_key.json"
        shutil.copy(key_file, self.key_file)
        os.chmod(self.key_file, 0o600)
        self.config = self.dir / "privval.toml"
        extra = "".join(f"{name} = {json.dumps(value)}\n" for name, value in settings.items())
        self.config.write_text(
            f'chain_id = "{chain_id}"\nkey_file = "{self.key_file}"\nstate_file = "{self.dir / "state.json"}"\n'
            f'register = "{register}"\nnodes = {json.dumps(nodes)}\n{extra}'
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.dir / "privval.log"

    def start(self, *, promote: bool = True) -> None:
        command = [*HIGHLANDER, "privval", "--config", str(self.config)]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command + (["--promote"] if promote else []), stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )

    def stop(self) -> None:
        stop_process(self.process)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def wait_log(self, pattern: str, timeout: float = 20) -> str:
        def found() -> str | None:
            match = re.search(pattern, self.log_text())
            if match is None and self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"highlander privval exited: {self.log_text()[-2000:]}")
            return match.group(0) if match else None

        return wait_until(found, timeout=timeout, what=f"{pattern!r} in the signer's log")


class FakeNode:
    """The CometBFT side of the privval protocol, for requests no real node
    would send: a TCP listener the signer dials, SecretConnection, and plain
    request/response."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(20)
        self.port = self.listener.getsockname()[1]
        self.identity = Ed25519PrivateKey.generate()

    @property
    def laddr(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def accept_raw(self) -> socket.socket:
        sock, _ = self.listener.accept()
        sock.settimeout(10)
        return sock

    def accept(self) -> Connection:
        return secure(self.accept_raw(), self.identity)

    @staticmethod
    def ask(connection: Connection, request: Message) -> Message:
        connection.write_message(request)
        return messages.parse(schema.PrivvalMessage, connection.read_body())

    def close(self) -> None:
        self.listener.close()


@contextmanager
def fake_nodes(count: int) -> Iterator[list[FakeNode]]:
    nodes = [FakeNode() for _ in range(count)]
    try:
        yield nodes
    finally:
        for node in nodes:
            node.close()


def in_parallel(*calls: object) -> list[object]:
    """Run the callables at the same moment; their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(index: int, call: object) -> None:
        barrier.wait()
        results[index] = call()  # type: ignore[operator]

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results
