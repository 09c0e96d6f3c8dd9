"""The one place fence_highlander_ipmi reaches into pyghmi's private session code.

pyghmi's session (``pyghmi.ipmi.private.session``) is what speaks RMCP+, and
a fence agent needs four things from it that pyghmi has no switch for:

- one cipher suite, exactly as configured: a Session subclass sets
  ``attemptedhash`` after ``_initsession`` (256 offers suite 17 and falls
  back to 3, 1 offers 3, any other value offers 17 without a fall-back);
- replies noticed at once: every wait in ``_io_wait`` is capped at
  :data:`WAIT_SLICE`, since a reply that arrives between a request and its
  wait is otherwise seen only when the wait expires, 0.5 to 1 s later;
- no reuse of a logged-out session: pyghmi hands a new Session the entry in
  ``Session.initting_sessions`` for the same BMC and credentials, even one
  marked ``broken``, whose first command then fails deep inside;
- no joining of an abandoned login: the entries for one BMC are dropped
  (keys are ``(bmc, userid, password, port, kg)``).

None of this is pyghmi's API, so it holds only for the versions it was
proven with, :data:`REQUIREMENT` (setup.cfg pins the same range): the agent
against OpenIPMI's ipmi_sim (tests/process/test_fence_ipmi.py and
test_ipmisim.py) and the unit test that checks, name by name, what is
listed in :data:`PRIVATE`. Any other installed version is refused, before a
packet is sent, with a line that says which range to install.
"""

from __future__ import annotations

import re
from typing import Any

from highlander.fencing.driver import FenceError

REQUIREMENT = "pyghmi>=1.5.77,<1.7"
LOWEST = (1, 5, 77)  # the oldest version proven
BELOW = (1, 7)  # the first version not proven

SESSION_MODULE = "pyghmi.ipmi.private.session"
UTIL_MODULE = "pyghmi.ipmi.private.util"
# Every private name the shim uses: (module, attribute path).
PRIVATE = (
    (SESSION_MODULE, "Session"),
    (SESSION_MODULE, "Session.initting_sessions"),
    (SESSION_MODULE, "Session._initsession"),
    (SESSION_MODULE, "Session.raw_command"),
    (SESSION_MODULE, "Session.logout"),
    (SESSION_MODULE, "_io_wait"),
    (UTIL_MODULE, "get_ipmi_error"),
)

# pyghmi waits for a reply in slices of at most this long (see _bound_waits).
WAIT_SLICE = 0.005

_METADATA_DIRECTORY = re.compile(r"pyghmi-([0-9][0-9a-z.+!]*?)(?:-py[0-9.]+)?\.(?:dist|egg)-info", re.IGNORECASE)


class UnsupportedPyghmi(FenceError):
    """The installed pyghmi is not one the shim is proven with."""


def installed_version() -> str | None:
    """pyghmi's version, from its metadata directory beside the package
    (``pyghmi-1.6.19.dist-info``); None if there is none.

    importlib.metadata reads the same, but costs about 30 ms on every agent
    run, half as long as a whole verified off takes.
    """
    import importlib.util
    import os

    spec = importlib.util.find_spec("pyghmi")
    for location in (spec.submodule_search_locations or ()) if spec else ():
        parent = os.path.dirname(os.path.abspath(location))
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            match = _METADATA_DIRECTORY.fullmatch(name)
            if match:
                return match.group(1)
    return None


def _release(version: str) -> tuple[int, ...]:
    """The leading numbers of a version string: 1.6.19.dev3 -> (1, 6, 19)."""
    numbers = []
    for part in version.split("."):
        digits = re.match(r"[0-9]+", part)
        if digits is None:
            break
        numbers.append(int(digits.group()))
        if digits.end() != len(part):
            break
    return tuple(numbers)


def supported(version: str) -> bool:
    """Whether ``version`` is inside :data:`REQUIREMENT`."""
    return LOWEST <= _release(version) < BELOW


def _lookup(module: Any, path: str) -> Any:
    target = module
    for name in path.split("."):
        target = getattr(target, name)
    return target


_SESSION: Any = None


def session_module() -> Any:
    """pyghmi's session module, checked and patched (once per process).

    Raises :class:`UnsupportedPyghmi` if the installed version is outside
    :data:`REQUIREMENT` or lacks a name in :data:`PRIVATE`.
    """
    global _SESSION
    if _SESSION is not None:
        return _SESSION
    fix = (
        f"this agent reaches into pyghmi's private session code and is proven with {REQUIREMENT} only: "
        f"install that (pip install '{REQUIREMENT}')"
    )
    version = installed_version()
    if version is None:
        raise UnsupportedPyghmi(f"cannot tell which pyghmi is installed (no pyghmi-*.dist-info beside it); {fix}")
    if not supported(version):
        raise UnsupportedPyghmi(f"pyghmi {version} is installed, but {fix}")
    import importlib

    modules = {name: importlib.import_module(name) for name in {module for module, _ in PRIVATE}}
    for module, path in PRIVATE:
        try:
            _lookup(modules[module], path)
        except AttributeError:
            raise UnsupportedPyghmi(f"pyghmi {version} has no {module}.{path}; {fix}") from None
    session = modules[SESSION_MODULE]
    _bound_waits(session)
    _SESSION = session
    return session


def _bound_waits(session: Any) -> None:
    """Cap every reply wait at WAIT_SLICE.

    pyghmi's I/O thread reads replies and queues them on their session; a
    waiting caller is woken only for packets read *after* it registered its
    wait. Every pyghmi caller waits in a loop that checks its queue, so
    capping each wait is enough.
    """
    original = session._io_wait

    def _io_wait(timeout: float, myaddr: Any = None, evq: Any = None) -> None:
        return original(min(timeout, WAIT_SLICE), myaddr, evq)

    session._io_wait = _io_wait


_SESSION_CLASSES: dict[str | None, Any] = {}


def session_class(cipher: str | None) -> Any:
    """pyghmi's Session, pinned to RMCP+ cipher suite ``cipher`` ("3" or "17") when set."""
    if cipher not in _SESSION_CLASSES:
        base = session_module().Session
        if cipher is None:
            _SESSION_CLASSES[cipher] = base
        else:
            attempted = 1 if cipher == "3" else 17

            class PinnedSession(base):  # type: ignore[misc, valid-type]
                def _initsession(self) -> None:
                    super()._initsession()
                    self.attemptedhash = attempted

            PinnedSession.__name__ = PinnedSession.__qualname__ = f"Session{cipher}"
            _SESSION_CLASSES[cipher] = PinnedSession
    return _SESSION_CLASSES[cipher]


def login(
    cipher: str | None, *, host: str, port: int, username: str, password: str, kg: bytes | None, privilege_level: int
) -> Any:
    """A logged-in session (pyghmi logs in while constructing it); raises what pyghmi raises."""
    cls = session_class(cipher)
    forget_broken_sessions(cls)
    return cls(
        bmc=host, userid=username, password=password, port=port, kg=kg, privlevel=privilege_level, keepalive=False
    )


def forget_broken_sessions(cls: Any) -> None:
    """Drop logged-out sessions from pyghmi's table of sessions being set up,
    so that a re-login after a broken session gets a fresh one."""
    table = cls.initting_sessions
    for key, candidate in list(table.items()):
        if getattr(candidate, "broken", False):
            table.pop(key, None)


def forget_logins(cipher: str | None, host: str, port: int) -> None:
    """Drop the logins to ``host``:``port`` still being set up (an abandoned one)."""
    table = session_class(cipher).initting_sessions
    for key in list(table):
        if key[0] == host and key[3] == port:
            table.pop(key, None)


def is_broken(session: Any) -> bool:
    """Whether pyghmi gave the session up (logged out, or timed out for good)."""
    return bool(getattr(session, "broken", False))


def discard(session: Any) -> None:
    """Mark a session that overran as broken: pyghmi hands a broken session to nobody."""
    session.broken = True


def completion_code_text(response: Any) -> str:
    """pyghmi's words for an IPMI completion code."""
    session_module()
    from pyghmi.ipmi.private.util import get_ipmi_error

    return str(get_ipmi_error(response))
