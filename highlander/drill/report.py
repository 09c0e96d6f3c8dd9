"""The drill report: min / median / max per phase, double signs, dual-active
moments, and the availability estimate of the Ether Cattle seed,
a = 1 − (1 − mtbf/(mttr + mtbf))^N, with the measured MTTR (median total:
power cut to the standby's first signature) and N active-capable nodes."""

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


def summarize(iterations: Sequence[dict[str, Any]], mtbf_hours: float, nodes: int = 2) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    for phase in PHASES:
        values = [it["phases"][phase] for it in iterations if it["phases"].get(phase) is not None]
        stats[phase] = (
            {"min": min(values), "median": round(statistics.median(values), 3), "max": max(values), "n": len(values)}
            if values else None
        )  # fmt: skip
    summary: dict[str, Any] = {
        "iterations": len(iterations),
        "ok": all(it["ok"] for it in iterations),
        "double_signs": sum(it["double_signs"] for it in iterations),
        "dual_active": sum(it["dual_active"] for it in iterations),
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


def soak_summary(iterations: Sequence[dict[str, Any]], mtbf_hours: float, nodes: int = 2) -> dict[str, Any]:
    """A run of mixed scenarios: the totals, and each scenario's own summary
    (in the order the scenarios first ran)."""
    names = dict.fromkeys(it["scenario"] for it in iterations)
    return {
        "iterations": len(iterations),
        "ok": all(it["ok"] for it in iterations),
        "double_signs": sum(it["double_signs"] for it in iterations),
        "dual_active": sum(it["dual_active"] for it in iterations),
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
        lines += ["\n".join("  " + line for line in table(name, s).splitlines())
                  for name, s in summary["scenarios"].items()]  # fmt: skip
        return "\n".join(lines)
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
    return "\n".join(lines)


def write(directory: Path, scenario: str, iterations: Sequence[dict[str, Any]], summary: dict[str, Any]) -> list[Path]:
    """``<scenario>.json``, ``<scenario>.txt`` and the timeline picture ``<scenario>.html``
    in ``directory``; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / f"{scenario}.json"
    text = directory / f"{scenario}.txt"
    picture = directory / f"{scenario}.html"
    data.write_text(json.dumps({"scenario": scenario, "summary": summary, "iterations": list(iterations)}, indent=2) + "\n")
    text.write_text(table(scenario, summary) + "\n")
    picture.write_text(timeline.page(scenario, iterations, table(scenario, summary)), encoding="utf-8")
    return [data, text, picture]
