"""The sign-state daemon's life: a clean exit on SIGTERM, one daemon per
state directory."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from highlander.signstate.localtrio import LocalTrio

pytestmark = pytest.mark.signstate


def test_sigterm_is_a_clean_shutdown(trio: LocalTrio) -> None:
    daemon = trio.processes["node-a"]
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=10) == 0
    assert not trio.socket("node-a").exists()
    assert "event=stopped" in trio.log_tail("node-a", 1)


def test_a_second_daemon_on_the_same_state_is_refused(trio: LocalTrio) -> None:
    second = subprocess.run(
        [sys.executable, "-m", "highlander", "signstate", "serve", "--config", str(trio.config("node-a"))],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert second.returncode == 1
    assert "in use by another process" in second.stderr
    assert trio.processes["node-a"].poll() is None  # the first one keeps serving
