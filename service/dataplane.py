"""What the server does, free of any transport: health, metadata and inference on numpy arrays.

The gRPC servicer only converts messages and calls this; requests are checked against the model's card here,
so a bad request fails with a message naming what the model expects, before it reaches onnxruntime.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from service import __version__
from service.card import ModelCard, TensorSpec
from service.errors import InvalidInput
from service.repository import ModelRepository
from service.runtime import DATATYPE_TO_NUMPY

SERVER_NAME = "calsurr"
PLATFORM = "onnxruntime_onnx"


@dataclass(frozen=True)
class InferenceResult:
    model_name: str
    model_version: str
    outputs: dict[str, np.ndarray]


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    versions: list[str]
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    card: ModelCard


def validate_inputs(card: ModelCard, inputs: dict[str, np.ndarray]) -> None:
    """Names, datatypes, shapes and values of a request against the card; one shared batch size >= 1."""
    expected = {spec.name: spec for spec in card.inputs}
    if set(inputs) != set(expected):
        raise InvalidInput(f"model '{card.name}' expects inputs {sorted(expected)}, got {sorted(inputs)}")
    batch_sizes = set()
    for name, array in inputs.items():
        spec = expected[name]
        if array.dtype != DATATYPE_TO_NUMPY[spec.datatype]:
            raise InvalidInput(f"input '{name}' expects datatype {spec.datatype}, got {array.dtype.name}")
        if array.ndim != len(spec.shape) or any(s not in (-1, a) for s, a in zip(spec.shape, array.shape)):
            raise InvalidInput(f"input '{name}' expects shape {list(spec.shape)}, got {list(array.shape)}")
        batch_sizes.add(array.shape[0])
        if not np.isfinite(array).all():
            raise InvalidInput(f"input '{name}' holds NaN or infinite values")
    if len(batch_sizes) != 1:
        raise InvalidInput(f"inputs disagree on the batch size: {sorted(batch_sizes)}")
    if batch_sizes.pop() == 0:
        raise InvalidInput("empty batch: inputs have 0 rows")


class DataPlane:
    def __init__(self, repository: ModelRepository):
        self.repository = repository

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        """Ready once every model in the repository has a ready version."""
        return all(self.repository.is_ready(name) for name in self.repository.names())

    def model_ready(self, name: str, version: str = "") -> bool:
        return self.repository.is_ready(name, version)

    def server_metadata(self) -> tuple[str, str, list[str]]:
        """Name, version, and the protocol extensions implemented (none beyond the core yet)."""
        return SERVER_NAME, __version__, []

    def model_metadata(self, name: str, version: str = "") -> ModelMetadata:
        model = self.repository.get(name, version)
        entry = self.repository.entry(name)
        return ModelMetadata(
            name=name,
            versions=[str(v) for v in sorted(entry.ready)],
            platform=PLATFORM,
            inputs=model.card.inputs,
            outputs=model.card.outputs,
            card=model.card,
        )

    async def infer(
        self, name: str, version: str, inputs: dict[str, np.ndarray], outputs: list[str] | None = None
    ) -> InferenceResult:
        model = self.repository.get(name, version)
        card = model.card
        validate_inputs(card, inputs)
        known = [o.name for o in card.outputs]
        if outputs:
            unknown = [o for o in outputs if o not in known]
            if unknown:
                raise InvalidInput(f"model '{name}' has no outputs {unknown}; it has {known}")
        # onnxruntime releases the GIL, so a worker thread keeps the event loop serving other requests.
        result = await asyncio.to_thread(model.run, inputs, outputs)
        return InferenceResult(name, str(card.version), result)
