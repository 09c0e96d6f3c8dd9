"""Checks of parameter values (check level 0), for ``Parameter(check=...)``.

Each returns None for a good value or a short phrase saying what is wrong;
the framework prefixes the parameter's name and value.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's constant, without importing typing: see highlander/__init__.py
if TYPE_CHECKING:
    from collections.abc import Callable


def absolute_path(value: object) -> str | None:
    return None if str(value).startswith("/") else "must be an absolute path"


def positive(value: object) -> str | None:
    return None if isinstance(value, int) and value > 0 else "must be a positive number"


def not_negative(value: object) -> str | None:
    return None if isinstance(value, int) and value >= 0 else "must be 0 or a positive number"


def http_url(value: object) -> str | None:
    return None if str(value).startswith(("http://", "https://")) else "must be an http:// or https:// URL"


def one_of(*choices: str) -> Callable[[object], str | None]:
    """For a closed set of words. (Not the 'select' type: Debian's ocf-tester
    checks meta-data against the OCF 1.0 DTD, which has no <option>.)"""

    def check(value: object) -> str | None:
        return None if value in choices else f"must be one of: {', '.join(choices)}"

    return check


def split_words(text: str) -> list[str]:
    """Split a command line like a shell. Without quotes or backslashes that
    is ``str.split``; ``shlex`` (and ``re`` with it) is loaded only otherwise,
    since every monitor checks the parameters."""
    if not any(c in text for c in "'\"\\"):
        return text.split()
    import shlex

    return shlex.split(text)


def command_line(value: object) -> str | None:
    try:
        words = split_words(str(value))
    except ValueError as exc:
        return f"cannot be split into words ({exc})"
    return None if words else "is empty"
