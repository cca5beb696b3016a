"""Our protocol files against the descriptors tritonclient ships: wire compatible message by message.

`grpc_service.proto` must equal the standard's field for field and method for method. `model_config.proto`
declares only the fields calsurr fills in, so there each of our fields and enum values must be the standard's
(same name, number, type, label, oneof), and what we leave out a reader simply sees unset.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from tritonclient.grpc import model_config_pb2 as triton_config
from tritonclient.grpc import service_pb2 as triton_service

from calsurr.service.protocol import grpc_service_pb2 as ours
from calsurr.service.protocol import model_config_pb2 as ours_config

ROOT = Path(__file__).resolve().parents[2]
THEIR_POOL = triton_service.DESCRIPTOR.pool


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
        field.enum_type.full_name if field.enum_type else None,
        field.containing_oneof.name if field.containing_oneof else None,
    )


def _enums(file) -> list[EnumDescriptor]:
    found = list(file.enum_types_by_name.values())
    for top in file.message_types_by_name.values():
        for message in _messages(top):
            found.extend(message.enum_types)
    return found


OUR_MESSAGES = [m for top in ours.DESCRIPTOR.message_types_by_name.values() for m in _messages(top)]
OUR_CONFIG_MESSAGES = [m for top in ours_config.DESCRIPTOR.message_types_by_name.values() for m in _messages(top)]
OUR_CONFIG_ENUMS = _enums(ours_config.DESCRIPTOR)


def test_every_message_of_ours_exists_in_the_standard():
    for message in OUR_MESSAGES + OUR_CONFIG_MESSAGES:
        assert THEIR_POOL.FindMessageTypeByName(message.full_name) is not None


def test_we_declare_every_message_of_the_standard_service():
    theirs = {m.full_name for top in triton_service.DESCRIPTOR.message_types_by_name.values() for m in _messages(top)}
    assert {m.full_name for m in OUR_MESSAGES} == theirs


@pytest.mark.parametrize("message", OUR_MESSAGES, ids=lambda m: m.full_name)
def test_message_fields_match_field_by_field(message):
    reference = THEIR_POOL.FindMessageTypeByName(message.full_name)
    ours_fields = {f.name: _field_signature(f) for f in message.fields}
    their_fields = {f.name: _field_signature(f) for f in reference.fields}
    assert ours_fields == their_fields


@pytest.mark.parametrize("message", OUR_CONFIG_MESSAGES, ids=lambda m: m.full_name)
def test_model_config_fields_are_the_standards(message):
    reference = THEIR_POOL.FindMessageTypeByName(message.full_name)
    their_fields = {f.name: _field_signature(f) for f in reference.fields}
    for field in message.fields:
        assert field.name in their_fields, f"{message.full_name}.{field.name} is not in the standard"
        assert _field_signature(field) == their_fields[field.name], f"{message.full_name}.{field.name}"


@pytest.mark.parametrize("enum", OUR_CONFIG_ENUMS, ids=lambda e: e.full_name)
def test_model_config_enums_match_value_by_value(enum):
    reference = THEIR_POOL.FindEnumTypeByName(enum.full_name)
    assert {v.name: v.number for v in enum.values} == {v.name: v.number for v in reference.values}


def test_model_config_file_matches_the_standards_name_and_package():
    assert (ours_config.DESCRIPTOR.name, ours_config.DESCRIPTOR.package) == (
        triton_config.DESCRIPTOR.name,
        triton_config.DESCRIPTOR.package,
    )
    assert [d.name for d in ours.DESCRIPTOR.dependencies] == ["model_config.proto"]


def test_service_methods_match():
    ours_service = ours.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    reference = triton_service.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert ours_service.full_name == reference.full_name == "inference.GRPCInferenceService"
    assert [m.name for m in ours_service.methods] == [m.name for m in reference.methods]
    for method in ours_service.methods:
        theirs = reference.methods_by_name[method.name]
        assert (method.input_type.full_name, method.output_type.full_name) == (
            theirs.input_type.full_name,
            theirs.output_type.full_name,
        )
        assert (method.client_streaming, method.server_streaming) == (theirs.client_streaming, theirs.server_streaming)


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


def test_a_model_config_serialised_by_us_parses_in_tritonclient():
    config = ours_config.ModelConfig(name="gg_gg", platform="onnxruntime_onnx", max_batch_size=65536)
    config.input.add(name="momenta", data_type=ours_config.TYPE_FP64, dims=[4, 4])
    config.output.add(name="mean", data_type=ours_config.TYPE_FP64, dims=[])
    config.dynamic_batching.max_queue_delay_microseconds = 100
    config.dynamic_batching.default_queue_policy.max_queue_size = 1024
    config.instance_group.add(kind=ours_config.ModelInstanceGroup.KIND_CPU, count=2)
    config.version_policy.latest.num_versions = 1
    config.parameters["execution_provider"].string_value = "CPUExecutionProvider"
    response = ours.ModelConfigResponse(config=config)
    parsed = triton_service.ModelConfigResponse.FromString(response.SerializeToString())
    assert parsed.SerializeToString(deterministic=True) == response.SerializeToString(deterministic=True)
    assert parsed.config.WhichOneof("scheduling_choice") == "dynamic_batching"
    assert parsed.config.input[0].data_type == triton_config.TYPE_FP64
    assert parsed.config.instance_group[0].kind == triton_config.ModelInstanceGroup.KIND_CPU
    assert parsed.config.parameters["execution_provider"].string_value == "CPUExecutionProvider"
