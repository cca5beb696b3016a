"""The gRPC server in-process on a free port: every RPC, and bad requests that must not hurt anyone else."""

from __future__ import annotations

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from calsurr.service.card import MODEL_FILENAME
from calsurr.service.client import InferenceClient
from calsurr.service.config import ServerSettings
from calsurr.service.protocol import grpc_service_pb2 as pb
from calsurr.service.server import BackgroundServer
from tests.conftest import TINY_MODEL
from tests.service.serving import infer_request

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tiny_repository):
    with BackgroundServer(ServerSettings(repo=tiny_repository, host="127.0.0.1", port=0, metrics_port=0)) as running:
        yield running


@pytest.fixture(scope="module")
def momenta(tiny_run):
    return np.ascontiguousarray(tiny_run.test.momenta[:32])


def test_health_and_metadata(stub, server):
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name=TINY_MODEL)).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name=TINY_MODEL, version="1")).ready
    assert not stub.ModelReady(pb.ModelReadyRequest(name=TINY_MODEL, version="7")).ready
    assert not stub.ModelReady(pb.ModelReadyRequest(name="nope")).ready
    meta = stub.ServerMetadata(pb.ServerMetadataRequest())
    assert meta.name == "calsurr" and meta.version
    model = stub.ModelMetadata(pb.ModelMetadataRequest(name=TINY_MODEL))
    assert list(model.versions) == ["1"] and model.platform == "onnxruntime_onnx"
    assert [(t.name, t.datatype, list(t.shape)) for t in model.inputs] == [("momenta", "FP64", [-1, 4, 4])]
    assert [t.name for t in model.outputs] == ["mean", "sigma_stat", "sigma_syst", "sigma_tot"]


def test_inference_matches_onnxruntime_in_process(server, tiny_repository, momenta):
    session = ort.InferenceSession(str(tiny_repository / TINY_MODEL / "1" / MODEL_FILENAME))
    expected = session.run(["mean", "sigma_stat", "sigma_syst", "sigma_tot"], {"momenta": momenta})
    with InferenceClient(server.address) as client:
        got = client.predict(TINY_MODEL, momenta)
    assert got.model_version == "1"
    for a, b in zip((got.mean, got.sigma_stat, got.sigma_syst, got.sigma_tot), expected, strict=True):
        np.testing.assert_array_equal(a, b)
    assert (got.sigma_stat > 0).all() and (got.sigma_syst > 0).all()
    np.testing.assert_allclose(got.sigma_tot**2, got.sigma_stat**2 + got.sigma_syst**2, rtol=1e-12)


def test_typed_contents_and_output_selection(stub, momenta):
    request = pb.ModelInferRequest(model_name=TINY_MODEL, id="typed-1")
    tensor = request.inputs.add(name="momenta", datatype="FP64", shape=momenta.shape)
    tensor.contents.fp64_contents.extend(momenta.ravel().tolist())
    request.outputs.add(name="sigma_syst")
    response = stub.ModelInfer(request)
    assert response.id == "typed-1"
    assert [o.name for o in response.outputs] == ["sigma_syst"]
    raw = stub.ModelInfer(infer_request(momenta))
    index = [o.name for o in raw.outputs].index("sigma_syst")
    assert response.raw_output_contents[0] == raw.raw_output_contents[index]


def _bad_requests(momenta):
    wrong_name = infer_request(momenta)
    wrong_name.inputs[0].name = "p"
    wrong_shape = pb.ModelInferRequest(model_name=TINY_MODEL)
    wrong_shape.inputs.add(name="momenta", datatype="FP64", shape=[32, 5, 4])
    wrong_shape.raw_input_contents.append(np.zeros((32, 5, 4)).tobytes())
    wrong_rank = pb.ModelInferRequest(model_name=TINY_MODEL)
    wrong_rank.inputs.add(name="momenta", datatype="FP64", shape=[3, 4])
    wrong_rank.raw_input_contents.append(np.zeros((3, 4)).tobytes())
    wrong_type = pb.ModelInferRequest(model_name=TINY_MODEL)
    wrong_type.inputs.add(name="momenta", datatype="FP32", shape=momenta.shape)
    wrong_type.raw_input_contents.append(momenta.astype(np.float32).tobytes())
    short_raw = infer_request(momenta)
    short_raw.raw_input_contents[0] = short_raw.raw_input_contents[0][:-1]
    extra_input = infer_request(momenta)
    extra_input.inputs.add(name="energy", datatype="FP64", shape=[32])
    extra_input.raw_input_contents.append(np.zeros(32).tobytes())
    nan_input = infer_request(np.where(np.arange(momenta.size).reshape(momenta.shape) == 5, np.nan, momenta))
    empty = infer_request(np.zeros((0, 4, 4)))
    unknown_output = infer_request(momenta)
    unknown_output.outputs.add(name="sigma_model")
    return {
        "unknown model": (infer_request(momenta, model_name="gg_qq"), grpc.StatusCode.NOT_FOUND, "unknown model"),
        "unknown version": (infer_request(momenta, model_version="9"), grpc.StatusCode.NOT_FOUND, "version '9'"),
        "wrong input name": (wrong_name, grpc.StatusCode.INVALID_ARGUMENT, "expects inputs ['momenta']"),
        "wrong shape": (wrong_shape, grpc.StatusCode.INVALID_ARGUMENT, "expects shape [-1, 4, 4], got [32, 5, 4]"),
        "wrong rank": (wrong_rank, grpc.StatusCode.INVALID_ARGUMENT, "expects shape [-1, 4, 4], got [3, 4]"),
        "wrong datatype": (wrong_type, grpc.StatusCode.INVALID_ARGUMENT, "expects datatype FP64, got float32"),
        "raw size mismatch": (short_raw, grpc.StatusCode.INVALID_ARGUMENT, "needs 4096"),
        "extra input": (extra_input, grpc.StatusCode.INVALID_ARGUMENT, "got ['energy', 'momenta']"),
        "nan input": (nan_input, grpc.StatusCode.INVALID_ARGUMENT, "NaN or infinite"),
        "empty batch": (empty, grpc.StatusCode.INVALID_ARGUMENT, "empty batch"),
        "unknown output": (unknown_output, grpc.StatusCode.INVALID_ARGUMENT, "no outputs ['sigma_model']"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "unknown model",
        "unknown version",
        "wrong input name",
        "wrong shape",
        "wrong rank",
        "wrong datatype",
        "raw size mismatch",
        "extra input",
        "nan input",
        "empty batch",
        "unknown output",
    ],
)
def test_bad_requests_get_a_clear_status_and_the_server_keeps_serving(stub, momenta, case):
    request, code, message = _bad_requests(momenta)[case]
    with pytest.raises(grpc.RpcError) as error:
        stub.ModelInfer(request)
    assert error.value.code() == code
    assert message in error.value.details()
    good = stub.ModelInfer(infer_request(momenta))
    assert len(good.raw_output_contents) == 4


def test_unknown_model_metadata_is_not_found(stub):
    with pytest.raises(grpc.RpcError) as error:
        stub.ModelMetadata(pb.ModelMetadataRequest(name="gg_qq"))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert "this server has ['gg_gg']" in error.value.details()


def test_grpc_health_checking_per_model(server):
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService", TINY_MODEL):
            status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as error:
            health.Check(health_pb2.HealthCheckRequest(service="gg_qq"))
        assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_and_describes_the_inference_service(server):
    with grpc.insecure_channel(server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="inference.GRPCInferenceService"),
        ]
        listed, described = list(stub.ServerReflectionInfo(iter(requests)))
    names = {s.name for s in listed.list_services_response.service}
    assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= names
    assert described.file_descriptor_response.file_descriptor_proto
