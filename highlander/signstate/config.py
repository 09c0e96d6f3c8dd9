"""The sign-state node's configuration file (TOML), checked field by field.

Example (rendered per node from templates/ by ``highlander render``)::

    node = "node-a"                       # this node, as named in its certificate
    listen = "10.0.0.1:7480"              # where the other replicas reach it
    state_dir = "/var/lib/highlander/signstate"
    pki_dir = "/etc/highlander/pki"       # ca.crt, <node>.crt, <node>.key
    socket = "/run/highlander/signstate.sock"
    socket_group = "cometbft"             # group allowed to use the signer API
    timeout = 2.0                         # seconds a replica may take to answer
    metrics = "127.0.0.1:9540"            # serve Prometheus /metrics here (optional)

    [peers]
    node-b = "10.0.0.2:7480"
    node-c = "10.0.0.3:7480"

That is the built-in trio (``backend = "trio"``, the default). With
``backend = "etcd"`` or ``"postgresql"`` the register lives in that store
instead, reached as its own section says
(:mod:`highlander.signstate.backends.settings`), and the trio's fields
(listen, peers, state_dir, pki_dir) are not used.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import NamedTuple

from highlander.problems import Problem, ProblemError
from highlander.signstate.backends.settings import Settings, SettingsError, parse_backend

# The codes of a configuration file's problems (highlander.problems), the sign-state daemon's and
# the remote signer's alike. Their path is the setting (timeout, peers.node-b, nodes[1]); empty
# for the file as a whole.
CONFIG_UNREADABLE = "CONFIG_UNREADABLE"  # the file cannot be read (for an OCF agent: not installed)
CONFIG_NOT_TOML = "CONFIG_NOT_TOML"
CONFIG_UNKNOWN_SETTING = "CONFIG_UNKNOWN_SETTING"  # path empty: the message names every unknown one
CONFIG_INVALID_VALUE = "CONFIG_INVALID_VALUE"
CONFIG_INVALID_ADDRESS = "CONFIG_INVALID_ADDRESS"
CONFIG_NOT_ABSOLUTE_PATH = "CONFIG_NOT_ABSOLUTE_PATH"


class ConfigError(ProblemError, ValueError):
    """The configuration is unusable; the message names the file, the field and the fix."""


def config_error(code: str, path: str, message: str, source: str) -> ConfigError:
    """The first problem found in ``source``: the checks stop there."""
    return ConfigError([Problem(code, path, message, source)])


class Address(NamedTuple):
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class NodeConfig(NamedTuple):
    node: str
    listen: Address | None  # listen, peers, state_dir, pki_dir: the trio's (None, {} with another backend)
    peers: dict[str, Address]
    state_dir: Path | None
    pki_dir: Path | None
    socket: Path
    socket_group: str | None = None
    timeout: float = 2.0
    backend: str = "trio"
    store: Settings | None = None  # the external backend's section
    metrics: Address | None = None  # where /metrics is served, if anywhere


TRIO_FIELDS = ("listen", "peers", "state_dir", "pki_dir")


def parse_address(text: object, path: str, source: str = "config") -> Address:
    """``HOST:PORT`` (``[v6]:PORT``), the value at ``path`` in ``source``."""
    if not isinstance(text, str):
        raise config_error(CONFIG_INVALID_ADDRESS, path, f'{path}: expected "HOST:PORT", got {text!r}', source)
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        message = f"{path}: {text!r} is not HOST:PORT with a port from 1 to 65535"
        raise config_error(CONFIG_INVALID_ADDRESS, path, message, source)
    return Address(host, int(port))


def absolute_path(document: dict[str, object], name: str, source: str) -> Path:
    value = document.get(name)
    if not isinstance(value, str) or not value.startswith("/"):
        message = f"{name} must be an absolute path, got {value!r}"
        raise config_error(CONFIG_NOT_ABSOLUTE_PATH, name, message, source)
    return Path(value)


def refuse_unknown(document: dict[str, object], known: set[str], source: str) -> None:
    """Every setting must be a known one: a misspelt name would silently be a default."""
    unknown = sorted(set(document) - known)
    if unknown:
        message = f"unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        raise config_error(CONFIG_UNKNOWN_SETTING, "", message, source)


def parse_config(document: dict[str, object], source: str = "config") -> NodeConfig:
    known = {
        "node",
        "listen",
        "peers",
        "state_dir",
        "pki_dir",
        "socket",
        "socket_group",
        "timeout",
        "backend",
        "etcd",
        "postgresql",
        "metrics",
    }
    refuse_unknown(document, known, source)
    node = document.get("node")
    if not isinstance(node, str) or not node:
        raise config_error(CONFIG_INVALID_VALUE, "node", f"node must name this node, got {node!r}", source)
    timeout = document.get("timeout", 2.0)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout <= 60:
        message = f"timeout must be seconds between 0 and 60, got {timeout!r}"
        raise config_error(CONFIG_INVALID_VALUE, "timeout", message, source)
    group = document.get("socket_group")
    if group is not None and not isinstance(group, str):
        message = f"socket_group must be a group name, got {group!r}"
        raise config_error(CONFIG_INVALID_VALUE, "socket_group", message, source)
    metrics = parse_address(document["metrics"], "metrics", source) if "metrics" in document else None
    try:
        backend, store = parse_backend(document, source)
    except SettingsError as exc:
        message = str(exc).removeprefix(f"{source}: ")
        raise config_error(CONFIG_INVALID_VALUE, str(document.get("backend", "backend")), message, source) from None
    if store is not None:
        for name in TRIO_FIELDS:
            if name in document:
                message = f"{name} is a setting of the trio backend, not of {backend}; remove it"
                raise config_error(CONFIG_UNKNOWN_SETTING, name, message, source)
        socket = absolute_path(document, "socket", source)
        return NodeConfig(
            node,
            None,
            {},
            None,
            None,
            socket,
            group,
            float(timeout),
            backend,
            store,  # type: ignore[arg-type]
            metrics,
        )
    peers = document.get("peers")
    if not isinstance(peers, dict) or len(peers) != 2:
        message = f"[peers] must name the two other nodes of the trio, got {peers!r}"
        raise config_error(CONFIG_INVALID_VALUE, "peers", message, source)
    if node in peers:
        message = f"[peers] must not list this node ({node}) itself"
        raise config_error(CONFIG_INVALID_VALUE, f"peers.{node}", message, source)
    return NodeConfig(
        node=node,
        listen=parse_address(document.get("listen"), "listen", source),
        peers={str(name): parse_address(addr, f"peers.{name}", source) for name, addr in peers.items()},
        state_dir=absolute_path(document, "state_dir", source),
        pki_dir=absolute_path(document, "pki_dir", source),
        socket=absolute_path(document, "socket", source),
        socket_group=group,
        timeout=float(timeout),
        metrics=metrics,
    )


def read_toml(path: Path) -> dict[str, object]:
    """A TOML configuration file as a dict; ConfigError names the file and the problem."""
    try:
        return tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise config_error(CONFIG_UNREADABLE, "", f"cannot read: {exc.strerror}", str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise config_error(CONFIG_NOT_TOML, "", f"not valid TOML: {exc}", str(path)) from None


def load_config(path: Path) -> NodeConfig:
    return parse_config(read_toml(path), str(path))
