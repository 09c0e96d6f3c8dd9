"""The drill report: min / median / max per phase and, on a chain, of the
missed blocks; double signs (on a chain: the evidence it committed against
our validator), dual-active moments; and the expected downtime a year.

The expected downtime is that of an active–standby pair, not of
load-balanced replicas (where Ether Cattle's a = 1 − (1 − mtbf/(mttr +
mtbf))^N belongs): every failure of the active costs one whole failover,

    downtime/year = (year / MTBF) × T_failover + year × (R / (R + MTBF))²

with T_failover the measured median total (the failure to the first
signature elsewhere), MTBF one node's mean time between failures and R its
repair time; the second term is the time both active-capable nodes are down
at once (the second failing while the first is repaired). Expected missed
blocks a year are (year / MTBF) × the median missed blocks of a failover,
plus the both-down time in blocks. Assumed: failures independent and
memoryless; a failure of the standby or the witness costs no signing (their
drills check it); the witness never decides alone.

Findings outside the iterations (the validator moved unasked between two of
them) fail the drill as a failed iteration does; each failed iteration and
each finding names the folder of its evidence, relative to the report."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from highlander.drill import timeline

PHASES = ("detection", "fencing", "promotion", "signing_gap", "total")
# What the chain counts per iteration: blocks missed from the failure, and from the fence request.
BLOCKS = ("missed_blocks", "missed_after_detection")
YEAR = 365 * 86400.0
FORMULA = "downtime/year = (year/MTBF) x T_failover + year x (R/(R+MTBF))^2"


def expected_per_year(
    failover_seconds: float,
    mtbf_hours: float,
    repair_hours: float,
    missed_blocks: float | None = None,
    block_seconds: float | None = None,
) -> dict[str, Any]:
    """The expected cost a year of an active–standby pair (see the module's formula)."""
    mtbf, repair = mtbf_hours * 3600.0, repair_hours * 3600.0
    failures = YEAR / mtbf
    both_down = YEAR * (repair / (repair + mtbf)) ** 2
    expected: dict[str, Any] = {
        "formula": FORMULA,
        "failures_of_the_active_per_year": failures,
        "failover_seconds": failover_seconds,
        "mtbf_hours": mtbf_hours,
        "repair_hours": repair_hours,
        "both_down_seconds_per_year": both_down,
        "downtime_seconds_per_year": failures * failover_seconds + both_down,
    }
    if missed_blocks is not None and block_seconds:
        expected["block_seconds"] = block_seconds
        expected["missed_blocks_per_failover"] = missed_blocks
        expected["missed_blocks_per_year"] = failures * missed_blocks + both_down / block_seconds
    return expected


def _stats(values: Sequence[float]) -> dict[str, Any] | None:
    if not values:
        return None
    return {"min": min(values), "median": round(statistics.median(values), 3), "max": max(values), "n": len(values)}


def failures(iterations: Sequence[dict[str, Any]], findings: Sequence[dict[str, Any]] = ()) -> list[str]:
    """One line per failed iteration and per finding, with its evidence folder."""
    lines = []
    for it in iterations:
        if not it.get("ok", True):
            what = it.get("error") or "; ".join(it.get("failed_expectations") or []) or "double signs or two signers"
            lines.append(
                f"iteration {it.get('iteration')} ({it.get('scenario')}) FAILED: {what}"
                f"{'; evidence: ' + it['evidence'] if it.get('evidence') else ''}"
            )
    for f in findings:
        if f.get("kind") == "evidence":
            lines.append(
                f"before iteration {f['before_iteration']}: the CHAIN COMMITTED EVIDENCE of a double sign "
                f"by our validator at heights {', '.join(map(str, f['heights']))}"
                f"{'; evidence: ' + f['evidence'] if f.get('evidence') else ''}"
            )
            continue
        lines.append(
            f"before iteration {f['before_iteration']}: the validator moved UNASKED (left on "
            f"{', '.join(f['left_on']) or 'no node'}, then on {', '.join(f['now_on']) or 'no node'}, "
            f"{len(f['operations'])} start/stop)"
            f"{'; the drill stopped: ' + f['reason'] if f.get('reason') else ''}"
            f"{'; evidence: ' + f['evidence'] if f.get('evidence') else ''}"
        )
    return lines


def _totals(iterations: Sequence[dict[str, Any]], findings: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What every summary starts with: counts, and OK only without a failed iteration or a finding."""
    return {
        "iterations": len(iterations),
        "ok": all(it["ok"] for it in iterations) and not findings,
        "double_signs": sum(it["double_signs"] for it in iterations)
        + sum(len(f["found"]) for f in findings if f.get("kind") == "evidence"),
        "dual_active": sum(it["dual_active"] for it in iterations),
        "unasked_moves": sum(1 for f in findings if f.get("kind") != "evidence"),
        "evidence_heights": sorted(
            {h for it in iterations for h in it.get("chain", {}).get("evidence_heights", [])}
            | {h for f in findings for h in f.get("heights", [])}
        ),
        "failures": failures(iterations, findings),
    }


def summarize(
    iterations: Sequence[dict[str, Any]],
    mtbf_hours: float,
    nodes: int = 2,
    findings: Sequence[dict[str, Any]] = (),
    repair_hours: float = 24.0,
) -> dict[str, Any]:
    """Min/median/max of every phase (and of the missed blocks on a chain) and the expected cost a year."""
    stats = {
        phase: _stats([it["phases"][phase] for it in iterations if it["phases"].get(phase) is not None])
        for phase in PHASES
    }
    blocks = {
        name: _stats([it[name]["missed"] for it in iterations if (it.get(name) or {}).get("missed") is not None])
        for name in BLOCKS
    }
    summary: dict[str, Any] = {
        **_totals(iterations, findings),
        "phases": stats,
        "mtbf_hours": mtbf_hours,
        "active_capable_nodes": nodes,
    }
    if any(blocks.values()):
        summary["blocks"] = blocks
    if stats["total"]:
        missed = blocks["missed_blocks"]["median"] if blocks["missed_blocks"] else None
        block_seconds = _block_seconds(iterations)
        summary["expected"] = expected_per_year(
            stats["total"]["median"], mtbf_hours, repair_hours, missed, block_seconds
        )
    return summary


def _block_seconds(iterations: Sequence[dict[str, Any]]) -> float | None:
    """The chain's median time between consecutive blocks in the iterations' windows."""
    gaps = [
        b[1] - a[1]
        for it in iterations
        for a, b in zip(it.get("blocks") or [], (it.get("blocks") or [])[1:])
        if b[0] == a[0] + 1
    ]
    return round(statistics.median(gaps), 3) if gaps else None


def soak_summary(
    iterations: Sequence[dict[str, Any]],
    mtbf_hours: float,
    nodes: int = 2,
    findings: Sequence[dict[str, Any]] = (),
    repair_hours: float = 24.0,
) -> dict[str, Any]:
    """A run of mixed scenarios: the totals (missed blocks summed on a chain),
    and each scenario's own summary (in the order the scenarios first ran)."""
    names = dict.fromkeys(it["scenario"] for it in iterations)
    totals = {
        name: sum(it[name]["missed"] for it in iterations if (it.get(name) or {}).get("missed") is not None)
        for name in BLOCKS
    }
    return {
        **_totals(iterations, findings),
        **({"missed_blocks_total": totals} if any(it.get("missed_blocks") for it in iterations) else {}),
        "scenarios": {
            name: summarize(
                [it for it in iterations if it["scenario"] == name], mtbf_hours, nodes, repair_hours=repair_hours
            )
            for name in names
        },
    }


def table(scenario: str, summary: dict[str, Any]) -> str:
    """The text table of a summary, or of each scenario of a soak's summary."""
    if "scenarios" in summary:
        lines = [
            f"{scenario}: {summary['iterations']} iteration(s) of {len(summary['scenarios'])} scenarios, "
            f"{'OK' if summary['ok'] else 'FAILED'}; double signs: {summary['double_signs']}; "
            f"dual-active moments: {summary['dual_active']}"
        ]
        if "missed_blocks_total" in summary:
            total = summary["missed_blocks_total"]
            lines.append(
                f"  missed blocks in all: {total['missed_blocks']} from the failures, "
                f"{total['missed_after_detection']} from the fence requests"
            )
        lines += [
            "\n".join("  " + line for line in table(name, s).splitlines() if not line.startswith("  ! "))
            for name, s in summary["scenarios"].items()
        ]
        return "\n".join(lines + [f"  ! {line}" for line in summary.get("failures", [])])
    lines = [f"{scenario}: {summary['iterations']} iteration(s), {'OK' if summary['ok'] else 'FAILED'}"]
    lines.append(f"  {'phase':<13}{'min':>9}{'median':>9}{'max':>9}")
    for phase in PHASES:
        s = summary["phases"].get(phase)
        cells = [f"{s[k]:>8.2f}s" for k in ("min", "median", "max")] if s else [f"{'-':>9}"] * 3
        lines.append(f"  {phase:<13}{''.join(cells)}")
    for name, label in zip(BLOCKS, ("missed blocks", "after detect.")):
        b = (summary.get("blocks") or {}).get(name)
        if b:
            lines.append(f"  {label:<13}{''.join(f'{b[k]:>9g}' for k in ('min', 'median', 'max'))}  (blocks)")
    signs = "double signs"
    if summary.get("blocks") is not None or summary.get("evidence_heights"):
        signs = "evidence of a double sign by our validator on the chain"
    heights = ", ".join(map(str, summary.get("evidence_heights") or []))
    lines.append(
        f"  {signs}: {summary['double_signs']}{' at heights ' + heights if heights else ''}"
        f"; dual-active moments: {summary['dual_active']}"
    )
    if "expected" in summary:
        lines += expected_lines(summary["expected"])
    lines += [f"  ! {line}" for line in summary.get("failures", [])]
    return "\n".join(lines)


def expected_lines(e: dict[str, Any]) -> list[str]:
    """The expected cost a year, with its formula and assumptions."""
    lines = [
        f"  expected downtime a year: {e['downtime_seconds_per_year']:.3g} s = "
        f"{e['failures_of_the_active_per_year']:.3g} failure(s) of the active x {e['failover_seconds']:.2f} s failover + {e['both_down_seconds_per_year']:.2g} s "
        f"both active nodes down",
        f"    {e['formula']}, MTBF {e['mtbf_hours']:g} h of one node, R {e['repair_hours']:g} h to repair one",
    ]
    if "missed_blocks_per_year" in e:
        lines.append(
            f"  expected missed blocks a year: {e['missed_blocks_per_year']:.3g} "
            f"({e['missed_blocks_per_failover']:g} a failover, {e['block_seconds']:.2f} s blocks)"
        )
    lines.append(
        "    assumed: failures independent and memoryless; only a failure of the active costs signing "
        "(the standby's and the witness's drills check it)"
    )
    return lines


def document(
    scenario: str,
    iterations: Sequence[dict[str, Any]],
    summary: dict[str, Any],
    findings: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The JSON report."""
    return {"scenario": scenario, "summary": summary, "iterations": list(iterations), "findings": list(findings)}


def write(
    directory: Path,
    scenario: str,
    iterations: Sequence[dict[str, Any]],
    summary: dict[str, Any],
    findings: Sequence[dict[str, Any]] = (),
) -> list[Path]:
    """``<scenario>.json``, ``<scenario>.txt`` and the timeline picture ``<scenario>.html``
    in ``directory``; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / f"{scenario}.json"
    text = directory / f"{scenario}.txt"
    picture = directory / f"{scenario}.html"
    data.write_text(json.dumps(document(scenario, iterations, summary, findings), indent=2) + "\n")
    text.write_text(table(scenario, summary) + "\n")
    picture.write_text(timeline.page(scenario, iterations, table(scenario, summary), findings), encoding="utf-8")
    return [data, text, picture]
