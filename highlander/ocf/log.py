"""Agent logging the way the stock resource agents do it.

Every line goes to syslog, tagged ``type(instance)`` with the PID, and to
standard error, which pacemaker-execd copies into the cluster log. Debug
lines only when ``HA_debug=1``. Not the ``logging`` package: it is not
loaded at start-up and costs the monitor path several milliseconds.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing's constant, without importing typing: see highlander/__init__.py
if TYPE_CHECKING:
    from collections.abc import Mapping

LEVELS = {"debug": 7, "info": 6, "warning": 4, "error": 3}  # syslog priorities


class AgentLog:
    """A logger bound to one resource instance."""

    def __init__(self, tag: str, environ: Mapping[str, str]) -> None:
        self.tag = tag
        self.debug_enabled = environ.get("HA_debug", "0") not in ("", "0")
        self.facility = environ.get("HA_LOGFACILITY", "daemon")
        self._opened = False

    def _syslog(self, priority: int, line: str) -> None:
        if self.facility == "none":
            return
        import syslog

        if not self._opened:
            facility = getattr(syslog, "LOG_" + self.facility.upper(), syslog.LOG_DAEMON)
            syslog.openlog(self.tag, syslog.LOG_PID, facility)
            self._opened = True
        syslog.syslog(priority, line)

    def log(self, level: str, message: str) -> None:
        if level == "debug" and not self.debug_enabled:
            return
        line = f"{level.upper()}: {message}"
        self._syslog(LEVELS[level], line)
        print(f"{self.tag} {line}", file=sys.stderr, flush=True)

    def debug(self, message: str) -> None:
        self.log("debug", message)

    def info(self, message: str) -> None:
        self.log("info", message)

    def warning(self, message: str) -> None:
        self.log("warning", message)

    def error(self, message: str) -> None:
        self.log("error", message)
