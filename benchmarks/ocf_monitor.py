#!/usr/bin/env python3
"""Whole-process cost of ``validator monitor`` against bare ``python -c pass``.

Pacemaker runs monitor every few seconds on every node, so an agent's
start-up is its main cost. This starts the demo chain through the installed
agent, then times ``monitor`` (depth 0, resource running) and the same
interpreter's ``-c pass`` alternately, so machine noise hits both alike.

Last line: ``ratio X`` = median monitor wall time / median ``-c pass`` (goal
<= 2.5). Also prints the agent's peak RSS (goal <= 25 MiB).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from highlander.lab.ports import free_ports

AGENT = "/usr/lib/ocf/resource.d/highlander/validator"


def interpreter_of(agent: str) -> str:
    """The interpreter named on the agent's first line: the fair reference."""
    with open(agent) as f:
        first = f.readline()
    if not first.startswith("#!"):
        sys.exit(f"{agent} has no #! line")
    return first[2:].split()[0]


def timed_run(argv: list[str], env: dict[str, str]) -> tuple[float, int, int]:
    """Wall seconds, exit status and peak RSS (KiB) of one whole process."""
    started = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env)
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - started
    return elapsed, os.waitstatus_to_exitcode(status), usage.ru_maxrss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", default=AGENT, help="installed validator agent (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=200, help="measurements of each (default: %(default)s)")
    args = parser.parse_args()

    python = interpreter_of(args.agent)
    highlander = str(Path(python).parent / "highlander")
    work = tempfile.mkdtemp(prefix="hl-bench-")
    [port] = free_ports(1)
    # What pacemaker-execd passes to a recurring monitor, minus what is irrelevant here.
    env = {
        "OCF_ROOT": "/usr/lib/ocf",
        "OCF_RA_VERSION_MAJOR": "1",
        "OCF_RA_VERSION_MINOR": "1",
        "OCF_RESOURCE_INSTANCE": "bench",
        "OCF_RESOURCE_TYPE": "validator",
        "OCF_RESKEY_CRM_meta_interval": "10000",
        "OCF_RESKEY_CRM_meta_timeout": "20000",
        "OCF_RESKEY_command": f"{highlander} demo-chain --listen 127.0.0.1:{port} --catch-up 0",
        "OCF_RESKEY_health_url": f"http://127.0.0.1:{port}/status",
        "OCF_RESKEY_pidfile": f"{work}/bench.pid",
        # Monitor never asks the sign-state register (only start does), so the
        # benchmark runs without one.
        "OCF_RESKEY_signstate": "false",
        "OCF_RESKEY_logfile": f"{work}/bench.log",
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    }
    start = subprocess.run([args.agent, "start"], env=env, capture_output=True, text=True)
    if start.returncode != 0:
        sys.exit(f"validator start failed ({start.returncode}): {start.stderr.strip()}")
    monitor_times, pass_times, peak_kib = [], [], 0
    try:
        for _ in range(args.rounds):
            elapsed, code, rss = timed_run([args.agent, "monitor"], env)
            if code != 0:
                sys.exit(f"validator monitor returned {code}, expected 0 (running)")
            monitor_times.append(elapsed)
            peak_kib = max(peak_kib, rss)
            elapsed, _, _ = timed_run([python, "-c", "pass"], {"PATH": env["PATH"]})
            pass_times.append(elapsed)
    finally:
        subprocess.run([args.agent, "stop"], env=env, capture_output=True)
    monitor_ms = statistics.median(monitor_times) * 1000
    pass_ms = statistics.median(pass_times) * 1000
    print(f"interpreter        {python}")
    print(f"rounds             {args.rounds} of each, alternating")
    print(f"monitor median     {monitor_ms:.2f} ms")
    print(f"python -c pass     {pass_ms:.2f} ms")
    print(f"peak RSS           {peak_kib / 1024:.1f} MiB (goal <= 25 MiB)")
    print(f"ratio {monitor_ms / pass_ms:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
