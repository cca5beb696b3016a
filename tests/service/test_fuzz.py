"""Property-based tests: arbitrary ModelInferRequest messages and arbitrary bytes on every RPC, through a live
in-process server. Every case gets a clean status (never UNKNOWN or INTERNAL) and the server goes on
answering good requests. The number of cases run is printed (`-s`) and recorded as a test property."""

from __future__ import annotations

import math
import shutil

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calsurr.service.auth import new_token
from calsurr.service.config import ServerSettings
from calsurr.service.protocol import grpc_service_pb2 as pb
from calsurr.service.server import CARD_DESCRIPTOR, INFERENCE_DESCRIPTOR, BackgroundServer
from tests.conftest import TINY_MODEL
from tests.service.serving import infer_request

pytestmark = pytest.mark.slow
CLEAN = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
}
# RPCs that answer these by design whatever they are sent: extensions calsurr does not implement, and a load
# that names a folder whose versions fail.
BY_DESIGN = {
    "SystemSharedMemoryStatus": {grpc.StatusCode.UNIMPLEMENTED},
    "SystemSharedMemoryRegister": {grpc.StatusCode.UNIMPLEMENTED},
    "SystemSharedMemoryUnregister": {grpc.StatusCode.UNIMPLEMENTED},
    "CudaSharedMemoryStatus": {grpc.StatusCode.UNIMPLEMENTED},
    "CudaSharedMemoryRegister": {grpc.StatusCode.UNIMPLEMENTED},
    "CudaSharedMemoryUnregister": {grpc.StatusCode.UNIMPLEMENTED},
    "TraceSetting": {grpc.StatusCode.UNIMPLEMENTED},
    "LogSettings": {grpc.StatusCode.UNIMPLEMENTED},
    "RepositoryModelLoad": {grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.FAILED_PRECONDITION},
}
METHODS = [(s, m) for s in (INFERENCE_DESCRIPTOR, CARD_DESCRIPTOR) for m in s.methods]
EXAMPLES = 400
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
cases: dict[str, int] = {}


@pytest.fixture(scope="module")
def server(tiny_repository, tmp_path_factory):
    """A copy of the tiny repository (a fuzzed unload must not touch the shared one), with tokens on."""
    folder = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(tiny_repository, folder / "repository")
    tokens = folder / "tokens"
    admin = new_token("admin", tokens)
    with BackgroundServer(
        ServerSettings(repo=folder / "repository", port=0, metrics_port=0, auth_tokens=tokens, log_level="warning")
    ) as running:
        running.admin = admin
        yield running


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.address) as channel:
        yield channel


@pytest.fixture(scope="module")
def momenta(tiny_run):
    return np.ascontiguousarray(tiny_run.test.momenta[:4])


def _metadata(server, token: str | None) -> tuple:
    return (("authorization", f"Bearer {token}"),) if token else ()


def _status(call, payload, metadata) -> grpc.StatusCode:
    try:
        call(payload, timeout=30, metadata=metadata)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def _still_serves(channel, server, momenta) -> None:
    call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
    raw = call(infer_request(momenta).SerializeToString(), timeout=30, metadata=_metadata(server, server.admin))
    assert len(pb.ModelInferResponse.FromString(raw).outputs) >= 4


# -- arbitrary inference requests ---------------------------------------------------------------------------------

names = st.one_of(st.just(TINY_MODEL), st.just("momenta"), st.text(max_size=12))
# Weighted towards what the model takes, so that the checks past the first ones are reached too.
datatypes = st.one_of(st.just("FP64"), st.just("FP64"), st.sampled_from(["FP32", "INT64", "BYTES", "fp64", "", "FP16"]))
shapes = st.lists(st.one_of(st.integers(-3, 8), st.integers(-(2**63), 2**63 - 1)), max_size=4)
parameter_values = st.one_of(
    st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=8), st.floats(allow_nan=True), st.none()
)
parameter_names = st.one_of(
    st.sampled_from(["members", "timeout", "priority", "sequence_id", "headers", "triton_x", "binary_data_output"]),
    st.text(max_size=8),
)


def _set(parameter: pb.InferParameter, value) -> None:
    if value is None:
        return  # a parameter sent with no value
    if isinstance(value, bool):
        parameter.bool_param = value
    elif isinstance(value, int):
        if value >= 0 and value % 2:
            parameter.uint64_param = value
        else:
            parameter.int64_param = value
    elif isinstance(value, float):
        parameter.double_param = value
    else:
        parameter.string_param = value


@st.composite
def infer_requests(draw) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(
        model_name=draw(st.one_of(st.just(TINY_MODEL), st.just(TINY_MODEL), st.text(max_size=10))),
        model_version=draw(
            st.one_of(st.just(""), st.just("1"), st.sampled_from(["2", "0", "-1", "x", "²", "99999999999999999999"]))
        ),
        id=draw(st.text(max_size=6)),
    )
    raw = draw(st.booleans())
    for _ in range(draw(st.integers(0, 3))):
        shape = draw(st.one_of(shapes, st.builds(lambda n, a, b: [n, a, b], *(st.integers(-2, 5),) * 3)))
        tensor = request.inputs.add(name=draw(names), datatype=draw(datatypes), shape=shape)
        if raw:
            # often exactly as many bytes as the shape claims (of float64), so that the checks after the size
            # check are reached too; the values are arbitrary (NaN, inf, denormals)
            claimed = abs(math.prod(shape)) * 8
            fits = claimed <= 4096 and draw(st.booleans())
            request.raw_input_contents.append(
                draw(st.binary(min_size=claimed, max_size=claimed) if fits else st.binary(max_size=256))
            )
        elif draw(st.booleans()):
            tensor.contents.fp64_contents.extend(draw(st.lists(st.floats(), max_size=40)))
        else:
            tensor.contents.int64_contents.extend(draw(st.lists(st.integers(-5, 5), max_size=10)))
        if draw(st.integers(0, 9)) == 0:
            tensor.parameters["shared_memory_region"].string_param = "r"
    if raw and draw(st.booleans()):
        request.raw_input_contents.append(draw(st.binary(max_size=32)))  # one more entry than inputs
    for _ in range(draw(st.integers(0, 2))):
        output = request.outputs.add(name=draw(st.sampled_from(["mean", "sigma_tot", "member_mean", "nope", ""])))
        if draw(st.integers(0, 9)) == 0:
            output.parameters["classification"].int64_param = 2
    for _ in range(draw(st.integers(0, 3))):
        _set(request.parameters[draw(parameter_names)], draw(parameter_values))
    return request


@FUZZ
@given(request=infer_requests(), token=st.sampled_from(["admin", None, "wrong"]))
def test_arbitrary_infer_requests_get_a_clean_status(server, channel, request, token):
    secret = {"admin": server.admin, "wrong": "not-a-token", None: None}[token]
    call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
    code = _status(call, request.SerializeToString(), _metadata(server, secret))
    cases["infer"] = cases.get("infer", 0) + 1
    assert code in CLEAN, (code, request)


@FUZZ
@given(request=infer_requests())
def test_arbitrary_requests_on_a_stream_get_a_clean_answer(server, channel, request):
    call = channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer")
    answers = list(call(iter([request.SerializeToString()]), timeout=30, metadata=_metadata(server, server.admin)))
    cases["stream"] = cases.get("stream", 0) + 1
    (answer,) = [pb.ModelStreamInferResponse.FromString(a) for a in answers]
    code = answer.error_message.partition(":")[0] if answer.error_message else "OK"
    assert grpc.StatusCode[code] in CLEAN, answer.error_message


# -- arbitrary bytes on every RPC ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("service", "method"), METHODS, ids=[m.name for _, m in METHODS])
def test_arbitrary_bytes_on_every_rpc_get_a_clean_status(server, channel, momenta, service, method, record_property):
    allowed = CLEAN | BY_DESIGN.get(method.name, set())
    path = f"/{service.full_name}/{method.name}"
    seen: set[grpc.StatusCode] = set()

    @settings(max_examples=EXAMPLES // 4, deadline=None, database=None)
    @given(payload=st.binary(max_size=512), token=st.booleans())
    def run(payload, token):
        metadata = _metadata(server, server.admin if token else None)
        if method.client_streaming:
            call = channel.stream_stream(path)
            try:
                for raw in call(iter([payload]), timeout=30, metadata=metadata):
                    answer = pb.ModelStreamInferResponse.FromString(raw)
                    code = answer.error_message.partition(":")[0] if answer.error_message else "OK"
                    seen.add(grpc.StatusCode[code])
                seen.add(grpc.StatusCode.OK)
            except grpc.RpcError as error:
                seen.add(error.code())
        else:
            seen.add(_status(channel.unary_unary(path), payload, metadata))
        cases["bytes"] = cases.get("bytes", 0) + 1

    run()
    assert seen <= allowed, seen - allowed
    record_property("statuses", sorted(c.name for c in seen))
    if method.name == "RepositoryModelUnload":  # a lucky payload could name the model: load it back
        channel.unary_unary("/inference.GRPCInferenceService/RepositoryModelLoad")(
            pb.RepositoryModelLoadRequest(model_name=TINY_MODEL).SerializeToString(),
            timeout=30,
            metadata=_metadata(server, server.admin),
        )
    _still_serves(channel, server, momenta)


def test_the_server_still_serves_after_the_fuzzing(server, channel, momenta, record_property):
    _still_serves(channel, server, momenta)
    total = sum(cases.values())
    print(f"\nfuzz cases run: {cases} ({total} in all)")
    record_property("fuzz_cases", total)
    assert cases.get("infer", 0) >= EXAMPLES and cases.get("bytes", 0) >= len(METHODS) * EXAMPLES // 4
