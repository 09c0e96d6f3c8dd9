"""SshRunner against a real OpenSSH sshd on loopback, started and stopped here by PID.

The drills reach a real cluster's nodes through it: commands, standard input
and exit codes come back as with the local runner, host keys are checked and
never learned, a node that went away is exit 255 and is reached again once
it is back.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from highlander.adapters.runner import CommandError
from highlander.adapters.ssh import SshError, SshRunner
from highlander.adapters.waiting import wait_until
from highlander.lab.ports import free_ports

SSHD = "/usr/sbin/sshd"


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


@dataclass
class Sshd:
    directory: Path
    port: int
    client_key: Path
    known_hosts: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.directory / "sshd.log", "ab") as log:
            self.process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.directory / "sshd_config")], stdout=subprocess.DEVNULL, stderr=log
            )
        wait_until(self.listening, timeout=10, what="sshd to listen")

    def listening(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def runner(self, **kwargs: object) -> SshRunner:
        options: dict[str, object] = {"port": self.port, "key_file": self.client_key, "known_hosts": self.known_hosts}
        return SshRunner("127.0.0.1", **{**options, **kwargs})  # type: ignore[arg-type]


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    if os.geteuid() != 0 or not Path(SSHD).exists() or shutil.which("ssh-keygen") is None:
        if os.environ.get("CI"):
            pytest.fail("sshd and ssh-keygen are needed as root (./bootstrap test installs openssh-server)")
        pytest.skip("needs root and openssh-server")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    host_key = keygen(tmp_path / "host_key")
    client_key = tmp_path / "client_key"
    (tmp_path / "authorized_keys").write_text(keygen(client_key) + "\n")
    [port] = free_ports(1)
    (tmp_path / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1:{port}\nHostKey {tmp_path / 'host_key'}\nPermitRootLogin prohibit-password\n"
        f"PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        f"AuthorizedKeysFile {tmp_path / 'authorized_keys'}\nStrictModes no\nPidFile none\n"
    )
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_key}\n")
    server = Sshd(tmp_path, port, client_key, known_hosts)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_runs_commands_with_arguments_stdin_env_and_exit_codes(sshd: Sshd) -> None:
    runner = sshd.runner()
    try:
        tricky = 'it\'s a "quoted" $HOME; `x`'
        assert runner.run(["printf", "%s", tricky], check=True).stdout == tricky
        assert runner.run(["cat"], stdin="line one\nline two\n").stdout == "line one\nline two\n"
        assert runner.run(["sh", "-c", "echo $GREETING"], env={"GREETING": "hello"}).stdout == "hello\n"
        failed = runner.run(["sh", "-c", "echo oops >&2; exit 3"])
        assert (failed.returncode, failed.stderr) == (3, "oops\n")
        with pytest.raises(CommandError, match="exited with 3: oops"):
            runner.run(["sh", "-c", "echo oops >&2; exit 3"], check=True)
    finally:
        runner.close()


def test_an_unknown_or_changed_host_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(SshError, match=r"unknown host key ssh-ed25519 SHA256:\S+; refusing .* to .*empty_known_hosts"):
        sshd.runner(known_hosts=empty).run(["true"])
    other = tmp_path / "other_known_hosts"
    other.write_text(f"[127.0.0.1]:{sshd.port} {keygen(tmp_path / 'impostor')}\n")
    with pytest.raises(SshError, match=r"host key ssh-ed25519 SHA256:\S+ is not the one .*other_known_hosts lists"):
        sshd.runner(known_hosts=other).run(["true"])


def test_a_wrong_key_is_an_authentication_error(sshd: Sshd, tmp_path: Path) -> None:
    keygen(tmp_path / "stranger")
    with pytest.raises(SshError, match="authentication failed"):
        sshd.runner(key_file=tmp_path / "stranger").run(["true"])


def test_a_node_that_went_away_is_255_and_is_reached_again(sshd: Sshd) -> None:
    runner = sshd.runner()
    try:
        assert runner.run(["true"]).ok
        sshd.stop()
        # the kept connection's sshd child may outlive the listener: end it too
        down = runner.run(["sh", "-c", "kill -TERM $PPID"])
        assert down.returncode != 0
        gone = runner.run(["true"], timeout=5)
        assert gone.returncode == 255, gone
        sshd.start()
        deadline = time.monotonic() + 10
        while not (result := runner.run(["echo", "back"])).ok and time.monotonic() < deadline:
            time.sleep(0.2)
        assert result.stdout == "back\n"
    finally:
        runner.close()


def test_a_host_that_did_not_answer_is_not_asked_again_for_retry_after(sshd: Sshd) -> None:
    runner = sshd.runner(retry_after=3600)
    try:
        assert runner.run(["true"]).ok
        runner.gone()  # as after cutting its power: not asked at all
        quiet = runner.run(["true"])
        assert quiet.returncode == 255 and "asked again after 3600 s" in quiet.stderr
        eager = sshd.runner(retry_after=0)
        try:
            assert eager.run(["true"]).ok  # the host itself answers: only the quiet runner does not ask it
        finally:
            eager.close()
    finally:
        runner.close()


def test_threads_share_one_runner(sshd: Sshd) -> None:
    """Two nodes' power is cut at once from one peer: two commands at a time on one connection."""
    import threading

    runner = sshd.runner()
    results: dict[int, str] = {}

    def one(i: int) -> None:
        results[i] = runner.run(["sh", "-c", f"sleep 0.5; echo {i}"], check=True).stdout

    try:
        threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == {i: f"{i}\n" for i in range(4)}
    finally:
        runner.close()
