"""The declaration of an OCF agent: parameters and actions, once.

Everything Pacemaker sees of an agent — the meta-data XML, how parameters
are read and checked, which actions exist — is derived from an
:class:`Agent` built out of :class:`Parameter` and :class:`Action` objects.
Declarations are checked when they are made, so a mistake in an agent fails
its unit tests instead of a cluster operation.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's constant, without importing typing: see highlander/__init__.py
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from highlander.ocf.runtime import Resource

    Handler = Callable[[Resource], int]
    Validator = Callable[[Resource], None]
    Check = Callable[[object], "str | None"]

PARAMETER_TYPES = ("string", "integer", "boolean", "select")
TRUE_WORDS = frozenset(("1", "yes", "true", "on", "y"))
FALSE_WORDS = frozenset(("0", "no", "false", "off", "n"))
CHECK_LEVELS = (0, 10, 20)


class DeclarationError(ValueError):
    """An agent declaration contradicts itself or the OCF API."""


class Parameter:
    """One instance parameter, passed by Pacemaker as ``OCF_RESKEY_<name>``.

    ``check`` validates a parsed value without touching the system (check
    level 0: internal consistency) and returns an error message or None.
    """

    __slots__ = (
        "name",
        "shortdesc",
        "longdesc",
        "type",
        "default",
        "required",
        "unique_group",
        "reloadable",
        "choices",
        "check",
    )

    def __init__(
        self,
        name: str,
        shortdesc: str,
        longdesc: str,
        *,
        type: str = "string",
        default: object = None,
        required: bool = False,
        unique_group: str | None = None,
        reloadable: bool = False,
        choices: Iterable[str] = (),
        check: Check | None = None,
    ) -> None:
        self.name = name
        self.shortdesc = shortdesc
        self.longdesc = longdesc
        self.type = type
        self.default = default
        self.required = required
        self.unique_group = unique_group
        self.reloadable = reloadable
        self.choices = tuple(choices)
        self.check = check
        self._check_declaration()

    def _check_declaration(self) -> None:
        where = f"parameter {self.name!r}"
        if not self.name or not all(c.isalnum() or c == "_" for c in self.name):
            raise DeclarationError(f"{where}: a name must be letters, digits and '_'")
        if self.type not in PARAMETER_TYPES:
            raise DeclarationError(f"{where}: type must be one of {', '.join(PARAMETER_TYPES)}")
        if (self.type == "select") != bool(self.choices):
            raise DeclarationError(f"{where}: choices go with type 'select' and only with it")
        if self.required and self.default is not None:
            raise DeclarationError(f"{where}: a required parameter has no default")
        if not self.shortdesc or not self.longdesc:
            raise DeclarationError(f"{where}: shortdesc and longdesc are both needed")
        if self.default is not None:
            self._check_default(where)

    def _check_default(self, where: str) -> None:
        expected = {"integer": int, "boolean": bool}.get(self.type, str)
        wrong_kind = not isinstance(self.default, expected) or (expected is int and isinstance(self.default, bool))
        if wrong_kind:
            raise DeclarationError(
                f"{where}: default {self.default!r} must be a {expected.__name__} for type {self.type!r}"
            )
        try:
            self.parse(self.format(self.default))
        except ValueError as exc:
            raise DeclarationError(f"{where}: bad default: {exc}") from None

    @property
    def env_name(self) -> str:
        return "OCF_RESKEY_" + self.name

    def format(self, value: object) -> str:
        """The string form of ``value`` as it stands in the environment and meta-data."""
        if self.type == "boolean":
            return "true" if value else "false"
        return str(value)

    def parse(self, raw: str) -> object:
        """Turn the environment's string into a typed value, or raise ValueError
        with a message that names the parameter and the accepted values."""
        value: object
        if self.type == "integer":
            try:
                value = int(raw.strip(), 10)
            except ValueError:
                raise ValueError(f"{self.name}={raw!r} is not an integer") from None
        elif self.type == "boolean":
            word = raw.strip().lower()
            if word in TRUE_WORDS:
                value = True
            elif word in FALSE_WORDS:
                value = False
            else:
                raise ValueError(f"{self.name}={raw!r} is not a boolean (use true or false)")
        elif self.type == "select":
            if raw not in self.choices:
                raise ValueError(f"{self.name}={raw!r} is not one of: {', '.join(self.choices)}")
            value = raw
        else:
            value = raw
        if self.check is not None:
            problem = self.check(value)
            if problem:
                raise ValueError(f"{self.name}={raw!r}: {problem}")
        return value


class Action:
    """One advertised action; ``handler(resource) -> exit code``.

    The same action name may be declared several times with different
    ``depth`` and ``interval`` (monitor at check levels 0, 10 and 20).
    ``strict`` actions refuse to run with invalid parameters; a non-strict
    one (stop) runs with the valid ones and defaults for the rest, so that a
    configuration mistake never turns a stop into a failed stop and a fence.
    """

    __slots__ = ("name", "handler", "timeout", "interval", "depth", "role", "strict")

    def __init__(
        self,
        name: str,
        handler: Handler | None,
        *,
        timeout: int,
        interval: int | None = None,
        depth: int | None = None,
        role: str | None = None,
        strict: bool = True,
    ) -> None:
        if timeout <= 0:
            raise DeclarationError(f"action {name!r}: timeout must be positive seconds")
        if depth is not None and depth not in CHECK_LEVELS:
            raise DeclarationError(f"action {name!r}: depth must be one of {CHECK_LEVELS}")
        self.name = name
        self.handler = handler
        self.timeout = timeout
        self.interval = interval
        self.depth = depth
        self.role = role
        self.strict = strict


class Agent:
    """A resource agent: what it is, what it takes and what it can do.

    ``validate`` checks the local environment (check level 10: programs
    installed, users present); it is run by ``validate-all`` and by the
    actions that call :meth:`Resource.validate`.
    """

    # Actions the framework answers itself; they are advertised in the
    # meta-data like the agent's own.
    BUILTIN = ("meta-data", "validate-all")

    def __init__(
        self,
        name: str,
        version: str,
        shortdesc: str,
        longdesc: str,
        parameters: Iterable[Parameter],
        actions: Iterable[Action],
        validate: Validator | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.shortdesc = shortdesc
        self.longdesc = longdesc
        self.parameters = tuple(parameters)
        self.validate = validate
        self.actions = tuple(actions) + (
            Action("meta-data", None, timeout=5),
            Action("validate-all", None, timeout=20),
        )
        self._check_declaration()

    def _check_declaration(self) -> None:
        names = [p.name for p in self.parameters]
        if len(set(names)) != len(names):
            raise DeclarationError(f"agent {self.name!r}: a parameter is declared twice")
        if not names:
            raise DeclarationError(f"agent {self.name!r}: OCF meta-data needs a parameter")
        declared = {a.name for a in self.actions}
        for mandatory in ("start", "stop", "monitor"):
            if mandatory not in declared:
                raise DeclarationError(f"agent {self.name!r}: the {mandatory!r} action is mandatory")
        handlers: dict[str, object] = {}
        for action in self.actions:
            if action.name in self.BUILTIN:
                continue
            if action.handler is None:
                raise DeclarationError(f"action {action.name!r} has no handler")
            if handlers.setdefault(action.name, action.handler) is not action.handler:
                raise DeclarationError(f"action {action.name!r}: one handler for all its depths")
        if any(p.reloadable for p in self.parameters) and "reload-agent" not in declared:
            raise DeclarationError("reloadable parameters need a 'reload-agent' action")

    def action(self, name: str) -> Action | None:
        """The first declaration of action ``name`` (its handler and timeout)."""
        for action in self.actions:
            if action.name == name:
                return action
        return None

    def depths(self, name: str) -> tuple[int, ...]:
        """The check levels declared for an action, lowest first."""
        return tuple(sorted({a.depth or 0 for a in self.actions if a.name == name}))

    def run(self) -> None:
        """Entry point of an agent executable: run ``sys.argv[1]`` and exit."""
        import os
        import sys

        from highlander.ocf.runtime import execute

        sys.exit(execute(self, sys.argv[1:], os.environ))
