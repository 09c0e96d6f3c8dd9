#!/opt/highlander/venv/bin/python3
"""Failover of the active node on the lab's CometBFT chain: our stack against the stock ClusterLabs stack.

For each stack (``highlander``: ``highlander privval`` promoted on one
node, CometBFT full nodes on both; then ``stock``: fence_ipmilan and one
CometBFT with FilePV under ocf:heartbeat:anything, a cold standby; the same
corosync token), one lab is brought up (``highlander lab up --stack S``),
``highlander drill power-cut-active`` runs ``--iterations`` times on it,
the chain judges every iteration, and the lab is taken down before the next
one starts. Per stack it prints the medians of:

- detection: power cut -> fence request (Corosync's token and consensus,
  the same floor for both stacks);
- fencing: fence request -> fence confirmed;
- promotion: fence confirmed -> the signer promoted (ours) or the
  validator's start returned elsewhere (stock);
- post-detection: fence request -> our validator's next signature;
- total: power cut -> our validator's next signature;
- missed blocks: the heights from the power cut to the first one our
  validator's signature commits again;
- missed after detection: the same from the fence request.

Then ``evidence: N`` (DuplicateVoteEvidence against our validator on both
chains; must be 0), ``missed blocks ratio X`` (ours / stock; goal <= 0.75),
``post-detection missed blocks ratio Y`` (goal <= 0.25), ``total ratio Z``
and, last, ``post-detection ratio W`` (goal <= 0.25). Detection is
Corosync's and the same floor for both stacks; a note gives the arithmetic
of that floor in blocks.

A drill that fails (an iteration's expected outcome not met, an error,
evidence on the chain, the validator moving between iterations unasked) has
kept its evidence in its report directory (``evidence/``) before the lab is
taken down; the benchmark then keeps that report (under ``--keep``, or else
in a new directory under /var/tmp), says where, and stops with exit status 1.

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

HIGHLANDER = str(Path(sys.prefix) / "bin" / "highlander")
STACKS = ("highlander", "stock")
PHASES = ("detection", "fencing", "promotion", "post-detection", "total")
BLOCKS = {"missed blocks": "missed_blocks", "missed after detection": "missed_after_detection"}
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def highlander(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """One highlander command, its output passed through (the drill's progress is the log)."""
    result = subprocess.run([HIGHLANDER, *args], capture_output=True, text=True, timeout=timeout, env=ENV, check=False)
    sys.stderr.write(result.stdout + result.stderr)
    return result


def phases(iteration: dict[str, Any]) -> dict[str, float | None]:
    """The drill's phases plus post-detection (fence request -> first signature elsewhere), and the missed blocks."""
    first = iteration.get("first_signature_after")
    request = iteration.get("fence_request")
    measured = {name: iteration["phases"].get(name) for name in ("detection", "fencing", "promotion", "total")}
    measured["post-detection"] = None if first is None or request is None else round(first["time"] - request, 3)
    for name, key in BLOCKS.items():
        measured[name] = (iteration.get(key) or {}).get("missed")
    return measured


def keep(report: Path, kept: Path | None) -> Path:
    """The drill's report with its evidence, where it outlives this run: as it
    is under ``--keep``, else copied to a new directory under /var/tmp."""
    if kept is not None:
        return report
    target = Path(tempfile.mkdtemp(prefix=f"highlander-failover-{time.strftime('%Y%m%d-%H%M%S')}-", dir="/var/tmp"))
    shutil.copytree(report, target / report.name)
    return target / report.name


def run_stack(
    stack: str, work: Path, iterations: int, timeout: float, kept: Path | None
) -> tuple[list[dict[str, Any]], int]:
    """(the drill's iterations, evidence against our validator on the chain) on a lab of
    ``stack``; a failed drill's report is kept and the benchmark stops once the lab is down."""
    lab = work / f"lab-{stack}"
    report = work / f"report-{stack}"
    failed: str | None = None
    try:
        up = highlander(
            "lab", "up", "--dir", str(lab), "--stack", stack, "--workload", "chain", "--timeout", "400", timeout=600
        )
        if up.returncode != 0:
            sys.exit(f"lab up --stack {stack} failed (exit {up.returncode})")
        drill = highlander(
            "drill",
            "power-cut-active",
            "--dir",
            str(lab),
            "--iterations",
            str(iterations),
            "--report",
            str(report),
            "--timeout",
            str(timeout),
            timeout=iterations * (timeout + 400),
        )
        data = report / "power-cut-active.json"
        if not data.exists():
            failed = f"the drill on the {stack} stack wrote no report (exit {drill.returncode})"
            return [], 0
        if drill.returncode != 0:
            summary = json.loads(data.read_text())["summary"]
            failed = (
                f"the drill on the {stack} stack FAILED: {'; '.join(summary.get('failures', [])) or 'see above'}"
                f"\nreport and evidence kept in {keep(report, kept)}"
            )
            return [], 0
        document = json.loads(data.read_text())
        return document["iterations"], int(document["summary"]["double_signs"])
    finally:
        highlander("lab", "down", "--dir", str(lab), timeout=300)
        if failed is not None:
            sys.exit(failed)


def medians(iterations: list[dict[str, Any]]) -> dict[str, float | None]:
    measured = [phases(it) for it in iterations]
    result: dict[str, float | None] = {}
    for name in (*PHASES, *BLOCKS):
        values = [m[name] for m in measured if m[name] is not None]
        result[name] = statistics.median(values) if values else None
    return result


def table(stack: str, iterations: list[dict[str, Any]]) -> str:
    ok = sum(1 for it in iterations if it["ok"])
    lines = [f"{stack}: {len(iterations)} power cut(s) of the active node, {ok} OK"]
    lines.append(f"  {'phase':<24}{'median':>9}{'min':>9}{'max':>9}")
    measured = [phases(it) for it in iterations]
    for name in (*PHASES, *BLOCKS):
        values = [m[name] for m in measured if m[name] is not None]
        unit = "s" if name in PHASES else "b"
        cells = (
            f"{statistics.median(values):>8.2f}{unit}{min(values):>8.2f}{unit}{max(values):>8.2f}{unit}"
            if values
            else f"{'-':>9}" * 3
        )
        lines.append(f"  {name:<24}{cells}")
    return "\n".join(lines)


def detection_blocks(iterations: list[dict[str, Any]]) -> float | None:
    """The median number of heights the chain made during detection (power cut -> fence request)."""
    counts = [
        it["missed_blocks"]["missed"] - it["missed_after_detection"]["missed"]
        for it in iterations
        if (it.get("missed_blocks") or {}).get("missed") is not None
        and (it.get("missed_after_detection") or {}).get("missed") is not None
    ]
    return statistics.median(counts) if counts else None


def ratio(ours: float | None, theirs: float | None) -> str:
    return "-" if ours is None or not theirs else f"{ours / theirs:.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=10, help="power cuts per stack (default: %(default)s)")
    parser.add_argument(
        "--timeout", type=float, default=120, help="seconds the validator may take to sign again (default: %(default)s)"
    )
    parser.add_argument("--keep", type=Path, help="keep the labs' directories and reports here")
    args = parser.parse_args()
    if args.iterations < 1:
        parser.error("--iterations must be at least 1")
    results: dict[str, list[dict[str, Any]]] = {}
    evidence = 0
    with tempfile.TemporaryDirectory(prefix="hl-failover-") as scratch:
        work = args.keep or Path(scratch)
        for stack in STACKS:
            results[stack], found = run_stack(stack, work, args.iterations, args.timeout, args.keep)
            evidence += found
    for stack in STACKS:
        print(table(stack, results[stack]))
    ours, stock = medians(results["highlander"]), medians(results["stock"])
    floor = detection_blocks(results["highlander"] + results["stock"])
    if floor is not None and stock["missed blocks"]:
        print(
            f"note: detection (the same for both stacks) lasts a median {floor:g} blocks (heights made from the "
            f"power cut to the fence request), which no stack can save: the missed blocks ratio is at least "
            f"{floor:g} / {stock['missed blocks']:g} = {floor / stock['missed blocks']:.3f}"
        )
    print(f"evidence: {evidence}")
    print(f"missed blocks ratio {ratio(ours['missed blocks'], stock['missed blocks'])}")
    print(
        f"post-detection missed blocks ratio {ratio(ours['missed after detection'], stock['missed after detection'])}"
    )
    print(f"total ratio {ratio(ours['total'], stock['total'])}")
    print(f"post-detection ratio {ratio(ours['post-detection'], stock['post-detection'])}")
    return 0 if evidence == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
