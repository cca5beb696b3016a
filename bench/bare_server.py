"""A bare Open Inference Protocol server: the reference row that measures calsurr's own cost apart from gRPC's
and the model's.

    .venv/bin/python bench/bare_server.py --model repo/gg_ggg/1 --port 8101

ModelInfer decodes raw_input_contents with np.frombuffer, runs onnxruntime on the event loop thread, encodes
every output as raw contents; ModelReady and ServerLive answer true (so clients can wait for it), and
ServerMetadata, ModelMetadata and ModelConfig describe the graph (the C++ client and perf_analyzer read them
once, before their first request; never on the timed path). Nothing else: no validation, no batching, no metrics, no
accounting, no thread hop. What calsurr adds on top of this (checks at the boundary, the batcher, metrics,
statistics, logs) is the difference between the two rows of a benchmark run side by side (bench/clients.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from calsurr.service.protocol import grpc_service_pb2 as pb  # noqa: E402
from calsurr.service.protocol import grpc_service_pb2_grpc as pb_grpc  # noqa: E402
from calsurr.service.protocol import model_config_pb2 as mc  # noqa: E402

NUMPY = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}
DATATYPE = {v: k for k, v in NUMPY.items()}
ONNX_DATATYPE = {"tensor(float)": "FP32", "tensor(double)": "FP64"}
CONFIG_DATATYPE = {"FP32": mc.TYPE_FP32, "FP64": mc.TYPE_FP64}
MAX_BATCH_SIZE = 65_536  # as calsurr's default


class BareServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, session: ort.InferenceSession, name: str):
        self.session, self.name = session, name
        self.outputs = [o.name for o in session.get_outputs()]

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(name="bare", version="0", extensions=[])

    async def ModelReady(self, request, context):
        return pb.ModelReadyResponse(ready=request.name == self.name)

    def _tensors(self, args) -> list[tuple[str, str, list[int]]]:
        return [(a.name, ONNX_DATATYPE[a.type], [d if isinstance(d, int) else -1 for d in a.shape]) for a in args]

    async def ModelMetadata(self, request, context):
        def meta(args):
            return [pb.ModelMetadataResponse.TensorMetadata(name=n, datatype=t, shape=s) for n, t, s in args]

        inputs, outputs = self._tensors(self.session.get_inputs()), self._tensors(self.session.get_outputs())
        return pb.ModelMetadataResponse(
            name=self.name, versions=["1"], platform="onnxruntime_onnx", inputs=meta(inputs), outputs=meta(outputs)
        )

    async def ModelConfig(self, request, context):
        config = mc.ModelConfig(name=self.name, platform="onnxruntime_onnx", max_batch_size=MAX_BATCH_SIZE)
        for field, args in ((config.input, self.session.get_inputs()), (config.output, self.session.get_outputs())):
            for name, datatype, shape in self._tensors(args):
                # Triton's dims leave out the batch axis and may not be empty: shape [-1] is dims [1], reshape []
                tensor = field.add(name=name, data_type=CONFIG_DATATYPE[datatype], dims=shape[1:] or [1])
                if len(shape) == 1:
                    tensor.reshape.SetInParent()
        return pb.ModelConfigResponse(config=config)

    async def ModelInfer(self, request, context):
        inputs = {
            t.name: np.frombuffer(raw, dtype=NUMPY[t.datatype]).reshape(list(t.shape))
            for t, raw in zip(request.inputs, request.raw_input_contents, strict=True)
        }
        values = self.session.run(self.outputs, inputs)
        response = pb.ModelInferResponse(model_name=self.name, model_version="1", id=request.id)
        for name, array in zip(self.outputs, values, strict=True):
            response.outputs.add(name=name, datatype=DATATYPE[array.dtype], shape=array.shape)
            response.raw_output_contents.append(array.tobytes())
        return response


async def serve(model_dir: Path, host: str, port: int, threads: int) -> None:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as calsurr's default
    session = ort.InferenceSession(str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"])
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20)])
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(BareServicer(session, model_dir.parent.name), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    print(f"bare server serving {model_dir.parent.name} on {host}:{bound}", flush=True)
    await server.wait_for_termination()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="exported model folder <repo>/<name>/<version>")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: onnxruntime decides)")
    args = parser.parse_args(argv)
    import uvloop

    uvloop.run(serve(args.model.resolve(), args.host, args.port, args.threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
