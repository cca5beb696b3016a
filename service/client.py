"""Python client for calsurr (and any Open Inference Protocol server): numpy in, numpy out.

with InferenceClient("127.0.0.1:8001") as client:
    result = client.predict("gg_gg", momenta)      # momenta: (N, 4, 4) float64, GeV
    result.mean, result.sigma_stat, result.sigma_syst, result.sigma_tot
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import numpy as np

from service.config import DEFAULT_MAX_MESSAGE_BYTES
from service.grpc_codec import decode_outputs, encode_inputs
from service.protocol import grpc_service_pb2 as pb
from service.protocol import grpc_service_pb2_grpc as pb_grpc


@dataclass(frozen=True)
class Prediction:
    """A surrogate's answer in physical units: the mean and its two uncertainties (one sigma)."""

    mean: np.ndarray
    sigma_stat: np.ndarray
    sigma_syst: np.ndarray
    sigma_tot: np.ndarray
    model_version: str

    def __len__(self) -> int:
        return len(self.mean)

    def __getitem__(self, index) -> Prediction:
        """The predictions of some points: `prediction[:10]`, `prediction[mask]`."""
        return Prediction(
            self.mean[index],
            self.sigma_stat[index],
            self.sigma_syst[index],
            self.sigma_tot[index],
            self.model_version,
        )


class InferenceClient:
    def __init__(self, address: str, timeout: float | None = 30.0):
        options = [
            ("grpc.max_receive_message_length", DEFAULT_MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", DEFAULT_MAX_MESSAGE_BYTES),
        ]
        self._channel = grpc.insecure_channel(address, options=options)
        self._stub = pb_grpc.GRPCInferenceServiceStub(self._channel)
        self.timeout = timeout
        self._input_names: dict[tuple[str, str], str] = {}

    def __enter__(self) -> InferenceClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def is_live(self) -> bool:
        return self._stub.ServerLive(pb.ServerLiveRequest(), timeout=self.timeout).live

    def is_ready(self) -> bool:
        return self._stub.ServerReady(pb.ServerReadyRequest(), timeout=self.timeout).ready

    def is_model_ready(self, model: str, version: str = "") -> bool:
        return self._stub.ModelReady(pb.ModelReadyRequest(name=model, version=version), timeout=self.timeout).ready

    def model_metadata(self, model: str, version: str = "") -> pb.ModelMetadataResponse:
        return self._stub.ModelMetadata(pb.ModelMetadataRequest(name=model, version=version), timeout=self.timeout)

    def infer(
        self, model: str, inputs: dict[str, np.ndarray], version: str = "", outputs: list[str] | None = None
    ) -> tuple[dict[str, np.ndarray], str]:
        """Any model: named arrays in, named arrays and the version that answered out."""
        request = pb.ModelInferRequest(model_name=model, model_version=version)
        encode_inputs(request, inputs)
        for name in outputs or []:
            request.outputs.add(name=name)
        response = self._stub.ModelInfer(request, timeout=self.timeout)
        return decode_outputs(response), response.model_version

    def _input_name(self, model: str, version: str) -> str:
        key = (model, version)
        if key not in self._input_names:
            self._input_names[key] = self.model_metadata(model, version).inputs[0].name
        return self._input_names[key]

    def predict(self, model: str, x: np.ndarray, version: str = "", input_name: str | None = None) -> Prediction:
        """A surrogate with one input: its prediction with both uncertainties."""
        name = input_name or self._input_name(model, version)
        out, served = self.infer(model, {name: x}, version)
        return Prediction(out["mean"], out["sigma_stat"], out["sigma_syst"], out["sigma_tot"], served)
