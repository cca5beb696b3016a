"""The surrogate as the event generator sees it: momenta in, |M|^2 and its total uncertainty out.

One small interface, so that a model served over gRPC, an exported model run in-process by onnxruntime and a
test double plug in alike: an object with `predict(momenta) -> SurrogateAnswer` (anything with `mean` and
`sigma_tot` arrays in the units of |M|^2) and a `card` attribute (the ModelCard, or None for a double without
one). Neither implementation imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from calsurr.service.card import CARD_FILENAME, MODEL_FILENAME, ModelCard

CHUNK_ROWS = 16_384  # rows per request or run: ~3 MB of gg -> gggg momenta, well under the gRPC message limit
NUMPY_DTYPES = {"FP32": np.float32, "FP64": np.float64}


@dataclass(frozen=True)
class SurrogateAnswer:
    """A surrogate's |M|^2 (`mean`) and its total one-sigma uncertainty (`sigma_tot`), both (N,) in |M|^2 units."""

    mean: np.ndarray
    sigma_tot: np.ndarray


class Surrogate(Protocol):
    card: ModelCard | None

    def predict(self, momenta: np.ndarray) -> SurrogateAnswer: ...


def _chunks(momenta: np.ndarray, rows: int) -> list[np.ndarray]:
    return [np.ascontiguousarray(momenta[start : start + rows]) for start in range(0, len(momenta), rows)]


class LocalSurrogate:
    """An exported model folder (`<repo>/<name>/<version>`, model.onnx and card.json) run by onnxruntime."""

    def __init__(self, model_dir: Path, threads: int = 0):
        from calsurr.service.runtime import OnnxModel, RuntimeOptions

        self.card = ModelCard.read(Path(model_dir) / CARD_FILENAME)
        options = RuntimeOptions(providers=("CPUExecutionProvider",), intra_op_threads=threads)
        self._model = OnnxModel(Path(model_dir) / MODEL_FILENAME, self.card, options)
        self._input = self.card.inputs[0]
        self.where = f"in-process onnxruntime ({model_dir})"

    def predict(self, momenta: np.ndarray) -> SurrogateAnswer:
        dtype = NUMPY_DTYPES[self._input.datatype]
        means, sigmas = [], []
        for chunk in _chunks(momenta, CHUNK_ROWS):
            out = self._model.run({self._input.name: chunk.astype(dtype, copy=False)}, ["mean", "sigma_tot"])
            means.append(out["mean"])
            sigmas.append(out["sigma_tot"])
        return SurrogateAnswer(_join(means), _join(sigmas))

    def close(self) -> None:
        pass


class ServedSurrogate:
    """A model on a calsurr server (any Open Inference Protocol server with the calsurr card service).

    A batch larger than `CHUNK_ROWS` goes out as chunks over one bidirectional stream, so that several chunks
    are in flight while the server computes; a smaller one is a single ModelInfer call.
    """

    def __init__(self, address: str, model: str, version: str = "", timeout: float | None = 60.0):
        from calsurr.service.client import InferenceClient

        self._client = InferenceClient(address, timeout=timeout)
        try:
            self.card = self._client.card(model, version)
            metadata = self._client.model_metadata(model, version)
        except BaseException:
            self._client.close()
            raise
        self._model, self._version = model, version
        self._input = metadata.inputs[0].name
        self._dtype = NUMPY_DTYPES.get(metadata.inputs[0].datatype, np.float64)
        self.where = f"server {address}, model {model}" + (f" version {version}" if version else "")

    def predict(self, momenta: np.ndarray) -> SurrogateAnswer:
        chunks = [c.astype(self._dtype, copy=False) for c in _chunks(momenta, CHUNK_ROWS)]
        if len(chunks) == 1:
            answers = [self._client.predict(self._model, chunks[0], self._version, self._input)]
        else:
            answers = list(self._client.stream_predict(self._model, chunks, self._version, self._input))
        return SurrogateAnswer(_join([a.mean for a in answers]), _join([a.sigma_tot for a in answers]))

    def close(self) -> None:
        self._client.close()


def _join(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts).astype(np.float64, copy=False) if parts else np.zeros(0)


def relative_sigma(answer: SurrogateAnswer) -> np.ndarray:
    """sigma_tot / |mean|, +inf where the mean is zero or either is not finite (such a point is never trusted)."""
    mean, sigma = np.asarray(answer.mean, dtype=np.float64), np.asarray(answer.sigma_tot, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = sigma / np.abs(mean)
    return np.where(np.isfinite(rel), rel, np.inf)
