"""The trio as the operator describes it once, checked completely.

:func:`parse` turns the YAML document (already loaded into Python values)
into an :class:`Inventory`, or raises :class:`InventoryError` with every
problem: its code (:mod:`highlander.inventory.codes`), the path of the bad
value and a message that names the path, what is wrong and the fix, e.g.
``nodes[2].fence[0].address: not an IP address or host name ('10.0.0.999')``.
Pure: no file, network or clock, so every rule is unit-tested.

Secrets are references only: a fence device names a file (mode 0600 on the
node) or an Ansible Vault variable holding its password, never the password.
"""

from __future__ import annotations

import ipaddress
import re
import reprlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from highlander.inventory import codes
from highlander.problems import Problem, ProblemError

METHODS = ("ipmi", "ilo_ssh", "redfish")
DEFAULT_FENCE_PORTS = {"ipmi": 623, "ilo_ssh": 22, "redfish": 443}
ROLES = ("active", "witness")
QUORUM = ("votequorum", "qdevice")
HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
NODE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
KEY_PART = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/-]*$")
OPTION_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
HOST_KEY = re.compile(r"^(ssh-ed25519|ssh-rsa|ssh-dss|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+={0,2}$")
HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$|^$")
# Where the rendered known_hosts (the ilo_ssh devices' host_key pins) is installed on the nodes.
KNOWN_HOSTS = "/etc/highlander/known_hosts"
# Agent options that carry a secret, and those the inventory sets from the device's own fields.
SECRET_OPTIONS = ("password", "passwd", "hexadecimal_kg")
RESERVED_OPTIONS = {
    "ip": "address",
    "ipaddr": "address",
    "ipport": "port",
    "username": "username",
    "login": "username",
    "password_script": "password_file/password_vault",
    "passwd_script": "password_file/password_vault",
    "pcmk_host_list": "the node the device fences",
    "pcmk_host_map": "the node the device fences",
    "pcmk_host_check": "the node the device fences",
}


# How a bad value is shown in a problem: a few elements, a few levels, a few dozen characters.
# A value can be any structure the file describes; printing it whole could take any time and memory.
_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxdict = 1, 4, 4
_SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxlong = 60, 60, 40
SHOWN_LENGTH = 100
SHOWN_KEY_LENGTH = 40


def _shortened(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 3] + "..."


def shown(value: object) -> str:
    """A short rendering of any value for a problem message (``repr``-like, truncated)."""
    return _shortened(_SHOWN.repr(value), SHOWN_LENGTH)


def setting(path: str, key: object) -> str:
    """The path of ``key`` below ``path``, with an overlong key shortened."""
    name = _shortened(str(key) if isinstance(key, (str, int)) else shown(key), SHOWN_KEY_LENGTH)
    return f"{path}.{name}" if path else name


class InventoryError(ProblemError, ValueError):
    """Every problem found in an inventory; ``str()`` is their messages, one per line."""


@dataclass(frozen=True)
class FenceDevice:
    """One BMC that powers a node off; ``options`` are its agent's own options.

    An ilo_ssh device pins its SSH host key: ``ssh_fingerprint``,
    ``known_hosts`` (a file on the nodes), or ``host_key`` (the key itself,
    rendered into the nodes' known_hosts; the agent gets ``known_hosts`` then).
    """

    method: str
    address: str
    port: int
    username: str
    password_file: str | None = None
    password_vault: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)

    @property
    def agent(self) -> str:
        return f"fence_highlander_{self.method}"


@dataclass(frozen=True)
class Node:
    name: str
    role: str
    addresses: tuple[str, ...]
    fence: tuple[FenceDevice, ...]
    ssh_host: str  # where Ansible reaches it (default: the first address)

    @property
    def active(self) -> bool:
        return self.role == "active"


@dataclass(frozen=True)
class SignState:
    port: int = 7480
    pki_dir: str = "/etc/highlander/pki"
    state_dir: str = "/var/lib/highlander/signstate"
    socket: str = "/run/highlander/signstate.sock"
    socket_group: str | None = None
    backend: str = "trio"  # or "etcd", "postgresql": the register in a store the operator runs
    store: Mapping[str, object] | None = None  # that store's section of signstate.toml, checked when rendered
    metrics: str = "127.0.0.1:9540"  # where each daemon serves /metrics ("" for nowhere)


@dataclass(frozen=True)
class Validator:
    command: str
    chain_id: str
    key_id: str
    health_url: str
    user: str | None = None
    state_file: str | None = None
    state_format: str = "cometbft"
    height_margin: int = 0
    environment_file: str | None = None


@dataclass(frozen=True)
class Timeouts:
    token_ms: int = 3000
    monitor_interval: int = 10
    health_interval: int = 30


@dataclass(frozen=True)
class Inventory:
    cluster_name: str
    quorum: str
    nodes: tuple[Node, ...]
    signstate: SignState
    validator: Validator
    timeouts: Timeouts

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no node {name!r} in the inventory (nodes: {', '.join(n.name for n in self.nodes)})")

    @property
    def members(self) -> tuple[Node, ...]:
        """The corosync/Pacemaker members: all three, or with a qdevice the two active nodes."""
        return self.nodes if self.quorum == "votequorum" else tuple(n for n in self.nodes if n.active)

    @property
    def witness(self) -> Node | None:
        return next((n for n in self.nodes if n.role == "witness"), None)


# --- checking -------------------------------------------------------------------


class _Checker:
    """Collects problems while reading a document, so all are reported at once."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def problem(self, code: str, path: str, message: str) -> None:
        """A problem with the value at ``path``; its message starts with the path."""
        self.problems.append(Problem(code, path, f"{path or '(top level)'}: {message}"))

    def mapping(self, value: object, path: str, known: tuple[str, ...]) -> Mapping[str, object]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            expected = f"expected a mapping of {', '.join(known)}, got {type(value).__name__}"
            self.problem(codes.INVENTORY_WRONG_TYPE, path, expected)
            return {}
        for key in value:
            if key not in known:
                unknown = f"unknown setting (known: {', '.join(known)})"
                self.problem(codes.INVENTORY_UNKNOWN_SETTING, setting(path, key), unknown)
        return value

    def text(
        self,
        document: Mapping[str, object],
        key: str,
        path: str,
        *,
        required: bool = False,
        default: str | None = None,
        pattern: re.Pattern[str] | None = None,
        what: str = "",
        check: Callable[[str], Refusal | None] | None = None,
    ) -> str | None:
        where = f"{path}.{key}" if path else key
        value = document.get(key)
        if value is None:
            if required:
                self.problem(codes.INVENTORY_REQUIRED, where, f"required{f' ({what})' if what else ''}")
            return default
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            self.problem(codes.INVENTORY_WRONG_TYPE, where, f"expected text, got {shown(value)}")
            return default
        text = str(value)
        if pattern is not None and not pattern.match(text):
            self.problem(codes.INVENTORY_INVALID_VALUE, where, f"not {what} ({shown(text)})")
            return default
        if check is not None:
            refusal = check(text)
            if refusal:
                code, message = refusal
                self.problem(code, where, f"{message} ({shown(text)})")
                return default
        return text

    def number(self, document: Mapping[str, object], key: str, path: str, default: int, low: int, high: int) -> int:
        where = f"{path}.{key}" if path else key
        value = document.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            expected = f"expected a whole number from {low} to {high}, got {shown(value)}"
            self.problem(codes.INVENTORY_OUT_OF_RANGE, where, expected)
            return default
        return value

    def choice(
        self, document: Mapping[str, object], key: str, path: str, choices: tuple[str, ...], default: str | None = None
    ) -> str:
        where = f"{path}.{key}" if path else key
        value = document.get(key, default)
        if value not in choices:
            expected = f"must be one of {', '.join(choices)}, got {shown(value)}"
            self.problem(codes.INVENTORY_NOT_A_CHOICE, where, expected)
            return choices[0]
        return str(value)


# Why a text is refused: the problem's code and what is wrong.
Refusal = tuple[str, str]
NOT_ABSOLUTE: Refusal = (codes.INVENTORY_NOT_ABSOLUTE_PATH, "must be an absolute path")
NOT_AN_ADDRESS: Refusal = (codes.INVENTORY_WRONG_TYPE, "expected an address as text")


def _host(text: str) -> Refusal | None:
    try:
        ipaddress.ip_address(text)
        return None
    except ValueError:
        pass
    if text.replace(".", "").isdigit() or not HOSTNAME.match(text):
        return codes.INVENTORY_NOT_A_HOST, "not an IP address or host name"
    return None


def _absolute(text: str) -> Refusal | None:
    return None if text.startswith("/") else NOT_ABSOLUTE


def _url(text: str) -> Refusal | None:
    if text.startswith(("http://", "https://")):
        return None
    return codes.INVENTORY_NOT_A_URL, "must be an http:// or https:// URL"


def _secret_path(text: str) -> Refusal | None:
    if not text.startswith("/"):
        return NOT_ABSOLUTE
    if not SAFE_PATH.match(text):
        return (
            codes.INVENTORY_UNSAFE_PATH,
            "must be a path of letters, digits and ._-/ only (it becomes a password_script argument)",
        )
    return None


def _options(c: _Checker, raw: object, path: str, method: str) -> dict[str, str]:
    """The agent options of one device, checked so that rendering them is safe.

    The device's own fields (address, port, username, password reference)
    are set from the inventory and cannot be overridden here; a password
    never gets into the options (it would end up in the CIB).
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping) or not all(
        isinstance(k, str) and isinstance(v, (str, int)) and not isinstance(v, bool) for k, v in raw.items()
    ):
        c.problem(codes.INVENTORY_WRONG_TYPE, path, "expected a mapping of agent option names to values")
        return {}
    options: dict[str, str] = {}
    for key, value in raw.items():
        where = setting(path, key)
        if key in ("password", "passwd"):
            c.problem(
                codes.INVENTORY_INLINE_PASSWORD,
                where,
                "inline passwords are not accepted: use the device's password_file or password_vault",
            )
        elif key in SECRET_OPTIONS:
            c.problem(
                codes.INVENTORY_SECRET_OPTION,
                where,
                "a secret, and options end up in the cluster configuration: not accepted",
            )
        elif key in RESERVED_OPTIONS:
            c.problem(
                codes.INVENTORY_RESERVED_OPTION,
                where,
                f"set by highlander from {RESERVED_OPTIONS[key]}; remove it from options",
            )
        elif not OPTION_NAME.match(key):
            c.problem(
                codes.INVENTORY_INVALID_OPTION_NAME,
                where,
                "not an agent option name (lower-case letters, digits and _)",
            )
        elif key == "host_key" and method != "ilo_ssh":
            c.problem(codes.INVENTORY_OPTION_NOT_FOR_METHOD, where, "only ilo_ssh devices take a host_key")
        elif key == "host_key" and not HOST_KEY.match(str(value)):
            c.problem(
                codes.INVENTORY_INVALID_VALUE,
                where,
                "not an SSH public key ('<type> <base64>', as in ssh-keyscan's output without the host name)",
            )
        else:
            options[key] = str(value)
    if method == "ilo_ssh" and not ({"ssh_fingerprint", "known_hosts", "host_key"} & set(raw)):
        c.problem(
            codes.INVENTORY_HOST_KEY_NOT_PINNED,
            path,
            "an ilo_ssh device needs ssh_fingerprint, known_hosts or host_key: host keys are checked, never "
            "accepted blindly",
        )
    if "host_key" in raw and "known_hosts" in raw:
        c.problem(
            codes.INVENTORY_CONFLICTING_SETTINGS,
            f"{path}.host_key",
            f"give host_key or known_hosts, not both (with host_key the agent uses {KNOWN_HOSTS})",
        )
    return options


def _fence(c: _Checker, raw: object, path: str) -> FenceDevice | None:
    keys = ("method", "address", "port", "username", "password_file", "password_vault", "password", "options")
    d = c.mapping(raw, path, keys)
    if "password" in d:
        c.problem(
            codes.INVENTORY_INLINE_PASSWORD,
            f"{path}.password",
            "inline passwords are not accepted: use password_file (a 0600 file on the nodes) or password_vault "
            "(an Ansible Vault variable)",
        )
    method = c.choice(d, "method", path, METHODS)
    address = c.text(d, "address", path, required=True, check=_host, what="the BMC's address")
    port = c.number(d, "port", path, DEFAULT_FENCE_PORTS.get(method, 623), 1, 65535)
    username = c.text(d, "username", path, required=True, what="the BMC user")
    password_file = c.text(d, "password_file", path, check=_secret_path)
    password_vault = c.text(d, "password_vault", path, pattern=IDENTIFIER, what="a variable name")
    if not password_file and not password_vault and "password" not in d:
        c.problem(
            codes.INVENTORY_REQUIRED, f"{path}.password_file", "required: a password_file or a password_vault variable"
        )
    options = _options(c, d.get("options", {}), f"{path}.options", method)
    if address is None or username is None:
        return None
    return FenceDevice(method, address, port, username, password_file, password_vault, options)


def _node(c: _Checker, raw: object, path: str) -> Node | None:
    d = c.mapping(raw, path, ("name", "role", "addresses", "fence", "ssh_host"))
    name = c.text(d, "name", path, required=True, pattern=NODE_NAME, what="a lower-case host name")
    role = c.choice(d, "role", path, ROLES, default="active")
    addresses_raw = d.get("addresses")
    addresses: list[str] = []
    if not isinstance(addresses_raw, list) or not 1 <= len(addresses_raw) <= 2:
        c.problem(
            codes.INVENTORY_ADDRESS_COUNT, f"{path}.addresses", "expected one or two addresses (one per corosync link)"
        )
    else:
        for i, value in enumerate(addresses_raw):
            refusal = _host(value) if isinstance(value, str) else NOT_AN_ADDRESS
            if refusal:
                code, message = refusal
                c.problem(code, f"{path}.addresses[{i}]", f"{message} ({shown(value)})")
            else:
                addresses.append(value)
    fence_raw = d.get("fence", [])
    fences = []
    if not isinstance(fence_raw, list):
        c.problem(codes.INVENTORY_WRONG_TYPE, f"{path}.fence", "expected a list of fence devices (first level first)")
    else:
        for i, device in enumerate(fence_raw):
            found = _fence(c, device, f"{path}.fence[{i}]")
            if found:
                fences.append(found)
    ssh_host = c.text(d, "ssh_host", path, check=_host)
    if name is None or not addresses:
        return None
    return Node(name, role, tuple(addresses), tuple(fences), ssh_host or addresses[0])


def parse(document: object) -> Inventory:
    """The inventory, or InventoryError with every problem."""
    c = _Checker()
    top = c.mapping(document, "", ("cluster", "nodes", "signstate", "validator", "timeouts"))
    cluster = c.mapping(top.get("cluster"), "cluster", ("name", "quorum"))
    name = c.text(cluster, "name", "cluster", required=True, pattern=NODE_NAME, what="a lower-case name")
    quorum = c.choice(cluster, "quorum", "cluster", QUORUM, default="votequorum")

    nodes_raw = top.get("nodes")
    indexed: list[tuple[int, Node]] = []
    if not isinstance(nodes_raw, list) or len(nodes_raw) != 3:
        c.problem(codes.INVENTORY_NODE_COUNT, "nodes", "expected exactly three nodes: two active-capable and a witness")
    else:
        for i, raw in enumerate(nodes_raw):
            node = _node(c, raw, f"nodes[{i}]")
            if node:
                indexed.append((i, node))
    _check_trio(c, indexed, quorum)
    nodes = [node for _, node in indexed]

    s = c.mapping(
        top.get("signstate"),
        "signstate",
        ("port", "pki_dir", "state_dir", "socket", "socket_group", "backend", "etcd", "postgresql", "metrics"),
    )
    backend = c.choice(s, "backend", "signstate", ("trio", "etcd", "postgresql"), default="trio")
    store = s.get(backend) if backend != "trio" else None
    if backend != "trio" and not isinstance(store, dict):
        c.problem(
            codes.INVENTORY_REQUIRED,
            f"signstate.{backend}",
            f"backend {backend} needs this section: how every node reaches {backend}",
        )
    signstate = SignState(
        port=c.number(s, "port", "signstate", 7480, 1, 65535),
        pki_dir=c.text(s, "pki_dir", "signstate", default=SignState.pki_dir, check=_absolute) or SignState.pki_dir,
        state_dir=c.text(s, "state_dir", "signstate", default=SignState.state_dir, check=_absolute)
        or SignState.state_dir,
        socket=c.text(s, "socket", "signstate", default=SignState.socket, check=_absolute) or SignState.socket,
        socket_group=c.text(s, "socket_group", "signstate", pattern=USER, what="a group name"),
        backend=backend,
        store=store if isinstance(store, dict) else None,
        metrics=c.text(
            s,
            "metrics",
            "signstate",
            default=SignState.metrics,
            pattern=HOST_PORT,
            what='HOST:PORT, or "" for no metrics',
        )
        or "",
    )
    v = c.mapping(
        top.get("validator"),
        "validator",
        (
            "command",
            "user",
            "chain_id",
            "key_id",
            "health_url",
            "state_file",
            "state_format",
            "height_margin",
            "environment_file",
        ),
    )
    validator = Validator(
        command=c.text(v, "command", "validator", required=True, what="the signing daemon's command line") or "",
        chain_id=c.text(v, "chain_id", "validator", required=True, pattern=KEY_PART, what="a chain id") or "",
        key_id=c.text(v, "key_id", "validator", required=True, pattern=KEY_PART, what="a key name") or "",
        health_url=c.text(v, "health_url", "validator", required=True, check=_url) or "",
        user=c.text(v, "user", "validator", pattern=USER, what="a user name"),
        state_file=c.text(v, "state_file", "validator", check=_absolute),
        state_format=c.choice(v, "state_format", "validator", ("cometbft", "tmkms"), default="cometbft"),
        height_margin=c.number(v, "height_margin", "validator", 0, 0, 1_000_000),
        environment_file=c.text(v, "environment_file", "validator", check=_absolute),
    )
    t = c.mapping(top.get("timeouts"), "timeouts", ("token_ms", "monitor_interval", "health_interval"))
    timeouts = Timeouts(
        token_ms=c.number(t, "token_ms", "timeouts", 3000, 500, 60000),
        monitor_interval=c.number(t, "monitor_interval", "timeouts", 10, 1, 3600),
        health_interval=c.number(t, "health_interval", "timeouts", 30, 1, 3600),
    )
    if timeouts.health_interval == timeouts.monitor_interval:
        c.problem(
            codes.INVENTORY_CONFLICTING_SETTINGS,
            "timeouts.health_interval",
            "must differ from monitor_interval: Pacemaker runs one monitor per interval (depth 0 and depth 10 "
            "need two)",
        )
    if c.problems or name is None:
        if not c.problems:
            c.problem(codes.INVENTORY_REQUIRED, "cluster.name", "required")
        raise InventoryError(c.problems)
    return Inventory(name, quorum, tuple(nodes), signstate, validator, timeouts)


def _check_trio(c: _Checker, indexed: list[tuple[int, Node]], quorum: str) -> None:
    """Rules across nodes; ``indexed`` keeps each node's place in the file for the paths."""
    nodes = [node for _, node in indexed]
    names = [n.name for n in nodes]
    for i, node in indexed:
        if names.count(node.name) > 1:
            shared = f"{node.name!r} is used by more than one node"
            c.problem(codes.INVENTORY_DUPLICATE_NAME, f"nodes[{i}].name", shared)
    if len(nodes) == 3:
        roles = sorted(n.role for n in nodes)
        if roles != ["active", "active", "witness"]:
            expected = f"expected two active-capable nodes and one witness, got roles {roles}"
            c.problem(codes.INVENTORY_WRONG_ROLES, "nodes", expected)
    links = {len(n.addresses) for n in nodes}
    if len(links) > 1:
        c.problem(
            codes.INVENTORY_LINK_COUNT_MISMATCH,
            "nodes",
            "every node needs the same number of addresses (one per corosync link)",
        )
    seen: dict[str, str] = {}
    for i, node in indexed:
        for j, address in enumerate(node.addresses):
            if address in seen:
                also = f"{address} is also {seen[address]}'s address"
                c.problem(codes.INVENTORY_DUPLICATE_ADDRESS, f"nodes[{i}].addresses[{j}]", also)
            seen[address] = node.name
        member = quorum == "votequorum" or node.active
        if member and not node.fence:
            c.problem(
                codes.INVENTORY_MEMBER_WITHOUT_FENCE,
                f"nodes[{i}].fence",
                f"{node.name} is a cluster member and needs a fence device (fencing stays on)",
            )
