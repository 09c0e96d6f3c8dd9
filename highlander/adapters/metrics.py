"""Metrics for Prometheus, with ``prometheus_client`` (no exposition format written by hand).

The long-running daemons (the sign-state daemon, ``highlander privval``)
serve ``/metrics`` on an address of their configuration, loopback by
default in the rendered files. Short-lived programs (the fence agents,
``highlander fence``, the drills) cannot be scraped: they write a file for
node_exporter's textfile collector instead, replaced whole, mode 0644.

Every metric is declared here, once, with its help text (the README's
metric table repeats it). Labels are bounded: a node, a key, a verdict, an
operation — never a height, a digest or anything a request chooses.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

import highlander
from highlander.adapters.files import write_file

# Latency buckets in seconds: a local fsync is ~0.1 ms, a round over a trio ~1 ms,
# a promotion that waits for a timeout seconds.
LATENCY = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def registry() -> CollectorRegistry:
    """A registry of our own (not the library's global one), with highlander_build_info."""
    made = CollectorRegistry()
    Gauge("highlander_build_info", "The highlander version running (always 1).", ["version"], registry=made).labels(
        highlander.__version__
    ).set(1)
    return made


def serve(registry_: CollectorRegistry, host: str, port: int) -> None:
    """Serve ``/metrics`` from a thread of its own."""
    start_http_server(port, addr=host, registry=registry_)


def write_textfile(registry_: CollectorRegistry, path: Path) -> None:
    """node_exporter's textfile collector: the whole file replaced at once, readable by all."""
    write_file(path, generate_latest(registry_), mode=0o644)


class Scraped(Collector):
    """Gauges computed when Prometheus scrapes, from a function that lists
    (name, help, labels, samples): nothing is spent on the hot path."""

    def __init__(self, read: Callable[[], Iterable[tuple[str, str, list[str], list[tuple[list[str], float]]]]]):
        self.read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, help_text, labels, samples in self.read():
            family = GaugeMetricFamily(name, help_text, labels=labels)
            for values, value in samples:
                family.add_metric(values, value)
            yield family


class SignstateMetrics:
    """The sign-state daemon's metrics (the signer API's view of any backend)."""

    def __init__(self, registry_: CollectorRegistry, backend: str) -> None:
        self.backend = backend
        self.seconds = Histogram(
            "highlander_signstate_request_seconds",
            "Time to answer a signer's promote or advance, by operation and backend.",
            ["op", "backend"], buckets=LATENCY, registry=registry_,
        )  # fmt: skip
        self.results = Counter(
            "highlander_signstate_results_total",
            "Answers to signers by operation and verdict (OK, STALE_EPOCH, REGRESSION, CONFLICT, NO_QUORUM, "
            "REFUSED, ERROR).",
            ["op", "verdict"], registry=registry_,
        )  # fmt: skip

    def answered(self, op: str, verdict: str, started: float) -> None:
        self.seconds.labels(op, self.backend).observe(time.perf_counter() - started)
        self.results.labels(op, verdict).inc()


class PrivvalMetrics:
    """``highlander privval``'s metrics."""

    def __init__(self, registry_: CollectorRegistry) -> None:
        self.requests = Counter(
            "highlander_privval_sign_requests_total",
            "Sign requests from CometBFT nodes by type (vote, proposal) and result (signed, resent, refused, "
            "conflict, superseded).",
            ["type", "result"], registry=registry_,
        )  # fmt: skip
        self.seconds = Histogram(
            "highlander_privval_sign_seconds",
            "Time from a sign request to its signed answer, the register's advance included.",
            ["type"], buckets=LATENCY, registry=registry_,
        )  # fmt: skip
        self.last_signature = Gauge(
            "highlander_privval_last_signature_timestamp_seconds",
            "Unix time of the last signature handed out (0: none since the signer started).",
            registry=registry_,
        )
        # Heights are values here, never labels. Their difference counts the
        # blocks the nodes asked for that this signer did not sign: a missed
        # block is what the operator pays, whatever the block time.
        self.requested_height = Gauge(
            "highlander_privval_requested_height",
            "The highest height a CometBFT node asked this signer to sign (0: none since the signer started).",
            registry=registry_,
        )
        self.signed_height = Gauge(
            "highlander_privval_signed_height",
            "The height of the last signature handed out (0: none since the signer started).",
            registry=registry_,
        )

        self._heights = threading.Lock()  # every node's link reports; the gauges only rise
        self._requested = self._signed = 0

    def requested(self, height: int) -> None:
        """A node asked for a signature at ``height``."""
        with self._heights:
            if height > self._requested:
                self._requested = height
                self.requested_height.set(height)

    def signed(self, kind: str, result: str, started: float, height: int | None = None) -> None:
        self.requests.labels(kind, result).inc()
        if result in ("signed", "resent"):
            self.seconds.labels(kind).observe(time.perf_counter() - started)
            self.last_signature.set(time.time())
            with self._heights:
                if height is not None and height > self._signed:
                    self._signed = height
                    self.signed_height.set(height)
