"""``highlander render``: the shipped inventories render to files the real tools accept.

Everything is judged by the programs that will read the files: crm_verify
and crm_simulate (Pacemaker's scheduler) for the CIB, ``corosync -t`` for
corosync.conf, ssh-keygen for known_hosts, the sign-state daemon's own
parser for signstate.toml. Root: the corosync check runs in a network
namespace.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from harness import HIGHLANDER

from highlander.adapters.runner import CommandRunner, system_env
from highlander.commands import render as command
from highlander.inventory import load
from highlander.problems import Problem
from highlander.signstate.config import load_config

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.yml"))
TOOLS = ("crm_verify", "crm_simulate", "crm_mon", "corosync", "corosync-keygen", "ip", "ssh-keygen")


@pytest.fixture
def tools() -> CommandRunner:
    """Skip unless root; fail unless the checking programs are installed."""
    if os.geteuid() != 0:
        pytest.skip("needs root: corosync -t runs in a throwaway network namespace")
    env = system_env()
    missing = [t for t in TOOLS if shutil.which(t, path=env["PATH"]) is None]
    if missing:
        pytest.fail(f"programs not installed: {', '.join(missing)} (run ./bootstrap test)")
    return CommandRunner(env=env)


@pytest.fixture
def no_namespace_left(tools: CommandRunner) -> Iterator[None]:
    before = _check_namespaces(tools)
    yield
    assert _check_namespaces(tools) <= before, "a check namespace was left behind"


def _check_namespaces(runner: CommandRunner) -> set[str]:
    listing = runner.run(["ip", "netns", "list"], check=True).stdout
    return {line.split()[0] for line in listing.splitlines() if line.startswith("hl-check-")}


def highlander(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command line, in a child process."""
    return subprocess.run(
        [*HIGHLANDER, *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env=system_env(),
    )


def text_of(inventory_path: Path, relative: str) -> str:
    """One rendered file, without writing anything."""
    files = {str(f.relative): f.text for f in command.render_files(load(inventory_path))}
    return files[relative]


def rendered(out: Path) -> dict[str, Path]:
    return {str(p.relative_to(out)): p for p in sorted(out.rglob("*")) if p.is_file()}


def expected_layout(inventory_path: Path) -> set[str]:
    inventory = load(inventory_path)
    members = {n.name for n in inventory.members}
    layout = {command.MARKER, "alerts.yml"}
    for node in inventory.nodes:
        names = (
            ("corosync.conf", "cib.xml", "signstate.toml")
            if node.name in members
            else ("corosync-qnetd", "signstate.toml")
        )
        layout |= {f"{node.name}/{name}" for name in names}
    return layout


# --- render --check through the CLI, for every shipped example --------------------------


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.stem for e in EXAMPLES])
def test_every_example_renders_and_passes_the_check(
    example: Path, tmp_path: Path, tools: CommandRunner, no_namespace_left: None
) -> None:
    out = tmp_path / "out"
    done = highlander("render", str(example), "--out", str(out), "--check")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "checked:" in done.stdout and "no problems" in done.stdout
    files = rendered(out)
    assert set(files) == expected_layout(example)
    assert not [p for p in tmp_path.iterdir() if p.name != "out"], "a temporary directory was left behind"
    for name, path in files.items():
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, name
    for directory in [out, *[p for p in out.iterdir() if p.is_dir()]]:
        assert stat.S_IMODE(directory.stat().st_mode) == 0o755, directory
    inventory = load(example)
    for node in inventory.nodes:
        config = load_config(files[f"{node.name}/signstate.toml"])
        assert config.node == node.name
        assert config.listen.host == node.addresses[0] and config.listen.port == inventory.signstate.port
        assert sorted(config.peers) == sorted(n.name for n in inventory.nodes if n is not node)
    # every member holds the same corosync.conf and CIB
    members = [n.name for n in inventory.members]
    for name in ("corosync.conf", "cib.xml"):
        assert len({files[f"{m}/{name}"].read_text() for m in members}) == 1


def test_the_corosync_conf_matches_the_inventory() -> None:
    for example in EXAMPLES:
        inventory = load(example)
        text = text_of(example, "node-a/corosync.conf")
        assert all(line.endswith("{") or "{" not in line for line in text.splitlines())
        assert f"token: {inventory.timeouts.token_ms}" in text
        assert "crypto_cipher: aes256" in text and "crypto_hash: sha256" in text
        assert "keyfile: /etc/corosync/authkey" in text and "transport: knet" in text
        links = len(inventory.nodes[0].addresses)
        for link in range(links):
            assert f"linknumber: {link}" in text
        assert f"linknumber: {links}" not in text
        for nodeid, node in enumerate(inventory.members, start=1):
            assert f"name: {node.name}\n        nodeid: {nodeid}\n" in text
            for link, address in enumerate(node.addresses):
                assert f"ring{link}_addr: {address}\n" in text
        if inventory.quorum == "qdevice":
            assert inventory.witness is not None
            assert "model: net" in text and f"host: {inventory.witness.addresses[0]}" in text
            assert "two_node" not in text and inventory.witness.name not in text
        else:
            assert "device {" not in text and "two_node" not in text


def test_the_qdevice_witness_gets_qnetd_settings_instead_of_a_cluster_config() -> None:
    inventory = load(Path(__file__).parents[2] / "examples/qdevice.yml")
    witness = inventory.witness
    assert witness is not None
    files = {str(f.relative): f for f in command.render_files(inventory)}
    assert f"{witness.name}/corosync.conf" not in files and f"{witness.name}/cib.xml" not in files
    qnetd = files[f"{witness.name}/corosync-qnetd"]
    assert qnetd.destination == "/etc/default/corosync-qnetd"
    assert f'COROSYNC_QNETD_OPTIONS="-l {witness.addresses[0]} -p 5403 -s req"' in qnetd.text


# --- nothing secret, ever -----------------------------------------------------------------


def _secret_inventory(tmp_path: Path, host_key: str | None = None) -> tuple[Path, list[str]]:
    """The trio example with real password files holding known secrets."""
    document = yaml.safe_load((Path(__file__).parents[2] / "examples/trio.yml").read_text())
    secrets = []
    for i, node in enumerate(document["nodes"]):
        for j, device in enumerate(node["fence"]):
            secret = f"S3cret-{i}-{j}-{os.urandom(6).hex()}"
            secrets.append(secret)
            path = tmp_path / f"secret-{i}-{j}"
            path.write_text(secret + "\n")
            path.chmod(0o600)
            device.pop("password_vault", None)
            device["password_file"] = str(path)
    if host_key is not None:
        document["nodes"][2]["fence"][0]["options"] = {"host_key": host_key}
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(document))
    return path, secrets


def test_no_rendered_file_holds_a_secret(tmp_path: Path) -> None:
    inventory_path, secrets = _secret_inventory(tmp_path)
    out = tmp_path / "out"
    done = highlander("render", str(inventory_path), "--out", str(out))
    assert done.returncode == 0, done.stderr
    files = rendered(out)
    for name, path in files.items():
        text = path.read_text()
        for secret in secrets:
            assert secret not in text, f"{name} holds a secret"
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    for secret in secrets:
        assert secret not in done.stdout + done.stderr
    # the CIB only refers to the secrets, and the reference works: password_script prints each one
    cib = ET.parse(files["node-a/cib.xml"])
    stonith = cib.findall(".//primitive[@class='stonith']")
    assert len(stonith) == len(secrets)
    found = []
    for primitive in stonith:
        params = {nv.get("name"): nv.get("value") for nv in primitive.iter("nvpair")}
        assert not {"password", "passwd"} & set(params), primitive.get("id")
        script = params["password_script"]
        assert script is not None and script.startswith("/bin/cat /")
        # the fence agents run it without a shell: split into words, no quoting needed
        found.append(subprocess.run(script.split(), capture_output=True, text=True, check=True).stdout.strip())
    assert sorted(found) == sorted(secrets)


def test_a_vault_password_is_read_from_the_secrets_directory() -> None:
    cib = ET.fromstring(text_of(Path(__file__).parents[2] / "examples/trio.yml", "node-a/cib.xml"))
    scripts = {
        p.get("id"): {nv.get("name"): nv.get("value") for nv in p.iter("nvpair")}["password_script"]
        for p in cib.findall(".//primitive[@class='stonith']")
    }
    assert scripts == {
        "fence-node-a-1": "/bin/cat /etc/highlander/secrets/node-a-fence-1",
        "fence-node-b-1": "/bin/cat /etc/highlander/secrets/node-b-fence-1",
        "fence-node-b-2": "/bin/cat /etc/highlander/secrets/node-b-fence-2",
        "fence-node-w-1": "/bin/cat /etc/highlander/secrets/bmc-node-w",
    }


def test_a_pinned_host_key_becomes_known_hosts(tmp_path: Path, tools: CommandRunner, no_namespace_left: None) -> None:
    tools.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "bmc")], check=True)
    public = " ".join((tmp_path / "bmc.pub").read_text().split()[:2])
    inventory_path, _ = _secret_inventory(tmp_path, host_key=public)
    out = tmp_path / "out"
    done = highlander("render", str(inventory_path), "--out", str(out), "--check")
    assert done.returncode == 0, done.stderr
    files = rendered(out)
    for member in ("node-a", "node-b", "node-w"):
        known = files[f"{member}/known_hosts"].read_text()
        assert f"\n10.10.1.13 {public}\n" in known
    params = {
        nv.get("name"): nv.get("value")
        for nv in ET.parse(files["node-a/cib.xml"]).findall(".//primitive[@id='fence-node-w-1']//nvpair")
    }
    assert params["known_hosts"] == "/etc/highlander/known_hosts"
    assert "host_key" not in params


# --- the checks are real ----------------------------------------------------------------------


def test_corosync_rejects_a_host_that_is_not_in_the_nodelist(
    tmp_path: Path, tools: CommandRunner, no_namespace_left: None
) -> None:
    inventory = load(Path(__file__).parents[2] / "examples/trio.yml")
    command.write(command.render_files(inventory), tmp_path / "out")
    conf = tmp_path / "out/node-a/corosync.conf"
    assert command.check_corosync_conf(inventory, conf, ["10.10.0.11"], tools) == []
    (problem,) = command.check_corosync_conf(inventory, conf, ["10.10.0.99"], tools)
    assert (problem.code, problem.path) == (command.RENDER_CHECK_FAILED, "node-a/corosync.conf")
    assert problem.message.startswith("node-a/corosync.conf: corosync -t: ip netns exec "), problem
    assert "No valid name found for local host" in problem.message, problem
    # a node's second link address alone does not make it a member: corosync matches ring0
    two_links = load(Path(__file__).parents[2] / "examples/qdevice.yml")
    command.write(command.render_files(two_links), tmp_path / "out2")
    conf = tmp_path / "out2/node-b/corosync.conf"
    assert command.check_corosync_conf(two_links, conf, ["192.0.2.12", "198.51.100.12"], tools) == []
    assert command.check_corosync_conf(two_links, conf, ["198.51.100.12"], tools)


def test_the_check_reports_the_tools_messages(tmp_path: Path, tools: CommandRunner, no_namespace_left: None) -> None:
    inventory = load(Path(__file__).parents[2] / "examples/trio.yml")
    out = command.write(command.render_files(inventory), tmp_path / "out")
    assert command.check(inventory, out, tools) == []
    cib = out / "node-b/cib.xml"
    cib.write_text(cib.read_text().replace('rsc="validator" node="node-w"', 'rsc="validatr" node="node-w"'))
    conf = out / "node-w/corosync.conf"
    conf.write_text(conf.read_text().replace("token: 3000", "token: 1000"))
    problems = command.check(inventory, out, tools)
    assert [(p.code, p.path) for p in problems] == [
        (command.RENDER_CHECK_FAILED, "node-b/cib.xml"),
        (command.RENDER_CHECK_DRIFT, "node-w/corosync.conf"),
    ]
    # the tool's own words, under what was checked
    assert problems[0].message.startswith("node-b/cib.xml: crm_simulate --xml-file ")
    assert 'unknown ID "validatr"' in problems[0].message
    assert problems[1].message.startswith(
        "node-w/corosync.conf: the check copy differs beyond the keyfile and log settings: line "
    )
    assert problems[1].message.endswith(": 'token: 1000' against 'token: 3000'")


def test_a_bad_inventory_writes_nothing_and_names_every_problem(tmp_path: Path) -> None:
    document = yaml.safe_load((Path(__file__).parents[2] / "examples/trio.yml").read_text())
    document["nodes"][0]["fence"][0]["password"] = "hunter2"
    document["timeouts"]["token_ms"] = 5
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump(document))
    out = tmp_path / "out"
    done = highlander("render", str(bad), "--out", str(out), "--check")
    assert done.returncode == 1
    assert done.stderr == (
        f"highlander render: {bad}: not a usable inventory (2 problems):\n"
        f"  - {bad}: nodes[0].fence[0].password: inline passwords are not accepted: use password_file (a 0600 "
        "file on the nodes) or password_vault (an Ansible Vault variable)\n"
        f"  - {bad}: timeouts.token_ms: expected a whole number from 500 to 60000, got 5\n"
    )
    assert "hunter2" not in done.stderr + done.stdout
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["bad.yml"]


@pytest.mark.parametrize(
    "text, problem",
    [
        ("cluster: " + "[" * 100_000 + "]" * 100_000 + "\n", "line 1, column 41: nested deeper than 32 levels"),
        (
            "l0: &l0 [x, x, x, x, x, x, x, x, x]\n"
            + "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 9))
            + "cluster: {name: *l8}\n",
            "line 1, column 5: YAML anchors and aliases are not accepted",
        ),
        ("cluster: {name: a, name: b}\n", "cluster.name: given twice (lines 1 and 1): keep one"),
    ],
    ids=["deep", "alias-bomb", "duplicate-key"],
)
def test_a_hostile_inventory_is_a_clear_error(tmp_path: Path, text: str, problem: str) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(text)
    done = highlander("render", str(bad), "--out", str(tmp_path / "out"))
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(
        f"highlander render: {bad}: not a usable inventory (1 problem):\n  - {bad}: {problem}"
    )
    assert "Traceback" not in done.stderr and len(done.stderr) < 500
    assert [p.name for p in tmp_path.iterdir()] == ["bad.yml"]


def test_a_failed_check_writes_nothing(tmp_path: Path, tools: CommandRunner) -> None:
    """The check runs before the move: a veto leaves the earlier render as it was."""
    inventory = load(Path(__file__).parents[2] / "examples/trio.yml")
    files = command.render_files(inventory)
    out = command.write(files, tmp_path / "out")
    before = {name: p.read_bytes() for name, p in rendered(out).items()}

    def veto(directory: Path) -> None:
        assert (directory / "node-a/cib.xml").is_file()
        raise command.RenderError([Problem(command.RENDER_CHECK_FAILED, "node-a/cib.xml", "vetoed")])

    with pytest.raises(command.RenderError, match="^vetoed$"):
        command.write(files[:2], out, before_commit=veto)
    assert {name: p.read_bytes() for name, p in rendered(out).items()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_an_earlier_render_is_replaced_but_nothing_else(tmp_path: Path) -> None:
    inventory = load(Path(__file__).parents[2] / "examples/qdevice.yml")
    files = command.render_files(inventory)
    out = command.write(files, tmp_path / "out")
    (out / "node-a/stale").write_text("from before")
    command.write(files, out)
    assert "node-a/stale" not in rendered(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(command.RenderError) as caught:
        command.write(files, other)
    assert [(p.code, p.path) for p in caught.value.problems] == [(command.RENDER_OUT_NOT_A_RENDER, str(other))]
    done = highlander("render", str(Path(__file__).parents[2] / "examples/qdevice.yml"), "--out", str(other))
    assert done.returncode == 1 and done.stderr == (
        "highlander render: nothing was written (1 problem):\n"
        f"  - {other}: not empty and not an earlier render (no .highlander-render): choose another --out\n"
    )
    assert [p.name for p in other.iterdir()] == ["notes.txt"]


# --- Pacemaker's scheduler on the rendered CIB ---------------------------------------------------


def simulate(runner: CommandRunner, cib: Path, out: Path, *events: str) -> tuple[str, ET.Element]:
    """crm_simulate the events with quorum; the output and the transition graph."""
    graph = out.with_suffix(".graph.xml")
    argv = [
        "crm_simulate",
        "--xml-file",
        str(cib),
        "--quorum",
        "true",
        "--simulate",
        "--save-output",
        str(out),
        "--save-graph",
        str(graph),
        *events,
    ]
    result = runner.run(argv, check=True)
    return result.stdout, ET.parse(graph).getroot()


def placement(runner: CommandRunner, cib: Path) -> dict[str, list[str]]:
    """Where each resource runs in ``cib``, from crm_mon's XML."""
    xml = runner.run(["crm_mon", "--one-shot", "--output-as=xml"], env={"CIB_file": str(cib)}, check=True).stdout
    where: dict[str, list[str]] = {}
    for resource in ET.fromstring(xml).iter("resource"):
        nodes = [n.get("name", "") for n in resource.findall("node")]
        where.setdefault(resource.get("id", ""), []).extend(nodes)
    return where


def fenced(graph: ET.Element) -> set[str]:
    return {e.get("on_node", "") for e in graph.iter("crm_event") if e.get("operation") == "stonith"}


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.stem for e in EXAMPLES])
def test_the_scheduler_keeps_the_validator_on_active_nodes(example: Path, tmp_path: Path, tools: CommandRunner) -> None:
    inventory = load(example)
    actives = [n.name for n in inventory.nodes if n.active]
    members = [n.name for n in inventory.members]
    cib = tmp_path / "cib.xml"
    cib.write_text(text_of(example, f"{members[0]}/cib.xml"))

    # all members come up: everything starts, the validator on an active node
    up = [arg for name in members for arg in ("--node-up", name)]
    _, graph = simulate(tools, cib, tmp_path / "up.xml", *up)
    assert not fenced(graph)
    where = placement(tools, tmp_path / "up.xml")
    assert len(where["validator"]) == 1
    first = where["validator"][0]
    assert first in actives
    assert sorted(where["signstate"]) == sorted(members)
    for node in inventory.members:
        for level in range(1, len(node.fence) + 1):
            device = where[f"fence-{node.name}-{level}"]
            assert len(device) == 1 and device[0] != node.name, (node.name, level, device)
    scores = tools.run(["crm_simulate", "--xml-file", str(tmp_path / "up.xml"), "--show-scores"], check=True).stdout
    for node in inventory.members:
        if not node.active:
            assert f"validator allocation score on {node.name}: -INFINITY" in scores

    # the validator's node fails: it is fenced, and the validator moves to the other active node
    output, graph = simulate(tools, tmp_path / "up.xml", tmp_path / "failed.xml", "--node-fail", first)
    assert fenced(graph) == {first}, output
    assert f"Fence (reboot) {first}" in output
    second = placement(tools, tmp_path / "failed.xml")["validator"]
    assert second == [n for n in actives if n != first], output

    # the other active node fails too: the validator stops rather than run on the witness
    if len(members) == 3:
        output, graph = simulate(tools, tmp_path / "failed.xml", tmp_path / "both.xml", "--node-fail", second[0])
        assert fenced(graph) == {second[0]}, output
        assert placement(tools, tmp_path / "both.xml")["validator"] == [], output


def test_the_cib_loads_into_a_cluster_that_already_has_one(tmp_path: Path, tools: CommandRunner) -> None:
    """As the file says it is loaded: a running cluster's CIB has an epoch above the rendered one's."""
    live = tmp_path / "live.xml"
    live.write_text(tools.run(["cibadmin", "--empty"], check=True).stdout.replace('epoch="1"', 'epoch="9"'))
    cib = tmp_path / "cib.xml"
    cib.write_text(text_of(Path(__file__).parents[2] / "examples/trio.yml", "node-a/cib.xml"))
    assert command.LOAD_CIB == "cibadmin --replace --scope configuration --xml-file cib.xml"
    argv = command.LOAD_CIB.split()
    argv[-1] = str(cib)
    result = tools.run(argv, env={"CIB_file": str(live)})
    assert result.ok, result.stderr
    loaded = ET.parse(live).getroot()
    assert int(loaded.get("epoch", "0")) > 9
    assert {p.get("id") for p in loaded.iter("primitive")} == {
        "fence-node-a-1",
        "fence-node-b-1",
        "fence-node-b-2",
        "fence-node-w-1",
        "signstate",
        "validator",
    }


def test_a_second_fence_method_is_a_second_level() -> None:
    cib = ET.fromstring(text_of(Path(__file__).parents[2] / "examples/trio.yml", "node-b/cib.xml"))
    levels = [(lv.get("target"), lv.get("index"), lv.get("devices")) for lv in cib.iter("fencing-level")]
    assert levels == [
        ("node-a", "1", "fence-node-a-1"),
        ("node-b", "1", "fence-node-b-1"),
        ("node-b", "2", "fence-node-b-2"),
        ("node-w", "1", "fence-node-w-1"),
    ]
    nodes = {n.get("uname"): n.get("id") for n in cib.iter("node")}
    assert nodes == {"node-a": "1", "node-b": "2", "node-w": "3"}
    properties = {nv.get("name"): nv.get("value") for nv in cib.findall(".//crm_config//nvpair")}
    assert properties == {"stonith-enabled": "true", "no-quorum-policy": "stop", "cluster-name": "validators"}
    validator = {
        nv.get("name"): nv.get("value")
        for nv in cib.findall(".//primitive[@id='validator']/instance_attributes/nvpair")
    }
    assert validator["chain_id"] == "cosmoshub-4" and validator["height_margin"] == "2"
    assert validator["state_file"] == "/var/lib/cometbft/data/priv_validator_state.json"
    depths = {
        op.get("interval"): op.find(".//nvpair").get("value")  # type: ignore[union-attr]
        for op in cib.findall(".//primitive[@id='validator']/operations/op[@name='monitor']")
    }
    assert depths == {"10s": "0", "30s": "10"}


def test_the_validator_sticks_and_failures_expire() -> None:
    """Stickiness keeps the validator where it runs (nothing moves it back);
    failure-timeout keeps one failed start from banning a node for good."""
    cib = ET.fromstring(text_of(Path(__file__).parents[2] / "examples/lab.yml", "node-a/cib.xml"))
    meta = {
        (p.get("id"), n.get("name")): n.get("value")
        for p in cib.iter()
        for m in p.findall("meta_attributes")
        for n in m.findall("nvpair")
    }
    assert meta[("validator", "resource-stickiness")] == "100"
    assert meta[("validator", "failure-timeout")] == meta[("signstate-clone", "failure-timeout")] == "60s"
