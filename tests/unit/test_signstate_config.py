"""The sign-state node's TOML configuration: every error names its field."""

from __future__ import annotations

from pathlib import Path

import pytest

from highlander.signstate.config import (
    Address,
    ConfigError,
    NodeConfig,
    load_config,
    parse_address,
    parse_config,
)

GOOD = """\
node = "node-a"
listen = "10.0.0.1:7480"
state_dir = "/var/lib/highlander/signstate"
pki_dir = "/etc/highlander/pki"
socket = "/run/highlander/signstate.sock"
socket_group = "cometbft"
timeout = 2.5

[peers]
node-b = "10.0.0.2:7480"
node-c = "[fd00::3]:7481"
"""


def document(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "node": "node-a",
        "listen": "10.0.0.1:7480",
        "state_dir": "/var/lib/highlander/signstate",
        "pki_dir": "/etc/highlander/pki",
        "socket": "/run/highlander/signstate.sock",
        "peers": {"node-b": "10.0.0.2:7480", "node-c": "10.0.0.3:7480"},
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not DROP}


DROP = object()


def refused(doc: dict[str, object], *words: str, source: str = "cfg.toml") -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(doc, source)
    message = str(caught.value)
    assert message.startswith(f"{source}: "), message
    for word in words:
        assert word in message, message
    return message


def test_a_complete_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "signstate.toml"
    path.write_text(GOOD)
    assert load_config(path) == NodeConfig(
        node="node-a",
        listen=Address("10.0.0.1", 7480),
        peers={"node-b": Address("10.0.0.2", 7480), "node-c": Address("fd00::3", 7481)},
        state_dir=Path("/var/lib/highlander/signstate"),
        pki_dir=Path("/etc/highlander/pki"),
        socket=Path("/run/highlander/signstate.sock"),
        socket_group="cometbft",
        timeout=2.5,
    )


def test_defaults() -> None:
    config = parse_config(document())
    assert config.socket_group is None
    assert config.timeout == 2.0 and isinstance(config.timeout, float)


def test_integer_timeout_becomes_seconds() -> None:
    assert parse_config(document(timeout=5)).timeout == 5.0


def test_addresses_print_back() -> None:
    assert str(Address("10.0.0.1", 7480)) == "10.0.0.1:7480"
    assert str(Address("fd00::3", 7481)) == "[fd00::3]:7481"
    assert str(parse_address("[::1]:1", "x")) == "[::1]:1"
    assert parse_address("node-b.example:65535", "x") == Address("node-b.example", 65535)


# --- errors name the field ------------------------------------------------------------------


def test_unknown_setting_is_named_with_the_known_ones() -> None:
    message = refused(document(listen_port=7480, Timeout=3), "unknown setting(s) Timeout, listen_port", "known: ")
    assert "state_dir" in message


@pytest.mark.parametrize("value", [DROP, "", 7, ["node-a"]], ids=repr)
def test_node(value: object) -> None:
    refused(document(node=value), "node must name this node")


@pytest.mark.parametrize(
    "value",
    [DROP, "node-b", [], {"node-b": "10.0.0.2:7480"}, {"node-b": "a:1", "node-c": "b:1", "node-d": "c:1"}],
    ids=["missing", "string", "list", "one", "three"],
)
def test_peers_must_be_the_two_others(value: object) -> None:
    refused(document(peers=value), "[peers] must name the two other nodes")


def test_peers_must_not_list_this_node() -> None:
    refused(document(peers={"node-a": "10.0.0.1:7480", "node-b": "10.0.0.2:7480"}), "must not list this node (node-a)")


@pytest.mark.parametrize(
    "address",
    [DROP, 7480, "", "10.0.0.1", "10.0.0.1:", ":7480", "10.0.0.1:0", "10.0.0.1:65536", "10.0.0.1:http",
     "10.0.0.1:-1", "10.0.0.1: 7480", "[]:7480"],
    ids=repr,
)  # fmt: skip
def test_listen(address: object) -> None:
    refused(document(listen=address), "listen: ")


@pytest.mark.parametrize("address", ["10.0.0.2", "10.0.0.2:99999", 7480, "host:port"], ids=repr)
def test_peer_address_names_the_peer(address: object) -> None:
    refused(document(peers={"node-b": address, "node-c": "10.0.0.3:7480"}), "peers.node-b: ")


@pytest.mark.parametrize("port", ["²", "٣٣"], ids=["superscript", "arabic-indic"])
def test_port_of_non_ascii_digits_is_a_config_error(port: str) -> None:
    # str.isdigit() accepts these; int() fails on "²": a bare ValueError
    # naming nothing would escape the CLI's `except ConfigError`.
    refused(document(listen=f"10.0.0.1:{port}"), "listen: ")


@pytest.mark.parametrize("field", ["state_dir", "pki_dir", "socket"])
@pytest.mark.parametrize("value", [DROP, "", "relative/dir", "./x", 5, ["/x"]], ids=repr)
def test_paths_must_be_absolute(field: str, value: object) -> None:
    refused(document(**{field: value}), f"{field} must be an absolute path")


@pytest.mark.parametrize("value", [0, -1, 0.0, 60.5, 1e9, float("nan"), float("inf"), True, "2", None], ids=repr)
def test_timeout(value: object) -> None:
    refused(document(timeout=value), "timeout must be seconds between 0 and 60")


def test_timeout_bounds_are_inclusive_of_sixty() -> None:
    assert parse_config(document(timeout=60)).timeout == 60.0
    assert parse_config(document(timeout=0.001)).timeout == 0.001


@pytest.mark.parametrize("value", [5, ["cometbft"], True], ids=repr)
def test_socket_group(value: object) -> None:
    refused(document(socket_group=value), "socket_group must be a group name")


# --- files -------------------------------------------------------------------------------------


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match=f"^{path}: cannot read: No such file or directory$"):
        load_config(path)


def test_invalid_toml_is_named(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('node = "node-a\n')
    with pytest.raises(ConfigError, match=f"^{path}: not valid TOML: "):
        load_config(path)


def test_errors_in_a_file_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "signstate.toml"
    path.write_text(GOOD.replace("timeout = 2.5", 'timeout = "soon"'))
    with pytest.raises(ConfigError, match=f"^{path}: timeout must be seconds"):
        load_config(path)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)
