"""Batch inference over a dataset file: an exported model in-process (onnxruntime) or a server (gRPC).

The output file holds the input columns, the target when the input had one, and `mean`, `sigma_stat`,
`sigma_syst`, `sigma_tot` per event. No torch is involved on either path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from calsurr.service.card import CARD_FILENAME, MODEL_FILENAME, UNCERTAINTY_OUTPUTS, ModelCard
from calsurr.service.client import InferenceClient
from calsurr.service.runtime import OnnxModel
from calsurr.training.data import Dataset, read_dataset, write_dataset

DEFAULT_CHUNK_ROWS = 16_384  # rows per run or request: ~2 MB of gg -> ggg momenta, well under gRPC limits
NUMPY_DTYPES = {"FP32": np.float32, "FP64": np.float64}

Runner = Callable[[np.ndarray], dict[str, np.ndarray]]


def input_mismatch(shape: Sequence[int], inputs: np.ndarray) -> str | None:
    """Why `inputs` (a batch) do not fit a model input of `shape` (-1: any size), or None when they do."""
    expected = tuple(int(d) for d in shape[1:])
    got = tuple(inputs.shape[1:])
    if len(expected) == len(got) and all(e in (-1, g) for e, g in zip(expected, got)):
        return None
    return f"the model takes inputs of shape {[-1, *expected]}, the file holds {[-1, *got]}"


def _cast(rows: np.ndarray, datatype: str) -> np.ndarray:
    """Rows in the datatype of the graph's input (an `--fp32` export takes float32)."""
    return rows.astype(NUMPY_DTYPES.get(datatype, np.float64), copy=False)


def in_process_runner(model_dir: Path) -> tuple[Runner, ModelCard]:
    card = ModelCard.read(Path(model_dir) / CARD_FILENAME)
    model = OnnxModel(Path(model_dir) / MODEL_FILENAME, card)
    spec = card.inputs[0]
    return (lambda rows: model.run({spec.name: _cast(rows, spec.datatype)}, list(UNCERTAINTY_OUTPUTS))), card


def server_runner(address: str, model: str, version: str = "") -> tuple[Runner, InferenceClient, tuple[int, ...]]:
    """A runner through the server at `address`, its client (to close), and the model input's shape."""
    client = InferenceClient(address)
    try:
        spec = client.model_metadata(model, version).inputs[0]
    except BaseException:
        client.close()
        raise

    def run(rows: np.ndarray) -> dict[str, np.ndarray]:
        return client.infer(model, {spec.name: _cast(rows, spec.datatype)}, version, list(UNCERTAINTY_OUTPUTS))[0]

    return run, client, tuple(spec.shape)


def served_model(model_dir: Path | None, model_name: str | None) -> tuple[str, str]:
    """The model name and version (empty: the newest ready) to ask a server for: `model_name`, else the
    `<model>` and `<version>` of a `<repo>/<model>/<version>` folder."""
    name = model_name or (Path(model_dir).parent.name if model_dir else None)
    if not name:
        raise ValueError("with --server, name the model: --model-name NAME (or --model <repo>/<name>/<version>)")
    version = Path(model_dir).name if model_dir and Path(model_dir).name.isdigit() else ""
    return name, version


def predict_dataset(dataset: Dataset, run: Runner, chunk_rows: int = DEFAULT_CHUNK_ROWS, progress: bool = True):
    """Every output for every event, in chunks, with a progress bar."""
    inputs = np.ascontiguousarray(dataset.inputs)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in UNCERTAINTY_OUTPUTS}
    columns = [TextColumn("predicting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("rows", total=len(inputs))
        for start in range(0, len(inputs), chunk_rows):
            out = run(inputs[start : start + chunk_rows])
            for name in UNCERTAINTY_OUTPUTS:
                parts[name].append(out[name])
            bar.advance(task, min(chunk_rows, len(inputs) - start))
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def predict_file(
    model_dir: Path | None,
    data_path: Path,
    out_path: Path,
    server: str | None = None,
    model_name: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Read `data_path`, predict, write `out_path` (HDF5 or Parquet by suffix); returns the predictions.

    In-process from `model_dir` (a `<repo>/<model>/<version>` folder), or through `server` (HOST:PORT) for
    `model_name`, or for the model and version that `model_dir` names when only the server is given.
    Raises ValueError when the data do not fit the model. (`calsurr predict` checks the same before it starts.)
    """
    dataset = read_dataset(data_path)
    if server is None:
        if model_dir is None:
            raise ValueError("give --model (an exported model folder) or --server with a model name")
        run, card = in_process_runner(model_dir)
        _check_fit(card.inputs[0].shape, dataset)
        predictions = predict_dataset(dataset, run, chunk_rows, progress)
    else:
        name, version = served_model(model_dir, model_name)
        run, client, shape = server_runner(server, name, version)
        with client:
            _check_fit(shape, dataset)
            predictions = predict_dataset(dataset, run, chunk_rows, progress)
    write_dataset(out_path, dataset, extra_columns=predictions)
    return predictions


def _check_fit(shape: Sequence[int], dataset: Dataset) -> None:
    problem = input_mismatch(shape, dataset.inputs)
    if problem:
        raise ValueError(problem)
