"""The dynamic batcher, alone on a stand-in model and then in the gRPC server with the exported surrogate.

Runs wait at a gate, so every test orders events instead of timing them: a run is held while requests queue
behind it, then released."""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from calsurr.service.batcher import BatchingPolicy, DeadlineExceeded, DynamicBatcher, QueueFull
from calsurr.service.card import MODEL_FILENAME
from calsurr.service.config import ServerSettings
from calsurr.service.errors import InvalidInput, ModelUnavailable
from calsurr.service.grpc_codec import decode_outputs
from calsurr.service.metrics import ServerMetrics
from calsurr.service.protocol import grpc_service_pb2 as pb
from calsurr.service.protocol import grpc_service_pb2_grpc as pb_grpc
from calsurr.service.server import BackgroundServer
from tests.conftest import TINY_MODEL
from tests.service.serving import WAIT_SECONDS, gated, infer_request, sample, wait_until


class GatedModel:
    """Stands in for OnnxModel: row-wise outputs (so a row's answer cannot depend on its batch), runs that wait
    at a gate, and a record of every run's size. Rows whose first feature is negative make the run fail."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Semaphore(0)
        self.runs: list[int] = []
        self._lock = threading.Lock()
        self.active = 0
        self.most_active = 0
        self.threads: list[str] = []  # the thread of each run

    def run(self, inputs, outputs=None):
        x = inputs["x"]
        with self._lock:
            self.threads.append(threading.current_thread().name)
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        self.entered.release()
        try:
            assert self.gate.wait(WAIT_SECONDS), "gate never opened"
            if (x[:, 0] < 0).any():
                raise ValueError("negative first feature")
            with self._lock:
                self.runs.append(len(x))
            return expected(x)
        finally:
            with self._lock:
                self.active -= 1

    async def wait_entered(self, count: int = 1) -> None:
        for _ in range(count):
            assert await asyncio.to_thread(self.entered.acquire, True, WAIT_SECONDS), "no run started"


def expected(x: np.ndarray) -> dict[str, np.ndarray]:
    mean = np.exp(np.sin(x).sum(axis=1))
    sigma_stat, sigma_syst = 0.01 * mean, 0.02 * mean
    return {
        "mean": mean,
        "sigma_stat": sigma_stat,
        "sigma_syst": sigma_syst,
        "sigma_tot": np.hypot(sigma_stat, sigma_syst),
    }


def rows(n: int, seed: int) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).uniform(0.1, 1.0, size=(n, 3))}


def make(policy: BatchingPolicy | None = None, threshold: float | None = None):
    """A batcher on a GatedModel; every run on a runner thread (unless the policy says otherwise), since a
    run held at the gate on the event loop's thread would hold the test too."""
    model, metrics = GatedModel(), ServerMetrics()
    policy = policy or BatchingPolicy(inline_max_rows=0)
    batcher = DynamicBatcher(model, policy, metrics.for_model("toy", "1", threshold), name="toy")
    return model, batcher, metrics


async def until(condition, what: str) -> None:
    """Yield to the event loop until `condition()` holds."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + WAIT_SECONDS
    while not condition():
        assert loop.time() < give_up, f"timed out waiting for {what}"
        await asyncio.sleep(0.001)


async def hold_a_run(model: GatedModel, batcher: DynamicBatcher) -> asyncio.Task:
    """Close the gate and start a one-row request, so that what is submitted next queues behind it."""
    model.gate.clear()
    first = asyncio.create_task(batcher.submit(rows(1, seed=999)))
    await model.wait_entered()
    return first


def test_a_lone_request_runs_at_once_by_itself():
    async def scenario():
        model, batcher, _ = make(BatchingPolicy(max_queue_delay_us=0, inline_max_rows=0))
        inputs = rows(5, seed=1)
        result = await batcher.submit(inputs)
        await batcher.close()
        return model, inputs, result

    model, inputs, result = asyncio.run(scenario())
    assert model.runs == [5]
    for name, value in expected(inputs["x"]).items():
        np.testing.assert_array_equal(result[name], value)


def test_requests_queued_while_busy_merge_into_one_run_and_split_back_bit_for_bit():
    sizes = [3, 1, 7, 2, 5, 4, 1, 6]

    async def scenario():
        model, batcher, metrics = make()
        first = await hold_a_run(model, batcher)
        requests = [rows(n, seed=i) for i, n in enumerate(sizes)]
        # Half ask for one output only: a merged run must still give each request just what it asked for.
        wanted = [None if i % 2 else ["sigma_syst", "mean"] for i in range(len(sizes))]
        tasks = [asyncio.create_task(batcher.submit(r, w)) for r, w in zip(requests, wanted)]
        await until(lambda: batcher.depth == len(sizes), "requests to queue")
        model.gate.set()
        results = await asyncio.gather(*tasks)
        await first
        await batcher.close()
        return model, requests, wanted, results, metrics

    model, requests, wanted, results, metrics = asyncio.run(scenario())
    assert model.runs == [1, sum(sizes)]  # the held run, then everything that queued behind it in one
    for request, names, result in zip(requests, wanted, results):
        alone = expected(request["x"])
        assert list(result) == (names or list(alone))
        for name in result:
            np.testing.assert_array_equal(result[name], alone[name])
    sample = metrics.registry.get_sample_value
    assert sample("calsurr_batch_requests_sum", {"model": "toy", "version": "1"}) == 1 + len(sizes)
    assert sample("calsurr_batch_size_rows_count", {"model": "toy", "version": "1"}) == 2


def test_a_merged_run_holds_at_most_max_batch_size_rows_in_arrival_order():
    async def scenario():
        model, batcher, _ = make(BatchingPolicy(max_batch_size=7, inline_max_rows=0))
        first = await hold_a_run(model, batcher)
        tasks = [asyncio.create_task(batcher.submit(rows(n, seed=n))) for n in (3, 3, 3, 4, 2)]
        await until(lambda: batcher.depth == 5, "requests to queue")
        model.gate.set()
        await asyncio.gather(first, *tasks)
        await batcher.close()
        return model

    assert asyncio.run(scenario()).runs == [1, 6, 7, 2]  # 3+3 (a third 3 would make 9), 3+4, 2


def test_merging_stops_at_the_preferred_batch_size_while_a_larger_lone_request_still_runs():
    async def scenario():
        model, batcher, _ = make(BatchingPolicy(max_batch_size=64, preferred_batch_size=8, inline_max_rows=0))
        first = await hold_a_run(model, batcher)
        tasks = [asyncio.create_task(batcher.submit(rows(n, seed=n))) for n in (5, 3, 2, 20, 4, 4, 1)]
        await until(lambda: batcher.depth == 7, "requests to queue")
        model.gate.set()
        answers = await asyncio.gather(first, *tasks)
        await batcher.close()
        return model, answers

    model, answers = asyncio.run(scenario())
    # 5+3 reaches 8; 2 alone, since 20 would pass 8; 20 alone (above 8 but within max_batch_size); 4+4; 1
    assert model.runs == [1, 8, 2, 20, 8, 1]
    assert [len(a["mean"]) for a in answers] == [1, 5, 3, 2, 20, 4, 4, 1]


def test_a_small_request_that_finds_the_model_idle_runs_on_the_event_loop_thread_others_on_a_runner():
    async def scenario():
        model, batcher, _ = make(BatchingPolicy(inline_max_rows=8))
        answers = [await batcher.submit(rows(8, seed=1))]  # idle model, small: on the loop's thread
        answers.append(await batcher.submit(rows(9, seed=2)))  # too large: a runner
        model.gate.clear()
        first = asyncio.create_task(batcher.submit(rows(9, seed=5)))  # held at the gate, on a runner
        await model.wait_entered()
        behind = asyncio.create_task(batcher.submit(rows(1, seed=3)))  # arrives while the model is busy
        await until(lambda: batcher.depth == 1, "the request to queue")
        model.gate.set()
        answers += [await first, await behind]
        await asyncio.sleep(0.2)  # idle for far longer than the last (one-row) run took
        answers.append(await batcher.submit(rows(1, seed=4)))
        await batcher.close()
        return model, answers

    model, answers = asyncio.run(scenario())
    loop_thread = threading.current_thread().name  # asyncio.run's loop runs on this thread
    on_loop = [name == loop_thread for name in model.threads]
    assert on_loop == [True, False, False, False, True], model.threads
    for answer, (n, seed) in zip(answers, [(8, 1), (9, 2), (9, 5), (1, 3), (1, 4)]):
        for name, values in expected(rows(n, seed)["x"]).items():
            np.testing.assert_array_equal(answer[name], values)


def test_a_request_above_max_batch_size_is_refused_naming_the_limit():
    async def scenario():
        model, batcher, _ = make(BatchingPolicy(max_batch_size=8, inline_max_rows=0))
        with pytest.raises(InvalidInput, match="9 rows exceeds max_batch_size 8"):
            await batcher.submit(rows(9, seed=0))
        await batcher.submit(rows(8, seed=0))
        await batcher.close()
        return model

    assert asyncio.run(scenario()).runs == [8]


def test_a_full_queue_answers_resource_exhausted_at_once_while_the_queued_succeed():
    async def scenario():
        model, batcher, metrics = make(BatchingPolicy(max_queue_size=2, inline_max_rows=0))
        first = await hold_a_run(model, batcher)
        queued = [asyncio.create_task(batcher.submit(rows(2, seed=i))) for i in range(2)]
        await until(lambda: batcher.depth == 2, "requests to queue")
        with pytest.raises(QueueFull, match="full"):
            await batcher.submit(rows(2, seed=5))  # refused while the gate is still shut: no waiting
        model.gate.set()
        results = await asyncio.gather(first, *queued)
        await batcher.close()
        return results

    results = asyncio.run(scenario())
    assert [len(r["mean"]) for r in results] == [1, 2, 2]


def test_a_request_whose_deadline_passes_in_the_queue_is_dropped_without_compute():
    async def scenario():
        model, batcher, _ = make()
        first = await hold_a_run(model, batcher)
        with pytest.raises(DeadlineExceeded, match="queued"):
            await batcher.submit(rows(4, seed=1), deadline=time.monotonic() + 0.05)
        assert batcher.depth == 0  # it left the queue when its deadline passed, the gate still shut
        with pytest.raises(DeadlineExceeded, match="before"):
            await batcher.submit(rows(4, seed=2), deadline=time.monotonic() - 1.0)
        model.gate.set()
        await first
        await batcher.submit(rows(2, seed=3))
        await batcher.close()
        return model

    assert asyncio.run(scenario()).runs == [1, 2]  # neither 4-row request was ever computed


def test_a_request_that_expires_while_the_loop_is_blocked_is_not_computed_either():
    """With the event loop stalled its timer cannot fire; then the runner notices the deadline itself."""

    async def scenario():
        model, batcher, _ = make()
        first = await hold_a_run(model, batcher)
        doomed = asyncio.create_task(batcher.submit(rows(4, seed=1), deadline=time.monotonic() + 0.01))
        alive = asyncio.create_task(batcher.submit(rows(2, seed=2)))
        await until(lambda: batcher.depth == 2, "requests to queue")
        time.sleep(0.05)  # stalls the loop on purpose while the deadline passes
        model.gate.set()
        results = await asyncio.gather(doomed, alive, return_exceptions=True)
        await first
        await batcher.close()
        return model, results

    model, (doomed, alive) = asyncio.run(scenario())
    assert isinstance(doomed, DeadlineExceeded)
    assert len(alive["mean"]) == 2
    assert model.runs == [1, 2]


def test_a_cancelled_request_leaves_the_queue_and_is_not_computed():
    async def scenario():
        model, batcher, _ = make()
        first = await hold_a_run(model, batcher)
        cancelled = asyncio.create_task(batcher.submit(rows(4, seed=1)))
        kept = asyncio.create_task(batcher.submit(rows(3, seed=2)))
        await until(lambda: batcher.depth == 2, "requests to queue")
        cancelled.cancel()
        await until(lambda: batcher.depth == 1, "the cancelled request to leave")
        model.gate.set()
        await asyncio.gather(first, kept)
        await batcher.close()
        return model, cancelled

    model, cancelled = asyncio.run(scenario())
    assert cancelled.cancelled()
    assert model.runs == [1, 3]


def test_batching_off_runs_every_request_alone():
    async def scenario():
        model, batcher, _ = make(BatchingPolicy(enabled=False, inline_max_rows=0))
        first = await hold_a_run(model, batcher)
        tasks = [asyncio.create_task(batcher.submit(rows(n, seed=n))) for n in (2, 3, 4)]
        await until(lambda: batcher.depth == 3, "requests to queue")
        model.gate.set()
        await asyncio.gather(first, *tasks)
        await batcher.close()
        return model

    assert asyncio.run(scenario()).runs == [1, 2, 3, 4]


def test_instances_run_in_parallel_threads():
    async def scenario():
        model, batcher, _ = make(BatchingPolicy(instances=2, inline_max_rows=0))
        first = await hold_a_run(model, batcher)
        second = asyncio.create_task(batcher.submit(rows(3, seed=3)))
        await model.wait_entered()  # the idle runner took it at once: two runs inside the model, gate shut
        model.gate.set()
        await asyncio.gather(first, second)
        await batcher.close()
        return model

    model = asyncio.run(scenario())
    assert model.most_active == 2 and sorted(model.runs) == [1, 3]


def test_max_queue_delay_holds_a_lone_request_for_company():
    async def scenario():
        # A window far longer than any stall of a loaded host, closed early by a full batch.
        window = int(WAIT_SECONDS * 1e6)
        model, batcher, _ = make(BatchingPolicy(max_queue_delay_us=window, max_batch_size=5, inline_max_rows=0))
        a = asyncio.create_task(batcher.submit(rows(2, seed=1)))
        await asyncio.sleep(0)  # `a` queues
        await until(lambda: batcher.depth == 0, "the runner to take the lone request")  # and holds it open
        b = asyncio.create_task(batcher.submit(rows(3, seed=2)))
        await asyncio.gather(a, b)
        await batcher.close()
        return model

    assert asyncio.run(scenario()).runs == [5]


def test_one_request_the_model_rejects_fails_alone_and_its_neighbours_succeed():
    async def scenario():
        model, batcher, _ = make()
        first = await hold_a_run(model, batcher)
        good = rows(2, seed=1)
        bad = {"x": -rows(2, seed=2)["x"]}
        tasks = [asyncio.create_task(batcher.submit(r)) for r in (good, bad, good)]
        await until(lambda: batcher.depth == 3, "requests to queue")
        model.gate.set()
        results = await asyncio.gather(first, *tasks, return_exceptions=True)
        await batcher.close()
        return results

    _, ok1, failed, ok2 = asyncio.run(scenario())
    assert isinstance(failed, ValueError)
    assert len(ok1["mean"]) == 2 and len(ok2["mean"]) == 2


def test_close_finishes_what_is_queued_and_then_refuses():
    async def scenario():
        model, batcher, _ = make()
        first = await hold_a_run(model, batcher)
        queued = [asyncio.create_task(batcher.submit(rows(2, seed=i))) for i in range(3)]
        await until(lambda: batcher.depth == 3, "requests to queue")
        closing = asyncio.create_task(batcher.close())
        await asyncio.sleep(0)
        with pytest.raises(ModelUnavailable, match="shutting down"):
            await batcher.submit(rows(1, seed=9))
        model.gate.set()
        results = await asyncio.gather(first, *queued)
        await closing
        return model, results

    model, results = asyncio.run(scenario())
    assert model.runs == [1, 6]
    assert [len(r["mean"]) for r in results] == [1, 2, 2, 2]


def test_runs_report_batch_sizes_and_the_served_uncertainty():
    async def scenario():
        model, batcher, metrics = make(threshold=0.02)
        await batcher.submit(rows(10, seed=1))
        await batcher.close()
        return metrics

    sample = asyncio.run(scenario()).registry.get_sample_value
    labels = {"model": "toy", "version": "1"}
    assert sample("calsurr_batch_size_rows_sum", labels) == 10
    assert sample("calsurr_compute_duration_seconds_count", labels) == 1
    assert sample("calsurr_queue_duration_seconds_count", labels) == 1
    # sigma_tot/mean = hypot(0.01, 0.02) = 0.0224 for every row: in the (0.02, 0.05] bucket, above 0.02.
    assert sample("calsurr_relative_uncertainty_ratio_count", labels) == 10
    assert sample("calsurr_relative_uncertainty_ratio_bucket", {**labels, "le": "0.02"}) == 0
    assert sample("calsurr_relative_uncertainty_ratio_bucket", {**labels, "le": "0.05"}) == 10
    assert sample("calsurr_relative_uncertainty_ratio_sum", labels) == pytest.approx(10 * np.hypot(0.01, 0.02))
    assert sample("calsurr_out_of_domain_predictions_total", labels) == 10


# --- through the gRPC server, with the exported tiny surrogate ---------------------------------------------------

SERVED_MAX_BATCH_SIZE = 1024
SERVED_QUEUE_SIZE = 24
CONCURRENT_REQUESTS = 12  # x 16 rows: within the tiny model's held-out points
OUTPUTS = ["mean", "sigma_stat", "sigma_syst", "sigma_tot"]


@pytest.fixture(scope="module")
def server(tiny_repository):
    settings = ServerSettings(
        repo=tiny_repository,
        port=0,
        metrics_port=0,
        max_batch_size=SERVED_MAX_BATCH_SIZE,
        max_queue_size=SERVED_QUEUE_SIZE,
        inline_max_rows=0,  # runs held at a gate must not hold the event loop
    )
    with BackgroundServer(settings) as running:
        yield running


@pytest.fixture(scope="module")
def momenta(tiny_run):
    return np.ascontiguousarray(tiny_run.test.momenta)


def _runs(server) -> float:
    return sample(server, "calsurr_compute_duration_seconds_count", model=TINY_MODEL, version="1")


def _depth(server) -> float:
    return sample(server, "calsurr_queue_depth_requests", model=TINY_MODEL, version="1")


def _hold(server, stub, momenta, gate):
    first = stub.ModelInfer.future(infer_request(momenta[:1]))
    gate.wait_entered()
    return first


@pytest.mark.slow
@pytest.mark.parametrize("rows", [16, 5])
def test_concurrent_grpc_requests_merge_into_one_run_and_match_unbatched_results(
    server, stub, momenta, tiny_repository, rows
):
    """16-row requests sit at aligned offsets of the merged batch and match bit for bit; other sizes may differ
    in the last place, where onnxruntime's vectorised kernels round a batch's tail differently."""
    session = ort.InferenceSession(str(tiny_repository / TINY_MODEL / "1" / MODEL_FILENAME))
    parts = [momenta[i * rows : (i + 1) * rows] for i in range(CONCURRENT_REQUESTS)]
    runs_before = _runs(server)
    with gated(server) as gate:
        first = _hold(server, stub, momenta, gate)
        futures = [stub.ModelInfer.future(infer_request(p)) for p in parts]
        wait_until(lambda: _depth(server) == len(parts), "the requests to queue")
        gate.open.set()
        responses = [f.result(timeout=WAIT_SECONDS) for f in futures]
        first.result(timeout=WAIT_SECONDS)
    assert _runs(server) - runs_before == 2  # the held run, then all the others in one
    for part, response in zip(parts, responses):
        got = decode_outputs(response)
        for name, alone in zip(OUTPUTS, session.run(OUTPUTS, {"momenta": part})):
            if rows % 8 == 0:
                np.testing.assert_array_equal(got[name], alone)
            else:
                np.testing.assert_allclose(got[name], alone, rtol=1e-14, atol=0)


@pytest.mark.slow
def test_a_full_queue_answers_resource_exhausted_while_the_accepted_succeed(server, stub, momenta):
    refused_before = sample(server, "calsurr_requests_total", model=TINY_MODEL, version="1", code="RESOURCE_EXHAUSTED")
    with gated(server) as gate:
        first = _hold(server, stub, momenta, gate)
        accepted = [stub.ModelInfer.future(infer_request(momenta[i : i + 2])) for i in range(SERVED_QUEUE_SIZE)]
        wait_until(lambda: _depth(server) == SERVED_QUEUE_SIZE, "the queue to fill")
        with pytest.raises(grpc.RpcError) as error:
            stub.ModelInfer(infer_request(momenta[:2]), timeout=WAIT_SECONDS)  # answered with the gate shut
        gate.open.set()
        assert all(len(f.result(timeout=WAIT_SECONDS).raw_output_contents) == 4 for f in [first, *accepted])
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"full ({SERVED_QUEUE_SIZE} requests waiting)" in error.value.details()
    refused = sample(server, "calsurr_requests_total", model=TINY_MODEL, version="1", code="RESOURCE_EXHAUSTED")
    assert refused - refused_before == 1


@pytest.mark.slow
def test_a_client_deadline_passing_in_the_queue_gives_deadline_exceeded_and_no_compute(server, stub, momenta):
    labels = {"model": TINY_MODEL, "version": "1", "code": "DEADLINE_EXCEEDED"}
    expired_before = sample(server, "calsurr_requests_total", **labels)
    runs_before = _runs(server)
    with gated(server) as gate:
        first = _hold(server, stub, momenta, gate)
        with pytest.raises(grpc.RpcError) as error:
            stub.ModelInfer(infer_request(momenta[:8]), timeout=0.2)
        assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        wait_until(lambda: sample(server, "calsurr_requests_total", **labels) > expired_before, "the server to drop it")
        assert _depth(server) == 0
        gate.open.set()
        first.result(timeout=WAIT_SECONDS)
    assert _runs(server) - runs_before == 1  # only the held request was computed


@pytest.mark.slow
def test_a_request_cancelled_by_its_client_leaves_the_queue_uncomputed(server, stub, momenta):
    labels = {"model": TINY_MODEL, "version": "1", "code": "CANCELLED"}
    cancelled_before = sample(server, "calsurr_requests_total", **labels)
    runs_before = _runs(server)
    with gated(server) as gate:
        first = _hold(server, stub, momenta, gate)
        doomed = stub.ModelInfer.future(infer_request(momenta[:8]))
        wait_until(lambda: _depth(server) == 1, "the request to queue")
        doomed.cancel()
        wait_until(lambda: sample(server, "calsurr_requests_total", **labels) > cancelled_before, "the cancel")
        assert _depth(server) == 0
        gate.open.set()
        first.result(timeout=WAIT_SECONDS)
    assert _runs(server) - runs_before == 1


@pytest.mark.slow
def test_a_request_above_max_batch_size_gets_invalid_argument_naming_the_limit(stub, momenta):
    too_many = np.concatenate([momenta] * (SERVED_MAX_BATCH_SIZE // len(momenta) + 1))[: SERVED_MAX_BATCH_SIZE + 1]
    with pytest.raises(grpc.RpcError) as error:
        stub.ModelInfer(infer_request(too_many))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"{SERVED_MAX_BATCH_SIZE + 1} rows exceeds max_batch_size {SERVED_MAX_BATCH_SIZE}" in error.value.details()
    assert len(stub.ModelInfer(infer_request(too_many[:SERVED_MAX_BATCH_SIZE])).raw_output_contents) == 4


@pytest.mark.slow
def test_shutdown_finishes_the_requests_queued_in_the_batcher(tiny_repository, momenta):
    settings = ServerSettings(
        repo=tiny_repository, port=0, metrics_port=0, grace_seconds=WAIT_SECONDS, inline_max_rows=0
    )
    server = BackgroundServer(settings).__enter__()
    channel = grpc.insecure_channel(server.address)
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    with gated(server) as gate:
        first = _hold(server, stub, momenta, gate)
        queued = [stub.ModelInfer.future(infer_request(momenta[i : i + 3])) for i in range(5)]
        wait_until(lambda: _depth(server) == 5, "the requests to queue")
        stopping = threading.Thread(target=server.__exit__, args=(None, None, None))
        stopping.start()
        wait_until(lambda: _refuses_new_calls(stub), "the server to stop accepting")
        gate.open.set()
        answers = [f.result(timeout=WAIT_SECONDS) for f in [first, *queued]]
        stopping.join(WAIT_SECONDS)
    channel.close()
    assert not stopping.is_alive()
    assert [len(a.raw_output_contents) for a in answers] == [4] * 6


def _refuses_new_calls(stub) -> bool:
    try:
        stub.ServerLive(pb.ServerLiveRequest(), timeout=1.0)
    except grpc.RpcError:
        return True
    return False
