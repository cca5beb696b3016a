"""Open Inference Protocol messages <-> numpy arrays, with the protocol-level checks done here at the boundary.

Raw contents are read with `np.frombuffer` (no per-element protobuf); typed contents are accepted too.
Responses always carry `raw_output_contents`, which is what tritonclient's `as_numpy` reads.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from google.protobuf.message import DecodeError, Message

from calsurr.service.errors import InvalidInput
from calsurr.service.protocol import grpc_service_pb2 as pb
from calsurr.service.runtime import DATATYPE_TO_NUMPY

TYPED_FIELD = {"FP32": "fp32_contents", "FP64": "fp64_contents"}
NUMPY_TO_DATATYPE = {v: k for k, v in DATATYPE_TO_NUMPY.items()}


@dataclass(frozen=True)
class Undecodable:
    """What a handler receives in place of a request whose bytes do not parse as the RPC's message type.

    grpcio answers a deserializer's exception with UNKNOWN and a traceback in the log; handing the handler this
    instead lets it answer INVALID_ARGUMENT, count it and log one line, like any other bad request.
    """

    method: str
    message_type: str
    size: int
    reason: str

    def error(self) -> InvalidInput:
        return InvalidInput(
            f"the {self.method} request ({self.size} bytes) could not be parsed as a {self.message_type} message "
            f"({self.reason}); send a serialized {self.message_type}"
        )


def tolerant_deserializer(message_class: type[Message], method: str) -> Callable[[bytes], Message | Undecodable]:
    """`message_class.FromString`, answering bytes that do not parse with an Undecodable instead of raising."""
    message_type = message_class.DESCRIPTOR.full_name

    def deserialize(data: bytes) -> Message | Undecodable:
        try:
            return message_class.FromString(data)
        except DecodeError as exc:
            return Undecodable(method, message_type, len(data), str(exc))

    return deserialize


def _element_count(name: str, shape: list[int]) -> int:
    if any(d < 0 for d in shape):
        raise InvalidInput(f"input '{name}': shape {shape} has a negative dimension")
    return math.prod(shape)


def _decode_raw(tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes, dtype: np.dtype) -> np.ndarray:
    shape = list(tensor.shape)
    expected = _element_count(tensor.name, shape) * dtype.itemsize
    if len(raw) != expected:
        raise InvalidInput(
            f"input '{tensor.name}': raw contents hold {len(raw)} bytes, but shape {shape} of "
            f"{tensor.datatype} needs {expected}"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def _decode_typed(tensor: pb.ModelInferRequest.InferInputTensor, dtype: np.dtype) -> np.ndarray:
    field = TYPED_FIELD[tensor.datatype]
    shape = list(tensor.shape)
    others = [f.name for f, _ in tensor.contents.ListFields() if f.name != field]
    if others:
        raise InvalidInput(f"input '{tensor.name}' of datatype {tensor.datatype} expects '{field}', got {others}")
    values = getattr(tensor.contents, field)
    expected = _element_count(tensor.name, shape)
    if len(values) != expected:
        raise InvalidInput(
            f"input '{tensor.name}': contents hold {len(values)} values, but shape {shape} needs {expected}"
        )
    return np.asarray(values, dtype=dtype).reshape(shape)


def _refuse_tensor_parameters(request: pb.ModelInferRequest) -> None:
    """Tensor parameters select extensions calsurr lacks (shared memory, classification): refusing them beats
    answering as if they had been honoured."""
    for tensor in request.inputs:
        if tensor.parameters:
            raise InvalidInput(
                f"input '{tensor.name}' has parameters {sorted(tensor.parameters)}, but inputs take none here: "
                "the shared-memory extension is not implemented, send the data in raw_input_contents"
            )
    for output in request.outputs:
        if output.parameters:
            raise InvalidInput(
                f"requested output '{output.name}' has parameters {sorted(output.parameters)}, but outputs take "
                "none here (no classification or shared-memory extension)"
            )


def decode_inputs(request: pb.ModelInferRequest) -> dict[str, np.ndarray]:
    """The request's input tensors as numpy arrays, keyed by name."""
    _refuse_tensor_parameters(request)
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(
            f"raw_input_contents has {len(raw)} entries but the request declares {len(request.inputs)} inputs"
        )
    arrays: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(request.inputs):
        if tensor.name in arrays:
            raise InvalidInput(f"input '{tensor.name}' appears more than once")
        dtype = DATATYPE_TO_NUMPY.get(tensor.datatype)
        if dtype is None:
            raise InvalidInput(
                f"input '{tensor.name}': datatype '{tensor.datatype}' is not served; expected one of "
                f"{sorted(DATATYPE_TO_NUMPY)}"
            )
        if raw:
            if tensor.HasField("contents"):
                raise InvalidInput(f"input '{tensor.name}' has both typed contents and raw_input_contents")
            arrays[tensor.name] = _decode_raw(tensor, raw[i], dtype)
        else:
            arrays[tensor.name] = _decode_typed(tensor, dtype)
    return arrays


def requested_outputs(request: pb.ModelInferRequest) -> list[str] | None:
    """Names the client asked for, or None for every output."""
    return [o.name for o in request.outputs] or None


def encode_response(
    model_name: str, model_version: str, request_id: str, outputs: dict[str, np.ndarray]
) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(model_name=model_name, model_version=model_version, id=request_id)
    for name, array in outputs.items():
        if array.dtype.str[0] != "<" or not array.flags.c_contiguous:  # raw contents are little-endian, C order
            array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        response.outputs.add(name=name, datatype=NUMPY_TO_DATATYPE[array.dtype], shape=array.shape)
        response.raw_output_contents.append(array.tobytes())
    return response


def encode_inputs(request: pb.ModelInferRequest, inputs: dict[str, np.ndarray]) -> None:
    """Fill a request's inputs as raw contents (the client side of `decode_inputs`)."""
    for name, array in inputs.items():
        array = np.ascontiguousarray(array)
        datatype = NUMPY_TO_DATATYPE.get(array.dtype.newbyteorder("<"))
        if datatype is None:
            raise TypeError(f"input '{name}': dtype {array.dtype} is not one of {sorted(DATATYPE_TO_NUMPY)}")
        request.inputs.add(name=name, datatype=datatype, shape=array.shape)
        request.raw_input_contents.append(array.astype(DATATYPE_TO_NUMPY[datatype], copy=False).tobytes())


def decode_outputs(response: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    """The response's outputs as numpy arrays (the client side of `encode_response`)."""
    arrays = {}
    for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=True):
        dtype = DATATYPE_TO_NUMPY[tensor.datatype]
        arrays[tensor.name] = np.frombuffer(raw, dtype=dtype).reshape(list(tensor.shape))
    return arrays
