"""The sign-state daemon's life: a clean exit on SIGTERM, one daemon per
state directory."""

from __future__ import annotations

import signal
import subprocess

import pytest
from harness import HIGHLANDER

from highlander.lab.replicas import LoopbackReplicas

pytestmark = pytest.mark.signstate


def test_sigterm_is_a_clean_shutdown(replicas: LoopbackReplicas) -> None:
    daemon = replicas.processes["node-a"]
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=10) == 0
    assert not replicas.socket("node-a").exists()
    assert "event=stopped" in replicas.log_tail("node-a", 1)


def test_a_second_daemon_on_the_same_state_is_refused(replicas: LoopbackReplicas) -> None:
    second = subprocess.run(
        [*HIGHLANDER, "signstate", "serve", "--config", str(replicas.config("node-a"))],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 1
    assert "in use by another process" in second.stderr
    assert replicas.processes["node-a"].poll() is None  # the first one keeps serving
