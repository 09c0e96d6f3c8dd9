"""The declaration of a fence agent: its options and its driver, once.

Option names, their deprecated aliases and their command-line spellings
follow fence-agents, so a device configured for ``fence_ipmilan``,
``fence_ilo_ssh`` or ``fence_redfish`` keeps working with ours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from highlander.fencing.driver import PowerDriver

OPTION_TYPES = ("string", "integer", "boolean", "second", "select")
ACTIONS = (
    "on", "off", "reboot", "status", "monitor", "list", "list-status",
    "metadata", "manpage", "validate-all",
)  # fmt: skip


class Option:
    """One option: ``name=value`` on stdin, ``--long``/``-short`` on the command line.

    ``aliases`` are the deprecated stdin names (``ipaddr`` for ``ip``);
    ``secret`` values are never logged, printed or written to the debug file.
    A ``second`` is a number of seconds, fractions allowed.
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

    def replace(self, **changes: object) -> Option:
        """A copy with some attributes changed (an agent's own default port)."""
        fields = {
            "long": self.long, "short": self.short, "aliases": self.aliases, "type": self.type,
            "default": self.default, "required": self.required, "secret": self.secret,
            "choices": self.choices, "longdesc": self.longdesc,
        }  # fmt: skip
        fields.update(changes)
        return Option(self.name, self.shortdesc, **fields)  # type: ignore[arg-type]


def _common() -> dict[str, Option]:
    options = (
        Option("action", "Fencing action", short="o", aliases=("option",), type="select",
               choices=ACTIONS, default="reboot"),
        Option("ip", "IP address or hostname of fencing device", short="a", aliases=("ipaddr",),
               required=True),
        Option("ipport", "TCP/UDP port to use for connection with device", short="u", type="integer"),
        Option("username", "Login name", short="l", aliases=("login",)),
        Option("password", "Login password or passphrase", short="p", aliases=("passwd",), secret=True),
        Option("password_script", "Script to run to retrieve password", short="S",
               aliases=("passwd_script",),
               longdesc="Program whose standard output is the password (its first line); run "
                        "without a shell. Keeps the password out of the cluster configuration."),
        Option("plug", "Physical plug number on device, UUID or identification of machine", short="n",
               aliases=("port",)),
        Option("verbose", "Verbose mode: log every exchange with the device (never a password)",
               short="v", type="boolean", default=False),
        Option("debug_file", "Write debug information to given file", short="D", aliases=("debug",)),
        Option("delay", "Wait X seconds before fencing is started", type="second", default=0),
        Option("login_timeout", "Wait X seconds for the device to answer the login", type="second",
               default=5),
        Option("power_timeout", "Test X seconds for status change after ON/OFF", type="second",
               default=20),
        Option("power_wait", "Wait X seconds after issuing ON/OFF", type="second", default=0),
        Option("retry_on", "Count of attempts to retry power on", type="integer", default=1),
        Option("method", "Method to fence", short="m", type="select", choices=("onoff", "cycle"),
               default="onoff",
               longdesc="onoff: power off, verify, power on. cycle: one hard reset; quicker, but "
                        "the off state cannot be verified."),
    )  # fmt: skip
    return {o.name: o for o in options}


COMMON = _common()

DriverFactory = Callable[[Mapping[str, object]], PowerDriver]


class FenceAgent:
    """A fence agent: name, descriptions, options, and how to reach its device.

    ``driver(options)`` builds the driver from the parsed options (name ->
    typed value, password resolved). ``multi_plug`` devices need ``plug``
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
        self.options = tuple(options)
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

    def run(self) -> None:
        """Entry point of a fence agent executable."""
        import sys

        from highlander.fencing.run import main

        sys.exit(main(self, sys.argv[1:], sys.stdin))
