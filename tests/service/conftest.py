"""Fixtures for service tests: a gRPC stub on the module's own `server` fixture."""

import grpc
import pytest

from calsurr.service.protocol import grpc_service_pb2_grpc as pb_grpc


@pytest.fixture(scope="module")
def stub(server):
    """An inference stub on the `server` fixture that the test module defines."""
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)
