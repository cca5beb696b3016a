"""`calsurr serve` as a separate process, queried by our client and by the unmodified tritonclient."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton

from calsurr.service.card import MODEL_FILENAME
from calsurr.service.client import InferenceClient
from calsurr.service.protocol import grpc_service_pb2 as pb
from calsurr.service.protocol import grpc_service_pb2_grpc as pb_grpc
from tests.conftest import TINY_MODEL

pytestmark = pytest.mark.slow
OUTPUTS = ("mean", "sigma_stat", "sigma_syst", "sigma_tot")
CALSURR = Path(sys.executable).with_name("calsurr")


@pytest.fixture(scope="module")
def served(tiny_repository):
    """Start `calsurr serve --port 0` and read the port it bound from its first line."""
    process = subprocess.Popen(
        [str(CALSURR), "serve", "--repo", str(tiny_repository), "--port", "0", "--metrics-port", "0"]
        + ["--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 60
    line = ""
    while time.monotonic() < deadline and process.poll() is None:
        line = process.stdout.readline()
        if match := re.search(r"on 127\.0\.0\.1:(\d+)", line):
            yield process, f"127.0.0.1:{match.group(1)}"
            break
    else:
        process.kill()
        pytest.fail(f"server did not start: {line}{process.stdout.read()}")
    if process.poll() is None:
        process.kill()


def _reference(tiny_repository: Path, momenta: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(tiny_repository / TINY_MODEL / "1" / MODEL_FILENAME))
    return dict(zip(OUTPUTS, session.run(list(OUTPUTS), {"momenta": momenta}), strict=True))


def test_our_client_against_the_served_process(served, tiny_run, tiny_repository):
    _, address = served
    momenta = tiny_run.test.momenta[:100]
    with InferenceClient(address) as client:
        assert client.is_live() and client.is_ready() and client.is_model_ready(TINY_MODEL)
        prediction = client.predict(TINY_MODEL, momenta)
    reference = _reference(tiny_repository, momenta)
    for name in OUTPUTS:
        np.testing.assert_array_equal(getattr(prediction, name), reference[name])


def test_unmodified_tritonclient_gets_mean_and_both_sigmas(served, tiny_run, tiny_repository):
    _, address = served
    momenta = np.ascontiguousarray(tiny_run.test.momenta[:64])
    client = triton.InferenceServerClient(url=address)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(TINY_MODEL)
    assert client.get_server_metadata().name == "calsurr"
    metadata = client.get_model_metadata(TINY_MODEL)
    assert metadata.inputs[0].name == "momenta" and list(metadata.inputs[0].shape) == [-1, 4, 4]
    inputs = [triton.InferInput("momenta", list(momenta.shape), "FP64")]
    inputs[0].set_data_from_numpy(momenta)
    outputs = [triton.InferRequestedOutput(name) for name in ("mean", "sigma_stat", "sigma_syst")]
    result = client.infer(TINY_MODEL, inputs, outputs=outputs)
    reference = _reference(tiny_repository, momenta)
    for name in ("mean", "sigma_stat", "sigma_syst"):
        np.testing.assert_array_equal(result.as_numpy(name), reference[name])
    assert result.as_numpy("sigma_tot") is None  # only what was asked for
    with pytest.raises(triton.InferenceServerException, match="unknown model"):
        client.infer("gg_qq", inputs)
    client.close()


def test_sigterm_stops_the_server_cleanly(served):
    process, _ = served
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


def test_a_float32_model_serves_float32_through_tritonclient(tiny_run, tmp_path):
    """FP32 in and out, raw and typed contents, against onnxruntime on the same graph."""
    from calsurr.service.config import ServerSettings
    from calsurr.service.server import BackgroundServer
    from calsurr.training.export import export_to_repository

    export_to_repository(tiny_run, tmp_path, "gg_gg_fp32", version=1, io_datatype="FP32")
    momenta = np.ascontiguousarray(tiny_run.test.momenta[:16], dtype=np.float32)
    session = ort.InferenceSession(str(tmp_path / "gg_gg_fp32" / "1" / MODEL_FILENAME))
    expected = dict(zip(OUTPUTS, session.run(list(OUTPUTS), {"momenta": momenta}), strict=True))
    with BackgroundServer(ServerSettings(repo=tmp_path, host="127.0.0.1", port=0, metrics_port=0)) as server:
        client = triton.InferenceServerClient(url=server.address)
        assert client.get_model_metadata("gg_gg_fp32").inputs[0].datatype == "FP32"
        inputs = [triton.InferInput("momenta", list(momenta.shape), "FP32")]
        inputs[0].set_data_from_numpy(momenta)  # raw contents
        result = client.infer("gg_gg_fp32", inputs)
        for name in OUTPUTS:
            assert result.as_numpy(name).dtype == np.float32
            np.testing.assert_array_equal(result.as_numpy(name), expected[name])
        client.close()
        request = pb.ModelInferRequest(model_name="gg_gg_fp32")  # typed fp32_contents
        tensor = request.inputs.add(name="momenta", datatype="FP32", shape=momenta.shape)
        tensor.contents.fp32_contents.extend(momenta.ravel().tolist())
        with grpc.insecure_channel(server.address) as channel:
            response = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
        for output, raw in zip(response.outputs, response.raw_output_contents, strict=True):
            assert output.datatype == "FP32"
            np.testing.assert_array_equal(np.frombuffer(raw, dtype="<f4"), expected[output.name])
