"""The lab's CometBFT network: a real chain for the trio's validator to sign on.

``lab up`` builds, next to the trio, a small network of real CometBFT nodes
(the pinned release ``./bootstrap`` installs) with the built-in ``kvstore``
app, all cabled to the lab's private switch:

- our validator: a CometBFT full node on node-a and on node-b (Pacemaker's
  clone ``cometbft``, run by ``ocf:highlander:validator`` with the register
  gate off: a full node signs nothing itself), whose ``priv_validator_laddr``
  (on its lab address) is dialed by ``highlander privval`` on both nodes
  (the promotable clone ``privval``): the promoted instance signs for both
  full nodes, the other answers PubKey only and yields the nodes to it;
- :data:`VALIDATORS` ordinary validators with FilePV, each on a lab host of
  its own (a network namespace on the switch), started and stopped by the
  lab's supervisor, recorded by PID.

Every validator has :data:`POWER`: ours holds a quarter of the voting power,
under a third, so the chain goes on committing while ours fails over, and
the others hold more than two thirds. Blocks come about once a second.

The pure part (genesis, configuration text, node ids) is separate from what
starts processes, so that tests check it without a lab.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

COMETBFT = Path(os.environ.get("HIGHLANDER_COMETBFT", "/opt/highlander/bin/cometbft"))
CHAIN_ID = "highlander-lab"
VALIDATORS = 3
POWER = 10
P2P_PORT = 26656
RPC_PORT = 26657
PRIVVAL_PORT = 26659
# The host part of the first ordinary validator's address in the lab subnet.
FIRST_HOST = 21
# On node-a and node-b (their own disks: /var/lib/highlander and /etc/highlander are the node's).
NODE_HOME = "/var/lib/highlander/cometbft"
PRIVVAL_CONFIG = "/etc/highlander/privval.toml"
PRIVVAL_KEY = "/etc/highlander/privval/priv_validator_key.json"
PRIVVAL_STATE = "/var/lib/highlander/privval/state.json"
PRIVVAL_CONTROL = "/run/highlander/privval.sock"
KEY_ID = "validator"
HEALTH_URL = f"http://127.0.0.1:{RPC_PORT}/status"
# ~1 s blocks: a round's steps short, a commit's pause most of the block time.
CONSENSUS = {
    "timeout_propose": '"1s"',
    "timeout_propose_delta": '"200ms"',
    "timeout_prevote": '"400ms"',
    "timeout_prevote_delta": '"200ms"',
    "timeout_precommit": '"400ms"',
    "timeout_precommit_delta": '"200ms"',
    "timeout_commit": '"800ms"',
}
# A small node: kvstore sees no transactions here.
MODEST = {
    ("mempool", "size"): "200",
    ("mempool", "cache_size"): "1000",
    ("mempool", "max_txs_bytes"): "1048576",
    ("p2p", "max_num_inbound_peers"): "10",
    ("p2p", "max_num_outbound_peers"): "10",
    ("p2p", "send_rate"): "1024000",
    ("p2p", "recv_rate"): "1024000",
}


class ChainError(RuntimeError):
    """The lab's chain could not be built or started; the message says why."""


@dataclasses.dataclass(frozen=True)
class ChainHost:
    """An ordinary validator's own lab host: a network namespace on the switch."""

    name: str
    address: str
    netns: str
    switch_port: str


# --- the pure part ------------------------------------------------------------------------


def node_id(node_key: dict[str, Any]) -> str:
    """A node's p2p id from its ``node_key.json``: the first 20 bytes of the
    SHA-256 of its ed25519 public key, in hex (CometBFT's ``show-node-id``)."""
    private = base64.b64decode(node_key["priv_key"]["value"])
    return hashlib.sha256(private[32:]).digest()[:20].hex()


def genesis(
    base: dict[str, Any],
    chain_id: str,
    validators: Sequence[tuple[str, dict[str, Any]]],
    when: datetime.datetime,
    power: int = POWER,
) -> dict[str, Any]:
    """The genesis document of the lab's chain from the one ``cometbft init``
    wrote (``base``: its consensus parameters are the release's defaults):
    ``validators`` are (name, priv_validator_key.json) pairs, each with ``power``."""
    return {
        **base,
        "genesis_time": when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "chain_id": chain_id,
        "validators": [
            {"address": key["address"], "pub_key": key["pub_key"], "power": str(power), "name": name}
            for name, key in validators
        ],
    }


def set_option(text: str, section: str, key: str, value: str) -> str:
    """``key = value`` in ``[section]`` of a CometBFT config.toml ("" is the top level)."""
    lines, current = text.splitlines(), ""
    for index, line in enumerate(lines):
        header = re.match(r"^\[([a-z0-9_.-]+)\]", line)
        if header:
            current = header.group(1)
        elif current == section and re.match(rf"^{re.escape(key)}\s*=", line):
            lines[index] = f"{key} = {value}"
            return "\n".join(lines) + "\n"
    raise ChainError(f"config.toml has no {key} in [{section or 'the top level'}]")


def privval_laddr(address: str) -> str:
    """Where a full node of ours listens for its signers: its lab address."""
    return f"tcp://{address}:{PRIVVAL_PORT}"


def node_config(text: str, moniker: str, peers: Iterable[str], *, signer_address: str | None) -> str:
    """A lab node's config.toml from the one ``cometbft init`` wrote: kvstore,
    listening on its lab address, its peers, ~1 s blocks, small caches;
    with ``signer_address`` the node listens there for ``highlander privval``
    (FilePV otherwise)."""
    laddr = json.dumps(privval_laddr(signer_address)) if signer_address else '""'
    settings: list[tuple[str, str, str]] = [
        ("", "proxy_app", '"kvstore"'),
        ("", "moniker", json.dumps(moniker)),
        ("", "priv_validator_laddr", laddr),
        ("", "log_level", '"consensus:info,state:info,*:error"'),
        ("rpc", "laddr", f'"tcp://0.0.0.0:{RPC_PORT}"'),
        ("p2p", "laddr", f'"tcp://0.0.0.0:{P2P_PORT}"'),
        ("p2p", "persistent_peers", json.dumps(",".join(peers))),
        ("p2p", "addr_book_strict", "false"),
        ("p2p", "pex", "false"),
        ("p2p", "persistent_peers_max_dial_period", '"2s"'),
        *(("consensus", key, value) for key, value in CONSENSUS.items()),
        *((section, key, value) for (section, key), value in MODEST.items()),
    ]
    for section, key, value in settings:
        text = set_option(text, section, key, value)
    return text


def privval_config(chain_id: str, nodes: Sequence[str]) -> str:
    """``privval.toml`` on node-a and node-b: the key, the register, and every
    full node of ours (``nodes``: their lab addresses): the promoted signer
    serves both, so the standby's node keeps up with the chain and is current
    when a failover moves the signing to its node's signer."""
    return (
        "# Written by highlander lab: the remote signer of the lab's validator.\n"
        f"chain_id = {json.dumps(chain_id)}\n"
        f'key_file = "{PRIVVAL_KEY}"\n'
        f'state_file = "{PRIVVAL_STATE}"\n'
        'register = "/run/highlander/signstate.sock"\n'
        f'key_id = "{KEY_ID}"\n'
        f"nodes = {json.dumps([privval_laddr(a) for a in nodes])}\n"
        f'control = "{PRIVVAL_CONTROL}"\n'
    )


# --- homes on disk --------------------------------------------------------------------------


def _cometbft(*args: str | Path) -> str:
    if not os.access(COMETBFT, os.X_OK):
        raise ChainError(f"CometBFT is not installed at {COMETBFT} (./bootstrap builds it; or set HIGHLANDER_COMETBFT)")
    done = subprocess.run([str(COMETBFT), *map(str, args)], capture_output=True, text=True, check=False, timeout=60)
    if done.returncode != 0:
        raise ChainError(f"cometbft {' '.join(map(str, args))} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def init_home(home: Path) -> None:
    """``cometbft init``: keys and a default configuration in ``home``."""
    _cometbft("init", "--home", home)


def read_json(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


@dataclasses.dataclass(frozen=True)
class NetworkLayout:
    """Where each CometBFT home of the lab is on the host, and at which lab address it listens."""

    chain_id: str
    ours: Path  # the validator key's own scratch home (only its key is used)
    full_nodes: dict[str, tuple[Path, str]]  # node-a/node-b -> (home on the node's disk, address)
    validators: dict[str, tuple[Path, str]]  # val-N -> (home, address)


def build_network(layout: NetworkLayout, when: datetime.datetime) -> dict[str, Any]:
    """Create every home of the lab's chain: keys, one genesis, each node's
    config.toml with all the others as peers. Returns what the lab records:
    our validator's address and key file, and the validators' addresses."""
    homes = {**layout.full_nodes, **layout.validators}
    for home, _ in [*homes.values(), (layout.ours, "")]:
        init_home(home)
    ids = {name: node_id(read_json(home / "config" / "node_key.json")) for name, (home, _) in homes.items()}
    keys = [("ours", read_json(layout.ours / "config" / "priv_validator_key.json"))]
    keys += [
        (name, read_json(home / "config" / "priv_validator_key.json")) for name, (home, _) in layout.validators.items()
    ]
    base = read_json(layout.ours / "config" / "genesis.json")
    document = json.dumps(genesis(base, layout.chain_id, keys, when), indent=2) + "\n"
    for name, (home, _) in homes.items():
        (home / "config" / "genesis.json").write_text(document)
        peers = [f"{ids[other]}@{address}:{P2P_PORT}" for other, (_, address) in homes.items() if other != name]
        config = home / "config" / "config.toml"
        signer = layout.full_nodes[name][1] if name in layout.full_nodes else None
        config.write_text(node_config(config.read_text(), name, peers, signer_address=signer))
    return {
        "chain_id": layout.chain_id,
        "address": keys[0][1]["address"],
        "key_file": str(layout.ours / "config" / "priv_validator_key.json"),
        "validators": {name: key["address"] for name, key in keys},
    }


# --- the ordinary validators' processes -------------------------------------------------------


def start_validator(netns: str, home: Path) -> subprocess.Popen[bytes]:
    """``cometbft start`` in the validator host's namespace (``ip netns exec``
    execs it: the PID is CometBFT's), logging to its home, in its own session."""
    log = open(home / "cometbft.log", "ab")  # noqa: SIM115 (the child keeps it)
    try:
        return subprocess.Popen(
            ["ip", "netns", "exec", netns, str(COMETBFT), "start", "--home", str(home)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd="/",
            start_new_session=True,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home), "LANG": "C.UTF-8"},
        )
    finally:
        log.close()


def stop_validators(processes: dict[str, subprocess.Popen[bytes]], timeout: float = 10.0) -> None:
    """SIGTERM each by PID, SIGKILL what is left after ``timeout``."""
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes.values():
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def copy_key(source: Path, destination: Path) -> None:
    """The validator's key onto a node: 0600 from the first byte."""
    destination.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
        shutil.copyfileobj(src, out)
