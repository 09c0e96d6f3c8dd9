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

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
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


# --- textfiles: what short-lived programs leave for node_exporter -----------------------

# A family of a textfile: its type ("counter" or "gauge"), help text and label names.
Family = tuple[str, str, tuple[str, ...]]
# The samples of each family: label values (in the family's order) -> value.
Samples = dict[str, dict[tuple[str, ...], float]]


class _Textfile(Collector):
    """The families of a textfile and their samples, as prometheus_client metrics."""

    def __init__(self, declared: Mapping[str, Family], samples: Samples) -> None:
        self.declared = declared
        self.samples = samples

    def collect(self) -> Iterator[Metric]:
        for name, (kind, help_text, labels) in self.declared.items():
            family = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(name, help_text, labels=labels)
            for values, value in sorted(self.samples.get(name, {}).items()):
                family.add_metric(list(values), value)
            yield family


def _read_textfile(path: Path, declared: Mapping[str, Family]) -> Samples:
    """The samples of ``declared`` families in the textfile at ``path`` (none if it is missing).

    A sample of another name or other labels is dropped, and a file that
    does not parse is started afresh: a counter that restarts from zero is
    what Prometheus's rate() and increase() expect of a restarted program.
    """
    samples: Samples = {name: {} for name in declared}
    try:
        text = path.read_text(encoding="utf-8")
        families = list(text_string_to_metric_families(text))
    except (FileNotFoundError, ValueError):  # missing, not UTF-8, or not the exposition format
        return samples
    for family in families:
        if family.name not in declared:
            continue
        kind, _, labels = declared[family.name]
        sample_name = family.name + ("_total" if kind == "counter" else "")
        for sample in family.samples:
            if sample.name == sample_name and set(sample.labels) == set(labels):
                samples[family.name][tuple(sample.labels[label] for label in labels)] = sample.value
    return samples


@contextlib.contextmanager
def _directory_locked(directory: Path) -> Iterator[None]:
    """An exclusive flock on ``directory`` itself: two agents that finish at once
    do not lose one another's update, and no lock file is left behind."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def update_textfile(path: Path, declared: Mapping[str, Family], change: Callable[[Samples], None]) -> None:
    """Read the textfile at ``path``, let ``change`` alter its samples, and replace it whole.

    Several short-lived programs share one file (the three fence agents on a
    node), so it is read and replaced under a lock on its directory, which
    must exist. The file is written by :func:`write_textfile`: atomically,
    mode 0644 (node_exporter may run as another user).
    """
    with _directory_locked(path.parent):
        samples = _read_textfile(path, declared)
        change(samples)
        made = CollectorRegistry()
        made.register(_Textfile(declared, samples))
        write_textfile(made, path)


FENCE_TEXTFILE = "highlander_fence.prom"
_FENCE_LABELS = ("agent", "action", "result")
FENCE_FAMILIES: dict[str, Family] = {
    "highlander_fence_runs": (
        "counter",
        "Fence agent runs by agent, action and result (success or failure).",
        _FENCE_LABELS,
    ),
    "highlander_fence_last_duration_seconds": (
        "gauge",
        "How long the last run of that agent, action and result took, its delay included.",
        _FENCE_LABELS,
    ),
    "highlander_fence_last_timestamp_seconds": (
        "gauge",
        "Unix time when the last run of that agent, action and result ended.",
        _FENCE_LABELS,
    ),
}


def record_fence(directory: Path, agent: str, action: str, result: str, seconds: float) -> Path:
    """Count one fence agent run in ``directory``'s :data:`FENCE_TEXTFILE`; its path.

    ``result`` is "success" or "failure". Nothing else of the run (no
    address, node or user) is written: the file is readable by all.
    """
    key = (agent, action, result)
    ended = time.time()

    def change(samples: Samples) -> None:
        samples["highlander_fence_runs"][key] = samples["highlander_fence_runs"].get(key, 0) + 1
        samples["highlander_fence_last_duration_seconds"][key] = seconds
        samples["highlander_fence_last_timestamp_seconds"][key] = ended

    path = Path(directory) / FENCE_TEXTFILE
    update_textfile(path, FENCE_FAMILIES, change)
    return path


DRILL_TEXTFILE = "highlander_drill.prom"
DRILL_FAMILIES: dict[str, Family] = {
    "highlander_drill_ok": ("gauge", "1 when the last drill of that name met every expectation, else 0.", ("drill",)),
    "highlander_drill_last_timestamp_seconds": (
        "gauge",
        "Unix time when the last drill of that name ended.",
        ("drill",),
    ),
    "highlander_drill_iterations": ("gauge", "Iterations the last drill of that name ran.", ("drill",)),
    "highlander_drill_double_signs": (
        "gauge",
        "Double signs the last drill of that name found (must be 0).",
        ("drill",),
    ),
    "highlander_drill_phase_seconds": (
        "gauge",
        "Failover phases of the last drill of that name (detection, fencing, promotion, signing_gap, "
        "total) per scenario: min, median and max over its iterations.",
        ("drill", "scenario", "phase", "stat"),
    ),
}


def record_drill(directory: Path, drill: str, summary: Mapping[str, Any]) -> Path:
    """Put a drill report's outcome and failover durations in ``directory``'s :data:`DRILL_TEXTFILE`.

    ``summary`` is the drill report's summary (one scenario's, or a soak's
    with a summary per scenario). The samples of earlier drills of another
    name are kept; those of an earlier drill of this name are replaced.
    """
    scenarios = summary.get("scenarios") or {drill: summary}
    ended = time.time()

    def change(samples: Samples) -> None:
        for values in samples.values():
            for labels in [labels for labels in values if labels[0] == drill]:
                del values[labels]
        samples["highlander_drill_ok"][(drill,)] = 1.0 if summary["ok"] else 0.0
        samples["highlander_drill_last_timestamp_seconds"][(drill,)] = ended
        samples["highlander_drill_iterations"][(drill,)] = summary["iterations"]
        samples["highlander_drill_double_signs"][(drill,)] = summary["double_signs"]
        for scenario, own in scenarios.items():
            for phase, stats in (own.get("phases") or {}).items():
                for stat in ("min", "median", "max"):
                    if stats is not None:
                        samples["highlander_drill_phase_seconds"][(drill, scenario, phase, stat)] = stats[stat]

    path = Path(directory) / DRILL_TEXTFILE
    update_textfile(path, DRILL_FAMILIES, change)
    return path


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
            ["op", "backend"],
            buckets=LATENCY,
            registry=registry_,
        )
        self.results = Counter(
            "highlander_signstate_results_total",
            "Answers to signers by operation and verdict (OK, STALE_EPOCH, REGRESSION, CONFLICT, NO_QUORUM, "
            "REFUSED, ERROR).",
            ["op", "verdict"],
            registry=registry_,
        )

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
            ["type", "result"],
            registry=registry_,
        )
        self.seconds = Histogram(
            "highlander_privval_sign_seconds",
            "Time from a sign request to its signed answer, the register's advance included.",
            ["type"],
            buckets=LATENCY,
            registry=registry_,
        )
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
