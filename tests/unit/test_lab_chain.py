"""The lab chain's pure parts: node ids, genesis, config.toml, the plan's
validator hosts and the chain's CIB (crm_verify, the real one, when installed)."""

from __future__ import annotations

import datetime
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from highlander.commands.render import render_files
from highlander.inventory import load
from highlander.lab import chain
from highlander.lab.chain_cib import COMETBFT_RESOURCE, PRIVVAL, for_chain
from highlander.lab.plan import LabPlan

LAB = Path(__file__).resolve().parents[2] / "examples" / "lab.yml"
# A node key and the id `cometbft show-node-id` (0.38.26) printed for it.
NODE_KEY = {
    "priv_key": {
        "type": "tendermint/PrivKeyEd25519",
        "value": "Gg4KzQRM7tMd0ylwoZygcJigqeNF+cBssHDgi3BXTZpO05Nf+RgqDmUgbpnQRCcKq5G53ds0DBDwkiJoLNfS9w==",
    }
}
NODE_ID = "6d39ee346908f0843193c172bba28273d6166894"
CONFIG = """\
proxy_app = "tcp://127.0.0.1:26658"
moniker = "x"
log_level = "info"
priv_validator_laddr = ""
[rpc]
laddr = "tcp://127.0.0.1:26657"
[p2p]
laddr = "tcp://0.0.0.0:26656"
persistent_peers = ""
addr_book_strict = true
pex = true
persistent_peers_max_dial_period = "0s"
max_num_inbound_peers = 40
max_num_outbound_peers = 10
send_rate = 5120000
recv_rate = 5120000
[mempool]
size = 5000
max_txs_bytes = 1073741824
cache_size = 10000
[consensus]
timeout_propose = "3s"
timeout_propose_delta = "500ms"
timeout_prevote = "1s"
timeout_prevote_delta = "500ms"
timeout_precommit = "1s"
timeout_precommit_delta = "500ms"
timeout_commit = "1s"
"""


def test_node_id_is_cometbfts() -> None:
    assert chain.node_id(NODE_KEY) == NODE_ID


def test_genesis_gives_every_validator_equal_power_ours_under_a_third() -> None:
    key = {"address": "AA", "pub_key": {"type": "tendermint/PubKeyEd25519", "value": "x"}, "priv_key": {}}
    base = {"chain_id": "test-chain", "consensus_params": {"block": {}}, "validators": [], "app_hash": ""}
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=datetime.timezone.utc)
    document = chain.genesis(base, "lab", [("ours", key), *((f"val-{i}", key) for i in range(3))], when)
    assert document["chain_id"] == "lab" and document["genesis_time"] == "2026-01-02T03:04:05.600000Z"
    assert document["consensus_params"] == {"block": {}}
    powers = [int(v["power"]) for v in document["validators"]]
    assert powers[0] * 3 < sum(powers) and sum(powers[1:]) * 3 > 2 * sum(powers)
    assert "priv_key" not in document["validators"][0]


def test_node_config_sets_the_lab_values_and_refuses_an_unknown_key() -> None:
    text = chain.node_config(CONFIG, "node-a", ["id1@10.0.0.1:26656", "id2@10.0.0.2:26656"], signer_address="10.0.0.1")
    assert 'proxy_app = "kvstore"' in text and 'moniker = "node-a"' in text
    assert f'priv_validator_laddr = "tcp://10.0.0.1:{chain.PRIVVAL_PORT}"' in text
    assert 'persistent_peers = "id1@10.0.0.1:26656,id2@10.0.0.2:26656"' in text
    assert 'timeout_commit = "800ms"' in text and "size = 200" in text
    assert 'priv_validator_laddr = ""' in chain.node_config(CONFIG, "val-1", [], signer_address=None)
    with pytest.raises(chain.ChainError, match="no nonsense in \\[rpc\\]"):
        chain.set_option(CONFIG, "rpc", "nonsense", "1")


def test_privval_config_is_one_the_signer_accepts(tmp_path: Path) -> None:
    from highlander.privval.config import load_config

    path = tmp_path / "privval.toml"
    path.write_text(chain.privval_config("lab", ["10.0.0.1", "10.0.0.2"]))
    config = load_config(path)
    assert config.chain_id == "lab" and [str(n) for n in config.nodes] == [
        f"tcp://10.0.0.{i}:{chain.PRIVVAL_PORT}" for i in (1, 2)
    ]
    assert config.control is not None


def test_the_plan_places_the_validators_on_the_lab_subnet() -> None:
    plan = LabPlan.make(Path("/tmp/lab"), LAB, "abc123", chain=True)
    assert [(v.name, v.address, v.netns) for v in plan.validators] == [
        (f"val-{i}", f"10.213.0.{20 + i}", f"hl-abc123-val-{i}") for i in (1, 2, 3)
    ]
    assert set(plan.netns) >= {"hl-abc123-val-1", "hl-abc123-switch", "hl-abc123-node-a"}
    assert LabPlan.from_dict(plan.to_dict()) == plan
    assert LabPlan.make(Path("/tmp/lab"), LAB, "abc123").validators == ()


@pytest.fixture
def chain_configuration() -> ET.Element:
    (cib,) = {f.text for f in render_files(load(LAB)) if f.name == "cib.xml"}
    root = ET.fromstring(cib)
    found = root.find("configuration")
    assert found is not None
    for_chain(found, ["node-w"])
    return root


def test_the_chain_cib_has_the_signer_and_the_full_nodes_instead_of_the_validator(
    chain_configuration: ET.Element,
) -> None:
    configuration = chain_configuration.find("configuration")
    assert configuration is not None
    assert configuration.find(".//primitive[@id='validator']") is None
    assert not [c for c in configuration.find("constraints") or [] if "validator" in (c.get("rsc"), c.get("then"))]
    privval = configuration.find(f".//clone[@id='{PRIVVAL}-clone']")
    assert privval is not None
    meta = {p.get("name"): p.get("value") for p in privval.iterfind("meta_attributes/nvpair")}
    assert meta["promotable"] == "true" and meta["promoted-max"] == "1"
    assert configuration.find(f".//clone[@id='{COMETBFT_RESOURCE}-clone']/primitive[@type='validator']") is not None
    order = configuration.find(f".//rsc_order[@first='{PRIVVAL}-clone']")
    assert order is not None and order.get("kind") == "Optional"
    avoided = {(c.get("rsc"), c.get("node")) for c in configuration.iterfind(".//rsc_location[@score='-INFINITY']")}
    assert {(f"{PRIVVAL}-clone", "node-w"), (f"{COMETBFT_RESOURCE}-clone", "node-w")} <= avoided


@pytest.mark.skipif(shutil.which("crm_verify") is None, reason="Pacemaker's crm_verify is not installed")
def test_crm_verify_accepts_the_chain_cib(chain_configuration: ET.Element, tmp_path: Path) -> None:
    path = tmp_path / "cib.xml"
    path.write_text(ET.tostring(chain_configuration, encoding="unicode"))
    done = subprocess.run(["crm_verify", "--xml-file", str(path)], capture_output=True, text=True, check=False)
    # Without a live cluster crm_verify warns that the nodes are unclean; errors are what count.
    assert "error" not in done.stderr.lower(), done.stderr


def test_the_unguarded_chain_has_no_fencing_no_signer_and_both_nodes_signing(chain_configuration: ET.Element) -> None:
    from highlander.lab.stacks import FILEPV, StackError, reconfigure

    configuration = chain_configuration.find("configuration")
    assert configuration is not None
    reconfigure(configuration, "unguarded")
    options = {p.get("name"): p.get("value") for p in configuration.iterfind("crm_config//nvpair")}
    assert options["stonith-enabled"] == "false"
    assert configuration.find(f".//primitive[@id='{PRIVVAL}']") is None
    assert not [c for c in configuration.iter() if f"{PRIVVAL}-clone" in (c.get("rsc"), c.get("then"), c.get("first"))]
    command = configuration.find(f".//primitive[@id='{COMETBFT_RESOURCE}']/instance_attributes/nvpair[@name='command']")
    assert command is not None and command.get("value", "").endswith(FILEPV)
    with pytest.raises(StackError, match="unknown stack"):
        reconfigure(configuration, "nonsense")


def test_the_stock_chain_is_one_filepv_node_under_anything_after_fence_ipmilan(
    chain_configuration: ET.Element, tmp_path: Path
) -> None:
    import shlex

    from highlander.lab.stacks import STOCK_IPMI, reconfigure

    configuration = chain_configuration.find("configuration")
    assert configuration is not None
    reconfigure(configuration, "stock")
    assert {d.get("type") for d in configuration.iterfind(".//primitive[@class='stonith']")} == {STOCK_IPMI}
    assert configuration.find(".//clone[@id='privval-clone']") is None
    assert configuration.find(".//clone[@id='cometbft-clone']") is None
    validator = configuration.find(".//primitive[@id='validator']")
    assert validator is not None and validator.get("type") == "anything"
    params = {p.get("name"): p.get("value") for p in validator.iterfind("instance_attributes/nvpair")}
    assert shlex.split(params["cmdline_options"])[-2:] == ["--priv_validator_laddr", ""]
    assert configuration.find(".//rsc_location[@rsc='validator'][@node='node-w']") is not None
    if shutil.which("crm_verify"):
        path = tmp_path / "cib.xml"
        path.write_text(ET.tostring(chain_configuration, encoding="unicode"))
        done = subprocess.run(["crm_verify", "--xml-file", str(path)], capture_output=True, text=True, check=False)
        assert "error" not in done.stderr.lower(), done.stderr
