"""A minimal MLServer runtime for the serving benchmark: one onnxruntime session over an exported `model.onnx`.

Imported by MLServer in its own venv (bench/.venv-mlserver), never by calsurr: MLServer pins its own grpcio
and protobuf. What a user would write to serve our ONNX file on MLServer: decode each input with NumpyCodec,
run the session, encode every output. model-settings.json `parameters.uri` names the file; `parameters.extra`
may hold `intra_op_threads` (0: onnxruntime decides, as calsurr's default) and `providers` (a list).
"""

from __future__ import annotations

import asyncio

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxSurrogate(MLModel):
    """The whole exported function (inputs in physical units, mean and sigmas out) on onnxruntime."""

    async def load(self) -> bool:
        extra = (self.settings.parameters.extra if self.settings.parameters else None) or {}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(extra.get("intra_op_threads", 0))
        options.inter_op_num_threads = 1
        wanted = list(extra.get("providers", ["CPUExecutionProvider"]))
        have = set(ort.get_available_providers())
        providers = [p for p in wanted if p in have and p != "CPUExecutionProvider"] + ["CPUExecutionProvider"]
        uri = await get_model_uri(self.settings)
        self._session = ort.InferenceSession(uri, sess_options=options, providers=providers)
        self._outputs = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        inputs = {request_input.name: NumpyCodec.decode_input(request_input) for request_input in payload.inputs}
        # onnxruntime releases the GIL: off the event loop, as calsurr's batcher does.
        results = await asyncio.to_thread(self._session.run, self._outputs, inputs)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[NumpyCodec.encode_output(name, array) for name, array in zip(self._outputs, results)],
        )
