"""Asking a signing daemon whether it is healthy and how far its chain is.

Two sources: a CometBFT-style JSON status URL (``/status`` answering
``result.sync_info.latest_block_height`` and ``catching_up``) or an
operator's command (exit 0 means healthy; a last output line that is a
whole number is taken as the block height). Imported only by the deeper
monitor levels and by start: ``urllib`` alone costs tens of milliseconds.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from typing import NamedTuple


class Health(NamedTuple):
    height: int | None
    catching_up: bool


class HealthError(Exception):
    """The daemon did not answer, or answered something unusable."""


def parse_status(document: bytes) -> Health:
    """Read a CometBFT ``/status`` answer (with or without the JSON-RPC envelope)."""
    try:
        status = json.loads(document)
        result = status.get("result", status)
        sync = result["sync_info"]
        height = int(sync["latest_block_height"])
        catching_up = sync.get("catching_up", False)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise HealthError(f"status answer is not CometBFT-shaped ({type(exc).__name__}: {exc})") from None
    if not isinstance(catching_up, bool):
        raise HealthError(f"status answer has catching_up={catching_up!r}, not a boolean")
    return Health(height, catching_up)


def check_url(url: str, timeout: float) -> Health:
    """GET the status URL; TLS certificates are verified as usual for https."""
    try:
        with urllib.request.urlopen(url, timeout=max(timeout, 0.1)) as answer:
            return parse_status(answer.read(1 << 20))
    except urllib.error.HTTPError as exc:
        raise HealthError(f"{url} answered HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise HealthError(f"{url} did not answer: {reason}") from None


def check_command(argv: list[str], timeout: float, env: dict[str, str]) -> Health:
    """Run the operator's health command with the daemon's environment."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=max(timeout, 0.1), env=env)
    except FileNotFoundError:
        raise HealthError(f"health command {argv[0]!r} not found") from None
    except subprocess.TimeoutExpired:
        raise HealthError(f"health command did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise HealthError(f"health command exited with {done.returncode}" + (f": {detail[-1]}" if detail else ""))
    lines = done.stdout.strip().splitlines()
    height = int(lines[-1]) if lines and lines[-1].strip().isdigit() else None
    return Health(height, False)
