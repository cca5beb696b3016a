import numpy as np
import pytest

from calsurr.service.errors import InvalidInput
from calsurr.service.grpc_codec import decode_inputs, decode_outputs, encode_inputs, encode_response
from calsurr.service.protocol import grpc_service_pb2 as pb


def _request(**arrays):
    request = pb.ModelInferRequest(model_name="m")
    encode_inputs(request, arrays)
    return request


def test_raw_contents_round_trip_both_float_types():
    a = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    b = np.linspace(0, 1, 5, dtype=np.float32)
    decoded = decode_inputs(_request(a=a, b=b))
    np.testing.assert_array_equal(decoded["a"], a)
    np.testing.assert_array_equal(decoded["b"], b)
    assert decoded["a"].dtype == np.float64 and decoded["b"].dtype == np.float32


def test_typed_contents_are_accepted():
    request = pb.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="x", datatype="FP64", shape=[2, 2])
    tensor.contents.fp64_contents.extend([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(decode_inputs(request)["x"], [[1.0, 2.0], [3.0, 4.0]])


def test_raw_size_mismatch_names_expected_bytes():
    request = _request(x=np.zeros((2, 4), dtype=np.float64))
    request.raw_input_contents[0] = request.raw_input_contents[0][:-8]
    with pytest.raises(InvalidInput, match="56 bytes, but shape \\[2, 4\\] of FP64 needs 64"):
        decode_inputs(request)


def test_typed_count_mismatch_and_wrong_field_are_refused():
    request = pb.ModelInferRequest()
    tensor = request.inputs.add(name="x", datatype="FP64", shape=[3])
    tensor.contents.fp64_contents.extend([1.0, 2.0])
    with pytest.raises(InvalidInput, match="2 values, but shape \\[3\\] needs 3"):
        decode_inputs(request)
    request = pb.ModelInferRequest()
    tensor = request.inputs.add(name="x", datatype="FP64", shape=[1])
    tensor.contents.fp32_contents.append(1.0)
    with pytest.raises(InvalidInput, match="expects 'fp64_contents'"):
        decode_inputs(request)


@pytest.mark.parametrize("datatype", ["INT64", "BYTES", "FP16", "fp64", ""])
def test_unserved_datatypes_are_refused(datatype):
    request = pb.ModelInferRequest()
    request.inputs.add(name="x", datatype=datatype, shape=[1])
    request.raw_input_contents.append(b"\x00" * 8)
    with pytest.raises(InvalidInput, match="is not served"):
        decode_inputs(request)


def test_raw_entry_count_must_match_inputs():
    request = _request(x=np.zeros(2))
    request.raw_input_contents.append(b"")
    with pytest.raises(InvalidInput, match="2 entries but the request declares 1"):
        decode_inputs(request)


def test_duplicate_and_mixed_inputs_are_refused():
    request = _request(x=np.zeros(2))
    request.inputs.add(name="x", datatype="FP64", shape=[2])
    request.raw_input_contents.append(np.zeros(2).tobytes())
    with pytest.raises(InvalidInput, match="more than once"):
        decode_inputs(request)
    request = _request(x=np.zeros(2))
    request.inputs[0].contents.fp64_contents.extend([0.0, 0.0])
    with pytest.raises(InvalidInput, match="both typed contents and raw"):
        decode_inputs(request)


def test_negative_dimensions_are_refused():
    request = pb.ModelInferRequest()
    request.inputs.add(name="x", datatype="FP64", shape=[-1, 4])
    request.raw_input_contents.append(b"")
    with pytest.raises(InvalidInput, match="negative dimension"):
        decode_inputs(request)


def test_responses_carry_raw_outputs_that_decode_back():
    outputs = {"mean": np.array([1.5, 2.5]), "sigma_stat": np.array([0.1, 0.2], dtype=np.float32)}
    response = encode_response("m", "3", "req", outputs)
    assert (response.model_name, response.model_version, response.id) == ("m", "3", "req")
    assert [o.datatype for o in response.outputs] == ["FP64", "FP32"]
    assert len(response.raw_output_contents) == 2
    decoded = decode_outputs(response)
    for name, array in outputs.items():
        np.testing.assert_array_equal(decoded[name], array)
