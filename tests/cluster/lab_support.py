"""What the lab test modules share: the highlander CLI and a lab brought up for a module.

Not a test module. The lab is taken down by ``lab down`` and then by its
records (should the CLI have failed), also when a test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from harness import HIGHLANDER

from highlander.adapters.runner import system_env
from highlander.drill.chain_check import ChainReader, CurlRpc
from highlander.lab.chain_run import rpc_runner
from highlander.lab.plan import load_plan
from highlander.lab.cleanup import cleanup, leftovers
from highlander.lab.node import same_process

REPO = Path(__file__).resolve().parents[2]
INVENTORY = REPO / "examples" / "lab.yml"
PROGRAMS = (
    "ip",
    "unshare",
    "nsenter",
    "corosync",
    "pacemakerd",
    "crm_mon",
    "crm_resource",
    "cibadmin",
    "stonith_admin",
    "ipmi_sim",
    "ipmitool",
)


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``highlander ARGS`` with the bare environment Pacemaker's tools get."""
    return subprocess.run(
        [*HIGHLANDER, *args], capture_output=True, text=True, check=False, timeout=timeout, env=system_env()
    )


def journals(lab: Path) -> list[Path]:
    return sorted(lab.glob("nodes/*/root/var/log/highlander/journal-*.jsonl"))


@contextmanager
def running_lab(
    directory: Path, *options: str, workload: str = "demo-signer", timeout: float = 240
) -> Iterator[subprocess.CompletedProcess[str]]:
    """``highlander lab up`` (with ``options``, the validator ``workload``: the
    synthetic signer whose journals the older suites check, or the CometBFT
    chain) in ``directory``; yields its result, down afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the lab creates namespaces and starts Pacemaker")
    missing = [p for p in PROGRAMS if shutil.which(p, path=system_env()["PATH"]) is None]
    if missing:
        pytest.fail(f"lab programs not installed: {', '.join(missing)} (run ./bootstrap test)")
    try:
        result = run(
            "lab",
            "up",
            "--inventory",
            str(INVENTORY),
            "--dir",
            str(directory),
            "--timeout",
            str(timeout),
            "--workload",
            workload,
            *options,
            timeout=timeout + 160,
        )
        assert result.returncode == 0, f"lab up failed:\n{result.stdout}\n{result.stderr}"
        yield result
    finally:
        run("lab", "down", "--dir", str(directory), timeout=180)
        cleanup(directory)


@contextmanager
def chain_lab(factory: pytest.TempPathFactory, name: str, *options: str) -> Iterator[tuple[Path, str]]:
    """A lab on the CometBFT chain (``options`` to ``lab up``) in a new directory
    called ``name``; yields it and ``lab up``'s output. Skips (fails in CI)
    without CometBFT."""
    from cometbft_support import cometbft

    cometbft()
    directory = factory.mktemp(name) / "lab"
    with running_lab(directory, *options, workload="chain", timeout=400) as up:
        print(up.stdout)
        yield directory, up.stdout


def drill(lab: Path, report: Path, scenario: str, timeout: float, *extra: str) -> subprocess.CompletedProcess[str]:
    """``highlander drill scenario`` on the lab, its report in ``report``, its output shown.
    The drill bounds each wait by ``timeout`` s; the whole of it is bounded by ten minutes."""
    result = run(
        "drill", scenario, "--dir", str(lab), "--report", str(report), "--timeout", str(timeout), *extra, timeout=600
    )
    print(result.stdout[-4000:], result.stderr[-3000:])
    return result


def chain_drill(lab: Path, report: Path, scenario: str, timeout: float = 120) -> dict[str, object]:
    """One iteration of ``scenario`` on a chain lab, which must pass: no double sign,
    no evidence against our validator, our signatures committed; the iteration's record."""
    result = drill(lab, report, scenario, timeout)
    assert result.returncode == 0, f"{scenario} failed on the chain"
    (iteration,) = json.loads((report / f"{scenario}.json").read_text())["iterations"]
    assert iteration["ok"] and iteration["double_signs"] == 0 and iteration["chain"]["evidence"] == []
    assert iteration["chain"]["committed"] > 0 and iteration["blocks"]
    assert "our signature" in (report / f"{scenario}.html").read_text()
    return dict(iteration)


def failing_drill(
    lab: Path, report: Path, scenario: str, timeout: float, *extra: str
) -> subprocess.CompletedProcess[str]:
    """``scenario`` on an unguarded lab, which must fail (the negative controls); the finished drill."""
    result = drill(lab, report, scenario, timeout, *extra)
    assert result.returncode != 0, f"the drill passed {scenario} on a lab where nothing guarded the signer"
    return result


def chain_lab_down(lab: Path) -> None:
    """``lab down`` of a chain lab, which must leave nothing: no record of the lab, and
    none of the chain's processes (the ordinary validators' hosts run them)."""
    _, state = load_plan(lab)
    result = run("lab", "down", "--dir", str(lab), timeout=180)
    assert result.returncode == 0, result.stderr
    assert leftovers(lab) == []
    assert not any(same_process(p["pid"], p["start_time"]) for p in state["chain"]["processes"].values())


def chain_reader(lab: Path) -> tuple[ChainReader, str]:
    """The lab chain's RPC reader and our validator's address."""
    plan, state = load_plan(lab)
    return ChainReader(CurlRpc(rpc_runner(plan))), state["chain"]["address"]
