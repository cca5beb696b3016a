"""Our protocol file against the descriptors tritonclient ships: wire compatible message by message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from tritonclient.grpc import service_pb2 as triton_service

from service.protocol import grpc_service_pb2 as ours

ROOT = Path(__file__).resolve().parents[2]


def _messages(descriptor: Descriptor) -> list[Descriptor]:
    """A message and every message nested in it."""
    found = [descriptor]
    for nested in descriptor.nested_types:
        found.extend(_messages(nested))
    return found


def _field_signature(field: FieldDescriptor) -> tuple:
    return (
        field.number,
        field.type,
        field.is_repeated,
        field.message_type.full_name if field.message_type else None,
        field.containing_oneof.name if field.containing_oneof else None,
    )


OUR_MESSAGES = [m for top in ours.DESCRIPTOR.message_types_by_name.values() for m in _messages(top)]


def test_every_message_of_ours_exists_in_the_standard():
    theirs = triton_service.DESCRIPTOR.pool
    for message in OUR_MESSAGES:
        assert theirs.FindMessageTypeByName(message.full_name) is not None


@pytest.mark.parametrize("message", OUR_MESSAGES, ids=lambda m: m.full_name)
def test_message_fields_match_field_by_field(message):
    reference = triton_service.DESCRIPTOR.pool.FindMessageTypeByName(message.full_name)
    ours_fields = {f.name: _field_signature(f) for f in message.fields}
    their_fields = {f.name: _field_signature(f) for f in reference.fields}
    assert ours_fields == their_fields


def test_service_methods_match():
    ours_service = ours.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    reference = triton_service.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert ours_service.full_name == reference.full_name == "inference.GRPCInferenceService"
    for method in ours_service.methods:
        theirs = reference.methods_by_name[method.name]
        assert (method.input_type.full_name, method.output_type.full_name) == (
            theirs.input_type.full_name,
            theirs.output_type.full_name,
        )
        assert (method.client_streaming, method.server_streaming) == (theirs.client_streaming, theirs.server_streaming)
    assert {"ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer"} <= {
        m.name for m in ours_service.methods
    }


def test_a_request_serialised_by_us_parses_identically_in_tritonclient():
    request = ours.ModelInferRequest(model_name="gg_gg", model_version="1", id="r1")
    tensor = request.inputs.add(name="momenta", datatype="FP64", shape=[2, 4, 4])
    tensor.parameters["unit"].string_param = "GeV"
    request.outputs.add(name="mean")
    request.raw_input_contents.append(b"\x00" * 256)
    request.parameters["members"].bool_param = True
    parsed = triton_service.ModelInferRequest.FromString(request.SerializeToString())
    assert parsed.SerializeToString(deterministic=True) == request.SerializeToString(deterministic=True)
    assert parsed.inputs[0].parameters["unit"].string_param == "GeV"
    assert parsed.parameters["members"].bool_param is True


def test_generated_stubs_are_up_to_date():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "generate_protos.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
