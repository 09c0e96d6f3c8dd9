"""``highlander privval``: run the remote signer (promote and demote it
through its control socket, :mod:`highlander.privval.control`)."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

from highlander.adapters import metrics
from highlander.adapters.metrics import PrivvalMetrics
from highlander.privval.config import PrivvalConfig, load_config
from highlander.privval.control import ControlServer
from highlander.privval.key import load_key
from highlander.privval.service import Service
from highlander.privval.signer import Signer
from highlander.privval.state import StateFile
from highlander.signstate.client import Refused, SignerClient


class PrivvalError(RuntimeError):
    """The signer cannot start; the message says why and what to do."""


def build_signer(config: PrivvalConfig, metrics: PrivvalMetrics | None = None) -> Signer:
    key = load_key(config.key_file)
    return Signer(
        chain_id=config.chain_id,
        key=key,
        key_id=config.key(key.address),
        state=StateFile(config.state_file),
        connect_register=lambda: SignerClient(config.register),
        max_height_gap=config.max_height_gap,
        metrics=metrics,
    )


def _scraped(signer: Signer, service: Service, nodes: int):  # type: ignore[no-untyped-def]
    """The signer's state as Prometheus reads it, at each scrape."""
    yield (
        "highlander_privval_connected_nodes",
        "CometBFT nodes connected to this signer now.",
        [],
        [([], float(len(service.connected())))],
    )
    yield ("highlander_privval_configured_nodes", "CometBFT nodes this signer dials.", [], [([], float(nodes))])
    yield (
        "highlander_privval_promoted",
        "1 when this signer is promoted and not superseded: it signs.",
        [],
        [([], float(signer.may_sign()))],
    )


def promote(signer: Signer) -> None:
    """Promote in the register, or say why this signer may not sign."""
    try:
        signer.promote()
    except (Refused, ConnectionError) as exc:
        raise PrivvalError(f"cannot promote {signer.key_id} in the sign-state register: {exc}") from None


def serve(config_path: Path, promoted: bool) -> None:
    """Dial every configured node and answer it until SIGTERM or SIGINT."""
    config = load_config(config_path)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format=f"%(asctime)s %(levelname)s chain={config.chain_id} %(message)s"
    )
    registry = metrics.registry() if config.metrics else None
    signer = build_signer(config, metrics.PrivvalMetrics(registry) if registry else None)
    logging.getLogger("highlander.privval").info(
        "event=starting key=%s address=%s last=%s nodes=%s",
        signer.key_id,
        signer.key.address,
        signer.last.hrs,
        ",".join(map(str, config.nodes)),
    )
    if promoted:
        promote(signer)
    service = Service(signer, config.nodes, config.timeout)
    if registry is not None and config.metrics is not None:
        registry.register(metrics.Scraped(lambda: _scraped(signer, service, len(config.nodes))))
        metrics.serve(registry, config.metrics.host, config.metrics.port)
    control = ControlServer(config.control, signer, service.connected) if config.control else None
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: service.stop())
    if control is not None:
        control.start()
    service.start()
    try:
        service.wait()
    finally:
        if control is not None:
            control.stop()
        signer.close()
