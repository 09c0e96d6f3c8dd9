#!/usr/bin/env python3
"""Latency and throughput of sign-state ``advance`` against one local durable write.

Starts three real sign-state daemons on loopback (LoopbackReplicas in a temporary
directory) and measures, through node-a's signer socket:

1. **healthy**: N sequential ``advance`` calls of one key (each a real round
   over three replicas, every replica syncing its log before it answers)
   alternating with N local durable writes of a ~200-byte record (temp
   file, fsync, rename, fsync of the directory: ``adapters.files``) into the
   same file system. Noise hits both alike, so the ratios are what count.
2. **frozen**: the same with node-c stopped (SIGSTOP): the share of OK
   answers (goal 100 %) and p99 against the healthy p99 (goal <= 2).
3. **concurrent**: 100 keys, each advancing from its own signer connection:
   first as fast as they are answered (the capacity), then together offering
   2000 advances/s on a fixed schedule, as validators signing blocks do:
   the rate achieved (goal >= 2000) and p99 from when each advance was due
   (goal <= 10 ms). Group commit syncs many keys' changes at once.
4. node-a's resident memory after those 100 keys (goal <= 50 MiB).
5. **metrics**: the same advances on two trios side by side, one serving
   Prometheus ``/metrics`` and scraped every second, the other not:
   ``metrics p50 ratio`` (goal <= 1.05: the exporter costs nothing measurable).

The last lines are ``p50 ratio X`` (advance p50 / write p50, goal <= 3) and
``p99 ratio Y`` (advance p99 / write p50, goal <= 10).

``--backend`` (repeatable; default ``trio``) measures other backends in the
same run: ``etcd`` (a real three-member cluster on loopback) and
``postgresql`` (a real server, fsync and synchronous_commit on), each behind
sign-state daemons configured for it, with steps 1 and 3 as above (sequential
advances alternating with durable writes; 100 keys at once). The trio's lines
are printed as before; a table at the end gives every backend's p50/p99, as
ratios to the durable write measured alongside, and its advances/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from highlander.adapters.files import write_file
from highlander.signstate.client import SignerClient
from highlander.lab.replicas import LoopbackReplicas
from highlander.signstate.register import HRS, Ballot, KeyId, Record
from highlander.signstate.store import encode_line

TARGET = "node-a"
DIGEST = "cd" * 32  # a sha256, as a signer would send


def percentile(samples: list[float], p: int) -> float:
    """The p-th percentile (1..99), interpolated like statistics.quantiles."""
    return statistics.quantiles(samples, n=100, method="inclusive")[p - 1]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def sequential(
    client: SignerClient, key: KeyId, count: int, reference: Path | None
) -> tuple[list[float], list[float], int]:
    """``count`` advances of one key (and as many durable writes when ``reference`` is
    given); their latencies, the writes', and how many advances were OK."""
    session = client.promote(key)
    data = b"x" * len(encode_line(10**7, key, Record(Ballot(session.epoch, TARGET), HRS(10**7, 0, 3), DIGEST)))
    advances: list[float] = []
    writes: list[float] = []
    ok = 0
    for height in range(1, count + 1):
        started = time.perf_counter()
        answer = client.call(
            {
                "op": "advance",
                "chain_id": key.chain_id,
                "key_id": key.key_id,
                "epoch": session.epoch,
                "height": height,
                "round": 0,
                "step": 1,
                "digest": DIGEST,
            }
        )
        advanced = time.perf_counter()
        advances.append(advanced - started)
        ok += answer.get("status") == "OK"
        if reference is not None:
            write_file(reference, data, mode=0o600)
            writes.append(time.perf_counter() - advanced)
    return advances, writes, ok


async def concurrent(socket_path: Path, keys: int, seconds: float, rate: float | None) -> tuple[int, list[float], int]:
    """Every key advancing from its own connection at once: (advances answered within
    the run, the latency of every advance due in it, failures).

    ``rate`` None: each signer sends its next advance as soon as the last is
    answered (the daemon's capacity). A rate: the signers together offer
    ``rate`` advances a second on a fixed schedule, as validators signing
    blocks do, and a latency counts from when the advance was due, so a
    backlog shows in it.
    """
    latencies: list[float] = []
    failures = in_time = 0
    start = time.monotonic() + 0.5  # all connected and promoted by then
    stop_at = start + seconds
    interval = keys / rate if rate else 0.0

    async def signer(index: int) -> None:
        nonlocal failures, in_time
        reader, writer = await asyncio.open_unix_connection(str(socket_path))
        key = {"chain_id": f"bench-{'open' if rate else 'closed'}", "key_id": f"key-{index}"}

        async def call(document: dict[str, object]) -> dict[str, object]:
            writer.write(json.dumps(document).encode() + b"\n")
            return json.loads(await reader.readline())

        epoch = (await call({"op": "promote", **key}))["epoch"]
        due = start + interval * index / keys  # spread over the interval
        height = 0
        while due < stop_at:
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
            height += 1
            answer = await call(
                {"op": "advance", **key, "epoch": epoch, "height": height, "round": 0, "step": 1, "digest": DIGEST}
            )
            done = time.monotonic()
            latencies.append(done - (due if rate else now))
            failures += answer.get("status") != "OK"
            in_time += done <= stop_at
            due = due + interval if rate else done
        writer.close()

    await asyncio.gather(*(signer(i) for i in range(keys)))
    return in_time, latencies, failures


def measure_trio(args: argparse.Namespace, work: Path, reference: Path) -> dict[str, float]:
    """The built-in trio: every step above, its lines printed as they always were."""
    replicas = LoopbackReplicas(work / "trio")
    try:
        replicas.start()
        with SignerClient(replicas.socket(TARGET)) as client:
            sequential(client, KeyId("bench-warmup", "validator"), args.warmup, reference)
            advances, writes, _ = sequential(client, KeyId("bench-1", "validator"), args.count, reference)
            replicas.signal("node-c", signal.SIGSTOP)
            try:
                frozen, _, frozen_ok = sequential(client, KeyId("bench-frozen", "validator"), args.count // 2, None)
            finally:
                replicas.signal("node-c", signal.SIGCONT)
        time.sleep(1.0)  # node-c works off its backlog
        capacity, _, _ = asyncio.run(concurrent(replicas.socket(TARGET), args.keys, args.seconds, None))
        total, latencies, failures = asyncio.run(
            concurrent(replicas.socket(TARGET), args.keys, args.seconds, args.rate)
        )
        rss = rss_mib(replicas.pid(TARGET))
    finally:
        replicas.stop()

    ms = 1000.0
    advance_p50, advance_p99 = statistics.median(advances) * ms, percentile(advances, 99) * ms
    write_p50 = statistics.median(writes) * ms
    frozen_p50, frozen_p99 = statistics.median(frozen) * ms, percentile(frozen, 99) * ms
    print(f"rounds               {args.count} advances and {args.count} durable writes, alternating")
    print(f"advance p50          {advance_p50:.3f} ms")
    print(f"advance p99          {advance_p99:.3f} ms")
    print(f"advance max          {max(advances) * ms:.3f} ms")
    print(f"write p50            {write_p50:.3f} ms")
    print(f"write p99            {percentile(writes, 99) * ms:.3f} ms")
    print(f"frozen p50           {frozen_p50:.3f} ms (node-c stopped)")
    print(f"frozen p99           {frozen_p99:.3f} ms")
    print(f"frozen OK            {100 * frozen_ok / len(frozen):.1f} % of {len(frozen)} (goal 100 %)")
    print(f"frozen p99 ratio     {frozen_p99 / advance_p99:.2f} (frozen p99 / healthy p99, goal <= 2)")
    print(f"concurrent           {args.keys} keys, each from its own connection, {args.seconds:g} s each run")
    print(f"concurrent capacity  {capacity / args.seconds:.0f} advances/s (each signer as fast as it is answered)")
    print(f"concurrent offered   {args.rate:.0f} advances/s ({args.rate / args.keys:g} a second per key)")
    print(f"concurrent rate      {total / args.seconds:.0f} advances/s (goal >= {args.rate:.0f})")
    print(f"concurrent p50       {statistics.median(latencies) * ms:.3f} ms")
    print(f"concurrent p99       {percentile(latencies, 99) * ms:.3f} ms (goal <= 10 ms)")
    print(f"concurrent failures  {failures}")
    print(f"RSS node-a           {rss:.1f} MiB after {args.keys} keys (goal <= 50 MiB)")
    print(f"p50 ratio {advance_p50 / write_p50:.2f}")
    print(f"p99 ratio {advance_p99 / write_p50:.2f}")
    return summary(advances, writes, capacity, total, latencies, failures, args)


def measure_metrics(args: argparse.Namespace, work: Path) -> None:
    """Two trios side by side, one serving /metrics (and scraped every second), the other
    not: advances alternate between them, so noise hits both alike."""
    import socket
    import threading
    import urllib.request

    plain, metered = LoopbackReplicas(work / "plain"), LoopbackReplicas(work / "metered")
    for node in metered.ports:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            metered.metrics_ports[node] = probe.getsockname()[1]
    stop = threading.Event()

    def scrape() -> None:
        while not stop.wait(1.0):
            with urllib.request.urlopen(f"http://127.0.0.1:{metered.metrics_ports[TARGET]}/metrics", timeout=5):
                pass

    scraper = threading.Thread(target=scrape)
    try:
        plain.start()
        metered.start()
        scraper.start()
        with SignerClient(plain.socket(TARGET)) as off, SignerClient(metered.socket(TARGET)) as on:
            key = KeyId("bench-metrics", "validator")
            sessions = {off: off.promote(key), on: on.promote(key)}
            timings: dict[SignerClient, list[float]] = {off: [], on: []}
            for height in range(1, args.count + 1):
                for client in (off, on) if height % 2 else (on, off):
                    started = time.perf_counter()
                    client.advance(key, sessions[client].epoch, HRS(height, 0, 1), DIGEST)
                    timings[client].append(time.perf_counter() - started)
    finally:
        stop.set()
        if scraper.is_alive():
            scraper.join()
        plain.stop()
        metered.stop()
    p50_off, p50_on = statistics.median(timings[off]) * 1000, statistics.median(timings[on]) * 1000
    print(f"metrics off p50      {p50_off:.3f} ms")
    print(f"metrics on p50       {p50_on:.3f} ms (serving /metrics, scraped every second)")
    print(f"metrics p50 ratio {p50_on / p50_off:.3f} (on / off, goal <= 1.05)")


def measure_store(backend: str, args: argparse.Namespace, work: Path, reference: Path) -> dict[str, float]:
    """etcd or PostgreSQL behind node-a's daemon: sequential and concurrent advances."""
    from highlander.lab.stores import local_register

    with local_register(backend, work / backend) as (nodes, _):
        with SignerClient(nodes.socket(TARGET)) as client:
            sequential(client, KeyId("bench-warmup", "validator"), args.warmup, reference)
            advances, writes, _ = sequential(client, KeyId("bench-1", "validator"), args.count, reference)
        capacity, _, _ = asyncio.run(concurrent(nodes.socket(TARGET), args.keys, args.seconds, None))
        total, latencies, failures = asyncio.run(concurrent(nodes.socket(TARGET), args.keys, args.seconds, args.rate))
    result = summary(advances, writes, capacity, total, latencies, failures, args)
    print(
        f"{backend:<10} advance p50 {result['p50']:.3f} ms, p99 {result['p99']:.3f} ms; write p50 "
        f"{result['write']:.3f} ms; {result['capacity']:.0f} advances/s at most; at {args.rate:.0f} offered: "
        f"{result['rate']:.0f}/s, p99 {result['concurrent_p99']:.3f} ms, {failures} failures"
    )
    return result


def summary(
    advances: list[float],
    writes: list[float],
    capacity: int,
    total: int,
    latencies: list[float],
    failures: int,
    args: argparse.Namespace,
) -> dict[str, float]:
    ms = 1000.0
    return {
        "p50": statistics.median(advances) * ms,
        "p99": percentile(advances, 99) * ms,
        "write": statistics.median(writes) * ms,
        "capacity": capacity / args.seconds,
        "rate": total / args.seconds,
        "concurrent_p99": percentile(latencies, 99) * ms,
        "failures": failures,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--count", type=int, default=2000, help="advances and writes each (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=100, help="untimed advances first (default: %(default)s)")
    parser.add_argument("--keys", type=int, default=100, help="keys advancing at once (default: %(default)s)")
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="length of each concurrent run (default: %(default)s)"
    )
    parser.add_argument(
        "--rate", type=float, default=2000.0, help="advances a second the keys offer together (default: %(default)s)"
    )
    parser.add_argument(
        "--backend",
        action="append",
        choices=("trio", "etcd", "postgresql"),
        help="a backend to measure (repeatable; default: trio)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs) for inspection")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="hl-bench-signstate-"))
    reference = work / "reference" / "record"
    reference.parent.mkdir()
    results: dict[str, dict[str, float]] = {}
    try:
        for backend in dict.fromkeys(args.backend or ["trio"]):
            if backend == "trio":
                results[backend] = measure_trio(args, work, reference)
                measure_metrics(args, work)
            else:
                results[backend] = measure_store(backend, args, work, reference)
    finally:
        if args.keep:
            print(f"work directory       {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    if len(results) > 1 or "trio" not in results:
        print(
            f"\n{'backend':<11}{'p50 ms':>8}{'p99 ms':>8}{'p50 ratio':>11}{'p99 ratio':>11}"
            f"{'max adv/s':>11}{f'at {args.rate:.0f}/s':>10}{'its p99 ms':>12}"
        )
        for backend, r in results.items():
            print(
                f"{backend:<11}{r['p50']:>8.3f}{r['p99']:>8.3f}{r['p50'] / r['write']:>11.2f}"
                f"{r['p99'] / r['write']:>11.2f}{r['capacity']:>11.0f}{r['rate']:>10.0f}{r['concurrent_p99']:>12.1f}"
            )
        print(f"(ratios to one local durable write measured alongside; {args.keys} keys at once for advances/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
