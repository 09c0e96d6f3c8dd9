"""The inventory model: the shipped examples parse, and every broken inventory
fails with a message that names the place (its path) and the problem, all
problems at once."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from highlander.inventory import InventoryError, load
from highlander.inventory.model import KNOWN_HOSTS, parse

EXAMPLES = Path(__file__).parents[2] / "examples"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHh2YXx0cm9vdGtleWZvcnRlc3RzMDEyMzQ1Njc4OTAx"


def base() -> dict[str, Any]:
    """A valid votequorum trio, every section present."""
    return {
        "cluster": {"name": "validators", "quorum": "votequorum"},
        "nodes": [
            {
                "name": "node-a", "role": "active", "addresses": ["10.0.0.11"],
                "fence": [{"method": "ipmi", "address": "10.0.1.11", "username": "fence",
                           "password_vault": "vault_bmc_a", "options": {"cipher": 17}}],
            },
            {
                "name": "node-b", "role": "active", "addresses": ["10.0.0.12"],
                "fence": [{"method": "redfish", "address": "bmc-b.example.net", "username": "fence",
                           "password_file": "/etc/highlander/secrets/bmc-b"}],
            },
            {
                "name": "node-w", "role": "witness", "addresses": ["10.0.0.13"],
                "fence": [{"method": "ilo_ssh", "address": "10.0.1.13", "username": "fence",
                           "password_file": "/etc/highlander/secrets/bmc-w",
                           "options": {"ssh_fingerprint": "SHA256:abc"}}],
            },
        ],
        "signstate": {"port": 7480},
        "validator": {
            "command": "/usr/local/bin/cometbft start", "user": "cometbft", "chain_id": "chain-1",
            "key_id": "validator-1", "health_url": "http://127.0.0.1:26657/status",
        },
        "timeouts": {"token_ms": 3000, "monitor_interval": 10, "health_interval": 30},
    }  # fmt: skip


def problems_of(document: object) -> list[str]:
    with pytest.raises(InventoryError) as caught:
        parse(document)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


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


# (case id, change to the valid document, expected path, expected words of the message)
BROKEN: list[tuple[str, Callable[[dict[str, Any]], object], str, str]] = [
    ("two nodes", lambda d: d["nodes"].pop(), "nodes",
     "expected exactly three nodes: two active-capable and a witness"),
    ("four nodes", lambda d: d["nodes"].append(copy.deepcopy(d["nodes"][0])), "nodes",
     "expected exactly three nodes"),
    ("two witnesses", _set(("nodes", 1, "role"), "witness"), "nodes",
     "expected two active-capable nodes and one witness, got roles ['active', 'witness', 'witness']"),
    ("unknown role", _set(("nodes", 1, "role"), "standby"), "nodes[1].role",
     "must be one of active, witness, got 'standby'"),
    ("bad address", _set(("nodes", 0, "addresses"), ["10.0.0.999"]), "nodes[0].addresses[0]",
     "not an IP address or host name ('10.0.0.999')"),
    ("bad BMC address", _set(("nodes", 0, "fence", 0, "address"), "bmc_a!"), "nodes[0].fence[0].address",
     "not an IP address or host name ('bmc_a!')"),
    ("three addresses", _set(("nodes", 0, "addresses"), ["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
     "nodes[0].addresses", "expected one or two addresses (one per corosync link)"),
    ("duplicate address", _set(("nodes", 1, "addresses"), ["10.0.0.11"]), "nodes[1].addresses[0]",
     "10.0.0.11 is also node-a's address"),
    ("duplicate name", _set(("nodes", 1, "name"), "node-a"), "nodes[1].name",
     "'node-a' is used by more than one node"),
    ("upper-case name", _set(("nodes", 1, "name"), "Node-B"), "nodes[1].name",
     "not a lower-case host name ('Node-B')"),
    ("inline password", _set(("nodes", 0, "fence", 0, "password"), "hunter2"), "nodes[0].fence[0].password",
     "inline passwords are not accepted: use password_file"),
    ("password among the agent options", _set(("nodes", 0, "fence", 0, "options", "password"), "hunter2"),
     "nodes[0].fence[0].options.password", "inline passwords are not accepted"),
    ("IPMI Kg key among the agent options", _set(("nodes", 0, "fence", 0, "options", "hexadecimal_kg"), "00ff"),
     "nodes[0].fence[0].options.hexadecimal_kg", "a secret, and options end up in the cluster configuration"),
    ("missing password reference", _drop(("nodes", 0, "fence", 0, "password_vault")),
     "nodes[0].fence[0].password_file", "required: a password_file or a password_vault variable"),
    ("relative password file", _set(("nodes", 1, "fence", 0, "password_file"), "secrets/bmc-b"),
     "nodes[1].fence[0].password_file", "must be an absolute path ('secrets/bmc-b')"),
    ("password file with a space", _set(("nodes", 1, "fence", 0, "password_file"), "/etc/my secrets/b"),
     "nodes[1].fence[0].password_file", "must be a path of letters, digits and ._-/ only"),
    ("bad vault variable", _set(("nodes", 0, "fence", 0, "password_vault"), "vault-bmc"),
     "nodes[0].fence[0].password_vault", "not a variable name ('vault-bmc')"),
    ("ilo_ssh without a host key pin", _set(("nodes", 2, "fence", 0, "options"), {}),
     "nodes[2].fence[0].options", "an ilo_ssh device needs ssh_fingerprint, known_hosts or host_key"),
    ("host_key on an ipmi device", _set(("nodes", 0, "fence", 0, "options", "host_key"), HOST_KEY),
     "nodes[0].fence[0].options.host_key", "only ilo_ssh devices take a host_key"),
    ("host_key that is no key", _set(("nodes", 2, "fence", 0, "options"), {"host_key": "AAAA\nevil"}),
     "nodes[2].fence[0].options.host_key", "not an SSH public key"),
    ("host_key and known_hosts", _set(("nodes", 2, "fence", 0, "options"),
                                      {"host_key": HOST_KEY, "known_hosts": "/root/.ssh/known_hosts"}),
     "nodes[2].fence[0].options.host_key", "give host_key or known_hosts, not both"),
    ("option the inventory sets", _set(("nodes", 0, "fence", 0, "options", "ipport"), 624),
     "nodes[0].fence[0].options.ipport", "set by highlander from port"),
    ("option name that is no option", _set(("nodes", 0, "fence", 0, "options", "Cipher Suite"), 3),
     "nodes[0].fence[0].options.Cipher Suite", "not an agent option name"),
    ("unknown fence method", _set(("nodes", 0, "fence", 0, "method"), "ilo4"), "nodes[0].fence[0].method",
     "must be one of ipmi, ilo_ssh, redfish, got 'ilo4'"),
    ("unknown top-level key", _set(("colour",), "blue"), "colour",
     "unknown setting (known: cluster, nodes, signstate, validator, timeouts)"),
    ("unknown cluster key", _set(("cluster", "nmae"), "x"), "cluster.nmae", "unknown setting"),
    ("unknown node key", _set(("nodes", 0, "hostname"), "a"), "nodes[0].hostname",
     "unknown setting (known: name, role, addresses, fence, ssh_host)"),
    ("unknown fence key", _set(("nodes", 1, "fence", 0, "pasword_file"), "/x"),
     "nodes[1].fence[0].pasword_file", "unknown setting"),
    ("unknown signstate key", _set(("signstate", "listen"), "0.0.0.0"), "signstate.listen", "unknown setting"),
    ("unknown validator key", _set(("validator", "chain"), "x"), "validator.chain", "unknown setting"),
    ("unknown timeouts key", _set(("timeouts", "token"), 3000), "timeouts.token", "unknown setting"),
    ("fence port too big", _set(("nodes", 0, "fence", 0, "port"), 70000), "nodes[0].fence[0].port",
     "expected a whole number from 1 to 65535, got 70000"),
    ("fence port as text", _set(("nodes", 0, "fence", 0, "port"), "623"), "nodes[0].fence[0].port",
     "expected a whole number from 1 to 65535, got '623'"),
    ("sign-state port zero", _set(("signstate", "port"), 0), "signstate.port",
     "expected a whole number from 1 to 65535, got 0"),
    ("relative state directory", _set(("signstate", "state_dir"), "var/lib/x"), "signstate.state_dir",
     "must be an absolute path ('var/lib/x')"),
    ("no validator section", _drop(("validator",)), "validator.command",
     "required (the signing daemon's command line)"),
    ("missing chain id", _drop(("validator", "chain_id")), "validator.chain_id", "required (a chain id)"),
    ("missing key id", _drop(("validator", "key_id")), "validator.key_id", "required (a key name)"),
    ("missing health URL", _drop(("validator", "health_url")), "validator.health_url", "required"),
    ("health URL without scheme", _set(("validator", "health_url"), "127.0.0.1:26657"),
     "validator.health_url", "must be an http:// or https:// URL ('127.0.0.1:26657')"),
    ("unknown state format", _set(("validator", "state_format"), "json"), "validator.state_format",
     "must be one of cometbft, tmkms, got 'json'"),
    ("token too short", _set(("timeouts", "token_ms"), 100), "timeouts.token_ms",
     "expected a whole number from 500 to 60000, got 100"),
    ("token not a number", _set(("timeouts", "token_ms"), "3s"), "timeouts.token_ms",
     "expected a whole number from 500 to 60000, got '3s'"),
    ("one monitor interval for two depths", _set(("timeouts", "health_interval"), 10),
     "timeouts.health_interval", "must differ from monitor_interval"),
    ("mismatched link counts", _with_addresses(["10.0.0.11", "10.1.0.11"], ["10.0.0.12"], ["10.0.0.13"]),
     "nodes", "every node needs the same number of addresses (one per corosync link)"),
    ("member without fence", _drop(("nodes", 2, "fence")), "nodes[2].fence",
     "node-w is a cluster member and needs a fence device (fencing stays on)"),
    ("active node without fence in qdevice mode",
     lambda d: (d["cluster"].update(quorum="qdevice"), d["nodes"][1].update(fence=[])), "nodes[1].fence",
     "node-b is a cluster member and needs a fence device"),
    ("unknown quorum", _set(("cluster", "quorum"), "two_node"), "cluster.quorum",
     "must be one of votequorum, qdevice, got 'two_node'"),
    ("bad cluster name", _set(("cluster", "name"), "My Cluster"), "cluster.name",
     "not a lower-case name ('My Cluster')"),
    ("nodes not a list", _set(("nodes",), {"node-a": {}}), "nodes", "expected exactly three nodes"),
    ("fence not a list", _set(("nodes", 0, "fence"), {"method": "ipmi"}), "nodes[0].fence",
     "expected a list of fence devices (first level first)"),
]  # fmt: skip


def test_the_table_is_big_enough() -> None:
    assert len(BROKEN) >= 15
    assert len({case for case, *_ in BROKEN}) == len(BROKEN)


@pytest.mark.parametrize(("change", "path", "words"), [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN])
def test_a_broken_inventory_names_the_path_and_the_problem(
    change: Callable[[dict[str, Any]], object], path: str, words: str
) -> None:
    doc = base()
    change(doc)
    problems = problems_of(doc)
    assert any(p.startswith(f"{path}: ") and words in p for p in problems), (path, words, problems)


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
    for i in (0, 1):
        assert f"nodes[{i}].name: 'node-a' is used by more than one node" in problems


def test_every_problem_is_reported_at_once() -> None:
    doc = base()
    for case, change, _, _ in BROKEN:
        if case in ("inline password", "unknown node key", "fence port too big", "missing chain id",
                    "token too short", "ilo_ssh without a host key pin", "unknown top-level key"):  # fmt: skip
            change(doc)
    problems = problems_of(doc)
    expected = [
        "nodes[0].fence[0].password", "nodes[0].hostname", "nodes[0].fence[0].port", "validator.chain_id",
        "timeouts.token_ms", "nodes[2].fence[0].options", "colour",
    ]  # fmt: skip
    for path in expected:
        assert any(p.startswith(f"{path}: ") for p in problems), (path, problems)
    assert len(problems) == len(expected), problems


def test_a_document_that_is_not_a_mapping() -> None:
    problems = problems_of(["cluster"])
    assert problems[0] == "(top level): expected a mapping of cluster, nodes, signstate, validator, timeouts, got list"
    assert "nodes: expected exactly three nodes: two active-capable and a witness" in problems


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
    assert problem.startswith(f"{path}: line 6, column 1 not valid YAML"), problem


def test_load_prefixes_every_problem_with_the_file(tmp_path: Path) -> None:
    doc = base()
    doc["timeouts"]["token_ms"] = 1
    doc["validator"]["colour"] = "x"
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(InventoryError) as caught:
        load(path)
    assert caught.value.problems == [
        (
            f"{path}: validator.colour: unknown setting (known: command, user, chain_id, key_id, health_url, "
            "state_file, state_format, height_margin, environment_file)"
        ),
        f"{path}: timeouts.token_ms: expected a whole number from 500 to 60000, got 1",
    ]


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="cannot read: No such file or directory"):
        load(tmp_path / "nope.yml")
