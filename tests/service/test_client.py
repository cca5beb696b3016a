"""The Python client: numpy in and out, sync and asyncio, against the real server; per-call deadlines; retries
on UNAVAILABLE only, against a scripted server and against a server that starts after the first attempt."""

from __future__ import annotations

import asyncio
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from calsurr.service.card import MODEL_FILENAME
from calsurr.service.client import AsyncInferenceClient, InferenceClient, Prediction, RetryPolicy
from calsurr.service.config import ServerSettings
from calsurr.service.grpc_codec import decode_inputs, encode_response
from calsurr.service.protocol import grpc_service_pb2 as pb
from calsurr.service.protocol import grpc_service_pb2_grpc as pb_grpc
from calsurr.service.server import BackgroundServer
from tests.conftest import TINY_MODEL
from tests.service.serving import WAIT_SECONDS, wait_until

OUTPUTS = ("mean", "sigma_stat", "sigma_syst", "sigma_tot")
FAST_RETRY = RetryPolicy(max_attempts=5, initial_backoff=0.005, max_backoff=0.02)


class ScriptedServicer(pb_grpc.GRPCInferenceServiceServicer):
    """Answers ServerLive and ModelInfer, after failing the first calls with the codes in `failures`;
    `hold` (when cleared) keeps a call waiting, for deadlines. Counts the calls that reached it."""

    def __init__(self) -> None:
        self.failures: list[grpc.StatusCode] = []
        self.calls = 0
        self.hold = threading.Event()
        self.hold.set()
        self._lock = threading.Lock()

    def _enter(self, context) -> None:
        with self._lock:
            self.calls += 1
            failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            context.abort(failure, f"scripted {failure.name}")
        self.hold.wait(WAIT_SECONDS)

    def ServerLive(self, request, context):
        self._enter(context)
        return pb.ServerLiveResponse(live=True)

    def ModelInfer(self, request, context):
        self._enter(context)
        x = decode_inputs(request)["x"]
        total = x.reshape(len(x), -1).sum(axis=1)
        outputs = {"mean": total, "sigma_stat": 0.1 * total, "sigma_syst": 0.2 * total}
        outputs["sigma_tot"] = np.hypot(outputs["sigma_stat"], outputs["sigma_syst"])
        return encode_response(request.model_name, "7", request.id, outputs)


@pytest.fixture(scope="module")
def scripted_server():
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    servicer = ScriptedServicer()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    servicer.hold.set()
    server.stop(0)


@pytest.fixture
def scripted(scripted_server):
    servicer, address = scripted_server
    servicer.failures.clear()
    servicer.calls = 0
    servicer.hold.set()
    return servicer, address


def test_backoff_grows_exponentially_up_to_its_cap_with_bounded_jitter():
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=1.0, multiplier=2.0, jitter=0.2)
    for retry, base in ((1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)):
        assert all(0.8 * base <= policy.backoff(retry) <= 1.2 * base for _ in range(50))
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


def test_unavailable_is_retried_until_the_server_answers(scripted):
    servicer, address = scripted
    servicer.failures = [grpc.StatusCode.UNAVAILABLE] * 3
    with InferenceClient(address, retry=FAST_RETRY) as client:
        assert client.is_live()
        assert client.retries == 3
    assert servicer.calls == 4


def test_retries_stop_after_max_attempts(scripted):
    servicer, address = scripted
    servicer.failures = [grpc.StatusCode.UNAVAILABLE] * 10
    with InferenceClient(address, retry=FAST_RETRY) as client, pytest.raises(grpc.RpcError) as error:
        client.is_live()
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    assert servicer.calls == FAST_RETRY.max_attempts


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INTERNAL]
)
def test_other_errors_are_never_retried(scripted, code):
    servicer, address = scripted
    servicer.failures = [code, code]
    with InferenceClient(address, retry=FAST_RETRY) as client, pytest.raises(grpc.RpcError) as error:
        client.infer("fake", {"x": np.ones((2, 3))})
    assert error.value.code() == code and client.retries == 0
    assert servicer.calls == 1


def test_a_deadline_ends_a_call_the_server_does_not_answer(scripted):
    servicer, address = scripted
    servicer.hold.clear()
    with InferenceClient(address, retry=FAST_RETRY) as client, pytest.raises(grpc.RpcError) as error:
        client.is_live(timeout=0.2)
    servicer.hold.set()
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert servicer.calls == 1  # a deadline is not retried


def test_the_deadline_bounds_the_retries_too(scripted):
    servicer, address = scripted
    servicer.failures = [grpc.StatusCode.UNAVAILABLE] * 1000
    patient = RetryPolicy(max_attempts=1000, initial_backoff=0.02, max_backoff=0.02)
    with InferenceClient(address, timeout=0.3, retry=patient) as client, pytest.raises(grpc.RpcError) as error:
        client.is_live()
    assert error.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert 1 <= servicer.calls < 1000


def test_numpy_in_and_out_with_parameters(scripted):
    _, address = scripted
    x = np.arange(12.0).reshape(4, 3)
    with InferenceClient(address) as client:
        outputs, version = client.infer("fake", {"x": x}, parameters={"members": False, "timeout": 10**6})
        result = client.predict("fake", x, input_name="x")
    assert version == "7" and outputs["mean"].dtype == np.float64
    np.testing.assert_array_equal(outputs["mean"], x.sum(axis=1))
    assert isinstance(result, Prediction) and len(result) == 4 and result.model_version == "7"
    np.testing.assert_allclose(result.sigma_tot, np.hypot(result.sigma_stat, result.sigma_syst))
    np.testing.assert_array_equal(result[1:3].mean, x.sum(axis=1)[1:3])


def test_the_async_client_retries_unavailable_and_nothing_else(scripted):
    servicer, address = scripted

    async def scenario() -> tuple[bool, int, grpc.StatusCode, int]:
        async with AsyncInferenceClient(address, retry=FAST_RETRY) as client:
            servicer.failures = [grpc.StatusCode.UNAVAILABLE] * 2
            live = await client.is_live()
            retried = client.retries
            servicer.failures = [grpc.StatusCode.INVALID_ARGUMENT]
            try:
                await client.infer("fake", {"x": np.ones((2, 3))})
            except grpc.RpcError as error:
                return live, retried, error.code(), client.retries
        raise AssertionError("INVALID_ARGUMENT was not raised")

    live, retried, code, retries = asyncio.run(scenario())
    assert live and retried == 2
    assert code == grpc.StatusCode.INVALID_ARGUMENT and retries == 2
    assert servicer.calls == 4


def test_the_async_client_honours_a_per_call_deadline(scripted):
    servicer, address = scripted
    servicer.hold.clear()

    async def scenario() -> grpc.StatusCode:
        async with AsyncInferenceClient(address, retry=FAST_RETRY) as client:
            try:
                await client.predict("fake", np.ones((2, 3)), input_name="x", timeout=0.2)
            except grpc.RpcError as error:
                return error.code()
        raise AssertionError("the call outlived its deadline")

    try:
        assert asyncio.run(scenario()) == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        servicer.hold.set()


# -- against the real server ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def momenta(tiny_run):
    return np.ascontiguousarray(tiny_run.test.momenta[:24])


@pytest.fixture(scope="module")
def expected(tiny_repository, momenta):
    session = ort.InferenceSession(str(tiny_repository / TINY_MODEL / "1" / MODEL_FILENAME))
    return dict(zip(OUTPUTS, session.run(list(OUTPUTS), {"momenta": momenta}), strict=True))


def _assert_matches(prediction: Prediction, expected: dict[str, np.ndarray]) -> None:
    assert prediction.model_version == "1"
    for name in OUTPUTS:
        np.testing.assert_array_equal(getattr(prediction, name), expected[name])


@pytest.mark.slow
def test_sync_and_async_clients_against_the_server(tiny_repository, momenta, expected):
    settings = ServerSettings(repo=tiny_repository, port=0, metrics=False)
    with BackgroundServer(settings) as server:
        with InferenceClient(server.address) as client:
            assert client.is_live() and client.is_ready() and client.is_model_ready(TINY_MODEL)
            _assert_matches(client.predict(TINY_MODEL, momenta, timeout=10), expected)
            with pytest.raises(grpc.RpcError) as error:
                client.infer(TINY_MODEL, {"momenta": momenta}, parameters={"colour": "red"})
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and client.retries == 0

        async def scenario() -> list[Prediction]:
            async with AsyncInferenceClient(server.address) as client:
                assert await client.is_live() and await client.is_model_ready(TINY_MODEL)
                halves = (momenta[:12], momenta[12:])
                return await asyncio.gather(*(client.predict(TINY_MODEL, half, timeout=10) for half in halves))

        first, second = asyncio.run(scenario())
    joined = Prediction(*(np.concatenate([getattr(first, n), getattr(second, n)]) for n in OUTPUTS), "1")
    _assert_matches(joined, expected)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_a_client_rides_out_a_server_that_starts_after_its_first_attempt(tiny_repository, momenta, expected):
    port = _free_port()
    patient = RetryPolicy(max_attempts=400, initial_backoff=0.02, max_backoff=0.1)
    answers: list[Prediction] = []
    with InferenceClient(f"127.0.0.1:{port}", timeout=WAIT_SECONDS, retry=patient) as client:
        caller = threading.Thread(target=lambda: answers.append(client.predict(TINY_MODEL, momenta)))
        caller.start()
        wait_until(lambda: client.retries >= 1, "the client's first attempt to fail")
        assert not answers
        with BackgroundServer(ServerSettings(repo=tiny_repository, port=port, metrics=False)):
            caller.join(WAIT_SECONDS)
        assert not caller.is_alive()
    assert len(answers) == 1 and client.retries >= 1
    _assert_matches(answers[0], expected)
