#!/opt/highlander/venv/bin/python3
"""Failover of the active node in the lab: our stack against the stock ClusterLabs stack.

For each stack (``highlander``, then ``stock``: fence_ipmilan and
ocf:heartbeat:anything, same corosync token), one lab is brought up
(``highlander lab up --stack S``), ``highlander drill power-cut-active``
runs ``--iterations`` times on it, every journal is checked, and the lab is
taken down before the next one starts. Per stack it prints the medians of:

- detection: power cut -> fence request (Corosync's token and consensus,
  the same floor for both stacks);
- fencing: fence request -> fence confirmed;
- promotion: fence confirmed -> the validator's start returned elsewhere;
- post-detection: fence request -> the standby's first signature;
- total: power cut -> the standby's first signature.

Then ``double signs: N`` (both stacks' journals; ours must be 0), ``total
ratio X`` and, last, ``post-detection ratio Y`` (ours / stock medians; goals
<= 0.75 and <= 0.25).

A drill that fails (an iteration's expected outcome not met, an error, the
validator moving between iterations unasked) has kept its evidence in its
report directory (``evidence/``) before the lab is taken down; the benchmark
then keeps that report (under ``--keep``, or else in a new directory under
/var/tmp), says where, and stops with exit status 1.

Run as root with the interpreter highlander is installed in, after
``highlander install``, while no other lab runs (it starts two, one after
the other).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

try:
    from highlander.drill.journal import check_journals
except ImportError:  # run from a checkout with another interpreter
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from highlander.drill.journal import check_journals

HIGHLANDER = str(Path(sys.prefix) / "bin" / "highlander")
STACKS = ("highlander", "stock")
PHASES = ("detection", "fencing", "promotion", "post-detection", "total")
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def highlander(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """One highlander command, its output passed through (the drill's progress is the log)."""
    result = subprocess.run([HIGHLANDER, *args], capture_output=True, text=True, timeout=timeout, env=ENV,
                            check=False)  # fmt: skip
    sys.stderr.write(result.stdout + result.stderr)
    return result


def phases(iteration: dict[str, Any]) -> dict[str, float | None]:
    """The drill's phases plus post-detection (fence request -> first signature elsewhere)."""
    first = iteration.get("first_signature_after")
    request = iteration.get("fence_request")
    measured = {name: iteration["phases"].get(name) for name in ("detection", "fencing", "promotion", "total")}
    measured["post-detection"] = None if first is None or request is None else round(first["time"] - request, 3)
    return measured


def keep(report: Path, kept: Path | None) -> Path:
    """The drill's report with its evidence, where it outlives this run: as it
    is under ``--keep``, else copied to a new directory under /var/tmp."""
    if kept is not None:
        return report
    target = Path(tempfile.mkdtemp(prefix=f"highlander-failover-{time.strftime('%Y%m%d-%H%M%S')}-", dir="/var/tmp"))
    shutil.copytree(report, target / report.name)
    return target / report.name


def run_stack(stack: str, work: Path, iterations: int, timeout: float,
              kept: Path | None) -> tuple[list[dict[str, Any]], int]:  # fmt: skip
    """(the drill's iterations, double signs in the lab's journals) on a lab of ``stack``;
    a failed drill's report is kept and the benchmark stops once the lab is down."""
    lab = work / f"lab-{stack}"
    report = work / f"report-{stack}"
    failed: str | None = None
    try:
        up = highlander("lab", "up", "--dir", str(lab), "--stack", stack, "--timeout", "240", timeout=400)
        if up.returncode != 0:
            sys.exit(f"lab up --stack {stack} failed (exit {up.returncode})")
        drill = highlander("drill", "power-cut-active", "--dir", str(lab), "--iterations", str(iterations),
                           "--report", str(report), "--timeout", str(timeout),
                           timeout=iterations * (timeout + 400))  # fmt: skip
        data = report / "power-cut-active.json"
        if not data.exists():
            failed = f"the drill on the {stack} stack wrote no report (exit {drill.returncode})"
            return [], 0
        if drill.returncode != 0:
            summary = json.loads(data.read_text())["summary"]
            failed = (f"the drill on the {stack} stack FAILED: {'; '.join(summary.get('failures', [])) or 'see above'}"
                      f"\nreport and evidence kept in {keep(report, kept)}")  # fmt: skip
            return [], 0
        journals = sorted(lab.glob("nodes/*/root/var/log/highlander/journal-*.jsonl"))
        double_signs = len(check_journals(journals).double_signs)
        return json.loads(data.read_text())["iterations"], double_signs
    finally:
        highlander("lab", "down", "--dir", str(lab), timeout=300)
        if failed is not None:
            sys.exit(failed)


def medians(iterations: list[dict[str, Any]]) -> dict[str, float | None]:
    measured = [phases(it) for it in iterations]
    result: dict[str, float | None] = {}
    for name in PHASES:
        values = [m[name] for m in measured if m[name] is not None]
        result[name] = statistics.median(values) if values else None
    return result


def table(stack: str, iterations: list[dict[str, Any]]) -> str:
    ok = sum(1 for it in iterations if it["ok"])
    lines = [f"{stack}: {len(iterations)} power cut(s) of the active node, {ok} OK"]
    lines.append(f"  {'phase':<16}{'median':>9}{'min':>9}{'max':>9}")
    measured = [phases(it) for it in iterations]
    for name in PHASES:
        values = [m[name] for m in measured if m[name] is not None]
        cells = (f"{statistics.median(values):>8.2f}s{min(values):>8.2f}s{max(values):>8.2f}s" if values
                 else f"{'-':>9}" * 3)  # fmt: skip
        lines.append(f"  {name:<16}{cells}")
    return "\n".join(lines)


def ratio(ours: float | None, theirs: float | None) -> str:
    return "-" if ours is None or not theirs else f"{ours / theirs:.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=10, help="power cuts per stack (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=120,
                        help="seconds the validator may take to sign again (default: %(default)s)")  # fmt: skip
    parser.add_argument("--keep", type=Path, help="keep the labs' directories and reports here")
    args = parser.parse_args()
    if args.iterations < 1:
        parser.error("--iterations must be at least 1")
    results: dict[str, list[dict[str, Any]]] = {}
    double_signs = 0
    with tempfile.TemporaryDirectory(prefix="hl-failover-") as scratch:
        work = args.keep or Path(scratch)
        for stack in STACKS:
            results[stack], found = run_stack(stack, work, args.iterations, args.timeout, args.keep)
            double_signs += found
    for stack in STACKS:
        print(table(stack, results[stack]))
    ours, stock = medians(results["highlander"]), medians(results["stock"])
    print(f"double signs: {double_signs}")
    print(f"total ratio {ratio(ours['total'], stock['total'])}")
    print(f"post-detection ratio {ratio(ours['post-detection'], stock['post-detection'])}")
    return 0 if double_signs == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
