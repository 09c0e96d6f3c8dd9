#!/opt/highlander/venv/bin/python3
"""Verified ``off`` through fence_highlander_ipmi against fence_ipmilan, same simulated BMC.

One OpenIPMI ``ipmi_sim`` on 127.0.0.1 (started and stopped by PID). Each
round powers the simulated chassis on behind the BMC's back (outside the
timed part), times one whole ``off`` run of our agent, powers it on again and
times one of fence_ipmilan; both get the same options on stdin (ip, ipport,
username, password, lanplus=1, cipher=3) and a bare environment, as
pacemaker-fenced gives them. A run counts only if it exits 0 and the
simulator then records the chassis off.

Last line: ``ratio X`` = median ours / median fence_ipmilan (goal <= 0.25).
fence_ipmilan spends most of its ~2.1 s in fixed waits (power_wait 2 s); ours
polls the power every 0.1 s and keeps one RMCP+ session for the action.

Run with the interpreter highlander is installed in (the default on the
first line), after ``highlander install``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    from highlander.lab.ipmisim import IpmiSim
except ImportError:  # run from a checkout with another interpreter
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from highlander.lab.ipmisim import IpmiSim

OURS = "/usr/sbin/fence_highlander_ipmi"
THEIRS = "/usr/sbin/fence_ipmilan"
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def timed_off(agent: str, sim: IpmiSim) -> float:
    """Wall seconds of one verified off; exits if it failed or left the chassis on."""
    sim.set_power(True)
    stdin = sim.fence_stdin("off").encode()
    started = time.perf_counter()
    result = subprocess.run([agent], input=stdin, capture_output=True, env=ENV, timeout=120, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0 or sim.power != "off":
        error = result.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        sys.exit(f"{agent} off: exit {result.returncode}, chassis {sim.power}: {error[0]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10, help="off runs of each agent (default: %(default)s)")
    parser.add_argument("--ours", default=OURS, help="our agent (default: %(default)s)")
    parser.add_argument("--theirs", default=THEIRS, help="the reference agent (default: %(default)s)")
    args = parser.parse_args()
    for agent in (args.ours, args.theirs):
        if not Path(agent).is_file():
            sys.exit(f"{agent} is not installed (./bootstrap test, or highlander install)")

    ours, theirs = [], []
    with tempfile.TemporaryDirectory(prefix="hl-bench-ipmi-") as work:
        sim = IpmiSim(Path(work) / "bmc")
        try:
            sim.start()
            for _ in range(args.rounds):
                ours.append(timed_off(args.ours, sim))
                theirs.append(timed_off(args.theirs, sim))
        finally:
            sim.stop()
    ours_ms = statistics.median(ours) * 1000
    theirs_ms = statistics.median(theirs) * 1000
    print("simulated BMC      ipmi_sim on 127.0.0.1, cipher suite 3")
    print(f"rounds             {args.rounds} of each, alternating")
    print(f"ours median        {ours_ms:.1f} ms  (min {min(ours) * 1000:.1f}, max {max(ours) * 1000:.1f})")
    print(f"fence_ipmilan      {theirs_ms:.1f} ms  (min {min(theirs) * 1000:.1f}, max {max(theirs) * 1000:.1f})")
    print(f"ratio {ours_ms / theirs_ms:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
