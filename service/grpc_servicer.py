"""The Open Inference Protocol gRPC service: converts messages and calls the data plane, nothing more."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from service.dataplane import DataPlane
from service.errors import CalsurrError
from service.grpc_codec import decode_inputs, encode_response, requested_outputs
from service.protocol import grpc_service_pb2 as pb
from service.protocol import grpc_service_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
REQUEST_ID_METADATA = "x-request-id"

Request = TypeVar("Request")
Response = TypeVar("Response")
Handler = Callable[["InferenceServicer", Request, grpc.aio.ServicerContext], Awaitable[Response]]


def _status_on_error(handler: Handler) -> Handler:
    """Turn a CalsurrError into its status and message; anything else is INTERNAL and logged."""

    @functools.wraps(handler)
    async def wrapper(self, request, context):
        try:
            return await handler(self, request, context)
        except CalsurrError as exc:
            await context.abort(exc.status_code, str(exc))
        except Exception as exc:
            log.exception("%s failed", handler.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")

    return wrapper


def _tensor_metadata(specs) -> list[pb.ModelMetadataResponse.TensorMetadata]:
    return [pb.ModelMetadataResponse.TensorMetadata(name=s.name, datatype=s.datatype, shape=s.shape) for s in specs]


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    """The client's deadline in time.monotonic() seconds, or None when it set none."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


def _request_id(request, context: grpc.aio.ServicerContext) -> str:
    """gRPC metadata `x-request-id` (what proxies and tracing set), else the request's own `id` field."""
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_METADATA:
            return value if isinstance(value, str) else value.decode(errors="replace")
    return request.id


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, dataplane: DataPlane):
        self.dataplane = dataplane

    @_status_on_error
    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=self.dataplane.live())

    @_status_on_error
    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.dataplane.ready())

    @_status_on_error
    async def ModelReady(self, request, context):
        return pb.ModelReadyResponse(ready=self.dataplane.model_ready(request.name, request.version))

    @_status_on_error
    async def ServerMetadata(self, request, context):
        name, version, extensions = self.dataplane.server_metadata()
        return pb.ServerMetadataResponse(name=name, version=version, extensions=extensions)

    @_status_on_error
    async def ModelMetadata(self, request, context):
        meta = self.dataplane.model_metadata(request.name, request.version)
        return pb.ModelMetadataResponse(
            name=meta.name,
            versions=meta.versions,
            platform=meta.platform,
            inputs=_tensor_metadata(meta.inputs),
            outputs=_tensor_metadata(meta.outputs),
        )

    @_status_on_error
    async def ModelInfer(self, request, context):
        result = await self.dataplane.infer(
            request.model_name,
            request.model_version,
            functools.partial(decode_inputs, request),  # decoded inside the data plane's accounting
            requested_outputs(request),
            deadline=_deadline(context),
            request_id=_request_id(request, context),
        )
        return encode_response(result.model_name, result.model_version, request.id, result.outputs)
