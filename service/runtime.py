"""onnxruntime sessions for exported surrogates: execution providers, threads, and a checked signature."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from calsurr.service.card import ModelCard, TensorSpec

log = logging.getLogger(__name__)

ONNX_TO_DATATYPE = {"tensor(float)": "FP32", "tensor(double)": "FP64"}
DATATYPE_TO_NUMPY = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}
PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
# Providers that run the graph on a GPU (reported as such in ModelConfig's instance group).
GPU_PROVIDERS = frozenset({"CUDAExecutionProvider", "TensorrtExecutionProvider", "ROCMExecutionProvider"})


class SignatureMismatch(ValueError):
    """The ONNX graph and its card disagree about an input or output."""


@dataclass(frozen=True)
class RuntimeOptions:
    """How a session runs. `providers` in order of preference; the first available one is used."""

    providers: tuple[str, ...] = PREFERRED_PROVIDERS
    intra_op_threads: int = 0  # 0: onnxruntime decides (one per physical core)
    inter_op_threads: int = 1
    # onnxruntime's pool threads spin for a while after each run, waiting for the next. On a host whose cores
    # the event loop and gRPC also need, that spinning takes the CPU they would answer requests with; on
    # cores left to onnxruntime alone it saves a wake-up (microseconds) per run.
    spinning: bool = False


def available_providers(preferred: tuple[str, ...]) -> list[str]:
    """The preferred providers this onnxruntime build has, CPU always last as the fallback."""
    have = set(ort.get_available_providers())
    chosen = [p for p in preferred if p in have and p != "CPUExecutionProvider"]
    return [*chosen, "CPUExecutionProvider"]


class OnnxModel:
    """One loaded `model.onnx` whose inputs and outputs were checked against its card."""

    def __init__(self, model_path: Path, card: ModelCard, options: RuntimeOptions | None = None):
        options = options or RuntimeOptions()
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = options.intra_op_threads
        session_options.inter_op_num_threads = options.inter_op_threads
        spin = "1" if options.spinning else "0"
        session_options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        session_options.add_session_config_entry("session.inter_op.allow_spinning", spin)
        self.card = card
        self.session = ort.InferenceSession(
            str(model_path), sess_options=session_options, providers=available_providers(options.providers)
        )
        self.provider = self.session.get_providers()[0]
        _check_signature("input", self.session.get_inputs(), card.inputs)
        _check_signature("output", self.session.get_outputs(), card.outputs)
        log.info("loaded %s v%d on %s", card.name, card.version, self.provider)

    @property
    def gpu_id(self) -> int | None:
        """The GPU the session runs on (its provider's `device_id`), or None when it runs on the CPU."""
        if self.provider not in GPU_PROVIDERS:
            return None
        return int(self.session.get_provider_options().get(self.provider, {}).get("device_id", 0))

    def run(self, inputs: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """Run the graph; `outputs` None means all. Releases the GIL while onnxruntime computes."""
        names = outputs or [o.name for o in self.card.outputs]
        return dict(zip(names, self.session.run(names, inputs), strict=True))


def _check_signature(kind: str, graph_args: list, specs: tuple[TensorSpec, ...]) -> None:
    graph = {a.name: a for a in graph_args}
    if set(graph) != {s.name for s in specs}:
        raise SignatureMismatch(f"graph {kind}s {sorted(graph)} differ from card {kind}s {[s.name for s in specs]}")
    for spec in specs:
        arg = graph[spec.name]
        datatype = ONNX_TO_DATATYPE.get(arg.type, arg.type)
        if datatype != spec.datatype:
            raise SignatureMismatch(f"{kind} '{spec.name}': graph has {datatype}, card says {spec.datatype}")
        dims = tuple(d if isinstance(d, int) else -1 for d in arg.shape)
        if dims != spec.shape:
            raise SignatureMismatch(f"{kind} '{spec.name}': graph shape {list(dims)}, card shape {list(spec.shape)}")
