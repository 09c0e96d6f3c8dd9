"""What a fence agent needs from a power device, and how a device fails.

A driver talks to one device: it logs in, reads and sets a plug's power
state, and for multi-plug devices lists the plugs. The action logic
(verification by polling, delays, reboot methods, exit codes) is the
framework's, so every agent behaves the same way whatever its device.
Errors are exceptions whose message is the one line the operator sees; it
never contains a password.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from types import TracebackType
from typing import Self

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


class PowerDriver(ABC):
    """One device, used by one agent invocation and then closed.

    ``with driver:`` connects and always closes, also when the connection
    fails half-way (a transport opened, the login refused): what connect
    opened before failing is closed before the error goes on.
    """

    @abstractmethod
    def connect(self) -> None:
        """Open the session; raises LoginDenied or Unreachable."""

    @abstractmethod
    def power_status(self, plug: str | None) -> str:
        """ON or OFF."""

    @abstractmethod
    def set_power(self, plug: str | None, state: str) -> None:
        """Ask for ON or OFF; the framework verifies the result by polling."""

    @abstractmethod
    def reset(self, plug: str | None) -> None:
        """A hard reset without passing through off (reboot --method cycle)."""

    @abstractmethod
    def plugs(self) -> Mapping[str, str]:
        """Plug -> alias for multi-plug devices; empty for single-plug ones."""

    @abstractmethod
    def close(self) -> None:
        """End the session; never raises, and may be called more than once."""

    def __enter__(self) -> Self:
        try:
            self.connect()
        except BaseException:
            self._close_quietly()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._close_quietly()

    def _close_quietly(self) -> None:
        """close(), which must not raise; a driver that breaks that rule is
        logged, never allowed to hide the action's own outcome."""
        try:
            self.close()
        except Exception as exc:  # noqa: BLE001
            import logging

            logging.getLogger(__name__).debug("close: %s: %s", type(exc).__name__, exc)
