"""Faults, each with its status code and message while the server goes on serving the others: broken and
half-copied versions offered beside a working one, a model folder deleted while serving, bad requests, a
request its client cancels; then a load test with concurrent clients while a version is swapped in and a
broken one is offered, where every accepted request must get the right answer."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from calsurr.service.card import CARD_FILENAME, MODEL_FILENAME
from calsurr.service.config import ServerSettings
from calsurr.service.protocol import grpc_service_pb2 as pb
from calsurr.service.protocol import grpc_service_pb2_grpc as pb_grpc
from calsurr.service.repository import ModelLoadFailed
from calsurr.service.server import BackgroundServer
from tests.conftest import TINY_MODEL
from tests.service.serving import WAIT_SECONDS, gated, infer_request, sample, wait_until

pytestmark = pytest.mark.slow
OUTPUTS = ("mean", "sigma_stat", "sigma_syst", "sigma_tot")
MAX_BATCH_SIZE = 16
MAX_MESSAGE_BYTES = 64 * 1024
LOAD_CLIENTS = 4
LOAD_SECONDS_LIMIT = 60.0  # the load test's clients stop by then whatever happened
ROWS_PER_REQUEST = (1, 3, 8, 16)
PHASE_REQUESTS = 1_000  # answers awaited in each phase of the load test: before, during and after the swap
# Merging requests into one run changes results by a few units in the last place (service/batcher.py).
RTOL = 1e-12


@pytest.fixture(scope="module")
def other_run():
    """A second tiny gg -> gg ensemble, another seed: version 2 answers differently from version 1."""
    from calsurr.training.fit import FitConfig
    from calsurr.training.pipeline import TrainingConfig, train_surrogate

    config = TrainingConfig(
        process="gg_gg", n_events=2_000, members=3, hidden=16, layers=2, fit=FitConfig(epochs=5, seed=2), seed=2
    )
    return train_surrogate(config, show_progress=False)


@pytest.fixture(scope="module")
def version_two(other_run, tmp_path_factory) -> Path:
    """The other run exported as gg_gg version 2, outside any served repository (copied in by the tests)."""
    from calsurr.training.export import export_to_repository

    # float64 members, like tiny_repository: answers are checked to RTOL against a lone onnxruntime run
    staging = tmp_path_factory.mktemp("staging")
    return export_to_repository(other_run, staging, TINY_MODEL, version=2, member_dtype="float64")


@pytest.fixture
def repo(tiny_repository, tmp_path) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(tiny_repository, copy)
    return copy


@pytest.fixture(scope="module")
def momenta(tiny_run) -> np.ndarray:
    return np.ascontiguousarray(tiny_run.test.momenta[:256])


def _settings(repo: Path, **changes) -> ServerSettings:
    """inline_max_rows=0: runs held at a gate (`gated`) must not hold the event loop."""
    return ServerSettings(repo=repo, port=0, metrics_port=0, inline_max_rows=0, **changes)


def _reference(folder: Path, momenta: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(folder / MODEL_FILENAME), providers=["CPUExecutionProvider"])
    return dict(zip(OUTPUTS, session.run(list(OUTPUTS), {"momenta": momenta}), strict=True))


def _outputs(response: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    return {
        tensor.name: np.frombuffer(raw, dtype=np.float64)
        for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=True)
    }


def _copy_version(source: Path, repo: Path, version: int) -> Path:
    """Copy a version folder in as `version`, its card saying so (as an operator's `cp -r` would, file by file)."""
    target = repo / TINY_MODEL / str(version)
    shutil.copytree(source, target)
    card = json.loads((target / CARD_FILENAME).read_text())
    (target / CARD_FILENAME).write_text(json.dumps({**card, "version": version}))
    return target


def _break(folder: Path, fault: str) -> None:
    if fault == "corrupt onnx":
        (folder / MODEL_FILENAME).write_bytes(b"\x08\x07 this is not an onnx graph")
    elif fault == "card failing validation":
        card = json.loads((folder / CARD_FILENAME).read_text())
        (folder / CARD_FILENAME).write_text(json.dumps({**card, "task": "classification"}))
    elif fault == "model.onnx missing":
        (folder / MODEL_FILENAME).unlink()
    elif fault == "model.onnx truncated":
        graph = (folder / MODEL_FILENAME).read_bytes()
        (folder / MODEL_FILENAME).write_bytes(graph[: len(graph) // 2])
    else:
        raise ValueError(fault)


def _health(address: str, service: str) -> int:
    with grpc.insecure_channel(address) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service)).status


FAULTS = {
    "corrupt onnx": "InvalidProtobuf",
    "card failing validation": "ValidationError",
    "model.onnx missing": "NoSuchFile",
    "model.onnx truncated": "",
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_broken_or_half_copied_version_never_replaces_the_working_one(repo, version_two, momenta, fault, caplog):
    expected = {1: _reference(repo / TINY_MODEL / "1", momenta[:8]), 2: _reference(version_two, momenta[:8])}
    with BackgroundServer(_settings(repo)) as server, grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        repository = server.running.dataplane.repository
        folder = _copy_version(version_two, repo, 2)
        _break(folder, fault)
        server.call(repository.reload())

        assert stub.ModelReady(pb.ModelReadyRequest(name=TINY_MODEL)).ready
        assert not stub.ModelReady(pb.ModelReadyRequest(name=TINY_MODEL, version="2")).ready
        assert list(stub.ModelMetadata(pb.ModelMetadataRequest(name=TINY_MODEL)).versions) == ["1"]
        response = stub.ModelInfer(infer_request(momenta[:8]))
        assert response.model_version == "1"
        np.testing.assert_allclose(_outputs(response)["mean"], expected[1]["mean"], rtol=RTOL)
        with pytest.raises(grpc.RpcError) as error:
            stub.ModelInfer(infer_request(momenta[:8], model_version="2"))
        assert error.value.code() == grpc.StatusCode.NOT_FOUND
        assert "version '2' (failed to load:" in error.value.details() and FAULTS[fault] in error.value.details()
        assert _health(server.address, TINY_MODEL) == health_pb2.HealthCheckResponse.SERVING
        assert any("version 2 failed to load" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
        failures = {"model": TINY_MODEL}
        assert sample(server, "calsurr_model_load_failures_total", **failures) == 1

        server.call(repository.reload())  # unchanged files: not tried, nor counted, again
        assert sample(server, "calsurr_model_load_failures_total", **failures) == 1

        shutil.rmtree(folder)  # the copy completed, or the operator fixed the version
        _copy_version(version_two, repo, 2)
        server.call(repository.reload())
        response = stub.ModelInfer(infer_request(momenta[:8]))
        assert response.model_version == "2"  # latest:1, the default policy: version 2 took over
        np.testing.assert_allclose(_outputs(response)["mean"], expected[2]["mean"], rtol=RTOL)
        assert not stub.ModelReady(pb.ModelReadyRequest(name=TINY_MODEL, version="1")).ready


def test_a_model_folder_deleted_while_serving_finishes_its_requests_then_goes(repo, momenta):
    expected = _reference(repo / TINY_MODEL / "1", momenta[:8])
    with BackgroundServer(_settings(repo)) as server, grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        repository = server.running.dataplane.repository
        with gated(server) as gate:
            in_flight = stub.ModelInfer.future(infer_request(momenta[:8]))
            gate.wait_entered()
            shutil.rmtree(repo / TINY_MODEL)
            scan = threading.Thread(target=server.call, args=(repository.reload(),))
            scan.start()  # it waits for the in-flight request to drain
            wait_until(lambda: not repository.is_ready(TINY_MODEL), "the deleted model to go")
            with pytest.raises(grpc.RpcError) as error:
                stub.ModelInfer(infer_request(momenta[:8]))
            assert error.value.code() == grpc.StatusCode.NOT_FOUND and "unknown model 'gg_gg'" in error.value.details()
            assert not stub.ModelReady(pb.ModelReadyRequest(name=TINY_MODEL)).ready
            wait_until(
                lambda: _health(server.address, TINY_MODEL) == health_pb2.HealthCheckResponse.NOT_SERVING,
                "health to say NOT_SERVING",
            )
            gate.open.set()
            response = in_flight.result(timeout=WAIT_SECONDS)
            scan.join(WAIT_SECONDS)
        assert not scan.is_alive()
        assert response.model_version == "1"
        np.testing.assert_allclose(_outputs(response)["mean"], expected["mean"], rtol=RTOL)
        assert stub.ServerLive(pb.ServerLiveRequest()).live


@pytest.fixture(scope="module")
def strict_server(tiny_repository):
    settings = _settings(tiny_repository, max_batch_size=MAX_BATCH_SIZE, max_message_bytes=MAX_MESSAGE_BYTES)
    with BackgroundServer(settings) as server:
        yield server


def _bad_request(momenta: np.ndarray, case: str) -> pb.ModelInferRequest:
    if case == "nan input":
        return infer_request(np.where(np.arange(momenta[:4].size).reshape(4, 4, 4) == 9, np.nan, momenta[:4]))
    if case == "infinite input":
        return infer_request(np.where(np.arange(momenta[:4].size).reshape(4, 4, 4) == 2, -np.inf, momenta[:4]))
    if case == "batch above max":
        return infer_request(momenta[: MAX_BATCH_SIZE + 1])
    if case == "empty batch":
        return infer_request(momenta[:0])
    if case == "oversized message":
        return infer_request(np.tile(momenta, (4, 1, 1)))  # 800 events of 128 B: above 64 KiB
    if case == "unknown parameter":
        request = infer_request(momenta[:4])
        request.parameters["colour"].string_param = "red"
        return request
    raise ValueError(case)


BAD_REQUESTS = {
    "nan input": (grpc.StatusCode.INVALID_ARGUMENT, "input 'momenta' holds NaN or infinite values"),
    "infinite input": (grpc.StatusCode.INVALID_ARGUMENT, "input 'momenta' holds NaN or infinite values"),
    "batch above max": (grpc.StatusCode.INVALID_ARGUMENT, f"17 rows exceeds max_batch_size {MAX_BATCH_SIZE}"),
    "empty batch": (grpc.StatusCode.INVALID_ARGUMENT, "empty batch"),
    "oversized message": (grpc.StatusCode.RESOURCE_EXHAUSTED, f"vs. {MAX_MESSAGE_BYTES})"),
    "unknown parameter": (grpc.StatusCode.INVALID_ARGUMENT, "unknown request parameters ['colour']"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_requests_get_their_status_and_the_server_serves_on(strict_server, momenta, case):
    code, message = BAD_REQUESTS[case]
    with grpc.insecure_channel(strict_server.address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            stub.ModelInfer(_bad_request(momenta, case))
        assert error.value.code() == code
        assert message in error.value.details()
        good = stub.ModelInfer(infer_request(momenta[:MAX_BATCH_SIZE]))
    assert good.model_version == "1" and len(good.raw_output_contents) == len(OUTPUTS)


def test_a_request_cancelled_by_its_client_is_dropped_and_others_are_served(strict_server, momenta):
    cancelled_before = sample(strict_server, "calsurr_requests_total", model=TINY_MODEL, version="1", code="CANCELLED")
    with grpc.insecure_channel(strict_server.address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with gated(strict_server) as gate:
            running = stub.ModelInfer.future(infer_request(momenta[:4]))
            gate.wait_entered()
            queued = stub.ModelInfer.future(infer_request(momenta[4:8]))  # waits behind the run at the gate
            wait_until(lambda: sample(strict_server, "calsurr_inflight_requests") >= 2, "the second to queue")
            assert queued.cancel()
            wait_until(
                lambda: (
                    sample(strict_server, "calsurr_requests_total", model=TINY_MODEL, version="1", code="CANCELLED")
                    == cancelled_before + 1
                ),
                "the server to count the cancellation",
            )
            gate.open.set()
            assert running.result(timeout=WAIT_SECONDS).model_version == "1"
        with pytest.raises(grpc.FutureCancelledError):
            queued.result()
        assert stub.ModelInfer(infer_request(momenta[8:12])).model_version == "1"


# -- hot reload under load ----------------------------------------------------------------------------------------


class LoadClients:
    """Threads sending unversioned requests in a loop, each answer checked against onnxruntime in-process on
    the version that answered. Bounded: they stop when told, or after LOAD_SECONDS_LIMIT."""

    def __init__(self, address: str, momenta: np.ndarray, references: dict[str, dict[str, np.ndarray]]):
        self.address, self.momenta, self.references = address, momenta, references
        self.served: Counter[str] = Counter()  # answers by model_version
        self.errors: list[str] = []
        self.mismatches: list[str] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(LOAD_CLIENTS)]

    def __enter__(self) -> LoadClients:
        self._give_up = time.monotonic() + LOAD_SECONDS_LIMIT
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(WAIT_SECONDS)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.served.values())

    def _run(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        with grpc.insecure_channel(self.address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            while not self.stop.is_set() and time.monotonic() < self._give_up:
                rows = int(rng.choice(ROWS_PER_REQUEST))
                start = int(rng.integers(0, len(self.momenta) - rows))
                try:
                    response = stub.ModelInfer(infer_request(self.momenta[start : start + rows]), timeout=WAIT_SECONDS)
                except grpc.RpcError as error:
                    with self._lock:
                        self.errors.append(f"{error.code().name}: {error.details()}")
                    continue
                self._check(response, start, rows)

    def _check(self, response: pb.ModelInferResponse, start: int, rows: int) -> None:
        reference = self.references.get(response.model_version)
        problem = None
        if reference is None:
            problem = f"answered by unexpected version '{response.model_version}'"
        else:
            got = _outputs(response)
            for name in OUTPUTS:
                if not np.allclose(got[name], reference[name][start : start + rows], rtol=RTOL, atol=0):
                    problem = f"version {response.model_version} output {name} differs from onnxruntime"
        with self._lock:
            if problem:
                self.mismatches.append(problem)
            else:
                self.served[response.model_version] += 1


def test_hot_reload_under_load_loses_no_request(repo, version_two, momenta, record_property):
    references = {"1": _reference(repo / TINY_MODEL / "1", momenta), "2": _reference(version_two, momenta)}
    references["4"] = references["2"]  # version 4 is a copy of folder 2
    assert not np.allclose(references["1"]["mean"], references["2"]["mean"], rtol=1e-3)
    settings = _settings(repo, repository_poll_seconds=0.05)
    with BackgroundServer(settings) as server:
        repository = server.running.dataplane.repository
        with LoadClients(server.address, momenta, references) as load:
            wait_until(lambda: load.total >= PHASE_REQUESTS, "traffic on version 1")
            before_swap = load.total
            _copy_version(version_two, repo, 2)  # file by file under the poller: it may see a partial folder
            wait_until(lambda: load.served["2"] >= 1, "version 2 to take over")
            during_swap = load.total - before_swap
            wait_until(lambda: load.served["2"] >= PHASE_REQUESTS, "traffic on version 2")

            broken = _copy_version(version_two, repo, 3)
            _break(broken, "corrupt onnx")
            offered_at = load.total
            wait_until(lambda: 3 in repository.entry(TINY_MODEL).failed, "the broken version 3 to be refused")
            with pytest.raises(ModelLoadFailed, match=r"version 3: .*versions \[2\] go on serving"):
                server.call(repository.load_model(TINY_MODEL))  # RepositoryModelLoad's path, under load too
            wait_until(lambda: load.total >= offered_at + PHASE_REQUESTS, "traffic while version 3 is offered")

            # Triton-style promotion: a plain copy of folder 2 as folder 4, its card still saying version 2.
            copied_at = load.total
            shutil.copytree(repo / TINY_MODEL / "2", repo / TINY_MODEL / "4")
            wait_until(lambda: load.served["4"] >= PHASE_REQUESTS, "traffic on the copied version 4")
            load.stop.set()
        assert repository.get(TINY_MODEL).card.version == 4
        dataplane = server.running.dataplane
        assert dataplane.model_config(TINY_MODEL).version == 4 and dataplane.card(TINY_MODEL, "4").version == 4
        assert dataplane.model_metadata(TINY_MODEL).versions == ["4"]
        assert sample(server, "calsurr_requests_total", model=TINY_MODEL, version="4", code="OK") >= PHASE_REQUESTS
        assert not sample(server, "calsurr_requests_total", model=TINY_MODEL, version="2", code="INTERNAL")
        failures = sample(server, "calsurr_model_load_failures_total", model=TINY_MODEL)
    figures = {
        "requests_served": load.total,
        "served_by_version": dict(load.served),
        "served_from_copy_to_first_v2_answer": during_swap,
        "served_while_broken_v3_offered": load.total - offered_at,
        "served_from_copy_of_v2_as_v4": load.total - copied_at,
        "errors": len(load.errors),
        "wrong_answers": len(load.mismatches),
        "load_failures_counted": failures,
    }
    print(f"\nhot reload under load: {json.dumps(figures)}")
    for key, value in figures.items():
        record_property(key, value)
    assert not load.errors, load.errors[:5]
    assert not load.mismatches, load.mismatches[:5]
    assert load.served["1"] >= PHASE_REQUESTS and load.served["2"] >= 2 * PHASE_REQUESTS
    assert failures >= 1
