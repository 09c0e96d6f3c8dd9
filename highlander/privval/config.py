"""``highlander privval``'s configuration file (TOML), checked field by field.

Example::

    chain_id = "cosmoshub-4"
    key_file = "/etc/highlander/privval/priv_validator_key.json"
    state_file = "/var/lib/highlander/privval/cosmoshub-4.json"
    register = "/run/highlander/signstate.sock"  # the local sign-state daemon
    nodes = ["tcp://10.0.0.1:26659", "unix:///run/cometbft/privval.sock"]
    key_id = "validator"          # the key's name in the register [default: its address]
    max_height_gap = 100000       # refuse a jump further above the last mark
    timeout = 10.0                # seconds of silence before a node is redialed
    control = "/run/highlander/privval.sock"  # promote/demote/status (optional)
    metrics = "127.0.0.1:9541"    # serve Prometheus /metrics here (optional; keep it on loopback or a private net)
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from highlander.signstate.config import (
    CONFIG_INVALID_ADDRESS,
    CONFIG_INVALID_VALUE,
    Address,
    ConfigError,
    absolute_path,
    config_error,
    parse_address,
    read_toml,
    refuse_unknown,
)
from highlander.signstate.register import KeyId
from highlander.signstate.store import check_key

__all__ = ["ConfigError", "NodeAddress", "PrivvalConfig", "load_config", "parse_config", "parse_node"]


class NodeAddress(NamedTuple):
    """A CometBFT node's ``priv_validator_laddr``: TCP (host, port) or a Unix socket path."""

    scheme: str  # "tcp" or "unix"
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.path}"
        return f"tcp://[{self.host}]:{self.port}" if ":" in self.host else f"tcp://{self.host}:{self.port}"


class PrivvalConfig(NamedTuple):
    chain_id: str
    key_file: Path
    state_file: Path
    register: Path
    nodes: tuple[NodeAddress, ...]
    key_id: str | None = None
    max_height_gap: int = 100_000
    timeout: float = 10.0
    control: Path | None = None
    metrics: Address | None = None

    def key(self, address: str) -> KeyId:
        """The register's name for this signer's key."""
        return KeyId(self.chain_id, self.key_id or address)


def parse_node(text: object, path: str, source: str = "config") -> NodeAddress:
    """A node's ``priv_validator_laddr``, the value at ``path`` in ``source``."""
    if isinstance(text, str) and text.startswith("unix://"):
        socket = text[len("unix://") :]
        if not socket.startswith("/"):
            message = f"{path}: {text!r} must name an absolute socket path, as unix:///run/x.sock"
            raise config_error(CONFIG_INVALID_ADDRESS, path, message, source)
        return NodeAddress("unix", path=socket)
    if isinstance(text, str) and text.startswith("tcp://"):
        address = parse_address(text[len("tcp://") :], path, source)
        return NodeAddress("tcp", address.host, address.port)
    message = f"{path}: {text!r} is not tcp://HOST:PORT or unix:///PATH (the node's priv_validator_laddr)"
    raise config_error(CONFIG_INVALID_ADDRESS, path, message, source)


def parse_config(document: dict[str, object], source: str = "config") -> PrivvalConfig:
    known = {
        "chain_id",
        "key_file",
        "state_file",
        "register",
        "nodes",
        "key_id",
        "max_height_gap",
        "timeout",
        "control",
        "metrics",
    }
    refuse_unknown(document, known, source)
    chain_id = document.get("chain_id")
    if not isinstance(chain_id, str) or not chain_id:
        message = f"chain_id must name the chain (as in genesis.json), got {chain_id!r}"
        raise config_error(CONFIG_INVALID_VALUE, "chain_id", message, source)
    key_id = document.get("key_id")
    if key_id is not None and not isinstance(key_id, str):
        raise config_error(CONFIG_INVALID_VALUE, "key_id", f"key_id must be a name, got {key_id!r}", source)
    # The register's rules for its names; the chain's first, as the register checks them.
    for name, key in (("chain_id", KeyId(chain_id, "address")), ("key_id", KeyId(chain_id, key_id or "address"))):
        problem = check_key(key)
        if problem:
            raise config_error(CONFIG_INVALID_VALUE, name, problem, source)
    nodes = document.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        message = 'nodes must list at least one node, as ["tcp://10.0.0.1:26659"]'
        raise config_error(CONFIG_INVALID_VALUE, "nodes", message, source)
    parsed = tuple(parse_node(node, f"nodes[{index}]", source) for index, node in enumerate(nodes))
    if len(set(parsed)) != len(parsed):
        raise config_error(CONFIG_INVALID_VALUE, "nodes", "nodes lists the same node twice", source)
    gap = document.get("max_height_gap", 100_000)
    if not isinstance(gap, int) or isinstance(gap, bool) or gap < 1:
        message = f"max_height_gap must be a positive number of blocks, got {gap!r}"
        raise config_error(CONFIG_INVALID_VALUE, "max_height_gap", message, source)
    timeout = document.get("timeout", 10.0)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 1 <= timeout <= 300:
        message = f"timeout must be seconds from 1 to 300, got {timeout!r}"
        raise config_error(CONFIG_INVALID_VALUE, "timeout", message, source)
    return PrivvalConfig(
        chain_id=chain_id,
        key_file=absolute_path(document, "key_file", source),
        state_file=absolute_path(document, "state_file", source),
        register=absolute_path(document, "register", source),
        nodes=parsed,
        key_id=key_id,
        max_height_gap=gap,
        timeout=float(timeout),
        control=absolute_path(document, "control", source) if "control" in document else None,
        metrics=parse_address(document["metrics"], "metrics", source) if "metrics" in document else None,
    )


def load_config(path: Path) -> PrivvalConfig:
    return parse_config(read_toml(path), str(path))
