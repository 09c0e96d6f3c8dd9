"""``highlander drill SCENARIO``: failover drills on the lab, measured and checked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from highlander.cli.lab import _directory, dir_option
from highlander.drill.lab import SCENARIOS, DrillError, LabDrill

HELP = (
    "Run SCENARIO on a running lab (highlander lab up) and check its expected outcome:\n\n\b\n"
    + "\n".join(f"{s.name}: {s.summary}" for s in SCENARIOS.values())
    + "\n\nEach iteration reports its phases where they apply: detection (failure -> fence request, or -> "
    "the monitor's failure), fencing (-> fence done), promotion (-> validator started), the signing gap in "
    "the journals and the total; check-journals after each iteration (zero double signs), and the "
    "availability estimate a = 1 - (1 - mtbf/(mttr+mtbf))^2. An iteration whose expected outcome was not "
    "met fails the drill."
)


@click.command(help=HELP)
@click.argument("scenario", type=click.Choice(list(SCENARIOS)))
@dir_option
@click.option("--iterations", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--report", "report_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Write <scenario>.json, <scenario>.txt and the timeline picture <scenario>.html here.")  # fmt: skip
@click.option("--mtbf-hours", type=click.FloatRange(min=0, min_open=True), default=8760.0, show_default=True,
              help="Mean time between failures of one node, for the availability estimate.")  # fmt: skip
@click.option("--timeout", type=click.FloatRange(min=10), default=120, show_default=True,
              help="Seconds each step of a scenario may take (the validator signing again, a fencing).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def drill(scenario: str, directory: Path | None, iterations: int, report_dir: Path | None, mtbf_hours: float,
          timeout: float, as_json: bool) -> None:  # fmt: skip
    from highlander.drill import report
    from highlander.lab.trio import LabError

    if os.geteuid() != 0:
        raise click.ClickException("the drill powers lab nodes off and enters their namespaces: run it as root")
    try:
        runner = LabDrill(_directory(directory), click.echo, timeout=timeout)
        iterations_ = runner.run(scenario, iterations)
    except (DrillError, LabError, TimeoutError) as exc:
        raise click.ClickException(str(exc)) from None
    summary = report.summarize(iterations_, mtbf_hours, nodes=2)
    if report_dir is not None:
        for path in report.write(report_dir, scenario, iterations_, summary):
            click.echo(f"wrote {path}")
    if as_json:
        click.echo(json.dumps({"scenario": scenario, "summary": summary, "iterations": iterations_}, indent=2))
    else:
        click.echo(report.table(scenario, summary))
    if not summary["ok"]:
        failed = sorted({f for it in iterations_ for f in it.get("failed_expectations", [])})
        raise click.ClickException(f"{scenario}: the drill FAILED (double signs {summary['double_signs']}, "
                                   f"dual-active {summary['dual_active']}"
                                   f"{'; not met: ' + '; '.join(failed) if failed else ''}); see the iterations above")  # fmt: skip
