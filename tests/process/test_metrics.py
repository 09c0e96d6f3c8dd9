"""Prometheus metrics of real daemons, scraped over HTTP and parsed with
``prometheus_client``'s own parser (nothing read with string matching).

A sign-state daemon with ``metrics`` set serves ``/metrics``: its answers by
verdict move as signers are answered (a CONFLICT driven on purpose is
counted), its per-key ballot and height follow, a replica stopped shows as
unreachable, and the build info is there. Labels never carry a height or a
digest.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import harness
import pytest
from harness import Samples, sample

from highlander.adapters.waiting import wait_until
from highlander.signstate.client import Conflict, SignerClient
from highlander.lab.ports import free_ports
from highlander.lab.replicas import LoopbackReplicas
from highlander.signstate.register import HRS, KeyId

pytestmark = pytest.mark.signstate

KEY = KeyId("metrics-1", "validator")


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[LoopbackReplicas]:
    replicas = LoopbackReplicas(tmp_path / "trio", timeout=0.5)
    [replicas.metrics_ports["node-a"]] = free_ports(1)
    try:
        replicas.start()
        yield replicas
    finally:
        replicas.stop()


def scrape(replicas: LoopbackReplicas) -> Samples:
    """Every sample of node-a's /metrics."""
    return harness.scrape(replicas.metrics_ports["node-a"])


def test_answers_by_verdict_and_a_conflict_moves_its_counter(replicas: LoopbackReplicas) -> None:
    with SignerClient(replicas.socket("node-a")) as client:
        session = client.promote(KEY)
        for height in range(1, 6):
            client.advance(KEY, session.epoch, HRS(height, 0, 1), f"{height:02x}")
        before = scrape(replicas)
        with pytest.raises(Conflict):
            client.advance(KEY, session.epoch, HRS(5, 0, 1), "ff")  # another digest at a mark signed
    after = scrape(replicas)
    conflicts = "highlander_signstate_results_total"
    assert sample(before, conflicts, op="advance", verdict="CONFLICT") == 0
    assert sample(after, conflicts, op="advance", verdict="CONFLICT") == 1
    assert sample(after, conflicts, op="advance", verdict="OK") == 5
    assert sample(after, conflicts, op="promote", verdict="OK") == 1
    assert sample(after, "highlander_signstate_request_seconds_count", op="advance", backend="trio") == 6
    assert sample(after, "highlander_signstate_ballot", chain_id=KEY.chain_id, key_id=KEY.key_id) == session.epoch
    assert sample(after, "highlander_signstate_hwm_height", chain_id=KEY.chain_id, key_id=KEY.key_id) == 5
    assert sample(after, "highlander_signstate_recovering") == 0
    assert any(name == "highlander_build_info" for name in after)
    for name, series in after.items():  # bounded labels: no height or digest is ever one
        for labels in series:
            assert not {"height", "digest", "hrs"} & {k for k, _ in labels}, (name, labels)


def test_a_replica_that_does_not_answer_shows_as_unreachable(replicas: LoopbackReplicas) -> None:
    with SignerClient(replicas.socket("node-a")) as client:
        session = client.promote(KEY)
        assert sample(scrape(replicas), "highlander_signstate_peer_up", peer="node-c") == 1
        replicas.signal("node-c", signal.SIGSTOP)
        try:
            height = iter(range(1, 10_000))

            def node_c_down() -> bool:
                client.advance(KEY, session.epoch, HRS(next(height), 0, 1), "aa")  # traffic that node-c misses
                return sample(scrape(replicas), "highlander_signstate_peer_up", peer="node-c") == 0

            wait_until(node_c_down, timeout=30, what="node-c to show as unreachable", interval=0.3)
            samples = scrape(replicas)
            assert sample(samples, "highlander_signstate_peer_up", peer="node-b") == 1
            assert sample(samples, "highlander_signstate_peer_last_answer_seconds", peer="node-c") > replicas.timeout
        finally:
            replicas.signal("node-c", signal.SIGCONT)
