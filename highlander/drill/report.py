"""The drill report: min / median / max per phase, double signs, dual-active
moments, and the availability estimate of the Ether Cattle seed,
a = 1 − (1 − mtbf/(mttr + mtbf))^N, with the measured MTTR (median total:
power cut to the standby's first signature) and N active-capable nodes.

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


def availability(mttr_seconds: float, mtbf_hours: float, nodes: int = 2) -> float:
    """a = 1 − (1 − mtbf/(mttr + mtbf))^N: the chance at least one of N nodes is up."""
    return 1.0 - unavailability(mttr_seconds, mtbf_hours, nodes)


def unavailability(mttr_seconds: float, mtbf_hours: float, nodes: int = 2) -> float:
    """1 − a = (mttr/(mttr + mtbf))^N, computed directly (1 − a underflows a float's digits)."""
    mtbf = mtbf_hours * 3600.0
    return float((mttr_seconds / (mttr_seconds + mtbf)) ** nodes)


def failures(iterations: Sequence[dict[str, Any]], findings: Sequence[dict[str, Any]] = ()) -> list[str]:
    """One line per failed iteration and per finding, with its evidence folder."""
    lines = []
    for it in iterations:
        if not it.get("ok", True):
            what = it.get("error") or "; ".join(it.get("failed_expectations") or []) or "double signs or two signers"
            lines.append(f"iteration {it.get('iteration')} ({it.get('scenario')}) FAILED: {what}"
                         f"{'; evidence: ' + it['evidence'] if it.get('evidence') else ''}")  # fmt: skip
    for f in findings:
        lines.append(f"before iteration {f['before_iteration']}: the validator moved UNASKED (left on "
                     f"{', '.join(f['left_on']) or 'no node'}, then on {', '.join(f['now_on']) or 'no node'}, "
                     f"{len(f['operations'])} start/stop)"
                     f"{'; the drill stopped: ' + f['reason'] if f.get('reason') else ''}"
                     f"{'; evidence: ' + f['evidence'] if f.get('evidence') else ''}")  # fmt: skip
    return lines


def _totals(iterations: Sequence[dict[str, Any]], findings: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What every summary starts with: counts, and OK only without a failed iteration or a finding."""
    return {
        "iterations": len(iterations),
        "ok": all(it["ok"] for it in iterations) and not findings,
        "double_signs": sum(it["double_signs"] for it in iterations),
        "dual_active": sum(it["dual_active"] for it in iterations),
        "unasked_moves": len(findings),
        "failures": failures(iterations, findings),
    }


def summarize(iterations: Sequence[dict[str, Any]], mtbf_hours: float, nodes: int = 2,
              findings: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:  # fmt: skip
    stats: dict[str, Any] = {}
    for phase in PHASES:
        values = [it["phases"][phase] for it in iterations if it["phases"].get(phase) is not None]
        stats[phase] = (
            {"min": min(values), "median": round(statistics.median(values), 3), "max": max(values), "n": len(values)}
            if values else None
        )  # fmt: skip
    summary: dict[str, Any] = {
        **_totals(iterations, findings),
        "phases": stats,
        "mtbf_hours": mtbf_hours,
        "active_capable_nodes": nodes,
    }
    if stats["total"]:
        mttr = stats["total"]["median"]
        u = unavailability(mttr, mtbf_hours, nodes)
        summary["mttr_seconds"] = mttr
        summary["availability"] = 1.0 - u
        summary["unavailability"] = u
        summary["downtime_seconds_per_year"] = u * 365 * 86400
    return summary


def soak_summary(iterations: Sequence[dict[str, Any]], mtbf_hours: float, nodes: int = 2,
                 findings: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:  # fmt: skip
    """A run of mixed scenarios: the totals, and each scenario's own summary
    (in the order the scenarios first ran)."""
    names = dict.fromkeys(it["scenario"] for it in iterations)
    return {
        **_totals(iterations, findings),
        "scenarios": {
            name: summarize([it for it in iterations if it["scenario"] == name], mtbf_hours, nodes) for name in names
        },
    }


def table(scenario: str, summary: dict[str, Any]) -> str:
    """The text table of a summary, or of each scenario of a soak's summary."""
    if "scenarios" in summary:
        lines = [f"{scenario}: {summary['iterations']} iteration(s) of {len(summary['scenarios'])} scenarios, "
                 f"{'OK' if summary['ok'] else 'FAILED'}; double signs: {summary['double_signs']}; "
                 f"dual-active moments: {summary['dual_active']}"]  # fmt: skip
        lines += ["\n".join("  " + line for line in table(name, s).splitlines() if not line.startswith("  ! "))
                  for name, s in summary["scenarios"].items()]  # fmt: skip
        return "\n".join(lines + [f"  ! {line}" for line in summary.get("failures", [])])
    lines = [f"{scenario}: {summary['iterations']} iteration(s), {'OK' if summary['ok'] else 'FAILED'}"]
    lines.append(f"  {'phase':<13}{'min':>9}{'median':>9}{'max':>9}")
    for phase in PHASES:
        s = summary["phases"].get(phase)
        cells = [f"{s[k]:>8.2f}s" for k in ("min", "median", "max")] if s else [f"{'-':>9}"] * 3
        lines.append(f"  {phase:<13}{''.join(cells)}")
    lines.append(f"  double signs: {summary['double_signs']}; dual-active moments: {summary['dual_active']}")
    if "availability" in summary:
        lines.append(
            f"  availability with MTTR {summary['mttr_seconds']:.2f} s, MTBF {summary['mtbf_hours']:g} h, "
            f"N={summary['active_capable_nodes']}: a = 1 - {summary['unavailability']:.2g} "
            f"(~{summary['downtime_seconds_per_year']:.2g} s down a year)"
        )
    lines += [f"  ! {line}" for line in summary.get("failures", [])]
    return "\n".join(lines)


def document(scenario: str, iterations: Sequence[dict[str, Any]], summary: dict[str, Any],
             findings: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:  # fmt: skip
    """The JSON report."""
    return {"scenario": scenario, "summary": summary, "iterations": list(iterations), "findings": list(findings)}


def write(directory: Path, scenario: str, iterations: Sequence[dict[str, Any]], summary: dict[str, Any],
          findings: Sequence[dict[str, Any]] = ()) -> list[Path]:  # fmt: skip
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
