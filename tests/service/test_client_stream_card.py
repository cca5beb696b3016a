"""Our client's streaming helper and the calsurr.v1 card service, against an in-process server."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from calsurr.service.card import CARD_FILENAME, MODEL_FILENAME, ModelCard
from calsurr.service.client import AsyncInferenceClient, InferenceClient, StreamError
from calsurr.service.config import ServerSettings
from calsurr.service.server import BackgroundServer
from tests.conftest import TINY_MODEL

pytestmark = pytest.mark.slow
CARD_SERVICE = "calsurr.v1.ModelCardService"


@pytest.fixture(scope="module")
def server(tiny_repository):
    with BackgroundServer(ServerSettings(repo=tiny_repository, port=0, metrics_port=0)) as running:
        yield running


@pytest.fixture(scope="module")
def batches(tiny_run):
    momenta = tiny_run.test.momenta
    return [np.ascontiguousarray(momenta[i : i + n]) for i, n in ((0, 3), (3, 8), (11, 1), (12, 16))]


def _reference(tiny_repository, momenta):
    session = ort.InferenceSession(str(tiny_repository / TINY_MODEL / "1" / MODEL_FILENAME))
    return session.run(["mean", "sigma_stat", "sigma_syst", "sigma_tot"], {"momenta": momenta})


def test_stream_predict_answers_each_batch_in_order(server, tiny_repository, batches):
    with InferenceClient(server.address) as client:
        results = list(client.stream_predict(TINY_MODEL, iter(batches)))
    assert [len(r) for r in results] == [len(b) for b in batches]
    for result, batch in zip(results, batches, strict=True):
        assert result.model_version == "1"
        expected = _reference(tiny_repository, batch)
        for got, want in zip((result.mean, result.sigma_stat, result.sigma_syst, result.sigma_tot), expected):
            np.testing.assert_allclose(got, want, rtol=1e-12)  # merged runs may differ in the last place


def test_stream_predict_raises_on_a_refused_batch_with_its_index_and_code(server, batches):
    bad = [batches[0], np.zeros((2, 5, 4)), batches[1]]
    with InferenceClient(server.address) as client:
        stream = client.stream_predict(TINY_MODEL, bad)
        assert len(next(stream)) == 3
        with pytest.raises(StreamError) as error:
            next(stream)
        assert error.value.index == 1 and error.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "expects shape [-1, 4, 4]" in error.value.details
        assert client.is_ready()  # the client and server go on


def test_async_stream_predict_from_an_async_generator(server, batches):
    async def produce():
        for batch in batches:
            await asyncio.sleep(0)
            yield batch

    async def session():
        async with AsyncInferenceClient(server.address) as client:
            return [r async for r in client.stream_predict(TINY_MODEL, produce())], await client.card(TINY_MODEL)

    results, card = asyncio.run(session())
    assert [len(r) for r in results] == [len(b) for b in batches]
    assert card.name == TINY_MODEL


def test_card_is_the_card_on_disk(server, tiny_repository):
    with InferenceClient(server.address) as client:
        card = client.card(TINY_MODEL)
        assert card == ModelCard.read(tiny_repository / TINY_MODEL / "1" / CARD_FILENAME)
        assert card.inputs[0].unit == "GeV" and card.domain.sqrt_s_gev and card.calibration is not None
        assert client.card(TINY_MODEL, "1") == card
        for model, version in (("gg_qq", ""), (TINY_MODEL, "9")):
            with pytest.raises(grpc.RpcError) as error:
                client.card(model, version)
            assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_card_service_has_health_and_reflection(server):
    with grpc.insecure_channel(server.address) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=CARD_SERVICE))
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol=CARD_SERVICE),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="inference.ModelConfig"),
        ]
        listed, card, config = list(reflection.ServerReflectionInfo(iter(requests)))
    assert CARD_SERVICE in {s.name for s in listed.list_services_response.service}
    assert card.file_descriptor_response.file_descriptor_proto
    assert config.file_descriptor_response.file_descriptor_proto
