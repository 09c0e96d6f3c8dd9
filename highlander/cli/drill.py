"""``highlander drill SCENARIO``: failover drills on the lab or on a real cluster, measured and checked."""

from __future__ import annotations

import json
import random
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from highlander.adapters.ssh import SshError
from highlander.drill.scenarios import SCENARIOS, Drill, DrillError
from highlander.drill.site import Site, SiteError
from highlander.inventory.model import Inventory, InventoryError

if TYPE_CHECKING:
    from highlander.drill.evidence import Progress

# What stops a drill with one clear line (the cluster, the lab or the SSH set-up).
ERRORS = (DrillError, SiteError, SshError, InventoryError, TimeoutError)

HELP = (
    "Run SCENARIO on a running lab (highlander lab up), or on a real cluster with --inventory, and check its "
    "expected outcome:\n\n\b\n"
    + "\n".join(
        f"{s.name}: {s.summary}{'' if s.needs in (None, 'power') else ' (lab only)'}" for s in SCENARIOS.values()
    )
    + "\n\nEach iteration reports its phases where they apply: detection (failure -> fence request, or -> "
    "the monitor's failure), fencing (-> fence done), promotion (-> validator started or its signer "
    "promoted), the signing gap and the total. On the lab's CometBFT chain the chain is the checker: after each "
    "iteration every height's commit is read for our validator's signature (committed, nil, absent) and every "
    "piece of evidence the chain committed; evidence against our validator (a DuplicateVoteEvidence: a double "
    "sign) fails the drill, naming the heights, and the missed blocks from the failure (and from the fence "
    "request) to our next committed signature are reported. With the demo signer, check-journals runs after "
    "each iteration (zero double signs). Then the expected downtime a year of an active-standby pair: "
    "(year/MTBF) x the median failover + the time both active nodes are down, and the expected missed blocks. "
    "An iteration whose expected outcome was not "
    "met fails the drill, and so does the validator moving between iterations, where nothing was asked "
    "(an unasked move). A failed iteration or an unasked move keeps its evidence (every node's crm_mon with "
    "fail counts and attributes, constraints, CIB, scores, Pacemaker's, the agents' and the signers' logs, "
    "the journals, the site's events) in the report directory under evidence/ before anything else runs; "
    "an error ends the drill there. --soak N runs N iterations of mixed scenarios instead of one SCENARIO.\n\n"
    "On a real cluster (--inventory) the drill reaches every node over SSH (its ssh_host, host keys "
    "checked) and cuts power with the node's own fence device, run on a peer that holds its password_file; "
    "the signers must write the journals of highlander demo-signer (--journals). It asks you to type the "
    "cluster's name first, unless --yes."
)


@click.command(help=HELP)
@click.argument("scenario", type=click.Choice(list(SCENARIOS)), required=False, metavar="[SCENARIO]")
@click.option(
    "--soak",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Run N iterations of mixed scenarios (rounds of every scenario the site can cause, "
    "each round shuffled) instead of SCENARIO.",
)
@click.option("--seed", type=int, default=None, help="The soak's shuffle seed, to repeat a soak.  [default: random]")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="The lab's directory, as given to highlander lab up --dir.  [default: $HIGHLANDER_LAB_DIR or /var/lib/highlander-lab]",
)
@click.option("--iterations", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--report",
    "report_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Write <scenario>.json, <scenario>.txt and the timeline picture <scenario>.html here "
    "(soak.* for a soak), and the evidence of failures under evidence/.  [default: a new "
    "temporary directory, made only when a failure's evidence is kept]",
)
@click.option(
    "--metrics-dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Also write the outcome and the failover durations to highlander_drill.prom in this directory "
    "(node_exporter's textfile collector).",
)
@click.option(
    "--mtbf-hours",
    type=click.FloatRange(min=0, min_open=True),
    default=8760.0,
    show_default=True,
    help="Mean time between failures of one node, for the expected downtime a year.",
)
@click.option(
    "--repair-hours",
    type=click.FloatRange(min=0),
    default=24.0,
    show_default=True,
    help="Hours to repair a failed node, for the expected time both active nodes are down.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=10),
    default=120,
    show_default=True,
    help="Seconds each step of a scenario may take (the validator signing again, a fencing).",
)
@click.option(
    "--inventory",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Drill the real cluster of this inventory over SSH instead of the lab.",
)
@click.option(
    "--ssh-user",
    default="root",
    show_default=True,
    help="With --inventory: the user on the nodes (reads Pacemaker's log, runs the fence agents).",
)
@click.option(
    "--ssh-key",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="With --inventory: the private key.  [default: the user's keys and agent]",
)
@click.option(
    "--known-hosts",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="With --inventory: the known_hosts file the nodes' host keys must be in.  "
    "[default: the system's and ~/.ssh/known_hosts]",
)
@click.option(
    "--journals",
    default="/var/log/highlander/journal-*.jsonl",
    show_default=True,
    help="With --inventory: where the signers' journals are on the nodes.",
)
@click.option("--yes", is_flag=True, help="With --inventory: do not ask for the cluster's name first.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def drill(
    scenario: str | None,
    soak: int | None,
    seed: int | None,
    directory: Path | None,
    iterations: int,
    report_dir: Path | None,
    metrics_dir: Path | None,
    mtbf_hours: float,
    repair_hours: float,
    timeout: float,
    inventory: Path | None,
    ssh_user: str,
    ssh_key: Path | None,
    known_hosts: Path | None,
    journals: str,
    yes: bool,
    as_json: bool,
) -> None:
    from highlander.drill import report
    from highlander.drill.evidence import Progress

    if (scenario is None) == (soak is None):
        raise click.UsageError("give a SCENARIO or --soak N")
    if inventory is not None and directory is not None:
        raise click.UsageError("--dir names a lab, --inventory a real cluster: give one")
    name = scenario or "soak"
    progress = Progress(click.echo)
    with ExitStack() as stack:
        try:
            if inventory is None:
                site = _lab(directory, progress)
            else:
                site = _remote(inventory, report_dir, stack, ssh_user, ssh_key, known_hosts, journals)
            stack.callback(site.close)
            runner = Drill(site, progress, timeout=timeout, report_dir=report_dir)
            if scenario is not None:
                runner.check_runnable(scenario)
            if inventory is not None:
                _confirm(site.inventory, name, yes)
            if site.chain() is None and not site.journal_paths():
                raise DrillError(
                    f"no signing journals ({journals} on the nodes): the drill measures signing "
                    f"from the journals of highlander demo-signer"
                )
            if scenario is not None:
                records = runner.run(scenario, iterations)
                summary = report.summarize(
                    records, mtbf_hours, nodes=2, findings=runner.findings, repair_hours=repair_hours
                )
            else:
                records = runner.soak(soak or 1, random.randrange(1 << 32) if seed is None else seed)
                summary = report.soak_summary(
                    records, mtbf_hours, nodes=2, findings=runner.findings, repair_hours=repair_hours
                )
        except ERRORS as exc:
            raise click.ClickException(str(exc)) from None
    if metrics_dir is not None:
        from highlander.adapters.metrics import record_drill

        click.echo(f"wrote {record_drill(metrics_dir, name, summary)}")
    _report(name, records, summary, runner.findings, runner.report_dir, as_json)


def _lab(directory: Path | None, say: Progress) -> Site:
    """The lab, which stands above the product and registers itself as a site (:mod:`highlander.cli.plugins`)."""
    from highlander.cli import plugins

    open_site = plugins.load(plugins.SITES, "lab")
    if open_site is None:
        raise click.ClickException(
            f"no lab is installed here (no entry point 'lab' in {plugins.SITES}): "
            "give the real cluster's --inventory, or install highlander with its lab"
        )
    site: Site = open_site(directory, say)
    return site


def _remote(
    inventory: Path,
    report_dir: Path | None,
    stack: ExitStack,
    user: str,
    key: Path | None,
    known_hosts: Path | None,
    journals: str,
) -> Site:
    """The cluster of ``inventory``; its journals are copied under the report
    directory (``journals/``), kept as evidence, or else to a temporary one."""
    from highlander.drill.remote import RemoteSite
    from highlander.inventory import load

    if report_dir is not None:
        cache = report_dir / "journals"
    else:
        cache = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="highlander-drill-")))
    return RemoteSite(load(inventory), cache, user=user, key_file=key, known_hosts=known_hosts, journals=journals)


def _confirm(inventory: Inventory, name: str, yes: bool) -> None:
    from highlander.drill.remote import confirmation

    click.echo(confirmation(inventory, name))
    if yes:
        return
    typed = click.prompt(f"Type the cluster's name ({inventory.cluster_name}) to go on", default="", show_default=False)
    if typed.strip() != inventory.cluster_name:
        raise click.ClickException(f"{typed.strip()!r} is not {inventory.cluster_name!r}: nothing was done")


def _report(
    name: str,
    records: list[dict[str, Any]],
    summary: dict[str, Any],
    findings: list[dict[str, Any]],
    report_dir: Path | None,
    as_json: bool,
) -> None:
    """The report, written to ``report_dir`` (the drill's own temporary one when
    it kept evidence without --report) and shown; a failed drill exits 1."""
    from highlander.drill import report

    if report_dir is not None:
        for path in report.write(report_dir, name, records, summary, findings):
            click.echo(f"wrote {path}")
    if as_json:
        click.echo(json.dumps(report.document(name, records, summary, findings), indent=2))
    else:
        click.echo(report.table(name, summary))
    if not summary["ok"]:
        failed = sorted({f for it in records for f in it.get("failed_expectations", [])})
        moves = f"; unasked moves {summary['unasked_moves']}" if summary.get("unasked_moves") else ""
        kept = (
            f"; evidence in {report_dir / 'evidence'}"
            if report_dir is not None and (report_dir / "evidence").is_dir()
            else ""
        )
        evidence = summary.get("evidence_heights") or []
        signs = (
            f"the chain committed evidence of a double sign by our validator at heights "
            f"{', '.join(map(str, evidence))}, "
            if evidence
            else ""
        )
        raise click.ClickException(
            f"{name}: the drill FAILED ({signs}double signs {summary['double_signs']}, "
            f"dual-active {summary['dual_active']}{moves}"
            f"{'; not met: ' + '; '.join(failed) if failed else ''}){kept}; "
            f"see the iterations above"
        )
