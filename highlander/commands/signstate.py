"""Sign-state use cases: run a node, promote a signer, and move marks
between the register and a signer's own state file.

A state file is only ever raised, never lowered: lowering the last signed
height of a CometBFT or tmkms signer is how it comes to sign twice.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from highlander.adapters.files import write_file
from highlander.signstate import formats, store
from highlander.signstate.config import NodeConfig, load_config
from highlander.signstate.register import HRS, ZERO, KeyId, Record, merge

if TYPE_CHECKING:
    from highlander.signstate.client import Session

FORMATS = ("cometbft", "tmkms")


class StateFileError(RuntimeError):
    """A state file cannot be used; the message names it and says why."""


class RegisterError(RuntimeError):
    """The register did not allow what was asked; the message says why."""


PROMOTE_RETRY = 1.0  # seconds between promotions while there is no majority


def promote(socket_path: Path, key: KeyId, patience: float = 0.0) -> Session:
    """Make this node ``key``'s signer: the epoch and the mark to continue above.

    Without a majority (a peer may be rebooting) it asks again every second
    for ``patience`` seconds; any other refusal is final. Even a promotion
    that fails supersedes the running signer on the replicas that promised.
    """
    import time

    from highlander.signstate.client import Refused, SignerClient
    from highlander.signstate.register import NO_QUORUM

    give_up = time.monotonic() + patience
    while True:
        try:
            with SignerClient(socket_path, timeout=10) as client:
                return client.promote(key)
        except Refused as exc:
            if exc.status != NO_QUORUM:
                raise RegisterError(f"the register refused the promotion of {key}: {exc}") from None
            reason = str(exc)
        except (ConnectionError, OSError) as exc:
            reason = str(exc)
        if time.monotonic() + PROMOTE_RETRY > give_up:
            raise RegisterError(f"no majority promised a new epoch for {key} ({reason})")
        time.sleep(PROMOTE_RETRY)


def quorum_mark(socket_path: Path, key: KeyId) -> HRS:
    """The highest mark a majority of the register reports for ``key``."""
    from highlander.signstate.client import Refused, SignerClient
    from highlander.signstate.register import majority

    try:
        with SignerClient(socket_path) as client:
            found = client.status(key)
    except (Refused, ConnectionError, OSError) as exc:
        raise RegisterError(str(exc)) from None
    records = [r for r in found.values() if isinstance(r, Record)]
    if len(records) < majority(len(found)):
        raise RegisterError(f"only {len(records)} of {len(found)} replicas answered; a majority is needed")
    return max(r.hwm for r in records)


def serve(config_path: Path) -> None:
    """Run one node's replica and coordinator until SIGTERM or SIGINT."""
    from highlander.signstate.backends.configured import configured
    from highlander.signstate.server import SignStateNode

    config = load_config(config_path)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format=f"%(asctime)s %(levelname)s node={config.node} %(message)s"
    )
    backend = configured(config)
    metrics = None
    if config.metrics is not None:
        from highlander.adapters import metrics as exporter

        registry = exporter.registry()
        metrics = exporter.SignstateMetrics(registry, config.backend)
    node = SignStateNode(config, backend, metrics)
    if config.metrics is not None:
        registry.register(exporter.Scraped(node.scraped))
        exporter.serve(registry, config.metrics.host, config.metrics.port)
    node.run()


def init(config_path: Path, backend: str | None = None) -> str:
    """Prepare the configured backend for a new cluster; says what was done.

    ``backend``, when given, must be the one the configuration names (init
    creates a replica or a schema, and must not guess which). The trio:
    this node's empty replica, refusing a directory that holds anything (a
    replica that lost its state must be rejoined from the others, never
    initialised again: that would read as "nothing signed yet").
    PostgreSQL: the schema, created or migrated (once for all nodes; again
    is harmless). etcd: nothing to create; it checks etcd answers.
    """
    config = load_config(config_path)
    if backend is not None and backend != config.backend:
        raise RegisterError(
            f"{config_path} names backend {config.backend!r}, not {backend!r}: init prepares the "
            "configured backend only"
        )
    if config.backend != "trio":
        return _external_init(config)
    directory = config.state_dir
    assert directory is not None
    if directory.exists() and any(directory.iterdir()):
        raise store.StoreError(
            f"{directory} is not empty: this node already has sign-state (if it is damaged or lost, "
            "run 'highlander signstate rejoin' instead; never initialise a replica of a running cluster again)"
        )
    store.create(directory, config.node).close()
    return f"initialised an empty replica in {directory}"


def _external_init(config: NodeConfig) -> str:
    import asyncio

    from highlander.signstate.backends import BackendError
    from highlander.signstate.backends.configured import configured
    from highlander.signstate.backends.postgresql import PostgresBackend, migrate

    backend = configured(config)

    async def run() -> str:
        if isinstance(backend, PostgresBackend):
            return await migrate(backend)
        try:
            await backend.start()
            status = await backend.status(KeyId("init", "probe"))
        finally:
            await backend.close()
        problem = next((found for found in status.values() if isinstance(found, str)), None)
        if problem:
            raise BackendError(f"{config.backend} {problem}")
        return f"{config.backend} answers; it needs nothing created"

    return asyncio.run(run())


def read_state_file(path: Path, kind: str) -> formats.SignState:
    try:
        with open(path, "rb") as handle:
            data = handle.read(formats.MAX_SIZE + 1)
    except OSError as exc:
        raise StateFileError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return formats.parse_state(data, kind, str(path))
    except formats.StateFileError as exc:
        raise StateFileError(str(exc)) from None


def render_state(kind: str, hrs: HRS) -> str:
    """A state file at ``hrs`` with no sign bytes: the signer refuses that
    exact mark (it cannot prove it is the same vote) and signs above it."""
    if kind == "cometbft":
        return formats.dump_cometbft(formats.SignState(hrs))
    return formats.dump_tmkms(formats.SignState(hrs, block_id=formats.nil_block_id()))


def raised_mark(hwm: HRS, height_margin: int) -> HRS:
    """The mark a signer's state file is raised to after a promotion, from
    the register's high-water mark and a height margin (FilePV mode).

    With a margin: precommit of round 0 at ``height_margin`` heights above
    the mark, so the new signer signs nothing below that height, nor its
    round 0, where the previous signer may have signed in its unchecked
    window. Without one, or before anything was signed: the mark itself.
    """
    if not height_margin or not hwm.height:
        return hwm
    return HRS(hwm.height + height_margin, 0, 3)


def raise_state_file(path: Path, kind: str, hrs: HRS) -> HRS:
    """Make the state file at ``path`` say at least ``hrs``; never lower it.

    Returns the mark the file holds afterwards. A missing file is created.
    """
    current = read_state_file(path, kind).hrs if path.exists() else ZERO
    if hrs <= current:
        return current
    try:
        write_file(path, render_state(kind, hrs), mode=0o600)
    except OSError as exc:
        raise StateFileError(f"{path}: cannot write: {exc.strerror}") from None
    return hrs


def import_state_file(config_path: Path, key: KeyId, path: Path, kind: str) -> Record:
    """Raise the register's record for ``key`` to the mark in a state file.

    For a cluster that starts from a validator that signed before. The trio:
    run it on each node with its daemon stopped (the store refuses a
    directory in use). etcd or PostgreSQL: once, from any node.
    """
    state = read_state_file(path, kind)
    if state.hrs == ZERO:
        raise StateFileError(f"{path}: nothing was signed yet; there is nothing to import")
    config = load_config(config_path)
    if config.backend != "trio":
        return _external_import(config, key, state.hrs, formats.digest_of(state))
    assert config.state_dir is not None
    replica = store.Store(config.state_dir, config.node)
    replica.open()
    try:
        current = replica.get(key)
        imported = Record(current.promised, state.hrs, formats.digest_of(state))
        if current.hwm == imported.hwm and current.digest and current.digest != imported.digest:
            raise StateFileError(
                f"{path}: the mark {state.hrs} has another digest than the replica's record of {key}: two "
                "different signatures at one height/round/step; investigate before importing"
            )
        merged = merge((current, imported))
        if merged != current:
            replica.put(key, merged)
            replica.flush()
        return merged
    finally:
        replica.close()


def _external_import(config: NodeConfig, key: KeyId, hwm: HRS, digest: str) -> Record:
    """Raise the record in the external store (once, from any node; the daemons may run)."""
    import asyncio

    from highlander.signstate.backends.configured import configured
    from highlander.signstate.backends.external import ExternalBackend

    backend = configured(config)
    assert isinstance(backend, ExternalBackend)

    async def run() -> Record:
        try:
            await backend.start()
            return await backend.raise_mark(key, hwm, digest)
        finally:
            await backend.close()

    return asyncio.run(run())
