"""The Open Inference Protocol gRPC service, and calsurr's card service: converts messages and calls the data
plane, nothing more."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor

from calsurr.service.dataplane import DataPlane, InferenceResult
from calsurr.service.errors import CalsurrError, Unimplemented
from calsurr.service.grpc_codec import (
    Undecodable,
    decode_inputs,
    encode_response,
    requested_outputs,
    tolerant_deserializer,
)
from calsurr.service.grpc_extensions import decode_parameters, encode_index, encode_model_config, encode_statistics
from calsurr.service.protocol import calsurr_card_pb2 as card_pb
from calsurr.service.protocol import calsurr_card_pb2_grpc as card_pb_grpc
from calsurr.service.protocol import grpc_service_pb2 as pb
from calsurr.service.protocol import grpc_service_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
REQUEST_ID_METADATA = "x-request-id"
FINAL_RESPONSE = "triton_final_response"  # response parameter on ModelStreamInfer, as Triton sets it
# Requests of one stream handled at once: enough to keep the batcher fed by one generator loop; beyond it
# the stream is not read further, so gRPC flow control holds the client back instead of server memory.
STREAM_WINDOW = 256
SHARED_MEMORY_REASON = (
    "calsurr does not implement the shared-memory extension: send tensors in raw_input_contents (one copy, "
    "no per-element protobuf)"
)
TRACE_REASON = (
    "calsurr does not implement the trace extension: latencies are in the Prometheus metrics "
    "(calsurr_request_duration_seconds, calsurr_queue_duration_seconds, calsurr_compute_duration_seconds) and "
    "in ModelStatistics; requests log one line each at log level debug, with their x-request-id"
)
LOG_SETTINGS_REASON = (
    "calsurr does not implement the logging extension: log level and format are settings fixed at start "
    "(--log-level, --log-format, CALSURR_LOG_LEVEL, CALSURR_LOG_FORMAT)"
)

Request = TypeVar("Request")
Response = TypeVar("Response")
Handler = Callable[["InferenceServicer", Request, grpc.aio.ServicerContext], Awaitable[Response]]


def _status_on_error(handler: Handler) -> Handler:
    """Turn a CalsurrError into its status and message; anything else is INTERNAL and logged. A request whose
    bytes did not parse is INVALID_ARGUMENT, counted and logged by the data plane."""

    @functools.wraps(handler)
    async def wrapper(self, request, context):
        try:
            if isinstance(request, Undecodable):
                raise self.dataplane.refuse_unparsed(request.method, request.error())
            return await handler(self, request, context)
        except CalsurrError as exc:
            await context.abort(exc.status_code, str(exc))
        except Exception as exc:
            log.exception("%s failed", handler.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")

    return wrapper


def _unimplemented(reason: str) -> Handler:
    """A method of the standard that does not apply here: UNIMPLEMENTED with the reason, never a silent success."""

    @_status_on_error
    async def handler(self, request, context):
        raise Unimplemented(reason)

    return handler


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
        result = await self._infer(request, _deadline(context), _request_id(request, context))
        return encode_response(result.model_name, result.model_version, request.id, result.outputs)

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """One answer per request, in the order the requests came. Up to STREAM_WINDOW requests run at once,
        so a generator's stream of small requests is batched like concurrent unary calls. A request that fails
        is answered with its `error_message` ("CODE: message") and the stream goes on."""
        deadline = _deadline(context)  # the stream's, if the client set one
        window = asyncio.Semaphore(STREAM_WINDOW)
        answers: asyncio.Queue[asyncio.Future | None] = asyncio.Queue()

        async def read() -> None:
            try:
                async for request in request_iterator:
                    await window.acquire()
                    answers.put_nowait(asyncio.ensure_future(self._stream_answer(request, context, deadline)))
            finally:
                answers.put_nowait(None)

        reader = asyncio.ensure_future(read())
        try:
            while (answer := await answers.get()) is not None:
                try:
                    yield await answer
                finally:
                    window.release()
            await reader  # the client's half of the stream failed: say so rather than end quietly
        finally:
            reader.cancel()
            while not answers.empty():
                if (pending := answers.get_nowait()) is not None:
                    pending.cancel()

    async def _stream_answer(
        self, request: pb.ModelInferRequest | Undecodable, context: grpc.aio.ServicerContext, deadline: float | None
    ) -> pb.ModelStreamInferResponse:
        if isinstance(request, Undecodable):  # answered on the stream, which goes on like after any bad request
            error = self.dataplane.refuse_unparsed(request.method, request.error())
            return _stream_error(pb.ModelInferRequest(), f"{error.status_code.name}: {error}")
        try:
            result = await self._infer(request, deadline, request.id or _request_id(request, context))
        except CalsurrError as exc:
            return _stream_error(request, f"{exc.status_code.name}: {exc}")
        except Exception as exc:
            log.exception("a request on ModelStreamInfer failed")
            return _stream_error(request, f"INTERNAL: {type(exc).__name__}: {exc}")
        response = encode_response(result.model_name, result.model_version, request.id, result.outputs)
        _mark_final(response)
        return pb.ModelStreamInferResponse(infer_response=response)

    async def _infer(self, request: pb.ModelInferRequest, deadline: float | None, request_id: str) -> InferenceResult:
        return await self.dataplane.infer(
            request.model_name,
            request.model_version,
            functools.partial(decode_inputs, request),  # decoded inside the data plane's accounting
            requested_outputs(request),
            parameters=decode_parameters(request.parameters) if request.parameters else None,
            deadline=deadline,
            request_id=request_id,
        )

    @_status_on_error
    async def ModelConfig(self, request, context):
        config = self.dataplane.model_config(request.name, request.version)
        return pb.ModelConfigResponse(config=encode_model_config(config))

    @_status_on_error
    async def ModelStatistics(self, request, context):
        statistics = self.dataplane.statistics(request.name, request.version)
        return pb.ModelStatisticsResponse(model_stats=[encode_statistics(s) for s in statistics])

    @_status_on_error
    async def RepositoryIndex(self, request, context):
        self.dataplane.check_repository_name(request.repository_name)
        return encode_index(self.dataplane.repository_index(ready_only=request.ready))

    @_status_on_error
    async def RepositoryModelLoad(self, request, context):
        self.dataplane.check_repository_name(request.repository_name)
        await self.dataplane.load_model(request.model_name, decode_parameters(request.parameters))
        return pb.RepositoryModelLoadResponse()

    @_status_on_error
    async def RepositoryModelUnload(self, request, context):
        self.dataplane.check_repository_name(request.repository_name)
        await self.dataplane.unload_model(request.model_name, decode_parameters(request.parameters))
        return pb.RepositoryModelUnloadResponse()

    SystemSharedMemoryStatus = _unimplemented(SHARED_MEMORY_REASON)
    SystemSharedMemoryRegister = _unimplemented(SHARED_MEMORY_REASON)
    SystemSharedMemoryUnregister = _unimplemented(SHARED_MEMORY_REASON)
    CudaSharedMemoryStatus = _unimplemented(SHARED_MEMORY_REASON)
    CudaSharedMemoryRegister = _unimplemented(SHARED_MEMORY_REASON)
    CudaSharedMemoryUnregister = _unimplemented(SHARED_MEMORY_REASON)
    TraceSetting = _unimplemented(TRACE_REASON)
    LogSettings = _unimplemented(LOG_SETTINGS_REASON)


def _stream_error(request: pb.ModelInferRequest, message: str) -> pb.ModelStreamInferResponse:
    """An error on the stream, with the request's model and id so that a client can tell which one failed."""
    echo = pb.ModelInferResponse(model_name=request.model_name, model_version=request.model_version, id=request.id)
    _mark_final(echo)
    return pb.ModelStreamInferResponse(error_message=message, infer_response=echo)


def _mark_final(response: pb.ModelInferResponse) -> None:
    """Every answer on a stream is its request's only one, hence final; Triton says so on every stream response
    (`triton_final_response`), and clients written for decoupled models read it to know a request is done."""
    response.parameters[FINAL_RESPONSE].bool_param = True


_HANDLER_KINDS = {  # (client streaming, server streaming) -> grpc's handler factory
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def add_servicer(servicer: object, service: ServiceDescriptor, server: grpc.aio.Server) -> None:
    """Register every method of `service` on `servicer`, as the generated `add_..._to_server` does, but with
    deserializers that hand an unparseable message to the handler as `Undecodable` rather than raise."""
    handlers = {}
    for method in service.methods:
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        handlers[method.name] = _HANDLER_KINDS[(method.client_streaming, method.server_streaming)](
            getattr(servicer, method.name),
            request_deserializer=tolerant_deserializer(request_class, method.name),
            response_serializer=response_class.SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)


class ModelCardServicer(card_pb_grpc.ModelCardServiceServicer):
    """calsurr.v1.ModelCardService: the card, which the standard protocol has no place for."""

    def __init__(self, dataplane: DataPlane):
        self.dataplane = dataplane

    @_status_on_error
    async def ModelCard(self, request, context):
        card = self.dataplane.card(request.name, request.version)
        return card_pb.ModelCardResponse(name=card.name, version=str(card.version), card_json=card.model_dump_json())
