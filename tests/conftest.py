"""Fixtures shared by every tier: unit/, process/ and cluster/."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import harness
import pytest

from highlander.lab.replicas import LoopbackReplicas

# The OCF 1.1 RelaxNG schema lives next to the repository, in ../shared.
OCF_SCHEMA = Path(__file__).parents[1].parent / "shared/schemas/ocf-ra-api-1.1.rng"


@pytest.fixture
def ocf_schema() -> Path:
    if not OCF_SCHEMA.is_file():
        # CI always has shared/ beside the clone: there a missing schema is a failure.
        message = f"OCF RelaxNG schema not found at {OCF_SCHEMA}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return OCF_SCHEMA


@pytest.fixture
def reserved_port() -> Iterator[int]:
    """A loopback TCP port nobody else can take during the test (:func:`harness.reserved_port`)."""
    with harness.reserved_port() as port:
        yield port


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[LoopbackReplicas]:
    """Three real sign-state daemons on loopback, stopped by PID whatever happens."""
    daemons = LoopbackReplicas(tmp_path / "trio")
    try:
        daemons.start()
        yield daemons
    finally:
        daemons.stop()
