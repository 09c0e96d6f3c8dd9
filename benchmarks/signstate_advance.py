#!/usr/bin/env python3
"""Latency of a sign-state ``advance`` against one local durable write.

Starts three real sign-state daemons on loopback (a LocalTrio in a temporary
directory), promotes one key through node-a's signer socket, then alternates
N sequential ``advance`` calls (each a real round over three replicas, every
replica fsyncing its record and directory before it answers) with N local
durable writes of a ~200-byte record (``store.write_durably``: temp file,
fsync, rename, fsync of the directory) into the same file system. Noise hits
both alike, so the ratios are what count.

Also prints node-a's resident memory after 100 more keys (promote + advance
each; goal <= 50 MiB). The last two lines are ``p50 ratio X`` (advance p50 /
write p50, goal <= 4) and ``p99 ratio Y`` (advance p99 / write p50, goal <= 10).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from highlander.signstate.client import SignerClient
from highlander.signstate.localtrio import LocalTrio
from highlander.signstate.register import HRS, KeyId, Record
from highlander.signstate.store import encode, write_durably

TARGET = "node-a"


def percentile(samples: list[float], p: int) -> float:
    """The p-th percentile (1..99), interpolated like statistics.quantiles."""
    return statistics.quantiles(samples, n=100, method="inclusive")[p - 1]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--count", type=int, default=2000, help="advances and writes each (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed rounds first (default: %(default)s)")
    parser.add_argument("--keys", type=int, default=100, help="keys created before reading RSS (default: %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs) for inspection")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="hl-bench-signstate-"))
    trio = LocalTrio(work)
    client: SignerClient | None = None
    try:
        trio.start()
        client = SignerClient(trio.socket(TARGET))
        key = KeyId("bench-1", "validator")
        session = client.promote(key)
        # The reference: one record like a replica's, written the way a replica
        # writes it, next to the replicas' state directories.
        reference = work / "reference" / "record.json"
        reference.parent.mkdir()
        data = encode(key, Record(session.epoch, HRS(10**7, 0, 3), "ab" * 32))
        digest = "cd" * 32  # a sha256, as a signer would send

        advances: list[float] = []
        writes: list[float] = []
        for i in range(args.warmup + args.count):
            height = i + 1
            started = time.perf_counter()
            client.advance(key, session.epoch, HRS(height, 0, 1), digest)
            advanced = time.perf_counter()
            write_durably(reference, data)
            written = time.perf_counter()
            if i >= args.warmup:
                advances.append(advanced - started)
                writes.append(written - advanced)

        for i in range(args.keys):
            other = KeyId("bench-rss", f"key-{i}")
            other_session = client.promote(other)
            client.advance(other, other_session.epoch, HRS(1, 0, 1), digest)
        rss = rss_mib(trio.pid(TARGET))
    finally:
        if client is not None:
            client.close()
        trio.stop()
        if args.keep:
            print(f"work directory     {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    advance_p50 = statistics.median(advances) * 1000
    advance_p99 = percentile(advances, 99) * 1000
    write_p50 = statistics.median(writes) * 1000
    total = sum(advances)
    print(f"data size          {len(data)} bytes per durable write")
    print(f"rounds             {args.count} advances and {args.count} durable writes, alternating")
    print(f"advances/s         {len(advances) / total:.0f} (sequential, one signer)")
    print(f"advance p50        {advance_p50:.3f} ms")
    print(f"advance p99        {advance_p99:.3f} ms")
    print(f"advance max        {max(advances) * 1000:.3f} ms")
    print(f"write p50          {write_p50:.3f} ms")
    print(f"write p99          {percentile(writes, 99) * 1000:.3f} ms")
    print(f"RSS node-a         {rss:.1f} MiB after {args.keys} more keys (goal <= 50 MiB)")
    print(f"p50 ratio {advance_p50 / write_p50:.2f}")
    print(f"p99 ratio {advance_p99 / write_p50:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
