"""Running one action of a declared agent, as Pacemaker calls it.

:func:`execute` is the whole contract with the cluster: it reads the action
and the environment, parses parameters, dispatches to the handler, and turns
every outcome into an OCF exit code plus, on failure, an exit reason on
standard error (``ocf-exit-reason:...``, which Pacemaker shows in crm_mon).
"""

from __future__ import annotations

import sys
import time

from highlander.ocf import codes
from highlander.ocf.codes import OCFError
from highlander.ocf.log import AgentLog
from highlander.ocf.params import parse_parameters, unknown_parameters

TYPE_CHECKING = False  # typing's constant, without importing typing: see highlander/__init__.py
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from highlander.ocf.spec import Action, Agent

EXIT_REASON_PREFIX = "ocf-exit-reason:"
# validate-all checks the local environment unless told otherwise; monitor
# does the lightest check unless the operation asks for a deeper one.
DEFAULT_CHECK_LEVEL = {"validate-all": 10}


class Resource:
    """What one invocation knows about its resource instance.

    Handed to every action handler: the parsed parameters, the instance
    name, whether this monitor is a probe, the effective check level, and
    how much of the action's timeout is left.
    """

    def __init__(
        self,
        agent: Agent,
        action: str,
        environ: Mapping[str, str],
        started: float,
    ) -> None:
        self.agent = agent
        self.action = action
        self.environ = environ
        self.started = started
        self.instance = environ.get("OCF_RESOURCE_INSTANCE", "") or agent.name
        self.log = AgentLog(f"{agent.name}({self.instance})", environ)
        interval = environ.get("OCF_RESKEY_CRM_meta_interval", "")
        self.is_probe = action == "monitor" and interval == "0"
        self.check_level = self._check_level()
        self.timeout = self._timeout()
        self.params: dict[str, object] = {}

    def _check_level(self) -> int:
        raw = self.environ.get("OCF_CHECK_LEVEL", "")
        if self.action not in ("monitor", "validate-all"):
            return 0  # the API defines check levels for these two only
        if raw == "":
            return DEFAULT_CHECK_LEVEL.get(self.action, 0)
        try:
            requested = int(raw)
        except ValueError:
            raise OCFError(codes.ERR_CONFIGURED, f"OCF_CHECK_LEVEL={raw!r} is not a number") from None
        # The API asks for the next lower level when one is not implemented.
        supported = [d for d in (0, 10, 20) if d <= requested]
        if self.action == "monitor":
            supported = [d for d in self.agent.depths("monitor") if d <= requested]
        return max(supported, default=0)

    def _timeout(self) -> float:
        raw = self.environ.get("OCF_RESKEY_CRM_meta_timeout", "")
        if raw.isdigit() and int(raw) > 0:
            return int(raw) / 1000.0
        declared = [
            a.timeout for a in self.agent.actions if a.name == self.action and (a.depth or 0) == self.check_level
        ]
        action = self.agent.action(self.action)
        return float(declared[0] if declared else action.timeout if action else 20)

    def integer(self, name: str) -> int:
        """An integer parameter's parsed value, typed for the handler."""
        value = self.params[name]
        if not isinstance(value, int):
            raise TypeError(f"parameter {name!r} is not declared as an integer")
        return value

    def time_left(self) -> float:
        """Seconds until Pacemaker gives up on this action."""
        return self.timeout - (time.monotonic() - self.started)

    def validate(self) -> None:
        """Check the local environment (check level 10); raises OCFError."""
        if self.agent.validate is not None:
            self.agent.validate(self)


def usage(agent: Agent) -> str:
    names = dict.fromkeys(a.name for a in agent.actions)
    return f"usage: {agent.name} {{{'|'.join(names)}}}"


def execute(agent: Agent, argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """Run the action named by ``argv[0]``; return the OCF exit code."""
    started = time.monotonic()
    if not argv:
        print(usage(agent), file=sys.stderr)
        return codes.ERR_ARGS
    name = argv[0]
    if name in ("usage", "help", "--help", "-h"):
        print(usage(agent))
        return codes.SUCCESS
    if name == "meta-data":
        from highlander.ocf.metadata import render_ocf_metadata

        sys.stdout.write(render_ocf_metadata(agent))
        return codes.SUCCESS
    major = environ.get("OCF_RA_VERSION_MAJOR", "")
    if major not in ("", "1"):
        return _fail(None, codes.ERR_GENERIC, f"OCF API version {major} is not supported (this agent speaks 1.1)")
    action = agent.action(name)
    if action is None:
        return _fail(None, codes.ERR_UNIMPLEMENTED, f"action '{name}' is not implemented; {usage(agent)}")
    try:
        resource = Resource(agent, name, environ, started)
    except OCFError as exc:
        return _fail(None, exc.code, exc.reason)
    try:
        return _dispatch(agent, action, resource)
    except OCFError as exc:
        return _fail(resource, exc.code, exc.reason)
    except Exception as exc:  # the cluster must get an exit code and a reason, whatever broke
        import traceback

        for line in traceback.format_exc().splitlines():
            resource.log.debug(line)
        return _fail(resource, codes.ERR_GENERIC, f"internal error in {name}: {type(exc).__name__}: {exc}")


def _dispatch(agent: Agent, action: Action, resource: Resource) -> int:
    values, problems = parse_parameters(agent, resource.environ)
    resource.params = values
    if problems:
        if action.strict:
            raise OCFError(codes.ERR_CONFIGURED, "; ".join(problems))
        for problem in problems:
            resource.log.warning(f"{problem} (ignored for {action.name}, using the default)")
    if action.name == "validate-all":
        for unknown in unknown_parameters(agent, resource.environ):
            resource.log.warning(f"unknown parameter '{unknown}' (a typo?) is ignored")
        if resource.check_level >= 10:
            resource.validate()
        return codes.SUCCESS
    assert action.handler is not None  # guaranteed by Agent's declaration check
    return action.handler(resource)


def _fail(resource: Resource | None, code: int, reason: str) -> int:
    print(EXIT_REASON_PREFIX + reason, file=sys.stderr, flush=True)
    quiet = resource is not None and resource.is_probe and code == codes.NOT_RUNNING
    if resource is not None and not quiet:
        resource.log.error(reason)
    return code
