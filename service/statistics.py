"""Cumulative inference statistics per model version, as the protocol's statistics extension reports them.

The Prometheus histograms of `service/metrics.py` bucket what they observe; the statistics extension wants
exact counts and total nanoseconds per request and per batch size, so these counters are kept beside them,
fed by the same calls (`ModelMetrics.observe_queue`, `observe_run`, and the data plane's accounting).
Per request, as the extension defines it: `success`/`fail` count requests and their time in the server,
`queue` their wait in the batcher, and the run that served them in Triton's three phases: `compute_input`
(merging the requests' inputs into one batch), `compute_infer` (onnxruntime), `compute_output` (splitting the
outputs back); a run merging r requests counts r times in each, so the three counts are always equal (Triton's
clients, perf_analyzer among them, check that). `inference_count` counts rows served, `execution_count`
onnxruntime runs, `batches` runs by rows.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

NANOSECONDS = 1_000_000_000


@dataclass(frozen=True)
class Duration:
    """How often something happened and how long it took in all."""

    count: int = 0
    ns: int = 0

    def plus(self, ns: int, count: int = 1) -> Duration:
        return Duration(self.count + count, self.ns + ns)


@dataclass(frozen=True)
class RunSeconds:
    """One run's phases, in seconds."""

    input: float = 0.0  # merging the requests' inputs into one batch
    infer: float = 0.0  # onnxruntime
    output: float = 0.0  # splitting the outputs back per request


@dataclass(frozen=True)
class ComputeDurations:
    """Runs of one batch size and their time in each phase (Triton's InferBatchStatistics)."""

    input: Duration = Duration()
    infer: Duration = Duration()
    output: Duration = Duration()

    def plus(self, seconds: RunSeconds, count: int = 1) -> ComputeDurations:
        return ComputeDurations(
            self.input.plus(to_ns(seconds.input) * count, count),
            self.infer.plus(to_ns(seconds.infer) * count, count),
            self.output.plus(to_ns(seconds.output) * count, count),
        )


@dataclass(frozen=True)
class VersionStatistics:
    """A snapshot of one model version's counters since the server started."""

    name: str
    version: str
    last_inference_ms: int = 0  # milliseconds since the epoch; 0: never
    inference_count: int = 0
    execution_count: int = 0
    success: Duration = Duration()
    fail: Duration = Duration()
    queue: Duration = Duration()
    compute: ComputeDurations = ComputeDurations()  # per request
    batches: dict[int, ComputeDurations] = field(default_factory=dict)  # rows in a run -> its runs, per run


def to_ns(seconds: float) -> int:
    return max(0, round(seconds * NANOSECONDS))


class StatisticsRecorder:
    """The counters of one model version. Thread safe: runs are recorded from the batcher's runner threads."""

    def __init__(self, name: str, version: str):
        self.name, self.version = name, version
        self._lock = threading.Lock()
        self._last_inference_ms = self._inference_count = self._execution_count = 0
        self._success = self._fail = self._queue = Duration()
        self._compute = ComputeDurations()
        self._batches: dict[int, ComputeDurations] = {}

    def record_request(self, ok: bool, rows: int, seconds: float) -> None:
        """One request answered (ok) or failed after its model version was known."""
        ns, now_ms = to_ns(seconds), int(time.time() * 1000)
        with self._lock:
            if ok:
                self._success = self._success.plus(ns)
                self._inference_count += rows
            else:
                self._fail = self._fail.plus(ns)
            self._last_inference_ms = now_ms

    def record_queue(self, seconds: float) -> None:
        with self._lock:
            self._queue = self._queue.plus(to_ns(seconds))

    def record_run(self, rows: int, requests: int, seconds: RunSeconds) -> None:
        """One onnxruntime run of `rows` rows that served `requests` requests."""
        with self._lock:
            self._execution_count += 1
            self._compute = self._compute.plus(seconds, requests)
            self._batches[rows] = self._batches.get(rows, ComputeDurations()).plus(seconds)

    def snapshot(self) -> VersionStatistics:
        with self._lock:
            return VersionStatistics(
                self.name,
                self.version,
                last_inference_ms=self._last_inference_ms,
                inference_count=self._inference_count,
                execution_count=self._execution_count,
                success=self._success,
                fail=self._fail,
                queue=self._queue,
                compute=self._compute,
                batches=dict(sorted(self._batches.items())),
            )


class StatisticsBook:
    """The recorders of every model version of one server, created on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._recorders: dict[tuple[str, str], StatisticsRecorder] = {}

    def recorder(self, name: str, version: str) -> StatisticsRecorder:
        with self._lock:
            key = (name, version)
            if key not in self._recorders:
                self._recorders[key] = StatisticsRecorder(name, version)
            return self._recorders[key]

    def snapshot(self, name: str, version: str) -> VersionStatistics:
        """Counters of one version; zeros when it has not been used yet."""
        with self._lock:
            recorder = self._recorders.get((name, version))
        return recorder.snapshot() if recorder is not None else VersionStatistics(name, version)
