"""The man page (``-o manpage``) and the ``--help`` text of an agent.

Both come from the declaration, like the meta-data, so they cannot drift
from what the agent accepts. The page is groff ``-man``: ``fence_x -o
manpage | man -l -`` reads it. fence-agents builds its pages from the
meta-data with an XSL sheet at package build time; ours are printed by the
agent itself, with the sections operators look for there (NAME,
DESCRIPTION, PARAMETERS, ACTIONS, STDIN PARAMETERS).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from highlander.fencing.spec import FenceAgent, Option

ACTION_TEXT = {
    "on": "Power the machine on, then poll the device until it reports the plug on.",
    "off": "Power the machine off, then poll the device until it reports the plug off: "
    "success means the off state was seen, never merely requested.",
    "reboot": "Fence the machine. With method onoff: power off (verified as for off), then "
    "power on; the exit status is that of the off part. With method cycle: one hard reset, "
    "then wait for the plug to report on.",
    "status": "Print the power state (Status: ON or Status: OFF). Exit status 0 for on, "
    "2 for off, 1 when the device cannot be asked.",
    "monitor": "Check that the device answers: a single-plug device is asked for its power "
    "state, a multi-plug device for its plugs. Exit status 0 when it does.",
    "list": "Print the plugs of a multi-plug device, one plug,alias line each.",
    "list-status": "Print the plugs of a multi-plug device with their power state, one plug,alias,ON|OFF line each.",
    "validate-all": "Check that the options are complete and consistent, without contacting "
    "the device. Exit status 0 if they are, otherwise 1 with the reason.",
    "metadata": "Print the XML meta-data describing this agent (read by Pacemaker and pcs).",
    "manpage": "Print this manual page.",
}


def _escape(text: str) -> str:
    """Plain text safe for groff: backslashes escaped, no line taken for a request."""
    lines = text.replace("\\", "\\e").split("\n")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in lines)


def _literal(text: str) -> str:
    """An option spelling: hyphens stay hyphens (not typographic dashes) in every output."""
    return _escape(text).replace("-", "\\-")


def describe(option: Option) -> str:
    """One option's description: what it is, its values, its default or that it is required."""
    from highlander.fencing.metadata import format_value

    text = option.shortdesc.rstrip(".")
    if option.longdesc and option.longdesc != option.shortdesc:
        text = f"{text}. {option.longdesc.rstrip('.')}"
    if option.choices:
        text += f" ({'|'.join(option.choices)})"
    text += "."
    if option.default is not None:
        text += f" (Default Value: {format_value(option, option.default)})"
    elif option.required:
        text += " This parameter is always required."
    return text


def _sorted(agent: FenceAgent) -> list[Option]:
    return sorted(agent.options, key=lambda o: (o.order, o.name))


def render_fence_manpage(agent: FenceAgent) -> str:
    """The man page, groff -man."""
    from highlander import __version__
    from highlander.fencing.metadata import getopt_mixed

    name = agent.name
    out = [
        f'.TH {name.upper()} 8 "" "highlander {__version__}" "Fence Agents"',
        ".SH NAME",
        f"{_literal(name)} \\- {_escape(agent.shortdesc)}",
        ".SH SYNOPSIS",
        f".B {_literal(name)}",
        "[\\fIOPTION\\fR]...",
        ".br",
        f".B {_literal(name)}",
        "< \\fIname=value lines\\fR",
        ".SH DESCRIPTION",
        _escape(agent.longdesc),
        ".PP",
        (
            f"{_literal(name)} reads its options from the command line or, when it has no "
            "arguments, from standard input, one name=value per line (lines starting with # "
            "are ignored, the last value of a name wins, unknown names are ignored). Pacemaker "
            "uses standard input; the command line is for operators and scripts."
        ),
    ]
    if agent.vendor_url:
        # Not adjusted, not hyphenated: a long URL would stretch the line.
        out += [".PP", ".na", f"Vendor URL: \\%{_escape(agent.vendor_url)}", ".ad"]
    out.append(".SH PARAMETERS")
    for option in _sorted(agent):
        out += [".TP", f".B {_literal(getopt_mixed(option))}", _escape(describe(option))]
    out += [".TP", ".B \\-h, \\-\\-help", "Print a short usage text and exit."]
    out.append(".SH ACTIONS")
    for action in agent.actions:
        out += [".TP", f".B {_literal(action)}", _escape(ACTION_TEXT.get(action, ""))]
    out.append(".SH STDIN PARAMETERS")
    for option in _sorted(agent):
        text = describe(option)
        if option.aliases:
            text += f" Obsoletes: {', '.join(option.aliases)}"
        out += [".TP", f".B {_literal(option.name)}", _escape(text)]
    out += [
        ".TP",
        ".B nodename",
        _escape("The node being fenced, sent by Pacemaker; used as the plug when neither plug nor port is given."),
        ".SH EXIT STATUS",
        ".TP",
        ".B 0",
        "Success (for status: the plug is on).",
        ".TP",
        ".B 1",
        (
            "Failure: bad options, the device could not be reached or did not reach the "
            "requested state in time. One line on standard error says why."
        ),
        ".TP",
        ".B 2",
        "status only: the plug is off.",
        ".SH SEE ALSO",
        ".BR stonith_admin (8),",
        ".BR pcs (8)",
    ]
    return "\n".join(out) + "\n"


def usage(agent: FenceAgent) -> str:
    """The ``--help`` text: every command-line spelling with its short description."""
    from highlander.fencing.metadata import getopt_mixed

    lines = [
        f"Usage: {agent.name} [OPTION]...",
        f"       {agent.name} < name=value lines (as Pacemaker calls it)",
        agent.shortdesc,
        "Options:",
    ]
    rows = [(getopt_mixed(o), describe(o)) for o in _sorted(agent)]
    rows.append(("-h, --help", "Print this text and exit"))
    width = max(len(spelling) for spelling, _ in rows)
    lines += [f"   {spelling:<{width}}  {text}" for spelling, text in rows]
    lines.append(f"Actions: {', '.join(agent.actions)}")
    return "\n".join(lines) + "\n"
