"""Bytes that are not a valid request message, on every RPC: INVALID_ARGUMENT saying so, one log line at info,
counted, no traceback, and the server goes on serving (a stream goes on too)."""

from __future__ import annotations

import logging

import grpc
import numpy as np
import pytest

from calsurr.service.config import ServerSettings
from calsurr.service.protocol import calsurr_card_pb2 as card_pb
from calsurr.service.protocol import grpc_service_pb2 as pb
from calsurr.service.server import CARD_DESCRIPTOR, INFERENCE_DESCRIPTOR, BackgroundServer
from tests.conftest import TINY_MODEL
from tests.service.serving import infer_request, sample

pytestmark = pytest.mark.slow
# An invalid tag (field number 0) then a truncated varint: no protobuf message parses from these bytes.
GARBAGE = b"\x00\xff\xff\xff\xff\xff"
METHODS = [(INFERENCE_DESCRIPTOR, m) for m in INFERENCE_DESCRIPTOR.methods] + [
    (CARD_DESCRIPTOR, m) for m in CARD_DESCRIPTOR.methods
]


@pytest.fixture(scope="module")
def server(tiny_repository):
    with BackgroundServer(ServerSettings(repo=tiny_repository, port=0, metrics_port=0)) as running:
        yield running


@pytest.fixture(scope="module")
def momenta(tiny_run) -> np.ndarray:
    return np.ascontiguousarray(tiny_run.test.momenta[:16])


def _raw_call(channel: grpc.Channel, service, method, payloads: list[bytes]):
    """Call a method with raw bytes (no serializer), whatever its streaming kind; returns the raw responses."""
    path = f"/{service.full_name}/{method.name}"
    if method.client_streaming and method.server_streaming:
        return list(channel.stream_stream(path)(iter(payloads), timeout=30))
    if method.server_streaming:
        return list(channel.unary_stream(path)(payloads[0], timeout=30))
    if method.client_streaming:
        return [channel.stream_unary(path)(iter(payloads), timeout=30)]
    return [channel.unary_unary(path)(payloads[0], timeout=30)]


def test_garbage_is_refused_as_a_message_that_does_not_parse_on_every_unary_rpc(server, momenta, caplog):
    unary = [(s, m) for s, m in METHODS if not m.client_streaming and not m.server_streaming]
    assert len(unary) == len(METHODS) - 1  # ModelStreamInfer is tested below
    infer_refused = sample(server, "calsurr_requests_total", model="", version="", code="INVALID_ARGUMENT")
    with grpc.insecure_channel(server.address) as channel:
        for service, method in unary:
            before = sample(server, "calsurr_undecodable_messages_total", rpc=method.name)
            with caplog.at_level(logging.DEBUG, logger="calsurr"):
                caplog.clear()
                with pytest.raises(grpc.RpcError) as error:
                    _raw_call(channel, service, method, [GARBAGE])
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method.name, error.value.details())
            assert f"could not be parsed as a {method.input_type.full_name} message" in error.value.details()
            assert sample(server, "calsurr_undecodable_messages_total", rpc=method.name) == before + 1
            lines = [r for r in caplog.records if "could not be parsed" in r.getMessage()]
            assert len(lines) == 1 and lines[0].levelno == logging.INFO, method.name
            assert not any(r.exc_info for r in caplog.records), f"{method.name} logged a traceback"
        # the server serves on, on the same channel
        answer = pb.ModelInferResponse.FromString(
            channel.unary_unary(f"/{INFERENCE_DESCRIPTOR.full_name}/ModelInfer")(
                infer_request(momenta).SerializeToString(), timeout=30
            )
        )
        assert answer.model_version == "1" and len(answer.outputs) >= 4
        card = card_pb.ModelCardResponse.FromString(
            channel.unary_unary(f"/{CARD_DESCRIPTOR.full_name}/ModelCard")(
                card_pb.ModelCardRequest(name=TINY_MODEL).SerializeToString(), timeout=30
            )
        )
        assert card.name == TINY_MODEL
    # ModelInfer's garbage is an inference request refused under no model
    assert sample(server, "calsurr_requests_total", model="", version="", code="INVALID_ARGUMENT") == infer_refused + 1


def test_garbage_on_a_stream_is_answered_in_its_place_and_the_stream_goes_on(server, momenta):
    method = INFERENCE_DESCRIPTOR.methods_by_name["ModelStreamInfer"]
    good = [infer_request(momenta[i : i + 4], id=f"r{i}").SerializeToString() for i in (0, 4, 8)]
    with grpc.insecure_channel(server.address) as channel:
        raw = _raw_call(channel, INFERENCE_DESCRIPTOR, method, [good[0], GARBAGE, good[1], GARBAGE, good[2]])
    answers = [pb.ModelStreamInferResponse.FromString(r) for r in raw]
    assert len(answers) == 5  # one answer per message, in order
    assert [a.infer_response.id for a in answers[::2]] == ["r0", "r4", "r8"]
    assert all(not a.error_message and len(a.infer_response.outputs) >= 4 for a in answers[::2])
    for bad in answers[1::2]:
        assert bad.error_message.startswith("INVALID_ARGUMENT: the ModelStreamInfer request (6 bytes) could not be")


def test_random_bytes_never_get_unknown_or_internal(server, momenta):
    """Random bytes either do not parse (INVALID_ARGUMENT) or parse as some odd request that is refused for
    what it says (INVALID_ARGUMENT, NOT_FOUND); never UNKNOWN or INTERNAL, never the server's end."""
    rng = np.random.default_rng(9)
    codes = set()
    with grpc.insecure_channel(server.address) as channel:
        call = channel.unary_unary(f"/{INFERENCE_DESCRIPTOR.full_name}/ModelInfer")
        for _ in range(300):
            payload = rng.integers(0, 256, size=int(rng.integers(1, 200)), dtype=np.uint8).tobytes()
            try:
                call(payload, timeout=30)
                codes.add(grpc.StatusCode.OK)
            except grpc.RpcError as error:
                codes.add(error.code())
        assert pb.ModelInferResponse.FromString(call(infer_request(momenta).SerializeToString(), timeout=30)).outputs
    assert codes <= {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}, codes
    assert grpc.StatusCode.INVALID_ARGUMENT in codes
