"""The backend a node's configuration names, built without importing the others' clients."""

from __future__ import annotations

from highlander.signstate.backends import Backend
from highlander.signstate.backends.settings import EtcdSettings, PostgresSettings
from highlander.signstate.config import NodeConfig


def configured(config: NodeConfig) -> Backend:
    """The built-in trio, etcd or PostgreSQL, as ``config.backend`` says."""
    if isinstance(config.store, EtcdSettings):
        from highlander.signstate.backends.etcd import EtcdBackend

        return EtcdBackend(config.node, config.store, config.timeout)
    if isinstance(config.store, PostgresSettings):
        from highlander.signstate.backends.postgresql import PostgresBackend

        return PostgresBackend(config.node, config.store, config.timeout)
    from highlander.signstate.backends.trio import TrioBackend

    return TrioBackend(config)
