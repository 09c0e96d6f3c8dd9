"""Where each workload signs, and highlander privval's log as signature entries."""

from __future__ import annotations

import datetime

from highlander.adapters.pacemaker import ClusterStatus, ResourceState
from highlander.drill.workload import CHAIN, DEMO, log_time, privval_entries
from highlander.signstate.register import HRS

# Lines as highlander privval logs them (commands/privval.py's format), with the
# promotion and refusals around the signatures.
LOG = """\
2026-12-07 10:50:01,100 INFO chain=highlander-lab event=connected node=tcp://127.0.0.1:26659
2026-12-07 10:50:01,500 INFO chain=highlander-lab event=refused node=tcp://127.0.0.1:26659 request=sign_vote_request reason='not promoted'
2026-12-07 10:50:02,000 INFO chain=highlander-lab event=promoted key=highlander-lab/validator epoch=3 mark=7/0/3
2026-12-07 10:50:02,250 INFO chain=highlander-lab event=signed key=highlander-lab/validator node=tcp://127.0.0.1:26659 vote at=8/0/1
2026-12-07 10:50:02,300 INFO chain=highlander-lab event=resent key=highlander-lab/validator node=tcp://127.0.0.1:26659 vote at=8/0/1
2026-12-07 10:50:02,750 INFO chain=highlander-lab event=signed key=highlander-lab/validator node=tcp://127.0.0.1:26659 vote at=8/0/2
"""


def status(*resources: tuple[str, str, str]) -> ClusterStatus:
    states = tuple(ResourceState(rid, "", role, True, False, (node,)) for rid, role, node in resources)
    return ClusterStatus("node-w", True, ("node-a", "node-b", "node-w"), states, {})


def test_privval_signatures_carry_their_node_epoch_mark_and_local_time() -> None:
    entries, epoch = privval_entries(LOG, "node-a", "node-a:/var/log/highlander/privval.log")
    assert epoch == 3
    assert [(e.hrs, e.epoch, e.node, e.line) for e in entries] == [
        (HRS(8, 0, 1), 3, "node-a", 4),
        (HRS(8, 0, 2), 3, "node-a", 6),
    ]
    assert entries[0].time == datetime.datetime(2026, 12, 7, 10, 50, 2, 250000).timestamp()


def test_a_log_read_on_continues_its_lines_and_epoch() -> None:
    lines = LOG.splitlines(keepends=True)
    first, epoch = privval_entries("".join(lines[:4]), "node-b", "b")
    more, _ = privval_entries("".join(lines[4:]), "node-b", "b", lines_before=4, epoch=epoch)
    assert [e.line for e in first + more] == [4, 6] and more[0].epoch == 3
    assert log_time("not a log line") is None


def test_the_chain_signs_where_privval_is_promoted_with_an_instance_ready_on_each_active_node() -> None:
    nodes = (("cometbft", "Started", "node-a"), ("cometbft", "Started", "node-b"))
    both = status(("privval", "Promoted", "node-a"), ("privval", "Unpromoted", "node-b"), *nodes)
    assert CHAIN.signing_on(both) == ("node-a",) and CHAIN.ready(both, ["node-a", "node-b"])
    syncing = status(("privval", "Promoted", "node-a"), ("privval", "Unpromoted", "node-b"), nodes[0])
    assert not CHAIN.ready(syncing, ["node-a", "node-b"])
    alone = status(("privval", "Promoted", "node-a"), *nodes)
    assert not CHAIN.ready(alone, ["node-a", "node-b"])
    assert not CHAIN.ready(status(("privval", "Unpromoted", "node-a")), ["node-a"])
    assert DEMO.signing_on(status(("validator", "Started", "node-b"))) == ("node-b",)


def test_each_workload_knows_its_signer_by_its_command_line() -> None:
    assert CHAIN.is_signer(["/opt/highlander/venv/bin/python3", "-m", "highlander", "privval", "--config", "x"], "n")
    assert not CHAIN.is_signer(["/usr/bin/python3", "-m", "highlander", "signstate", "serve"], "n")
    demo = ["/venv/bin/python", "/venv/bin/highlander", "demo-signer", "--node", "node-a"]
    assert DEMO.is_signer(demo, "node-a") and not DEMO.is_signer(demo, "node-b")
