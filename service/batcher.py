"""A dynamic batcher per model: concurrent requests merged into one onnxruntime run, and split back.

Why: a generator grid sends many small requests, and one run of N rows costs far less than N runs of one.
How, without costing latency when the server is quiet: an idle runner takes a lone request at once; while
it computes, requests queue up, and the next run takes what is queued (FIFO) up to `preferred_batch_size`
rows. Past a few thousand rows a larger run is no faster per row, only larger in memory: onnxruntime's
intermediate tensors grow with the rows (members x hidden x 8 bytes a row and a layer), so merging 64
requests of 4096 rows would take gigabytes for nothing; a lone request above it still runs, as one run.
`max_queue_delay_us` > 0 additionally holds a batch open that long, counted from its oldest request, for
more company; it adds that latency to a lone request, so the default is 0.

The queue is bounded (`max_queue_size` requests, each at most `max_batch_size` rows): a full queue answers
RESOURCE_EXHAUSTED at once, so memory stays bounded and a client can back off. A request whose deadline
passes, or whose client cancels, while queued is dropped before it costs compute. Requests above
`max_batch_size` rows are refused with INVALID_ARGUMENT rather than split: splitting would hide from the
client that it sends more than the model is configured for, and one oversized request would occupy every
runner; the client splits with the limit the error names.

Runs happen in a thread pool of `instances` threads (onnxruntime releases the GIL, and a session is safe to
run from several threads), so the event loop keeps accepting requests while a batch computes. A lone request
of at most `inline_max_rows` rows that finds the model idle (nothing queued or running, and it arrived after a
gap at least as long as the last run took) runs at once in `submit`, on the event loop's own thread: there is
nothing to overlap it with, and the two thread hops, the queue and the runner task's wake-up cost about as
much as a small run itself (bench/serving.py and bench/clients.py, batch 1 at concurrency 1). Under load
requests arrive back to back and go to the runner, so that the loop reads the next ones meanwhile and they
merge; running them inline would keep each run to one request. With `max_queue_delay_us` > 0 every request
queues, so that a lone one waits its window for company as configured.

Batching changes results by at most a few units in the last place: onnxruntime's vectorised kernels round a
row slightly differently at the tail of a batch than in the middle. When every request merged has a multiple
of 8 rows, each sits at an aligned offset and comes back bit for bit as if run alone; batching off always does.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import grpc
import numpy as np

from calsurr.service.errors import CalsurrError, InvalidInput, ModelUnavailable
from calsurr.service.metrics import ModelMetrics
from calsurr.service.statistics import RunSeconds

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH_SIZE = 65_536  # rows: 8 MiB of gg -> gg momenta in FP64, well inside a 64 MiB message
DEFAULT_PREFERRED_BATCH_SIZE = 4_096  # rows merged into one run at most (bench/serving.py: flat beyond)
DEFAULT_MAX_QUEUE_SIZE = 1_024  # requests per model: one outstanding request each from a large grid
MAX_QUEUE_DELAY_US = 1_000_000  # a batch held open longer than a second is a configuration mistake
MICROSECONDS = 1e-6
DEFAULT_INLINE_MAX_ROWS = 8  # a lone request this small runs on the event loop thread, no hop to a runner
CLOSE_TIMEOUT_SECONDS = 30.0  # longest close() waits for a run in progress before abandoning it


class QueueFull(CalsurrError):
    status_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DeadlineExceeded(CalsurrError):
    status_code = grpc.StatusCode.DEADLINE_EXCEEDED


class Runner(Protocol):
    """What the batcher runs: `calsurr.service.runtime.OnnxModel` or, in tests, a stand-in."""

    def run(self, inputs: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]: ...


@dataclass(frozen=True)
class BatchingPolicy:
    enabled: bool = True
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    preferred_batch_size: int = DEFAULT_PREFERRED_BATCH_SIZE
    max_queue_delay_us: int = 0
    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE
    instances: int = 1
    inline_max_rows: int = DEFAULT_INLINE_MAX_ROWS  # 0: every run on a runner thread


@dataclass(eq=False)
class _Pending:
    """One queued request: inputs, the outputs it wants (None: all), and where its answer goes."""

    inputs: Mapping[str, np.ndarray]
    outputs: Sequence[str] | None
    rows: int
    deadline: float | None  # time.monotonic() seconds
    future: asyncio.Future | None  # None: run inline, answered by submit itself
    enqueued: float = field(default_factory=time.monotonic)

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline


Outcome = dict[str, np.ndarray] | Exception


class DynamicBatcher:
    """Queue and runners of one model version; lives on the event loop that first submits to it."""

    def __init__(self, model: Runner, policy: BatchingPolicy, metrics: ModelMetrics, name: str = "model"):
        self.model = model
        self.policy = policy
        self.metrics = metrics
        self.name = name
        self._queue: deque[_Pending] = deque()
        self._wake: asyncio.Event | None = None
        self._workers: list[asyncio.Task] = []
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False
        self._runs_lock = threading.Lock()
        self.runs = 0  # onnxruntime runs so far, batches and lone requests alike
        self._merge_rows = min(policy.preferred_batch_size, policy.max_batch_size)
        self._last_run_end = -float("inf")  # time.monotonic() when the last run finished
        self._last_run_seconds = 0.0
        self._active = 0  # batches a runner took from the queue and has not answered yet

    @property
    def depth(self) -> int:
        return len(self._queue)

    async def submit(
        self,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str] | None = None,
        deadline: float | None = None,
    ) -> dict[str, np.ndarray]:
        """Queue one request (rows along the first axis of every input) and wait for its outputs."""
        rows = len(next(iter(inputs.values())))
        if self._closing:
            raise ModelUnavailable(f"model '{self.name}' is shutting down; retry on another server")
        if rows > self.policy.max_batch_size:
            raise InvalidInput(
                f"request of {rows} rows exceeds max_batch_size {self.policy.max_batch_size} of model "
                f"'{self.name}'; send at most {self.policy.max_batch_size} rows per request"
            )
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            raise DeadlineExceeded(f"deadline passed before model '{self.name}' could queue the request")
        if self._finds_idle(rows, now):
            return self._run_inline(_Pending(inputs, outputs, rows, deadline, None, now))
        if len(self._queue) >= self.policy.max_queue_size:
            raise QueueFull(
                f"queue of model '{self.name}' is full ({self.policy.max_queue_size} requests waiting); retry later"
            )
        self._start()
        pending = _Pending(inputs, outputs, rows, deadline, asyncio.get_running_loop().create_future(), now)
        self._queue.append(pending)
        self.metrics.set_queue_depth(len(self._queue))
        self._wake.set()
        try:
            if deadline is None:
                return await pending.future
            return await asyncio.wait_for(pending.future, deadline - now)
        except TimeoutError:
            raise DeadlineExceeded(f"deadline passed while model '{self.name}' had the request queued") from None
        finally:
            # Cancelled or timed out: leave the queue now, so the request neither holds a slot nor gets run.
            if pending.future.cancelled() and pending in self._queue:
                self._queue.remove(pending)
                self.metrics.set_queue_depth(len(self._queue))

    def _start(self) -> None:
        if self._workers:
            return
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(self.policy.instances, thread_name_prefix=f"calsurr-{self.name}")
        self._workers = [
            asyncio.create_task(self._work(), name=f"calsurr-batcher-{self.name}-{i}")
            for i in range(self.policy.instances)
        ]

    async def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
        """Refuse new requests, let the runners finish what is queued, then stop them."""
        self._closing = True
        if not self._workers:
            return
        self._wake.set()
        _, stuck = await asyncio.wait(self._workers, timeout=timeout)
        for task in stuck:
            task.cancel()
        self._fail(list(self._queue), ModelUnavailable(f"model '{self.name}' was shut down"))
        self._queue.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _work(self) -> None:
        while True:
            while not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
            batch: list[_Pending] = []
            self._active += 1
            try:
                await self._gather(batch)
                await self._run(batch)
            except asyncio.CancelledError:
                self._fail(batch, ModelUnavailable(f"model '{self.name}' was shut down during the run"))
                raise
            except Exception as exc:  # a bug here must not strand the batch, nor stop the runner
                log.exception("batcher of model '%s' failed", self.name)
                self._fail(batch, exc)
            finally:
                self._active -= 1

    async def _run(self, batch: list[_Pending]) -> None:
        if not batch:
            return
        started = time.monotonic()
        for item in batch:
            self.metrics.observe_queue(started - item.enqueued)
        if self._finds_model_idle(batch):
            outcomes = self._execute(batch)
        else:
            outcomes = await asyncio.get_running_loop().run_in_executor(self._executor, self._execute, batch)
        self._last_run_end = time.monotonic()
        self._last_run_seconds = self._last_run_end - started
        for item, outcome in zip(batch, outcomes):
            if item.future.done():  # cancelled or timed out while it ran
                continue
            if isinstance(outcome, Exception):
                item.future.set_exception(outcome)
            else:
                item.future.set_result(outcome)

    def _finds_model_idle(self, batch: list[_Pending]) -> bool:
        """A lone small request, nothing queued behind it, arrived after a gap at least as long as a run."""
        if len(batch) != 1 or self._queue or batch[0].rows > self.policy.inline_max_rows:
            return False
        return batch[0].enqueued - self._last_run_end >= self._last_run_seconds

    def _finds_idle(self, rows: int, now: float) -> bool:
        """A small request arriving now finds nothing queued or running, after a gap at least as long as the last
        run: it may run inline at once. Never while a batch is held open for company (max_queue_delay_us)."""
        return (
            rows <= self.policy.inline_max_rows
            and not self._queue
            and not self._active
            and self.policy.max_queue_delay_us == 0
            and now - self._last_run_end >= self._last_run_seconds
        )

    def _run_inline(self, item: _Pending) -> dict[str, np.ndarray]:
        """Run one request on the event loop's thread now: no queue, no runner task to wake, no thread hop."""
        self.metrics.observe_queue(time.monotonic() - item.enqueued)  # the checks before it, microseconds
        (outcome,) = self._execute([item])
        self._last_run_end = time.monotonic()
        self._last_run_seconds = self._last_run_end - item.enqueued
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    @staticmethod
    def _fail(batch: list[_Pending], exc: Exception) -> None:
        for item in batch:
            if not item.future.done():
                item.future.set_exception(exc)

    async def _gather(self, batch: list[_Pending]) -> None:
        """Fill `batch` with what is queued now, held open up to `max_queue_delay_us` if it is not full."""
        rows = self._take(batch, 0)
        delay = self.policy.max_queue_delay_us * MICROSECONDS
        if batch and delay > 0 and self.policy.enabled:
            close_at = batch[0].enqueued + delay
            # Wait while nothing queued is left behind for lack of room and the window is open.
            while not self._queue and rows < self._merge_rows and (left := close_at - time.monotonic()) > 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), left)
                except TimeoutError:
                    break
                rows = self._take(batch, rows)
            now = time.monotonic()
            for item in [i for i in batch if i.expired(now) or i.future.done()]:
                batch.remove(item)
                self._drop(item, now)

    def _take(self, batch: list[_Pending], rows: int) -> int:
        """Move queued requests into `batch`, oldest first, while they fit; drop the dead on the way."""
        now = time.monotonic()
        while self._queue:
            head = self._queue[0]
            if head.future.done() or head.expired(now):
                self._queue.popleft()
                self._drop(head, now)
                continue
            if batch and (not self.policy.enabled or rows + head.rows > self._merge_rows):
                break
            self._queue.popleft()
            batch.append(head)
            rows += head.rows
        self.metrics.set_queue_depth(len(self._queue))
        return rows

    def _drop(self, item: _Pending, now: float) -> None:
        if not item.future.done():
            item.future.set_exception(
                DeadlineExceeded(f"deadline passed while model '{self.name}' had the request queued")
            )

    def _execute(self, batch: list[_Pending]) -> list[Outcome]:
        """In a runner thread: one run over the merged batch, split back by rows. If the merged run fails,
        each request runs alone, so that one request the runtime rejects does not fail its neighbours."""
        try:
            return self._run_merged(batch)
        except Exception as exc:
            if len(batch) == 1:
                log.exception("model '%s' failed a run of %d rows", self.name, batch[0].rows)
                return [exc]
            log.warning(
                "model '%s' failed a merged run of %d requests (%s); running them alone", self.name, len(batch), exc
            )
        outcomes: list[Outcome] = []
        for item in batch:
            try:
                outcomes.extend(self._run_merged([item]))
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    def _run_merged(self, batch: list[_Pending]) -> list[dict[str, np.ndarray]]:
        started = time.perf_counter()
        if len(batch) == 1:
            inputs = dict(batch[0].inputs)
        else:
            inputs = {name: np.concatenate([item.inputs[name] for item in batch]) for name in batch[0].inputs}
        rows = sum(item.rows for item in batch)
        merged = time.perf_counter()
        # Every output, whatever was asked: the graph computes them anyway, and the uncertainty metric needs
        # mean and sigma_tot.
        outputs = self.model.run(inputs, None)
        computed = time.perf_counter()
        with self._runs_lock:  # several runner threads
            self.runs += 1
        results, start = [], 0
        for item in batch:
            stop = start + item.rows
            names = item.outputs or list(outputs)
            results.append({name: outputs[name][start:stop] for name in names})
            start = stop
        seconds = RunSeconds(input=merged - started, infer=computed - merged, output=time.perf_counter() - computed)
        self.metrics.observe_run(rows, len(batch), seconds, outputs)
        return results
