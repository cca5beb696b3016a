"""Exit 0 when a server answers SERVING on gRPC health checking: `python -m calsurr.service.healthcheck HOST:PORT`.

Used by the container's HEALTHCHECK, which has no grpc_health_probe binary.
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def is_serving(address: str, service: str = "", timeout: float = 3.0) -> bool:
    try:
        with grpc.insecure_channel(address) as channel:
            request = health_pb2.HealthCheckRequest(service=service)
            reply = health_pb2_grpc.HealthStub(channel).Check(request, timeout=timeout)
    except grpc.RpcError:
        return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


if __name__ == "__main__":
    address = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:8001"
    sys.exit(0 if is_serving(address, *sys.argv[2:3]) else 1)
