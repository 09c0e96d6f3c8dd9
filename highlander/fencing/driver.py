"""What a fence agent needs from a power device, and how a device fails.

A driver talks to one device: it logs in, reads and sets a plug's power
state, and for multi-plug devices lists the plugs. The action logic
(verification by polling, delays, reboot methods, exit codes) is the
framework's, so every agent behaves the same way whatever its device.
Errors are exceptions whose message is the one line the operator sees; it
never contains a password.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

ON = "on"
OFF = "off"


class FenceError(RuntimeError):
    """A device operation failed; the message says what and, where known, why."""


class LoginDenied(FenceError):
    """The device refused the credentials (or the privilege level)."""


class Unreachable(FenceError):
    """The device did not answer: wrong address, down, or the network is cut."""


class DeviceFailure(FenceError):
    """The device answered, but not the way the protocol says it should."""


class PowerDriver(Protocol):
    """One device, used by one agent invocation and then closed."""

    def connect(self) -> None:
        """Open the session; raises LoginDenied or Unreachable."""

    def power_status(self, plug: str | None) -> str:
        """ON or OFF."""

    def set_power(self, plug: str | None, state: str) -> None:
        """Ask for ON or OFF; the framework verifies the result by polling."""

    def reset(self, plug: str | None) -> None:
        """A hard reset without passing through off (reboot --method cycle)."""

    def plugs(self) -> Mapping[str, str]:
        """Plug -> alias for multi-plug devices; empty for single-plug ones."""

    def close(self) -> None:
        """End the session; never raises."""
