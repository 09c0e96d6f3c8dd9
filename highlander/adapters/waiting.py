"""Bounded waiting: every wait for a cluster, a node or a daemon has a limit,
so a broken cluster fails a command or a test instead of hanging it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    check: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.2,
) -> T:
    """Poll ``check`` until it returns something truthy, and return that.

    Raises :class:`TimeoutError` naming ``what`` after ``timeout`` seconds;
    every wait in the lab is bounded so a broken cluster fails a test
    instead of hanging it.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
