"""The inventory model: the shipped examples parse, and every broken inventory
fails with a problem that has a code and the path of the bad value, all
problems at once; the messages operators read name the path, what is wrong
and the fix."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from highlander.inventory import InventoryError, codes, load
from highlander.inventory.codes import (
    INVENTORY_ADDRESS_COUNT,
    INVENTORY_CONFLICTING_SETTINGS,
    INVENTORY_DUPLICATE_ADDRESS,
    INVENTORY_DUPLICATE_NAME,
    INVENTORY_HOST_KEY_NOT_PINNED,
    INVENTORY_INLINE_PASSWORD,
    INVENTORY_INVALID_OPTION_NAME,
    INVENTORY_INVALID_VALUE,
    INVENTORY_LINK_COUNT_MISMATCH,
    INVENTORY_MEMBER_WITHOUT_FENCE,
    INVENTORY_NODE_COUNT,
    INVENTORY_NOT_A_CHOICE,
    INVENTORY_NOT_A_HOST,
    INVENTORY_NOT_A_URL,
    INVENTORY_NOT_ABSOLUTE_PATH,
    INVENTORY_NOT_YAML,
    INVENTORY_OPTION_NOT_FOR_METHOD,
    INVENTORY_OUT_OF_RANGE,
    INVENTORY_REQUIRED,
    INVENTORY_RESERVED_OPTION,
    INVENTORY_SECRET_OPTION,
    INVENTORY_UNKNOWN_SETTING,
    INVENTORY_UNREADABLE,
    INVENTORY_UNSAFE_PATH,
    INVENTORY_WRONG_ROLES,
    INVENTORY_WRONG_TYPE,
)
from highlander.inventory.model import KNOWN_HOSTS, parse
from highlander.problems import Problem

EXAMPLES = Path(__file__).parents[2] / "examples"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHh2YXx0cm9vdGtleWZvcnRlc3RzMDEyMzQ1Njc4OTAx"


def base() -> dict[str, Any]:
    """A valid votequorum trio, every section present."""
    return {
        "cluster": {"name": "validators", "quorum": "votequorum"},
        "nodes": [
            {
                "name": "node-a",
                "role": "active",
                "addresses": ["10.0.0.11"],
                "fence": [
                    {
                        "method": "ipmi",
                        "address": "10.0.1.11",
                        "username": "fence",
                        "password_vault": "vault_bmc_a",
                        "options": {"cipher": 17},
                    }
                ],
            },
            {
                "name": "node-b",
                "role": "active",
                "addresses": ["10.0.0.12"],
                "fence": [
                    {
                        "method": "redfish",
                        "address": "bmc-b.example.net",
                        "username": "fence",
                        "password_file": "/etc/highlander/secrets/bmc-b",
                    }
                ],
            },
            {
                "name": "node-w",
                "role": "witness",
                "addresses": ["10.0.0.13"],
                "fence": [
                    {
                        "method": "ilo_ssh",
                        "address": "10.0.1.13",
                        "username": "fence",
                        "password_file": "/etc/highlander/secrets/bmc-w",
                        "options": {"ssh_fingerprint": "SHA256:abc"},
                    }
                ],
            },
        ],
        "signstate": {"port": 7480},
        "validator": {
            "command": "/usr/local/bin/cometbft start",
            "user": "cometbft",
            "chain_id": "chain-1",
            "key_id": "validator-1",
            "health_url": "http://127.0.0.1:26657/status",
        },
        "timeouts": {"token_ms": 3000, "monitor_interval": 10, "health_interval": 30},
    }


def problems_of(document: object) -> tuple[Problem, ...]:
    """The problems ``parse`` finds; each message starts with its path, and the error reads as the messages."""
    with pytest.raises(InventoryError) as caught:
        parse(document)
    found = caught.value.problems
    assert str(caught.value) == "\n".join(problem.message for problem in found)
    for problem in found:
        assert problem.message.startswith(f"{problem.path or '(top level)'}: "), problem
    return found


def located(problems: tuple[Problem, ...]) -> list[tuple[str, str]]:
    return [(problem.path, problem.code) for problem in problems]


def device(doc: dict[str, Any], node: int, level: int = 0) -> dict[str, Any]:
    found: dict[str, Any] = doc["nodes"][node]["fence"][level]
    return found


def _set(path: tuple[object, ...], value: object) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        target: Any = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


def _drop(path: tuple[object, ...]) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        target: Any = doc
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return change


def _with_addresses(*per_node: list[str]) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        for node, addresses in zip(doc["nodes"], per_node):
            node["addresses"] = addresses

    return change


# (case id, change to the valid document, expected path, expected code)
BROKEN: list[tuple[str, Callable[[dict[str, Any]], object], str, str]] = [
    ("two nodes", lambda d: d["nodes"].pop(), "nodes", INVENTORY_NODE_COUNT),
    ("four nodes", lambda d: d["nodes"].append(copy.deepcopy(d["nodes"][0])), "nodes", INVENTORY_NODE_COUNT),
    ("two witnesses", _set(("nodes", 1, "role"), "witness"), "nodes", INVENTORY_WRONG_ROLES),
    ("unknown role", _set(("nodes", 1, "role"), "standby"), "nodes[1].role", INVENTORY_NOT_A_CHOICE),
    ("bad address", _set(("nodes", 0, "addresses"), ["10.0.0.999"]), "nodes[0].addresses[0]", INVENTORY_NOT_A_HOST),
    ("address not text", _set(("nodes", 0, "addresses"), [10]), "nodes[0].addresses[0]", INVENTORY_WRONG_TYPE),
    (
        "bad BMC address",
        _set(("nodes", 0, "fence", 0, "address"), "bmc_a!"),
        "nodes[0].fence[0].address",
        INVENTORY_NOT_A_HOST,
    ),
    (
        "three addresses",
        _set(("nodes", 0, "addresses"), ["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
        "nodes[0].addresses",
        INVENTORY_ADDRESS_COUNT,
    ),
    (
        "duplicate address",
        _set(("nodes", 1, "addresses"), ["10.0.0.11"]),
        "nodes[1].addresses[0]",
        INVENTORY_DUPLICATE_ADDRESS,
    ),
    ("duplicate name", _set(("nodes", 1, "name"), "node-a"), "nodes[1].name", INVENTORY_DUPLICATE_NAME),
    ("upper-case name", _set(("nodes", 1, "name"), "Node-B"), "nodes[1].name", INVENTORY_INVALID_VALUE),
    ("name not text", _set(("nodes", 1, "name"), ["node-b"]), "nodes[1].name", INVENTORY_WRONG_TYPE),
    (
        "inline password",
        _set(("nodes", 0, "fence", 0, "password"), "hunter2"),
        "nodes[0].fence[0].password",
        INVENTORY_INLINE_PASSWORD,
    ),
    (
        "password among the agent options",
        _set(("nodes", 0, "fence", 0, "options", "password"), "hunter2"),
        "nodes[0].fence[0].options.password",
        INVENTORY_INLINE_PASSWORD,
    ),
    (
        "IPMI Kg key among the agent options",
        _set(("nodes", 0, "fence", 0, "options", "hexadecimal_kg"), "00ff"),
        "nodes[0].fence[0].options.hexadecimal_kg",
        INVENTORY_SECRET_OPTION,
    ),
    (
        "agent options not a mapping",
        _set(("nodes", 0, "fence", 0, "options"), ["cipher=17"]),
        "nodes[0].fence[0].options",
        INVENTORY_WRONG_TYPE,
    ),
    (
        "missing password reference",
        _drop(("nodes", 0, "fence", 0, "password_vault")),
        "nodes[0].fence[0].password_file",
        INVENTORY_REQUIRED,
    ),
    (
        "relative password file",
        _set(("nodes", 1, "fence", 0, "password_file"), "secrets/bmc-b"),
        "nodes[1].fence[0].password_file",
        INVENTORY_NOT_ABSOLUTE_PATH,
    ),
    (
        "password file with a space",
        _set(("nodes", 1, "fence", 0, "password_file"), "/etc/my secrets/b"),
        "nodes[1].fence[0].password_file",
        INVENTORY_UNSAFE_PATH,
    ),
    (
        "bad vault variable",
        _set(("nodes", 0, "fence", 0, "password_vault"), "vault-bmc"),
        "nodes[0].fence[0].password_vault",
        INVENTORY_INVALID_VALUE,
    ),
    (
        "ilo_ssh without a host key pin",
        _set(("nodes", 2, "fence", 0, "options"), {}),
        "nodes[2].fence[0].options",
        INVENTORY_HOST_KEY_NOT_PINNED,
    ),
    (
        "host_key on an ipmi device",
        _set(("nodes", 0, "fence", 0, "options", "host_key"), HOST_KEY),
        "nodes[0].fence[0].options.host_key",
        INVENTORY_OPTION_NOT_FOR_METHOD,
    ),
    (
        "host_key that is no key",
        _set(("nodes", 2, "fence", 0, "options"), {"host_key": "AAAA\nevil"}),
        "nodes[2].fence[0].options.host_key",
        INVENTORY_INVALID_VALUE,
    ),
    (
        "host_key and known_hosts",
        _set(("nodes", 2, "fence", 0, "options"), {"host_key": HOST_KEY, "known_hosts": "/root/.ssh/known_hosts"}),
        "nodes[2].fence[0].options.host_key",
        INVENTORY_CONFLICTING_SETTINGS,
    ),
    (
        "option the inventory sets",
        _set(("nodes", 0, "fence", 0, "options", "ipport"), 624),
        "nodes[0].fence[0].options.ipport",
        INVENTORY_RESERVED_OPTION,
    ),
    (
        "option name that is no option",
        _set(("nodes", 0, "fence", 0, "options", "Cipher Suite"), 3),
        "nodes[0].fence[0].options.Cipher Suite",
        INVENTORY_INVALID_OPTION_NAME,
    ),
    (
        "unknown fence method",
        _set(("nodes", 0, "fence", 0, "method"), "ilo4"),
        "nodes[0].fence[0].method",
        INVENTORY_NOT_A_CHOICE,
    ),
    ("unknown top-level key", _set(("colour",), "blue"), "colour", INVENTORY_UNKNOWN_SETTING),
    ("unknown cluster key", _set(("cluster", "nmae"), "x"), "cluster.nmae", INVENTORY_UNKNOWN_SETTING),
    ("unknown node key", _set(("nodes", 0, "hostname"), "a"), "nodes[0].hostname", INVENTORY_UNKNOWN_SETTING),
    (
        "unknown fence key",
        _set(("nodes", 1, "fence", 0, "pasword_file"), "/x"),
        "nodes[1].fence[0].pasword_file",
        INVENTORY_UNKNOWN_SETTING,
    ),
    ("unknown signstate key", _set(("signstate", "listen"), "0.0.0.0"), "signstate.listen", INVENTORY_UNKNOWN_SETTING),
    ("unknown validator key", _set(("validator", "chain"), "x"), "validator.chain", INVENTORY_UNKNOWN_SETTING),
    ("unknown timeouts key", _set(("timeouts", "token"), 3000), "timeouts.token", INVENTORY_UNKNOWN_SETTING),
    ("section not a mapping", _set(("signstate",), [7480]), "signstate", INVENTORY_WRONG_TYPE),
    (
        "fence port too big",
        _set(("nodes", 0, "fence", 0, "port"), 70000),
        "nodes[0].fence[0].port",
        INVENTORY_OUT_OF_RANGE,
    ),
    (
        "fence port as text",
        _set(("nodes", 0, "fence", 0, "port"), "623"),
        "nodes[0].fence[0].port",
        INVENTORY_OUT_OF_RANGE,
    ),
    ("sign-state port zero", _set(("signstate", "port"), 0), "signstate.port", INVENTORY_OUT_OF_RANGE),
    (
        "relative state directory",
        _set(("signstate", "state_dir"), "var/lib/x"),
        "signstate.state_dir",
        INVENTORY_NOT_ABSOLUTE_PATH,
    ),
    ("no validator section", _drop(("validator",)), "validator.command", INVENTORY_REQUIRED),
    ("missing chain id", _drop(("validator", "chain_id")), "validator.chain_id", INVENTORY_REQUIRED),
    ("missing key id", _drop(("validator", "key_id")), "validator.key_id", INVENTORY_REQUIRED),
    ("missing health URL", _drop(("validator", "health_url")), "validator.health_url", INVENTORY_REQUIRED),
    (
        "health URL without scheme",
        _set(("validator", "health_url"), "127.0.0.1:26657"),
        "validator.health_url",
        INVENTORY_NOT_A_URL,
    ),
    (
        "unknown state format",
        _set(("validator", "state_format"), "json"),
        "validator.state_format",
        INVENTORY_NOT_A_CHOICE,
    ),
    ("token too short", _set(("timeouts", "token_ms"), 100), "timeouts.token_ms", INVENTORY_OUT_OF_RANGE),
    ("token not a number", _set(("timeouts", "token_ms"), "3s"), "timeouts.token_ms", INVENTORY_OUT_OF_RANGE),
    (
        "one monitor interval for two depths",
        _set(("timeouts", "health_interval"), 10),
        "timeouts.health_interval",
        INVENTORY_CONFLICTING_SETTINGS,
    ),
    (
        "mismatched link counts",
        _with_addresses(["10.0.0.11", "10.1.0.11"], ["10.0.0.12"], ["10.0.0.13"]),
        "nodes",
        INVENTORY_LINK_COUNT_MISMATCH,
    ),
    ("member without fence", _drop(("nodes", 2, "fence")), "nodes[2].fence", INVENTORY_MEMBER_WITHOUT_FENCE),
    (
        "active node without fence in qdevice mode",
        lambda d: (d["cluster"].update(quorum="qdevice"), d["nodes"][1].update(fence=[])),
        "nodes[1].fence",
        INVENTORY_MEMBER_WITHOUT_FENCE,
    ),
    ("unknown quorum", _set(("cluster", "quorum"), "two_node"), "cluster.quorum", INVENTORY_NOT_A_CHOICE),
    ("bad cluster name", _set(("cluster", "name"), "My Cluster"), "cluster.name", INVENTORY_INVALID_VALUE),
    ("nodes not a list", _set(("nodes",), {"node-a": {}}), "nodes", INVENTORY_NODE_COUNT),
    ("fence not a list", _set(("nodes", 0, "fence"), {"method": "ipmi"}), "nodes[0].fence", INVENTORY_WRONG_TYPE),
]

# What the operator reads for typical problems, whole: the path, what is wrong, the fix.
MESSAGES = {
    "bad address": "nodes[0].addresses[0]: not an IP address or host name ('10.0.0.999')",
    "duplicate address": "nodes[1].addresses[0]: 10.0.0.11 is also node-a's address",
    "inline password": (
        "nodes[0].fence[0].password: inline passwords are not accepted: use password_file (a 0600 file on the "
        "nodes) or password_vault (an Ansible Vault variable)"
    ),
    "ilo_ssh without a host key pin": (
        "nodes[2].fence[0].options: an ilo_ssh device needs ssh_fingerprint, known_hosts or host_key: host keys "
        "are checked, never accepted blindly"
    ),
    "unknown node key": "nodes[0].hostname: unknown setting (known: name, role, addresses, fence, ssh_host)",
    "fence port as text": "nodes[0].fence[0].port: expected a whole number from 1 to 65535, got '623'",
    "unknown fence method": "nodes[0].fence[0].method: must be one of ipmi, ilo_ssh, redfish, got 'ilo4'",
    "two witnesses": (
        "nodes: expected two active-capable nodes and one witness, got roles ['active', 'witness', 'witness']"
    ),
    "member without fence": "nodes[2].fence: node-w is a cluster member and needs a fence device (fencing stays on)",
    "missing chain id": "validator.chain_id: required (a chain id)",
    "relative password file": "nodes[1].fence[0].password_file: must be an absolute path ('secrets/bmc-b')",
    "option the inventory sets": (
        "nodes[0].fence[0].options.ipport: set by highlander from port; remove it from options"
    ),
}
CASES = {case: (change, path, code) for case, change, path, code in BROKEN}


def test_the_table_is_big_enough() -> None:
    assert len(BROKEN) >= 15
    assert len(CASES) == len(BROKEN)
    assert set(MESSAGES) <= set(CASES)


@pytest.mark.parametrize(("change", "path", "code"), [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN])
def test_a_broken_inventory_names_the_path_and_the_problem(
    change: Callable[[dict[str, Any]], object], path: str, code: str
) -> None:
    doc = base()
    change(doc)
    assert (path, code) in located(problems_of(doc))


@pytest.mark.parametrize("case", sorted(MESSAGES))
def test_what_the_operator_reads(case: str) -> None:
    change, path, code = CASES[case]
    doc = base()
    change(doc)
    (problem,) = [p for p in problems_of(doc) if (p.path, p.code) == (path, code)]
    assert problem.message == MESSAGES[case]
    assert str(problem) == MESSAGES[case]  # no file: the message alone


def test_every_code_is_its_own_name() -> None:
    defined = {name: value for name, value in vars(codes).items() if name.startswith("INVENTORY_")}
    assert all(name == value for name, value in defined.items()), defined
    used = {code for *_, code in BROKEN}
    assert used <= set(defined.values())


def test_the_base_document_is_valid() -> None:
    inventory = parse(base())
    assert [n.name for n in inventory.nodes] == ["node-a", "node-b", "node-w"]
    assert [n.name for n in inventory.members] == ["node-a", "node-b", "node-w"]
    assert inventory.node("node-a").fence[0].options == {"cipher": "17"}
    assert inventory.node("node-b").fence[0].port == 443
    assert inventory.timeouts.token_ms == 3000


def test_a_duplicate_name_is_reported_at_both_places() -> None:
    doc = base()
    doc["nodes"][1]["name"] = "node-a"
    problems = problems_of(doc)
    assert located(problems) == [(f"nodes[{i}].name", INVENTORY_DUPLICATE_NAME) for i in (0, 1)]
    assert problems[1].message == "nodes[1].name: 'node-a' is used by more than one node"


def test_every_problem_is_reported_at_once() -> None:
    doc = base()
    chosen = (
        "inline password",
        "unknown node key",
        "fence port too big",
        "missing chain id",
        "token too short",
        "ilo_ssh without a host key pin",
        "unknown top-level key",
    )
    for case in chosen:
        CASES[case][0](doc)
    assert sorted(located(problems_of(doc))) == sorted((path, code) for case, _, path, code in BROKEN if case in chosen)


def test_a_document_that_is_not_a_mapping() -> None:
    problems = problems_of(["cluster"])
    assert problems[0] == Problem(
        INVENTORY_WRONG_TYPE,
        "",
        "(top level): expected a mapping of cluster, nodes, signstate, validator, timeouts, got list",
    )
    assert ("nodes", INVENTORY_NODE_COUNT) in located(problems)


@pytest.mark.parametrize("name", ["trio.yml", "qdevice.yml"])
def test_the_shipped_examples_parse(name: str) -> None:
    inventory = load(EXAMPLES / name)
    assert len(inventory.nodes) == 3
    assert sorted(n.role for n in inventory.nodes) == ["active", "active", "witness"]
    for member in inventory.members:
        assert member.fence, member.name


def test_the_votequorum_example() -> None:
    inventory = load(EXAMPLES / "trio.yml")
    assert inventory.quorum == "votequorum"
    assert [n.name for n in inventory.members] == ["node-a", "node-b", "node-w"]
    assert [d.method for d in inventory.node("node-b").fence] == ["redfish", "ipmi"]
    assert inventory.validator.state_file and inventory.validator.height_margin == 2


def test_the_qdevice_example() -> None:
    inventory = load(EXAMPLES / "qdevice.yml")
    assert inventory.quorum == "qdevice"
    assert [n.name for n in inventory.members] == ["node-a", "node-b"]
    assert inventory.witness is not None and inventory.witness.name == "qnetd"
    assert not inventory.witness.fence
    assert all(len(n.addresses) == 2 for n in inventory.nodes)


def test_an_ilo_ssh_device_may_pin_its_host_key() -> None:
    doc = base()
    device(doc, 2)["options"] = {"host_key": HOST_KEY}
    fence = parse(doc).node("node-w").fence[0]
    assert fence.options == {"host_key": HOST_KEY}
    assert KNOWN_HOSTS == "/etc/highlander/known_hosts"


@pytest.mark.parametrize("pin", [{"ssh_fingerprint": "SHA256:abc"}, {"known_hosts": "/etc/ssh/ssh_known_hosts"}])
def test_the_other_host_key_pins_still_count(pin: dict[str, str]) -> None:
    doc = base()
    device(doc, 2)["options"] = pin
    assert parse(doc).node("node-w").fence[0].options == pin


def test_bad_yaml_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yml"
    path.write_text("cluster:\n  name: validators\nnodes:\n  - name: node-a\n    addresses: [10.0.0.1\n")
    with pytest.raises(InventoryError) as caught:
        load(path)
    (problem,) = caught.value.problems
    assert (problem.code, problem.path, problem.source) == (INVENTORY_NOT_YAML, "", str(path))
    assert str(problem).startswith(f"{path}: line 6, column 1 not valid YAML"), problem


def test_load_prefixes_every_problem_with_the_file(tmp_path: Path) -> None:
    doc = base()
    doc["timeouts"]["token_ms"] = 1
    doc["validator"]["colour"] = "x"
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(InventoryError) as caught:
        load(path)
    assert [(p.source, p.path, p.code) for p in caught.value.problems] == [
        (str(path), "validator.colour", INVENTORY_UNKNOWN_SETTING),
        (str(path), "timeouts.token_ms", INVENTORY_OUT_OF_RANGE),
    ]
    assert str(caught.value) == (
        f"{path}: validator.colour: unknown setting (known: command, user, chain_id, key_id, health_url, "
        "state_file, state_format, height_margin, environment_file)\n"
        f"{path}: timeouts.token_ms: expected a whole number from 500 to 60000, got 1"
    )


def test_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yml"
    with pytest.raises(InventoryError) as caught:
        load(path)
    assert caught.value.problems == (
        Problem(INVENTORY_UNREADABLE, "", "cannot read: No such file or directory", str(path)),
    )
