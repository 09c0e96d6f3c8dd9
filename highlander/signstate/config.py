"""The sign-state node's configuration file (TOML), checked field by field.

Example (rendered per node from templates/ by ``highlander render``)::

    node = "node-a"                       # this node, as named in its certificate
    listen = "10.0.0.1:7480"              # where the other replicas reach it
    state_dir = "/var/lib/highlander/signstate"
    pki_dir = "/etc/highlander/pki"       # ca.crt, <node>.crt, <node>.key
    socket = "/run/highlander/signstate.sock"
    socket_group = "cometbft"             # group allowed to use the signer API
    timeout = 2.0                         # seconds a replica may take to answer

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

from highlander.signstate.backends.settings import Settings, SettingsError, parse_backend


class ConfigError(ValueError):
    """The configuration is unusable; the message names the field and the fix."""


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


TRIO_FIELDS = ("listen", "peers", "state_dir", "pki_dir")


def parse_address(text: object, where: str) -> Address:
    if not isinstance(text, str):
        raise ConfigError(f"{where}: expected \"HOST:PORT\", got {text!r}")
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}: {text!r} is not HOST:PORT with a port from 1 to 65535")
    return Address(host, int(port))


def _path(document: dict[str, object], name: str, source: str) -> Path:
    value = document.get(name)
    if not isinstance(value, str) or not value.startswith("/"):
        raise ConfigError(f"{source}: {name} must be an absolute path, got {value!r}")
    return Path(value)


def parse_config(document: dict[str, object], source: str = "config") -> NodeConfig:
    known = {"node", "listen", "peers", "state_dir", "pki_dir", "socket", "socket_group", "timeout",
             "backend", "etcd", "postgresql"}  # fmt: skip
    unknown = sorted(set(document) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    node = document.get("node")
    if not isinstance(node, str) or not node:
        raise ConfigError(f"{source}: node must name this node, got {node!r}")
    timeout = document.get("timeout", 2.0)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout <= 60:
        raise ConfigError(f"{source}: timeout must be seconds between 0 and 60, got {timeout!r}")
    group = document.get("socket_group")
    if group is not None and not isinstance(group, str):
        raise ConfigError(f"{source}: socket_group must be a group name, got {group!r}")
    try:
        backend, store = parse_backend(document, source)
    except SettingsError as exc:
        raise ConfigError(str(exc)) from None
    if store is not None:
        for name in TRIO_FIELDS:
            if name in document:
                raise ConfigError(f"{source}: {name} is a setting of the trio backend, not of {backend}; remove it")
        return NodeConfig(node, None, {}, None, None, _path(document, "socket", source), group, float(timeout),
                          backend, store)  # fmt: skip
    peers = document.get("peers")
    if not isinstance(peers, dict) or len(peers) != 2:
        raise ConfigError(f"{source}: [peers] must name the two other nodes of the trio, got {peers!r}")
    if node in peers:
        raise ConfigError(f"{source}: [peers] must not list this node ({node}) itself")
    return NodeConfig(
        node=node,
        listen=parse_address(document.get("listen"), f"{source}: listen"),
        peers={str(name): parse_address(addr, f"{source}: peers.{name}") for name, addr in peers.items()},
        state_dir=_path(document, "state_dir", source),
        pki_dir=_path(document, "pki_dir", source),
        socket=_path(document, "socket", source),
        socket_group=group,
        timeout=float(timeout),
    )


def read_toml(path: Path) -> dict[str, object]:
    """A TOML configuration file as a dict; ConfigError names the file and the problem."""
    try:
        return tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load_config(path: Path) -> NodeConfig:
    return parse_config(read_toml(path), str(path))
