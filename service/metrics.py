"""Prometheus metrics of one server, in a registry of its own (several servers can share a process, e.g. tests).

Names carry the `calsurr_` prefix and their unit; counters end in `_total`. Besides traffic and latency the
server reports the uncertainty it serves: sigma_tot/|mean| per model, and how many predictions exceed the
card's out-of-domain threshold, so a dashboard shows inputs drifting out of the training domain.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
from collections.abc import Iterable, Iterator, Mapping
from wsgiref.simple_server import WSGIServer

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server
from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from calsurr.service import __version__
from calsurr.service.repository import ModelRepository
from calsurr.service.statistics import RunSeconds, StatisticsBook
from calsurr.service.tls import TlsFiles

log = logging.getLogger(__name__)

PREFIX = "calsurr"
MODEL_LABELS = ("model", "version")
# Latency from 50 us (a lone small request on a warm CPU session) to 10 s (a large batch on a slow host).
LATENCY_BUCKETS_SECONDS = (
    *(5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
BATCH_ROWS_BUCKETS = tuple(float(2**k) for k in range(17))  # 1 .. 65536 rows
BATCH_REQUESTS_BUCKETS = tuple(float(2**k) for k in range(11))  # 1 .. 1024 requests merged into one run
# sigma_tot/|mean| on a 1-2-5 ladder from 0.01 % to 10x: a calibrated surrogate sits around 0.1-10 %,
# and a drift out of the domain shows as mass moving to the right.
RELATIVE_UNCERTAINTY_BUCKETS = tuple(m * 10.0**e for e in range(-4, 1) for m in (1.0, 2.0, 5.0)) + (10.0,)
# Runs of at most this many rows take the scalar path of the uncertainty metric: a handful of numpy calls on
# tiny arrays cost more than the arithmetic (tens of microseconds per batch-1 request on a cold cache).
SMALL_RUN_ROWS = 16


class ArrayHistogram(Collector):
    """A labelled histogram that takes a whole numpy array per call.

    prometheus_client's Histogram observes one value under a lock per call, too slow for every row of a
    65k-row batch; here a batch costs one `searchsorted` and one `bincount`. Non-finite values (a mean of
    exactly 0) land in the +Inf bucket and are left out of `_sum`, which would otherwise turn to inf or NaN.
    """

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...], buckets: tuple[float, ...]):
        self.name, self.documentation, self.labelnames = name, documentation, labelnames
        self._bounds = np.asarray(sorted(buckets), dtype=np.float64)
        self._bound_list = self._bounds.tolist()
        self._counts: dict[tuple[str, ...], np.ndarray] = {}
        self._sums: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def observe(self, labels: tuple[str, ...], values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64).ravel()
        # side="left": a value equal to a bound belongs to that bucket (Prometheus buckets are `le`).
        counts = np.bincount(np.searchsorted(self._bounds, values, side="left"), minlength=len(self._bounds) + 1)
        finite = values[np.isfinite(values)]
        self._add(labels, counts, float(finite.sum()))

    def observe_few(self, labels: tuple[str, ...], values: list[float]) -> None:
        """`observe` for a few Python floats, without numpy's per-call cost; the same buckets and sum."""
        counts = np.zeros(len(self._bounds) + 1, dtype=np.int64)
        total = 0.0
        for value in values:
            if value != value:  # NaN: +Inf bucket, as searchsorted puts it, and not summed
                counts[-1] += 1
                continue
            counts[bisect.bisect_left(self._bound_list, value)] += 1
            if math.isfinite(value):
                total += value
        self._add(labels, counts, total)

    def _add(self, labels: tuple[str, ...], counts: np.ndarray, total: float) -> None:
        with self._lock:
            if labels in self._counts:
                self._counts[labels] += counts
                self._sums[labels] += total
            else:
                self._counts[labels] = counts
                self._sums[labels] = total

    def describe(self) -> Iterable[Metric]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            snapshot = [(labels, counts.copy(), self._sums[labels]) for labels, counts in self._counts.items()]
        for labels, counts, total in snapshot:
            cumulative = np.cumsum(counts)
            buckets = [(_bound(b), float(c)) for b, c in zip(self._bounds, cumulative[:-1])]
            family.add_metric(list(labels), [*buckets, ("+Inf", float(cumulative[-1]))], total)
        return [family]


def _bound(value: float) -> str:
    return repr(float(value))


class RepositoryCollector(Collector):
    """Models loaded and the execution provider of each, read from the repository when scraped, so they stay
    true after versions are loaded or unloaded without anyone having to update a gauge."""

    def __init__(self, repository: ModelRepository):
        self.repository = repository

    def describe(self) -> Iterable[Metric]:
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        families = list(self._families())
        loaded, providers = families
        for name in self.repository.names():
            ready = dict(self.repository.entry(name).ready)  # a copy: the event loop may swap versions
            loaded.add_metric([name], len(ready))
            for version, model in sorted(ready.items()):
                providers.add_metric([name, str(version)], {"provider": model.provider})
        return families

    @staticmethod
    def _families() -> Iterator[Metric]:
        yield GaugeMetricFamily(f"{PREFIX}_models_loaded", "ready versions of each model", labels=["model"])
        yield InfoMetricFamily(
            f"{PREFIX}_execution_provider",
            "onnxruntime execution provider a model version runs on",
            labels=MODEL_LABELS,
        )


class ModelMetrics:
    """The metrics of one model version, labels bound once (a label lookup per request costs a lock)."""

    def __init__(
        self,
        server: ServerMetrics,
        labels: tuple[str, str],
        out_of_domain_relative_sigma: float | None,
        queue_capacity: int | None = None,
    ):
        self.server, self.labels = server, labels
        if queue_capacity is not None:  # beside the depth, so that a dashboard or alert needs no configured number
            server.queue_capacity.labels(*labels).set(queue_capacity)
        self.out_of_domain_relative_sigma = out_of_domain_relative_sigma
        self._queue_seconds = server.queue_seconds.labels(*labels)
        self._compute_seconds = server.compute_seconds.labels(*labels)
        self._batch_rows = server.batch_rows.labels(*labels)
        self._batch_requests = server.batch_requests.labels(*labels)
        self._queue_depth = server.queue_depth.labels(*labels)
        # No threshold, no series: a count of 0 would claim that every prediction was inside the domain.
        self._out_of_domain = server.out_of_domain.labels(*labels) if out_of_domain_relative_sigma else None
        self.statistics = server.statistics.recorder(*labels)  # exact counts for the statistics extension

    def set_queue_depth(self, requests: int) -> None:
        self._queue_depth.set(requests)

    def observe_queue(self, seconds: float) -> None:
        self._queue_seconds.observe(seconds)
        self.statistics.record_queue(seconds)

    def observe_run(self, rows: int, requests: int, seconds: RunSeconds, outputs: Mapping[str, np.ndarray]) -> None:
        """One onnxruntime run: its size, its compute time, and the uncertainty of every row it served."""
        self._batch_rows.observe(rows)
        self._batch_requests.observe(requests)
        self._compute_seconds.observe(seconds.infer)
        self.statistics.record_run(rows, requests, seconds)
        if "mean" not in outputs or "sigma_tot" not in outputs:
            return
        if rows <= SMALL_RUN_ROWS:
            relative = [_ratio(t, m) for t, m in zip(outputs["sigma_tot"].tolist(), outputs["mean"].tolist())]
            self.server.relative_uncertainty.observe_few(self.labels, relative)
            if self._out_of_domain is not None:
                threshold = self.out_of_domain_relative_sigma
                self._out_of_domain.inc(sum(1 for r in relative if r > threshold))
            return
        with np.errstate(divide="ignore", invalid="ignore"):
            relative = np.abs(outputs["sigma_tot"]) / np.abs(outputs["mean"])
        self.server.relative_uncertainty.observe(self.labels, relative)
        if self._out_of_domain is not None:
            self._out_of_domain.inc(int(np.count_nonzero(relative > self.out_of_domain_relative_sigma)))


def _ratio(sigma: float, mean: float) -> float:
    """|sigma| / |mean| as numpy divides: inf for a mean of 0 (NaN when sigma is 0 too), NaN from NaN."""
    if mean == 0:
        return math.nan if sigma == 0 or sigma != sigma else math.inf
    return abs(sigma) / abs(mean)


class ServerMetrics:
    """Every metric of one server. Without a registry a fresh one is made (never the global default)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            f"{PREFIX}_requests",
            "inference requests by model, version and gRPC status code",
            [*MODEL_LABELS, "code"],
            registry=r,
        )
        self.auth_failures = Counter(
            f"{PREFIX}_auth_failures",
            "calls refused by token auth, by reason: missing_token and unknown_token (UNAUTHENTICATED), "
            "wrong_role (PERMISSION_DENIED)",
            ["reason"],
            registry=r,
        )
        self.undecodable = Counter(
            f"{PREFIX}_undecodable_messages",
            "request messages that did not parse as their RPC's message type, by RPC (answered INVALID_ARGUMENT)",
            ["rpc"],
            registry=r,
        )
        self.request_seconds = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "inference request latency in the server, queue and compute included",
            MODEL_LABELS,
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=r,
        )
        self.queue_seconds = Histogram(
            f"{PREFIX}_queue_duration_seconds",
            "time a request waited in its model's batcher queue",
            MODEL_LABELS,
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=r,
        )
        self.compute_seconds = Histogram(
            f"{PREFIX}_compute_duration_seconds",
            "duration of one onnxruntime run (one batch)",
            MODEL_LABELS,
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=r,
        )
        self.batch_rows = Histogram(
            f"{PREFIX}_batch_size_rows",
            "rows in one onnxruntime run",
            MODEL_LABELS,
            buckets=BATCH_ROWS_BUCKETS,
            registry=r,
        )
        self.batch_requests = Histogram(
            f"{PREFIX}_batch_requests",
            "requests merged into one onnxruntime run",
            MODEL_LABELS,
            buckets=BATCH_REQUESTS_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            f"{PREFIX}_queue_depth_requests", "requests waiting in a model's batcher queue", MODEL_LABELS, registry=r
        )
        self.queue_capacity = Gauge(
            f"{PREFIX}_queue_capacity_requests",
            "requests a model's batcher queue holds (max_queue_size); one more gets RESOURCE_EXHAUSTED",
            MODEL_LABELS,
            registry=r,
        )
        self.inflight = Gauge(f"{PREFIX}_inflight_requests", "inference requests being handled", registry=r)
        self._load_failures_seen: dict[str, int] = {}  # repository totals already counted
        self.load_failures = Counter(
            f"{PREFIX}_model_load_failures", "model versions that failed to load", ["model"], registry=r
        )
        self.out_of_domain = Counter(
            f"{PREFIX}_out_of_domain_predictions",
            "predictions whose sigma_tot/|mean| exceeds the card's out_of_domain_relative_sigma",
            MODEL_LABELS,
            registry=r,
        )
        self.relative_uncertainty = ArrayHistogram(
            f"{PREFIX}_relative_uncertainty_ratio",
            "sigma_tot/|mean| of every prediction served",
            MODEL_LABELS,
            RELATIVE_UNCERTAINTY_BUCKETS,
        )
        r.register(self.relative_uncertainty)
        self.statistics = StatisticsBook()  # not Prometheus: the protocol's statistics extension reads these
        Info(f"{PREFIX}_build", "calsurr version serving", registry=r).info({"version": __version__})

    def watch_repository(self, repository: ModelRepository) -> None:
        """Report models loaded and execution providers from this repository (once per server)."""
        self.registry.register(RepositoryCollector(repository))

    def record_load_failures(self, repository: ModelRepository) -> None:
        """Count the load attempts that failed since the last call (call after each scan). The repository keeps
        running totals, so a broken version that a poll leaves alone is not counted again."""
        for name, total in repository.load_failure_totals().items():
            new = total - self._load_failures_seen.get(name, 0)
            if new > 0:
                self.load_failures.labels(name).inc(new)
                self._load_failures_seen[name] = total

    def for_model(
        self, name: str, version: str, out_of_domain_relative_sigma: float | None, queue_capacity: int | None = None
    ) -> ModelMetrics:
        return ModelMetrics(self, (name, version), out_of_domain_relative_sigma, queue_capacity)


class MetricsEndpoint:
    """`/metrics` over HTTP on its own port, served by prometheus_client from a daemon thread."""

    def __init__(self, metrics: ServerMetrics, host: str, port: int, tls: TlsFiles | None = None):
        """With `tls`, HTTPS with the gRPC port's certificate; its client CA, if any, is required of scrapers."""
        https = {}
        if tls is not None:
            https = {"certfile": str(tls.cert), "keyfile": str(tls.key)}
            if tls.client_ca is not None:
                https |= {"client_cafile": str(tls.client_ca), "client_auth_required": True}
        try:
            self._httpd: WSGIServer
            self._httpd, self._thread = start_http_server(port, addr=host, registry=metrics.registry, **https)
        except OSError as exc:
            raise OSError(
                f"metrics port {host}:{port} unavailable ({exc}); choose another metrics_port, 0 for a free one, "
                "or turn metrics off"
            ) from exc
        self.host = host
        self.port: int = self._httpd.server_address[1]
        log.info("metrics on %s://%s:%d/metrics", "https" if tls else "http", host, self.port)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
