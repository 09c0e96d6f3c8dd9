"""Render a cluster's configuration from its inventory, and check it with the real tools.

``highlander render INVENTORY --out DIR`` writes, for every node of the trio::

    DIR/<node>/corosync.conf    -> /etc/corosync/corosync.conf      (members)
    DIR/<node>/cib.xml          -> cibadmin --replace --scope configuration --xml-file
                                   (members; load it once, on one of them)
    DIR/<node>/signstate.toml   -> /etc/highlander/signstate.toml   (all three)
    DIR/<node>/known_hosts      -> /etc/highlander/known_hosts      (members, when an
                                   ilo_ssh device pins a host_key)
    DIR/<node>/corosync-qnetd   -> /etc/default/corosync-qnetd      (the qdevice witness)

all from ``templates/`` (the same files the lab and the Ansible roles
render). Nothing in them is secret: a fence device's password stays in a
root-only file on the nodes, which the agent reads through its
``password_script``.

The output appears whole or not at all: everything is rendered (and with
``check`` verified) in a temporary directory next to DIR, which then
replaces DIR (highlander.adapters.files: a temporary directory left by a
crash is removed by the next render). DIR may be missing, empty, or an
earlier render; anything else is left alone.

``check`` runs the programs that will read the files, before anything is
moved into place:

- ``crm_verify --xml-file`` on each CIB, as a healthy cluster holds it: an
  offline CIB has no status, so crm_simulate first injects every member
  online and quorum into a copy (whose configuration must stay the same);
- ``corosync -t`` on each member's corosync.conf. It insists that the local
  host is in the nodelist (it matches local addresses against ring0_addr)
  and that the keyfile exists, so it runs in a throwaway network namespace
  holding exactly that node's addresses, on a copy that uses a throwaway
  authkey and log file and logs to stderr; the copy may differ from the
  rendered file in those three settings only, which is verified first;
- ``ssh-keygen -l`` on each known_hosts.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import tempfile
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from highlander import templates
from highlander.adapters.files import fsync_directory, new_directory, replace_directory, write_file
from highlander.adapters.runner import CommandRunner, Result, system_env
from highlander.inventory import Inventory, load
from highlander.inventory.model import KNOWN_HOSTS, SECRET_OPTIONS, FenceDevice, Node
from highlander.problems import Problem, ProblemError

SECRETS_DIR = "/etc/highlander/secrets"
SIGNSTATE_CONFIG = "/etc/highlander/signstate.toml"
# How long a promoted signer may go without signing before HighlanderNoSignature fires.
NO_SIGNATURE_SECONDS = 60
# How many heights the nodes ask for may go unsigned before HighlanderMissedBlocks fires.
MISSED_BLOCKS = 10
QNETD_PORT = 5403
# How the CIB is loaded (once, on one member): the configuration section only, so that the live
# CIB's version counters go on from where they are (a whole-CIB replace with a lower epoch is refused).
LOAD_CIB = "cibadmin --replace --scope configuration --xml-file cib.xml"
MARKER = ".highlander-render"
# How long a failed operation counts against a node (the CIB's failure-timeout):
# a start that failed once bans the node only this long, not until someone cleans up.
FAILURE_TIMEOUT = "60s"
# Lines of corosync.conf that the check copy may change (to throwaway paths and stderr logging).
CHECK_ONLY_SETTINGS = ("keyfile:", "logfile:", "to_stderr:")

# The codes of render's problems (highlander.problems). Their path is the file concerned: a template,
# a rendered file (node-a/cib.xml) or the output directory; empty for the run as a whole.
RENDER_MALFORMED_XML = "RENDER_MALFORMED_XML"  # a template bug, never an operator's
RENDER_DUPLICATE_IDS = "RENDER_DUPLICATE_IDS"  # likewise
RENDER_SECRET_IN_CIB = "RENDER_SECRET_IN_CIB"  # likewise
RENDER_READ_BACK_FAILED = "RENDER_READ_BACK_FAILED"  # the daemon's own parser refuses the rendered file
RENDER_READ_BACK_DIFFERS = "RENDER_READ_BACK_DIFFERS"  # it reads back as something else than was meant
RENDER_OUT_NOT_A_DIRECTORY = "RENDER_OUT_NOT_A_DIRECTORY"
RENDER_OUT_NOT_A_RENDER = "RENDER_OUT_NOT_A_RENDER"
RENDER_CHECK_NEEDS_ROOT = "RENDER_CHECK_NEEDS_ROOT"
RENDER_CHECK_FAILED = "RENDER_CHECK_FAILED"  # a tool refused a rendered file (crm_verify, corosync -t, ssh-keygen)
RENDER_CHECK_DRIFT = "RENDER_CHECK_DRIFT"  # what the tool would check is not the rendered file
RENDER_CHECK_UNAVAILABLE = "RENDER_CHECK_UNAVAILABLE"  # the check itself cannot run here


class RenderError(ProblemError, RuntimeError):
    """The files cannot be rendered, written or checked; ``problems`` says each reason."""


@dataclass(frozen=True)
class RenderedFile:
    """One file for one node: ``DIR/<node>/<name>``, bound for ``destination``;
    or, with no node, one for the cluster as a whole: ``DIR/<name>`` (the alert
    rules, for whatever Prometheus watches the cluster)."""

    node: str
    name: str
    destination: str
    text: str
    mode: int = 0o644  # 0o600 for anything sensitive; nothing rendered today is

    @property
    def relative(self) -> Path:
        return Path(self.node, self.name) if self.node else Path(self.name)


# --- the template variables ----------------------------------------------------


def nodeids(inventory: Inventory) -> dict[str, int]:
    """Corosync nodeids (= Pacemaker node ids) of the members, 1.. in inventory order."""
    return {node.name: i for i, node in enumerate(inventory.members, start=1)}


def fence_device_variables(d: FenceDevice) -> dict[str, object]:
    """A fence device as the templates and the Ansible inventory see it: references to its password, never one."""
    return {
        "method": d.method,
        "agent": d.agent,
        "address": d.address,
        "port": d.port,
        "username": d.username,
        "password_file": d.password_file,
        "password_vault": d.password_vault,
        "options": dict(d.options),
    }


def _node(node: Node, nodeid: int | None) -> dict[str, object]:
    return {
        "name": node.name,
        "role": node.role,
        "nodeid": nodeid,
        "addresses": list(node.addresses),
        "fence": [fence_device_variables(d) for d in node.fence],
    }


def corosync_context(inventory: Inventory, **overrides: object) -> dict[str, object]:
    """Variables of corosync.conf.j2 (the same file for every member)."""
    ids = nodeids(inventory)
    context: dict[str, object] = {
        "cluster_name": inventory.cluster_name,
        "nodes": [_node(n, ids[n.name]) for n in inventory.members],
        "token_ms": inventory.timeouts.token_ms,
    }
    witness = inventory.witness
    if inventory.quorum == "qdevice" and witness is not None:
        context["qdevice"] = {"host": witness.addresses[0], "port": QNETD_PORT}
    context.update(overrides)
    return context


def cib_context(inventory: Inventory) -> dict[str, object]:
    """Variables of cib.xml.j2."""
    ids = nodeids(inventory)
    v = inventory.validator
    return {
        "cluster_name": inventory.cluster_name,
        "quorum": inventory.quorum,
        "members": [_node(n, ids[n.name]) for n in inventory.members],
        "validator": {
            "command": v.command,
            "user": v.user,
            "chain_id": v.chain_id,
            "key_id": v.key_id,
            "health_url": v.health_url,
            "state_file": v.state_file,
            "state_format": v.state_format,
            "height_margin": v.height_margin,
            "environment_file": v.environment_file,
        },
        "signstate": {"socket": inventory.signstate.socket, "config": SIGNSTATE_CONFIG},
        "timeouts": {
            "monitor_interval": inventory.timeouts.monitor_interval,
            "health_interval": inventory.timeouts.health_interval,
        },
        "secrets_dir": SECRETS_DIR,
        "known_hosts": KNOWN_HOSTS,
        "failure_timeout": FAILURE_TIMEOUT,
    }


def signstate_context(inventory: Inventory, node: str) -> dict[str, object]:
    """Variables of signstate.toml.j2 for ``node``."""
    s = inventory.signstate
    return {
        "node": node,
        "nodes": [{"name": n.name, "addresses": list(n.addresses)} for n in inventory.nodes],
        "signstate": {
            "port": s.port,
            "state_dir": s.state_dir,
            "pki_dir": s.pki_dir,
            "socket": s.socket,
            "socket_group": s.socket_group,
            "backend": s.backend,
            "store": dict(s.store or {}),
            "metrics": s.metrics,
        },
    }


def pinned_host_keys(inventory: Inventory) -> list[dict[str, object]]:
    """Variables of known_hosts.j2: every ilo_ssh device that pins a host_key."""
    return [
        {"node": node.name, "level": level, "address": d.address, "port": d.port, "host_key": d.options["host_key"]}
        for node in inventory.members
        for level, d in enumerate(node.fence, start=1)
        if d.method == "ilo_ssh" and "host_key" in d.options
    ]


# --- rendering (pure: templates in, texts out) --------------------------------------


def render_files(inventory: Inventory) -> list[RenderedFile]:
    """Every file of every node, checked for what can be checked without tools."""
    files: list[RenderedFile] = []
    members = {n.name for n in inventory.members}
    corosync_conf = templates.render_template("corosync.conf.j2", **corosync_context(inventory))
    cib = templates.render_template("cib.xml.j2", **cib_context(inventory))
    pins = pinned_host_keys(inventory)
    known_hosts = templates.render_template("known_hosts.j2", devices=pins) if pins else None
    _check_cib_text(cib)
    for node in inventory.nodes:
        signstate = templates.render_template("signstate.toml.j2", **signstate_context(inventory, node.name))
        _check_signstate_text(inventory, node, signstate)
        if node.name in members:
            files.append(RenderedFile(node.name, "corosync.conf", "/etc/corosync/corosync.conf", corosync_conf))
            files.append(RenderedFile(node.name, "cib.xml", LOAD_CIB, cib))
            if known_hosts is not None:
                files.append(RenderedFile(node.name, "known_hosts", KNOWN_HOSTS, known_hosts))
        else:  # the qdevice witness: corosync-qnetd, no corosync member, no Pacemaker
            qnetd = templates.render_template(
                "corosync-qnetd.j2",
                cluster_name=inventory.cluster_name,
                witness={"name": node.name, "addresses": list(node.addresses)},
                members=[{"name": n.name} for n in inventory.members],
                port=QNETD_PORT,
            )
            files.append(RenderedFile(node.name, "corosync-qnetd", "/etc/default/corosync-qnetd", qnetd))
        files.append(RenderedFile(node.name, "signstate.toml", SIGNSTATE_CONFIG, signstate))
    alerts = templates.render_template(
        "alerts.yml.j2",
        cluster=inventory.cluster_name,
        no_signature_seconds=NO_SIGNATURE_SECONDS,
        missed_blocks=MISSED_BLOCKS,
    )
    files.append(RenderedFile("", "alerts.yml", "", alerts))
    return files


def _check_cib_text(cib: str) -> None:
    try:
        root = ET.fromstring(cib)
    except ET.ParseError as exc:  # a template bug, never an operator's
        message = f"cib.xml.j2 rendered malformed XML: {exc}"
        raise RenderError([Problem(RENDER_MALFORMED_XML, "cib.xml.j2", message)]) from None
    ids = [e.get("id", "") for e in root.iter() if "id" in e.attrib]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        message = f"cib.xml.j2 rendered duplicate ids: {', '.join(duplicated)}"
        raise RenderError([Problem(RENDER_DUPLICATE_IDS, "cib.xml.j2", message)])
    for nvpair in root.iter("nvpair"):
        if nvpair.get("name") in SECRET_OPTIONS:
            message = f"cib.xml.j2 rendered a secret ({nvpair.get('name')}) into the CIB"
            raise RenderError([Problem(RENDER_SECRET_IN_CIB, "cib.xml.j2", message)])


def _check_signstate_text(inventory: Inventory, node: Node, text: str) -> None:
    """The file must read back, through the daemon's own parser, as what was meant."""
    from highlander.signstate.config import ConfigError, parse_config

    where = f"{node.name}/signstate.toml"
    try:
        config = parse_config(tomllib.loads(text), where)
    except (tomllib.TOMLDecodeError, ConfigError) as exc:
        message = f"{where}: the rendered file does not read back: {exc}"
        raise RenderError([Problem(RENDER_READ_BACK_FAILED, where, message)]) from None
    s = inventory.signstate
    if s.backend != "trio":
        got_store = (config.node, config.socket, config.socket_group, config.backend)
        if got_store != (node.name, Path(s.socket), s.socket_group, s.backend):
            raise RenderError([f"{where}: reads back as {got_store}, expected {s.backend} for {node.name}"])
        return
    expected = (
        node.name,
        (node.addresses[0], s.port),
        {n.name: (n.addresses[0], s.port) for n in inventory.nodes if n is not node},
        Path(s.state_dir),
        Path(s.pki_dir),
        Path(s.socket),
        s.socket_group,
    )
    got = (
        config.node,
        tuple(config.listen),
        {name: tuple(a) for name, a in config.peers.items()},
        config.state_dir,
        config.pki_dir,
        config.socket,
        config.socket_group,
    )
    if got != expected:
        message = f"{where}: reads back as {got}, expected {expected}"
        raise RenderError([Problem(RENDER_READ_BACK_DIFFERS, where, message)])


# --- writing: whole or not at all -------------------------------------------------


def write(files: Sequence[RenderedFile], out: Path, *, before_commit: Callable[[Path], None] | None = None) -> Path:
    """Write ``files`` below ``out`` atomically; ``before_commit(tmpdir)`` may veto by raising."""
    out = Path(os.path.abspath(out))
    _check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with new_directory(out) as tmp:
        for f in files:
            path = tmp / f.relative
            if not path.parent.is_dir():
                path.parent.mkdir()
                os.chmod(path.parent, 0o755)
            _write_new(path, f.text, f.mode)
        _write_new(
            tmp / MARKER, "Rendered by `highlander render`; the whole directory is replaced on the next render.\n"
        )
        for directory in {path.parent for path in tmp.rglob("*")}:
            fsync_directory(directory)  # the entries of the subdirectories made above
        os.chmod(tmp, 0o755)
        if before_commit is not None:
            before_commit(tmp)
        replace_directory(tmp, out)
    return out


def _write_new(path: Path, text: str, mode: int = 0o644) -> None:
    """A new file in the render's own directory (which appears in place whole, or not)."""
    write_file(path, text, mode=mode, replace=False)


def _check_replaceable(out: Path) -> None:
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        message = f"{out}: exists and is not a directory"
        raise RenderError([Problem(RENDER_OUT_NOT_A_DIRECTORY, str(out), message)])
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        message = f"{out}: not empty and not an earlier render (no {MARKER}): choose another --out"
        raise RenderError([Problem(RENDER_OUT_NOT_A_RENDER, str(out), message)])


# --- checking with the real tools ----------------------------------------------------


def check(inventory: Inventory, directory: Path, runner: CommandRunner) -> list[Problem]:
    """Every problem the tools find in the files below ``directory`` (empty: all good)."""
    problems: list[Problem] = []
    members = {n.name for n in inventory.members}
    for node in inventory.nodes:
        if node.name not in members:
            continue
        problems += check_cib(inventory, directory / node.name / "cib.xml", runner)
        problems += check_corosync_conf(inventory, directory / node.name / "corosync.conf", node.addresses, runner)
        known_hosts = directory / node.name / "known_hosts"
        if known_hosts.exists():
            result = runner.run(["ssh-keygen", "-l", "-f", str(known_hosts)])
            if not result.ok:
                where = f"{node.name}/known_hosts"
                problems.append(_tool_problem(RENDER_CHECK_FAILED, where, where, result))
    return problems


def check_cib(inventory: Inventory, cib: Path, runner: CommandRunner) -> list[Problem]:
    """``crm_verify --xml-file`` on ``cib`` as the running cluster will hold it.

    An offline CIB has no status section, so the scheduler would take every
    node for unclean and crm_verify would warn about fencing them all. The
    check therefore runs on a copy into which crm_simulate injected what a
    healthy cluster reports (every member online, quorum); the copy's
    configuration must be the rendered one, element for element.
    """
    where = f"{cib.parent.name}/{cib.name}"
    with tempfile.TemporaryDirectory(prefix="highlander-check-") as scratch:
        online = Path(scratch, "cib-online.xml")
        argv = ["crm_simulate", "--xml-file", str(cib), "--quorum", "true", "--save-output", str(online), "--quiet"]
        for node in inventory.members:
            argv += ["--node-up", node.name]
        result = runner.run(argv)
        if not result.ok:
            return [_tool_problem(RENDER_CHECK_FAILED, where, where, result)]
        if _configuration(cib) != _configuration(online):
            message = f"{where}: crm_simulate changed the configuration while injecting the node states"
            return [Problem(RENDER_CHECK_DRIFT, where, message)]
        result = runner.run(["crm_verify", "--xml-file", str(online), "--verbose"])
        if not result.ok:
            return [_tool_problem(RENDER_CHECK_FAILED, where, where, result)]
    return []


def _configuration(cib: Path) -> bytes:
    element = ET.parse(cib).getroot().find("configuration")
    return ET.canonicalize(ET.tostring(element), strip_text=True).encode() if element is not None else b""


def check_corosync_conf(
    inventory: Inventory, conf: Path, local_addresses: Sequence[str], runner: CommandRunner
) -> list[Problem]:
    """``corosync -t`` on ``conf`` as a host with ``local_addresses`` would run it.

    For a member, its own addresses: corosync must find it in the nodelist.
    """
    where = f"{conf.parent.name}/{conf.name}"
    with tempfile.TemporaryDirectory(prefix="highlander-check-") as scratch:
        key = Path(scratch, "authkey")
        log = Path(scratch, "corosync.log")
        copy = Path(scratch, "corosync.conf")
        result = runner.run(["corosync-keygen", "-l", "-k", str(key)])
        if not result.ok:
            return [_tool_problem(RENDER_CHECK_UNAVAILABLE, where, f"{where}: corosync-keygen", result)]
        text = templates.render_template(
            "corosync.conf.j2", **corosync_context(inventory, keyfile=str(key), logfile=str(log), to_stderr=True)
        )
        drift = check_copy_drift(conf.read_text(), text)
        if drift:
            message = f"{where}: the check copy differs beyond the keyfile and log settings: {drift}"
            return [Problem(RENDER_CHECK_DRIFT, where, message)]
        copy.write_text(text)
        problems = corosync_test(copy, local_addresses, runner)
        names = sorted({a for n in inventory.members for a in n.addresses if not _is_ip(a)})
        if problems and names:
            hint = (
                f"\n    ({', '.join(names)}: host names are resolved inside the check's network namespace, which "
                "has no network: list them in /etc/hosts or give IP addresses)"
            )
            problems[-1] = replace(problems[-1], message=problems[-1].message + hint)
        return [replace(p, path=where, message=f"{where}: {p.message}") for p in problems]


def check_copy_drift(rendered: str, check_copy: str) -> str | None:
    """The first difference between the two files outside CHECK_ONLY_SETTINGS, if any."""
    a, b = rendered.splitlines(), check_copy.splitlines()
    if len(a) != len(b):
        return f"{len(a)} lines against {len(b)}"
    for i, (x, y) in enumerate(zip(a, b), start=1):
        if x != y and not (x.strip().startswith(CHECK_ONLY_SETTINGS) and x.split(":")[0] == y.split(":")[0]):
            return f"line {i}: {x.strip()!r} against {y.strip()!r}"
    return None


def corosync_test(conf: Path, local_addresses: Sequence[str], runner: CommandRunner) -> list[Problem]:
    """``corosync -t -c conf`` in a throwaway network namespace that has ``local_addresses``.

    The addresses go on the namespace's own loopback device (present in
    every namespace, unlike the dummy driver, which many kernels and
    containers lack); corosync matches them like any interface's. The
    namespace is deleted whatever happens.
    """
    name = f"hl-check-{os.getpid()}-{secrets.token_hex(4)}"
    result = runner.run(["ip", "netns", "add", name])
    if not result.ok:
        what = "cannot create a network namespace for corosync -t"
        return [_tool_problem(RENDER_CHECK_UNAVAILABLE, "", what, result)]
    try:
        steps = [["ip", "-n", name, "link", "set", "lo", "up"]]
        for address in local_addresses:
            try:
                ips = _ips(address)
            except OSError as exc:
                message = f"cannot check: {address} does not resolve here ({exc.strerror})"
                return [Problem(RENDER_CHECK_UNAVAILABLE, "", message)]
            for ip in ips:
                if ip.is_loopback:  # lo holds 127.0.0.0/8 and ::1 once it is up
                    continue
                prefix = 32 if ip.version == 4 else 128
                steps.append(["ip", "-n", name, "address", "add", f"{ip}/{prefix}", "dev", "lo"])
        for argv in steps:
            result = runner.run(argv)
            if not result.ok:
                what = "cannot prepare the network namespace for corosync -t"
                return [_tool_problem(RENDER_CHECK_UNAVAILABLE, "", what, result)]
        result = runner.run(["ip", "netns", "exec", name, "corosync", "-t", "-c", str(conf)])
        if not result.ok:
            return [_tool_problem(RENDER_CHECK_FAILED, "", "corosync -t", result)]
        return []
    finally:
        runner.run(["ip", "netns", "delete", name])


def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def _ips(address: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(address)]
    except ValueError:
        infos = socket.getaddrinfo(address, None, type=socket.SOCK_STREAM)
        return sorted({ipaddress.ip_address(info[4][0]) for info in infos}, key=str)


def _tool_problem(code: str, path: str, what: str, result: Result) -> Problem:
    """The tool's own words, indented under what was being checked."""
    lines = [line for line in (result.stderr + "\n" + result.stdout).splitlines() if line.strip()]
    head = f"{what}: {' '.join(result.argv)} exited with {result.returncode}"
    return Problem(code, path, "\n    ".join([head, *lines]))


# --- the use case ---------------------------------------------------------------------


def render_cluster(
    inventory_path: Path, out: Path, *, check_files: bool = False, runner: CommandRunner | None = None
) -> list[RenderedFile]:
    """Render ``inventory_path`` into ``out`` (checked first with ``check_files``).

    Raises InventoryError (every problem of the inventory) or RenderError;
    either way ``out`` is as it was.
    """
    inventory = load(inventory_path)
    files = render_files(inventory)
    if not check_files:
        write(files, out)
        return files
    if os.geteuid() != 0:
        message = "--check needs root: corosync -t runs in a throwaway network namespace"
        raise RenderError([Problem(RENDER_CHECK_NEEDS_ROOT, "", message)])
    if runner is None:
        runner = CommandRunner(env=system_env())
    tools = runner

    def verify(directory: Path) -> None:
        problems = check(inventory, directory, tools)
        if problems:
            raise RenderError(problems)

    write(files, out, before_commit=verify)
    return files
