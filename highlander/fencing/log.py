"""What a fence agent says, and the guard that keeps secrets out of it.

Every line an agent prints or logs — standard output, standard error, the
debug file and Python logging — passes a :class:`Redactor` that replaces the
password and every secret option value (and their escaped, URL-encoded and
basic-auth forms), so a driver that logs its password by mistake still does
not leak it.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import IO

REDACTED = "******"


class Failed(Exception):
    """An action failed; the message is the operator's line without ``Failed: ``."""


def one_line(text: str) -> str:
    """Whitespace (newlines included) collapsed: a failure is reported on one line."""
    return " ".join(str(text).split())


# --- the redaction layer -------------------------------------------------------


class Redactor:
    """Replaces every known secret in a text by ``******``.

    Besides a secret itself it knows the forms a careless log line would
    show it in: Python-escaped (a repr), URL-encoded, and as HTTP basic
    credentials (``base64(user:password)``).
    """

    def __init__(self) -> None:
        self._secrets: list[str] = []

    def add(self, value: str | None) -> None:
        if not value:
            return
        from urllib.parse import quote, quote_plus

        forms = {value, repr(value)[1:-1], quote(value, safe=""), quote_plus(value)}
        self._secrets = sorted(set(self._secrets) | forms, key=len, reverse=True)

    def add_credentials(self, username: str | None, password: str | None) -> None:
        if not password:
            return
        import base64

        token = base64.b64encode(f"{username or ''}:{password}".encode()).decode()
        self._secrets = sorted(set(self._secrets) | {token}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


class RedactingStream:
    """Stands in for sys.stdout/sys.stderr: passes on whole lines, redacted.

    Holding back an incomplete line means a secret written in pieces is
    still seen whole; what is left is written when the stream is released.
    """

    def __init__(self, target: IO[str], redact: Redactor) -> None:
        import _thread  # a lock without importing threading (drivers' threads may write)

        self.target = target
        self._redact = redact
        self._pending = ""
        self._lock = _thread.allocate_lock()

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            if "\n" in self._pending:
                complete, _, self._pending = self._pending.rpartition("\n")
                self.target.write(self._redact(complete + "\n"))
        return len(text)

    def writelines(self, lines: Sequence[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self.target.flush()

    def release(self) -> IO[str]:
        """Write what is left and hand back the real stream."""
        with self._lock:
            if self._pending:
                self.target.write(self._redact(self._pending))
                self._pending = ""
        self.target.flush()
        return self.target

    def __getattr__(self, name: str) -> object:  # encoding, isatty, fileno, ...
        return getattr(self.target, name)


# --- logging --------------------------------------------------------------------


class Log:
    """Where an invocation reports: the result line, verbose log, debug file.

    Log lines go to standard error only in verbose mode and always to the
    debug file when there is one (created 0600: it records exchanges with
    the device). Everything passes through the redactor.
    """

    def __init__(self, agent_name: str, redact: Redactor) -> None:
        self.agent_name = agent_name
        self.redact = redact
        self.verbose = False
        self._file: IO[str] | None = None

    @property
    def wanted(self) -> bool:
        return self.verbose or self._file is not None

    def open_file(self, path: str) -> None:
        """Append to ``path``, creating it 0600; a symlink is refused (the agent runs as root)."""
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as exc:
            raise Failed(f"Unable to create file {path}: {exc.strerror}") from None
        self._file = os.fdopen(fd, "a", encoding="utf-8", errors="replace")

    def _to_file(self, line: str) -> None:
        if self._file is not None:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            self._file.write(f"{stamp} {self.agent_name}[{os.getpid()}] {self.redact(line)}\n")
            self._file.flush()

    def emit(self, level: str, message: str) -> None:
        if not self.wanted:
            return
        line = self.redact(f"{level}: {message}")
        if self.verbose:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        self._to_file(line)

    def debug(self, message: str) -> None:
        self.emit("DEBUG", message)

    def info(self, message: str) -> None:
        self.emit("INFO", message)

    def report(self, line: str) -> None:
        """A line the operator always sees on standard error (the failure, a warning)."""
        line = self.redact(one_line(line))
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
        self._to_file(line)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def bridge_logging(log: Log) -> Callable[[], None]:
    """Route Python logging (the drivers' and their libraries') into ``log``.

    Returns the function that undoes it. Without verbose or a debug file the
    records are dropped: standard error carries only the result line.
    """
    import logging

    class _Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001 - a driver's bad format string must not stop fencing
                message = str(record.msg)
            if record.exc_info:
                message += " " + one_line(logging.Formatter().formatException(record.exc_info))
            log.emit(record.levelname, f"{record.name}: {message}")

    root = logging.getLogger()
    handler = _Handler()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if log.wanted else logging.CRITICAL + 1)

    def undo() -> None:
        root.removeHandler(handler)
        root.setLevel(level)

    return undo


# --- the device, with verification ------------------------------------------------
