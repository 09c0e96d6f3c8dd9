"""The declaration of a fence agent: its options and its driver, once.

Option names, their deprecated aliases and their command-line spellings
follow fence-agents, so a device configured for ``fence_ipmilan``,
``fence_ilo_ssh`` or ``fence_redfish`` keeps working with ours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from highlander.fencing.driver import PowerDriver

OPTION_TYPES = ("string", "integer", "boolean", "second", "select")
# Every action a fence agent accepts, in fence-agents' order, which is the
# order of the meta-data's <actions>.
AGENT_ACTIONS = (
    "on",
    "off",
    "reboot",
    "status",
    "list",
    "list-status",
    "monitor",
    "metadata",
    "manpage",
    "validate-all",
)


class Option:
    """One option: ``name=value`` on stdin, ``--long``/``-short`` on the command line.

    ``aliases`` are the deprecated stdin names (``ipaddr`` for ``ip``);
    ``secret`` values are never logged, printed or written to the debug file.
    A ``second`` is a number of seconds, fractions allowed. ``metavar`` is the
    placeholder of the value in ``--long=[metavar]`` (meta-data, man page);
    ``order`` groups options in the meta-data as fence-agents does (device
    options first, then logging, then timing), ties sorted by name.
    """

    def __init__(
        self,
        name: str,
        shortdesc: str,
        *,
        long: str | None = None,
        short: str | None = None,
        aliases: Iterable[str] = (),
        type: str = "string",
        default: object = None,
        required: bool = False,
        secret: bool = False,
        choices: Iterable[str] = (),
        longdesc: str = "",
        metavar: str | None = None,
        order: int = 1,
    ) -> None:
        if type not in OPTION_TYPES:
            raise ValueError(f"option {name!r}: type must be one of {OPTION_TYPES}")
        if (type == "select") != bool(tuple(choices)):
            raise ValueError(f"option {name!r}: choices go with type 'select' and only with it")
        self.name = name
        self.shortdesc = shortdesc
        self.long = long or name.replace("_", "-")
        self.short = short
        self.aliases = tuple(aliases)
        self.type = type
        self.default = default
        self.required = required
        self.secret = secret
        self.choices = tuple(choices)
        self.longdesc = longdesc or shortdesc
        self.metavar = metavar or ("seconds" if type == "second" else self.long)
        self.order = order

    def replace(self, **changes: object) -> Option:
        """A copy with some attributes changed (an agent's own default port)."""
        fields = {
            "long": self.long,
            "short": self.short,
            "aliases": self.aliases,
            "type": self.type,
            "default": self.default,
            "required": self.required,
            "secret": self.secret,
            "choices": self.choices,
            "longdesc": self.longdesc,
            "metavar": self.metavar,
            "order": self.order,
        }
        fields.update(changes)
        return Option(self.name, self.shortdesc, **fields)  # type: ignore[arg-type]


def _common() -> dict[str, Option]:
    # Orders as in fence-agents: 1 for the device options, 51/53 for logging,
    # 200/201 for timing. ``action`` is a string there (the advertised actions
    # depend on the agent: list only for multi-plug devices); it is checked
    # when parsed. It has no ``option`` alias: fence-agents 4.12 ignores that
    # old name, and accepting it would let a stale device attribute
    # ``option=off`` override the action Pacemaker asks for.
    options = (
        Option(
            "action",
            "Fencing action",
            short="o",
            default="reboot",
            longdesc="The action to perform: on, off, reboot (the default), status, monitor, "
            "list, list-status (multi-plug devices), validate-all, metadata, manpage.",
        ),
        Option("ip", "IP address or hostname of fencing device", short="a", aliases=("ipaddr",), required=True),
        Option("ipport", "TCP/UDP port to use for connection with device", short="u", type="integer", metavar="port"),
        Option("username", "Login name", short="l", aliases=("login",), metavar="name"),
        Option("password", "Login password or passphrase", short="p", aliases=("passwd",), secret=True),
        Option(
            "password_script",
            "Script to run to retrieve password",
            short="S",
            aliases=("passwd_script",),
            metavar="script",
            longdesc="Program whose standard output is the password (its first line); run "
            "without a shell. Keeps the password out of the cluster configuration.",
        ),
        Option(
            "plug",
            "Physical plug number on device, UUID or identification of machine",
            short="n",
            aliases=("port",),
            metavar="id",
        ),
        Option(
            "verbose",
            "Verbose mode: log every exchange with the device (never a password)",
            short="v",
            type="boolean",
            default=False,
            order=51,
        ),
        Option(
            "debug_file",
            "Write debug information to given file",
            short="D",
            aliases=("debug",),
            metavar="debugfile",
            order=53,
        ),
        Option("delay", "Wait X seconds before fencing is started", type="second", default=0, order=200),
        Option(
            "login_timeout", "Wait X seconds for the device to answer the login", type="second", default=5, order=200
        ),
        Option("power_timeout", "Test X seconds for status change after ON/OFF", type="second", default=20, order=200),
        Option("power_wait", "Wait X seconds after issuing ON/OFF", type="second", default=0, order=200),
        Option(
            "retry_on", "Count of attempts to retry power on", type="integer", default=1, metavar="attempts", order=201
        ),
        Option(
            "method",
            "Method to fence",
            short="m",
            type="select",
            choices=("onoff", "cycle"),
            default="onoff",
            longdesc="onoff: power off, verify, power on. cycle: one hard reset; quicker, but "
            "the off state cannot be verified.",
        ),
    )
    return {o.name: o for o in options}


COMMON = _common()

# The options every highlander fence agent has beyond fence-agents' own.
OWN = {
    "metrics_dir": Option(
        "metrics_dir",
        "Write the outcome to node_exporter's textfile directory",
        metavar="directory",
        order=53,
        longdesc="After every action on the device, count its outcome (success or failure) and duration in "
        "highlander_fence.prom in this directory (node_exporter's --collector.textfile.directory), "
        "replaced whole, readable by all, without addresses or secrets. Unset: nothing is written.",
    ),
}

# The exit codes of the fence-agents API: success (for status: the plug is on),
# failure (the device could not be reached, or the action not done or not
# verified), and, for status and monitor only, "reachable, plug off".
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_OFF = 2


def succeeded(action: str, code: int) -> bool:
    """Whether an agent did what was asked, by the fence-agents API's exit codes.

    0 is success for every action (for off, on and reboot: done and
    verified). 2 answers status only: the device was reached and the power
    is off, an answer like 0's. For off, on and reboot the API has no exit
    2, so it is not a success: a fence that did not end in 0 was not
    verified.
    """
    return code == EXIT_OK or (action == "status" and code == EXIT_OFF)


DriverFactory = Callable[[Mapping[str, object]], PowerDriver]


class FenceAgent:
    """A fence agent: name, descriptions, options, and how to reach its device.

    ``driver(options)`` builds the driver from the parsed options (name ->
    typed value, defaults filled in, password resolved, ``ip`` a bare host
    and ``ipport`` its port: see :mod:`highlander.fencing.address`).
    ``multi_plug`` devices need ``plug``
    (or ``nodename``) and support list and list-status.
    """

    def __init__(
        self,
        name: str,
        shortdesc: str,
        longdesc: str,
        *,
        vendor_url: str,
        options: Iterable[Option],
        driver: DriverFactory,
        multi_plug: bool = False,
    ) -> None:
        self.name = name
        self.shortdesc = shortdesc
        self.longdesc = longdesc
        self.vendor_url = vendor_url
        declared = tuple(options)
        self.options = declared + tuple(o for name, o in OWN.items() if name not in {d.name for d in declared})
        self.driver = driver
        self.multi_plug = multi_plug
        names = [o.name for o in self.options]
        if len(set(names)) != len(names):
            raise ValueError(f"{name}: an option is declared twice")

    def option(self, name: str) -> Option:
        for option in self.options:
            if option.name == name:
                return option
        raise KeyError(name)

    @property
    def actions(self) -> tuple[str, ...]:
        """The actions advertised in the meta-data: list and list-status only for
        multi-plug devices (fence-agents hides them for single-plug ones too)."""
        if self.multi_plug:
            return AGENT_ACTIONS
        return tuple(a for a in AGENT_ACTIONS if a not in ("list", "list-status"))

    def run(self) -> None:
        """Entry point of a fence agent executable."""
        import sys

        from highlander.fencing.run import main

        sys.exit(main(self, sys.argv[1:], sys.stdin))
