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


def _compute_durations(counts: list[int]) -> ComputeDurations:
    """[count, input ns, infer ns, output ns] as ComputeDurations (one count: the three phases always go together)."""
    count, input_ns, infer_ns, output_ns = counts
    return ComputeDurations(Duration(count, input_ns), Duration(count, infer_ns), Duration(count, output_ns))


class StatisticsRecorder:
    """The counters of one model version. Thread safe: runs are recorded from the batcher's runner threads.

    Recorded on every request, so kept as plain integers (a count and nanoseconds per counter) and turned into
    the frozen dataclasses above only by `snapshot`."""

    def __init__(self, name: str, version: str):
        self.name, self.version = name, version
        self._lock = threading.Lock()
        self._last_inference_ms = self._inference_count = self._execution_count = 0
        self._success, self._fail, self._queue = [0, 0], [0, 0], [0, 0]  # count, ns
        self._compute = [0, 0, 0, 0]  # per request: count, input ns, infer ns, output ns
        self._batches: dict[int, list[int]] = {}  # per run, by its rows: the same four

    def record_request(self, ok: bool, rows: int, seconds: float) -> None:
        """One request answered (ok) or failed after its model version was known."""
        ns, now_ms = to_ns(seconds), int(time.time() * 1000)
        with self._lock:
            counter = self._success if ok else self._fail
            counter[0] += 1
            counter[1] += ns
            if ok:
                self._inference_count += rows
            self._last_inference_ms = now_ms

    def record_queue(self, seconds: float) -> None:
        ns = to_ns(seconds)
        with self._lock:
            self._queue[0] += 1
            self._queue[1] += ns

    def record_run(self, rows: int, requests: int, seconds: RunSeconds) -> None:
        """One onnxruntime run of `rows` rows that served `requests` requests."""
        phases = (to_ns(seconds.input), to_ns(seconds.infer), to_ns(seconds.output))
        with self._lock:
            self._execution_count += 1
            compute = self._compute
            compute[0] += requests
            batch = self._batches.get(rows)
            if batch is None:
                batch = self._batches[rows] = [0, 0, 0, 0]
            batch[0] += 1
            for k, ns in enumerate(phases, start=1):
                compute[k] += ns * requests
                batch[k] += ns

    def snapshot(self) -> VersionStatistics:
        with self._lock:
            return VersionStatistics(
                self.name,
                self.version,
                last_inference_ms=self._last_inference_ms,
                inference_count=self._inference_count,
                execution_count=self._execution_count,
                success=Duration(*self._success),
                fail=Duration(*self._fail),
                queue=Duration(*self._queue),
                compute=_compute_durations(self._compute),
                batches={rows: _compute_durations(counts) for rows, counts in sorted(self._batches.items())},
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
