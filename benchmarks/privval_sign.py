#!/usr/bin/env python3
"""Request -> signed response of remote signers, one harness for all.

The harness plays the CometBFT side of the privval protocol: it listens,
accepts the signer's dial, runs SecretConnection, and sends SignVoteRequests
at increasing heights, one at a time, timing each until its answer is read
(and then checking the signature outside the timing). In the same run it
measures:

- ``highlander privval``, the register on three loopback sign-state daemons
  (each fsyncs before answering) — every vote a majority round plus the
  signer's own durable state write;
- tmkms with its ``softsign`` provider (no replication), when a ``tmkms``
  binary is found (``--tmkms``, or on PATH); build it with
  ``cargo install tmkms --features=softsign``;
- Horcrux v3 (three cosigners, threshold 2, Raft, on loopback), when
  ``--horcrux`` names a built binary (or ``--build`` made one).

A peer that is not available prints one line saying why; no number is made
up. ``--build DIR`` builds both peers from their registries into DIR once
(tmkms with cargo from crates.io; Horcrux as a dependency of a scratch Go
module, because the module proxy here refuses the version list that ``go
install`` reads).

``--breakdown`` times the two parts of highlander's number alone, in the
same run: ``signer only`` is ``highlander privval`` in front of a sign-state
daemon whose register answers at once (``instant_register.py``: the daemon's
own socket and checks, no replication, no write), and ``advance only`` is
the register's advance through the client the signer uses, one at a time,
on a trio of its own. ``signer only vs tmkms`` is the first against tmkms.

Measured on this two-core virtual machine, three runs of 2000 votes with
``--breakdown``, the machine otherwise idle: highlander p50 1.23-1.33 ms,
tmkms 0.23-0.24 ms, Horcrux 3.5-4.6 ms; ratio vs tmkms 5.2-5.6, ratio vs
horcrux 0.27-0.37. The goals (3 and 0.2) are not met, and the parts show
why: the signer alone took 0.45-0.57 ms (2.0-2.4 x tmkms), and the advance
alone 0.60-0.99 ms, more than the whole 3 x tmkms (0.69-0.71 ms). tmkms
signs in one Rust process and neither replicates nor syncs; a highlander
signature also waits for a majority round over three replicas that each
sync to disk before answering, through Python daemons sharing the two
cores with the signer and this harness. On a loaded hour the ratios spread
wider: 3.7-7.7 vs tmkms and 0.22-0.70 vs horcrux in earlier runs. Horcrux
v3.3.2 refuses a vote now and then ("ephemeral public keys do not match",
about one in a thousand here; "signature is invalid" among its first):
refused votes are printed and not timed.
The last lines are ``ratio vs tmkms X`` and ``ratio vs horcrux Y``
(highlander p50 / peer p50; goals <= 3 and <= 0.2).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from signstate_advance import percentile

from highlander.adapters.waiting import wait_until
from highlander.lab.ports import free_ports
from highlander.lab.replicas import LoopbackReplicas
from highlander.privval import messages, schema, signbytes
from highlander.privval.secretconn import raw_public
from highlander.privval.transport import Connection, secure
from highlander.signstate.client import SignerClient
from highlander.signstate.register import HRS, KeyId

CHAIN = "bench-chain"
MAX_REFUSALS = 50  # refused votes a signer may give in one measurement
HERE = Path(__file__).resolve().parent


def vote_request(height: int, address: bytes) -> object:
    vote = schema.Vote(type=schema.PREVOTE, height=height, round=0, validator_index=0, validator_address=address)
    vote.block_id.hash = hashlib.sha256(b"block %d" % height).digest()
    vote.block_id.part_set_header.total = 1
    vote.block_id.part_set_header.hash = hashlib.sha256(b"parts %d" % height).digest()
    now = time.time_ns()
    vote.timestamp.seconds, vote.timestamp.nanos = divmod(now, 10**9)
    return messages.wrap("sign_vote_request", schema.SignVoteRequest(vote=vote, chain_id=CHAIN))


class Harness:
    """A CometBFT node's privval listener, as far as the benchmark needs one."""

    def __init__(self) -> None:
        import socket

        self.identity = Ed25519PrivateKey.generate()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(120)
        self.port = self.listener.getsockname()[1]

    @property
    def node_id(self) -> str:
        """The node id a signer that pins its node (tmkms) expects."""
        return hashlib.sha256(raw_public(self.identity)).digest()[:20].hex()

    def accept(self) -> Connection:
        sock, _ = self.listener.accept()
        sock.settimeout(30)
        return secure(sock, self.identity)

    def measure(self, name: str, public: bytes, count: int, warmup: int, start_height: int = 1) -> list[float]:
        """``count`` timed votes after ``warmup`` signed ones. A refused vote is
        not timed and the next height is asked: Horcrux's cosigners refuse some
        of their first requests ("signature is invalid") and, now and then, one
        later ("ephemeral public keys do not match"). Refusals are printed; more
        than MAX_REFUSALS end the measurement."""
        connection = self.accept()
        key = Ed25519PublicKey.from_public_bytes(public)
        address = hashlib.sha256(public).digest()[:20]
        samples: list[float] = []
        height, warmed, refused, timed_refusals = start_height, 0, 0, []
        try:
            while len(samples) < count:
                request = vote_request(height, address)
                started = time.perf_counter()
                connection.write_message(request)
                body = connection.read_body()
                elapsed = time.perf_counter() - started
                height += 1
                answer = messages.parse(schema.PrivvalMessage, body).signed_vote_response
                if answer.HasField("error"):
                    refused += 1
                    reason = f"height {height - 1}: {answer.error.description}"
                    if refused > MAX_REFUSALS:
                        raise RuntimeError(f"signer refused {refused} votes, the last at {reason}")
                    if warmed == warmup:
                        timed_refusals.append(reason)
                    continue
                # CometBFT takes only the signature and timestamp from the
                # answer (Horcrux returns nothing else): check those.
                signed = request.sign_vote_request.vote
                signed.timestamp.CopyFrom(answer.vote.timestamp)
                key.verify(answer.vote.signature, signbytes.vote_sign_bytes(CHAIN, signed))
                if warmed < warmup:
                    warmed += 1
                else:
                    samples.append(elapsed)
        finally:
            connection.close()
        if refused:
            print(
                f"{name} refused {refused} votes, {len(timed_refusals)} after the warmup (not timed): {timed_refusals}"
            )
        return samples

    def close(self) -> None:
        self.listener.close()


@contextlib.contextmanager
def process(command: list[str], log: Path, **kwargs: object) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "ab") as out:
        child = subprocess.Popen(command, stdout=out, stderr=out, stdin=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]
    try:
        yield child
    finally:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def write_key(path: Path, private: Ed25519PrivateKey) -> None:
    sys.path.insert(0, str(HERE.parent / "tests"))
    from privval_support import write_key as write

    write(path, private)


def bench_signer(work: Path, private: Ed25519PrivateKey, count: int, warmup: int, register: Path) -> list[float]:
    """``highlander privval`` with the sign-state daemon at ``register``."""
    harness = Harness()
    key_file = work / "priv_validator_key.json"
    write_key(key_file, private)
    config = work / "privval.toml"
    config.write_text(
        f'chain_id = "{CHAIN}"\nkey_file = "{key_file}"\nstate_file = "{work / "state.json"}"\n'
        f'register = "{register}"\nnodes = ["tcp://127.0.0.1:{harness.port}"]\n'
    )
    try:
        command = [sys.executable, "-m", "highlander", "privval", "--config", str(config), "--promote"]
        with process(command, work / "privval.log"):
            return harness.measure("highlander", raw_public(private), count, warmup)
    finally:
        harness.close()


def bench_highlander(work: Path, private: Ed25519PrivateKey, count: int, warmup: int) -> list[float]:
    replicas = LoopbackReplicas(work / "trio")
    try:
        replicas.start()
        return bench_signer(work, private, count, warmup, replicas.socket("node-a"))
    finally:
        replicas.stop()


def bench_signer_only(work: Path, private: Ed25519PrivateKey, count: int, warmup: int) -> list[float]:
    """The signer in front of a register that answers at once: its own share."""
    socket = work / "instant.sock"
    with process([sys.executable, str(HERE / "instant_register.py"), str(socket)], work / "instant.log"):
        wait_until(socket.exists, timeout=15, what=f"the instant register at {socket}")
        return bench_signer(work, private, count, warmup, socket)


def bench_advance_only(work: Path, count: int, warmup: int) -> list[float]:
    """The register's advance alone, one at a time, through the client the signer uses."""
    replicas = LoopbackReplicas(work / "trio")
    key = KeyId(CHAIN, "advance-only")
    samples: list[float] = []
    try:
        replicas.start()
        with SignerClient(replicas.socket("node-a")) as client:
            epoch = client.promote(key).epoch
            for height in range(1, warmup + count + 1):
                digest = hashlib.sha256(b"sign bytes %d" % height).hexdigest()
                started = time.perf_counter()
                client.advance(key, epoch, HRS(height, 0, 2), digest)
                if height > warmup:
                    samples.append(time.perf_counter() - started)
    finally:
        replicas.stop()
    return samples


def bench_tmkms(binary: str, work: Path, private: Ed25519PrivateKey, count: int, warmup: int) -> list[float]:
    harness = Harness()
    key_file = work / "priv_validator_key.json"
    write_key(key_file, private)
    consensus_key = work / "consensus.key"
    subprocess.run([binary, "softsign", "import", str(key_file), str(consensus_key)], check=True, capture_output=True)
    identity = work / "kms-identity.key"
    subprocess.run([binary, "softsign", "keygen", str(identity)], check=True, capture_output=True)
    config = work / "tmkms.toml"
    config.write_text(f"""
[[chain]]
id = "{CHAIN}"
key_format = {{ type = "hex" }}
state_file = "{work / "state.json"}"

[[providers.softsign]]
chain_ids = ["{CHAIN}"]
key_type = "consensus"
path = "{consensus_key}"

[[validator]]
chain_id = "{CHAIN}"
addr = "tcp://{harness.node_id}@127.0.0.1:{harness.port}"
secret_key = "{identity}"
protocol_version = "v0.38"
reconnect = true
""")
    try:
        with process([binary, "start", "-c", str(config)], work / "tmkms.log"):
            return harness.measure("tmkms", raw_public(private), count, warmup)
    finally:
        harness.close()


def bench_horcrux(binary: str, work: Path, private: Ed25519PrivateKey, count: int, warmup: int) -> list[float]:
    """Three Horcrux cosigners, threshold 2, on loopback, all dialing the harness."""
    harness = Harness()
    key_file = work / "priv_validator_key.json"
    write_key(key_file, private)

    def horcrux(*arguments: str) -> None:
        subprocess.run([binary, *arguments], check=True, capture_output=True, cwd=work)

    horcrux("create-ecies-shards", "--shards", "3", "--out", str(work / "ecies"))
    horcrux(
        "create-ed25519-shards",
        "--chain-id",
        CHAIN,
        "--key-file",
        str(key_file),
        "--threshold",
        "2",
        "--shards",
        "3",
        "--out",
        str(work / "ed25519"),
    )
    ports = free_ports(3)
    cosigners = [arg for port in ports for arg in ("--cosigner", f"tcp://127.0.0.1:{port}")]
    homes = []
    for index in range(1, 4):
        home = work / f"cosigner-{index}"
        horcrux(
            "config",
            "init",
            "--home",
            str(home),
            "--node",
            f"tcp://127.0.0.1:{harness.port}",
            *cosigners,
            "--threshold",
            "2",
            "--grpc-timeout",
            "1000ms",
            "--raft-timeout",
            "1000ms",
        )
        shutil.copy(work / "ecies" / f"cosigner_{index}" / "ecies_keys.json", home)
        shutil.copy(work / "ed25519" / f"cosigner_{index}" / f"{CHAIN}_shard.json", home)
        homes.append(home)
    try:
        with contextlib.ExitStack() as stack:
            for index, home in enumerate(homes, start=1):
                stack.enter_context(process([binary, "start", "--home", str(home)], work / f"cosigner-{index}.log"))
            return harness.measure("horcrux", raw_public(private), count, warmup)
    finally:
        harness.close()


def report(name: str, samples: list[float] | str, unit: str = "votes") -> float | None:
    if isinstance(samples, str):
        print(f"{name:<12} unavailable: {samples}")
        return None
    p50, p99 = statistics.median(samples) * 1000, percentile(samples, 99) * 1000
    print(f"{name:<12} p50 {p50:.3f} ms  p99 {p99:.3f} ms  ({len(samples)} {unit})")
    return p50


def attempt(run: Callable[[], list[float]]) -> list[float] | str:
    try:
        return run()
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        return f"{exc} {detail.decode(errors='replace').strip()[:300]}".strip()


TMKMS_VERSION = "0.15.0"
HORCRUX_MODULE = "github.com/strangelove-ventures/horcrux/v3"
HORCRUX_VERSION = "v3.3.2"


def build_peers(directory: Path) -> tuple[str | None, str | None]:
    """Build tmkms (crates.io) and Horcrux (the Go module proxy) into ``directory``
    once; their binaries, or None with the reason printed when one does not build."""
    tmkms = directory / "tmkms" / "bin" / "tmkms"
    if not tmkms.exists():
        print(f"building tmkms {TMKMS_VERSION} (softsign) with cargo into {tmkms.parent}", file=sys.stderr)
        done = subprocess.run(
            [
                "cargo",
                "install",
                "--locked",
                "--root",
                str(directory / "tmkms"),
                "tmkms",
                "--version",
                TMKMS_VERSION,
                "--features=softsign",
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            print(f"tmkms did not build: {done.stderr.strip()[-500:]}", file=sys.stderr)
    horcrux = directory / "horcrux" / "horcrux"
    if not horcrux.exists():
        # go install reads the module's version list, which the proxy here refuses; a
        # dependency of a scratch module is fetched by its exact version and builds.
        print(f"building Horcrux {HORCRUX_VERSION} with go into {horcrux.parent}", file=sys.stderr)
        scratch = directory / "horcrux"
        scratch.mkdir(parents=True, exist_ok=True)
        steps = [
            ["go", "mod", "init", "scratch"],
            ["go", "get", f"{HORCRUX_MODULE}/cmd/horcrux@{HORCRUX_VERSION}"],
            ["go", "build", "-o", str(horcrux), f"{HORCRUX_MODULE}/cmd/horcrux"],
        ]
        for step in steps if not (scratch / "go.mod").exists() else steps[1:]:
            done = subprocess.run(step, cwd=scratch, capture_output=True, text=True)
            if done.returncode:
                print(f"Horcrux did not build ({' '.join(step)}): {done.stderr.strip()[-500:]}", file=sys.stderr)
                break
    return (str(tmkms) if tmkms.exists() else None), (str(horcrux) if horcrux.exists() else None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--count", type=int, default=500, help="timed votes per signer (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed votes first (default: %(default)s)")
    parser.add_argument("--tmkms", default=shutil.which("tmkms"), help="tmkms binary (default: on PATH)")
    parser.add_argument("--horcrux", default=shutil.which("horcrux"), help="horcrux binary (default: on PATH)")
    parser.add_argument(
        "--build",
        type=Path,
        metavar="DIR",
        help="build tmkms and Horcrux from their registries into DIR (once) and use them",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also time the signer alone (a register that answers at once) and the register's advance alone",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs) for inspection")
    args = parser.parse_args()
    if args.build:
        built = build_peers(args.build)
        args.tmkms, args.horcrux = args.tmkms or built[0], args.horcrux or built[1]

    work = Path(tempfile.mkdtemp(prefix="hl-bench-privval-"))
    private = Ed25519PrivateKey.generate()
    try:
        for name in ("highlander", "signer-only", "advance-only", "tmkms", "horcrux"):
            (work / name).mkdir()
        ours = bench_highlander(work / "highlander", private, args.count, args.warmup)
        if args.breakdown:
            signer_only = bench_signer_only(work / "signer-only", private, args.count, args.warmup)
            advance_only = bench_advance_only(work / "advance-only", args.count, args.warmup)
        tmkms = (
            attempt(lambda: bench_tmkms(args.tmkms, work / "tmkms", private, args.count, args.warmup))
            if args.tmkms
            else "no tmkms binary (cargo install tmkms --features=softsign, or --tmkms PATH)"
        )
        horcrux = (
            attempt(lambda: bench_horcrux(args.horcrux, work / "horcrux", private, args.count, args.warmup))
            if args.horcrux
            else "no horcrux binary (--horcrux PATH)"
        )
    finally:
        if args.keep:
            print(f"work directory {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    ours_p50 = report("highlander", ours)
    signer_p50 = report("signer only", signer_only) if args.breakdown else None
    if args.breakdown:
        report("advance only", advance_only, "advances")
    peers = {name: report(name, samples) for name, samples in (("tmkms", tmkms), ("horcrux", horcrux))}
    if signer_p50 and peers["tmkms"]:
        print(f"signer only vs tmkms {signer_p50 / peers['tmkms']:.2f}")
    for name, peer in peers.items():
        ratio = f"{ours_p50 / peer:.2f}" if peer and ours_p50 else "unavailable"
        print(f"ratio vs {name} {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
