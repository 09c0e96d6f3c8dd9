"""The sign-state node's TOML configuration: every error has a code and the
path of its field, and its message names the file, the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from highlander.problems import Problem, ProblemError
from highlander.signstate.config import (
    CONFIG_INVALID_ADDRESS,
    CONFIG_INVALID_VALUE,
    CONFIG_NOT_ABSOLUTE_PATH,
    CONFIG_NOT_TOML,
    CONFIG_UNKNOWN_SETTING,
    CONFIG_UNREADABLE,
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


def refused(doc: dict[str, object], code: str, path: str, source: str = "cfg.toml") -> Problem:
    """The one problem ``parse_config`` stops at: ``code`` at ``path``, in ``source``."""
    with pytest.raises(ConfigError) as caught:
        parse_config(doc, source)
    (problem,) = caught.value.problems
    assert (problem.code, problem.path, problem.source) == (code, path, source), problem
    assert str(caught.value) == f"{source}: {problem.message}"
    return problem


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
    problem = refused(document(listen_port=7480, Timeout=3), CONFIG_UNKNOWN_SETTING, "")
    assert problem.message == (
        "unknown setting(s) Timeout, listen_port (known: backend, etcd, listen, metrics, node, peers, pki_dir, "
        "postgresql, socket, socket_group, state_dir, timeout)"
    )


@pytest.mark.parametrize("value", [DROP, "", 7, ["node-a"]], ids=repr)
def test_node(value: object) -> None:
    refused(document(node=value), CONFIG_INVALID_VALUE, "node")


@pytest.mark.parametrize(
    "value",
    [DROP, "node-b", [], {"node-b": "10.0.0.2:7480"}, {"node-b": "a:1", "node-c": "b:1", "node-d": "c:1"}],
    ids=["missing", "string", "list", "one", "three"],
)
def test_peers_must_be_the_two_others(value: object) -> None:
    refused(document(peers=value), CONFIG_INVALID_VALUE, "peers")


def test_peers_must_not_list_this_node() -> None:
    problem = refused(
        document(peers={"node-a": "10.0.0.1:7480", "node-b": "10.0.0.2:7480"}), CONFIG_INVALID_VALUE, "peers.node-a"
    )
    assert problem.message == "[peers] must not list this node (node-a) itself"


@pytest.mark.parametrize(
    "address",
    [
        DROP,
        7480,
        "",
        "10.0.0.1",
        "10.0.0.1:",
        ":7480",
        "10.0.0.1:0",
        "10.0.0.1:65536",
        "10.0.0.1:http",
        "10.0.0.1:-1",
        "10.0.0.1: 7480",
        "[]:7480",
    ],
    ids=repr,
)
def test_listen(address: object) -> None:
    refused(document(listen=address), CONFIG_INVALID_ADDRESS, "listen")


@pytest.mark.parametrize("address", ["10.0.0.2", "10.0.0.2:99999", 7480, "host:port"], ids=repr)
def test_peer_address_names_the_peer(address: object) -> None:
    refused(document(peers={"node-b": address, "node-c": "10.0.0.3:7480"}), CONFIG_INVALID_ADDRESS, "peers.node-b")


@pytest.mark.parametrize("port", ["²", "٣٣"], ids=["superscript", "arabic-indic"])
def test_port_of_non_ascii_digits_is_a_config_error(port: str) -> None:
    # str.isdigit() accepts these; int() fails on "²": a bare ValueError
    # naming nothing would escape the CLI's `except ConfigError`.
    refused(document(listen=f"10.0.0.1:{port}"), CONFIG_INVALID_ADDRESS, "listen")


@pytest.mark.parametrize("field", ["state_dir", "pki_dir", "socket"])
@pytest.mark.parametrize("value", [DROP, "", "relative/dir", "./x", 5, ["/x"]], ids=repr)
def test_paths_must_be_absolute(field: str, value: object) -> None:
    refused(document(**{field: value}), CONFIG_NOT_ABSOLUTE_PATH, field)


@pytest.mark.parametrize("value", [0, -1, 0.0, 60.5, 1e9, float("nan"), float("inf"), True, "2", None], ids=repr)
def test_timeout(value: object) -> None:
    refused(document(timeout=value), CONFIG_INVALID_VALUE, "timeout")


def test_timeout_bounds_are_inclusive_of_sixty() -> None:
    assert parse_config(document(timeout=60)).timeout == 60.0
    assert parse_config(document(timeout=0.001)).timeout == 0.001


@pytest.mark.parametrize("value", [5, ["cometbft"], True], ids=repr)
def test_socket_group(value: object) -> None:
    refused(document(socket_group=value), CONFIG_INVALID_VALUE, "socket_group")


# What the operator reads for typical problems, whole: the file, the field, what is wrong, the fix.
@pytest.mark.parametrize(
    "change, message",
    [
        ({"timeout": "soon"}, "cfg.toml: timeout must be seconds between 0 and 60, got 'soon'"),
        ({"listen": DROP}, 'cfg.toml: listen: expected "HOST:PORT", got None'),
        (
            {"peers": {"node-b": "10.0.0.2:http", "node-c": "10.0.0.3:7480"}},
            "cfg.toml: peers.node-b: '10.0.0.2:http' is not HOST:PORT with a port from 1 to 65535",
        ),
        ({"state_dir": "var/lib"}, "cfg.toml: state_dir must be an absolute path, got 'var/lib'"),
        ({"peers": ["node-b"]}, "cfg.toml: [peers] must name the two other nodes of the trio, got ['node-b']"),
    ],
)
def test_what_the_operator_reads(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(document(**change), "cfg.toml")
    assert str(caught.value) == message


# --- files -------------------------------------------------------------------------------------


def loading(path: Path) -> Problem:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    return problem


@pytest.mark.parametrize("directory", [False, True], ids=["missing", "a directory"])
def test_a_file_that_cannot_be_read_is_named(tmp_path: Path, directory: bool) -> None:
    path = tmp_path / "signstate.toml"
    if directory:
        path.mkdir()
    problem = loading(path)
    assert (problem.code, problem.path, problem.source) == (CONFIG_UNREADABLE, "", str(path))
    assert str(problem).startswith(f"{path}: cannot read: ")


def test_the_missing_file_reads_as_before(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    assert str(loading(path)) == f"{path}: cannot read: No such file or directory"


def test_invalid_toml_is_named(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('node = "node-a\n')
    problem = loading(path)
    assert (problem.code, problem.path) == (CONFIG_NOT_TOML, "")
    assert str(problem).startswith(f"{path}: not valid TOML: ")


def test_errors_in_a_file_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "signstate.toml"
    path.write_text(GOOD.replace("timeout = 2.5", 'timeout = "soon"'))
    problem = loading(path)
    assert (problem.code, problem.path, problem.source) == (CONFIG_INVALID_VALUE, "timeout", str(path))
    assert str(problem) == f"{path}: timeout must be seconds between 0 and 60, got 'soon'"


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, ProblemError)
