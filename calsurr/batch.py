"""Batch prediction at scale: many dataset files, or one large one, in partitions on a Dask cluster.

    calsurr predict --model repo/gg_ggg/1 --data a.parquet --data b.h5 --out predictions/ --workers 8
    calsurr predict --server calsurr.physics.svc:8001 --model-name gg_ggg --data big.h5 --out predictions/ \\
        --scheduler tcp://dask-scheduler:8786

The client reads only each file's metadata and row count, and cuts it into partitions: row ranges of an HDF5
file, row groups of a Parquet file (merged up to `partition_rows`; Parquet cannot read less than a row group).
Each Dask task reads its partition, predicts it in-process with onnxruntime (a session per worker process,
loaded once) or through a calsurr server (a client per worker), and writes one Parquet file of the output
dataset: `part-<file>-<partition>.parquet`, the input columns, target (and target_sigma) and `mean`,
`sigma_stat`, `sigma_syst`, `sigma_tot` per event, with the dataset's metadata, so that each part is a calsurr
dataset file of its own (`calsurr.training.data.read_dataset` reads it) and the sorted parts are the inputs in
order. On a real cluster the output folder must be one every worker can write (a shared file system).

Without `--scheduler` a LocalCluster of `--workers` processes runs on this machine, one thread each, with
onnxruntime told to use `threads` cores per worker.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from calsurr.predict import DEFAULT_CHUNK_ROWS, Runner, predict_dataset

DEFAULT_PARTITION_ROWS = 262_144  # ~35 MB of gg -> ggg momenta in memory per task, seconds of onnxruntime
PART_PATTERN = "part-{file:04d}-{partition:05d}.parquet"
SUMMARY_FILE = "_calsurr_predict.json"  # what was predicted, from what, by which model: beside the parts


class PlanError(ValueError):
    """A file that cannot be partitioned (unreadable, not the schema): the message names it."""


@dataclass(frozen=True)
class Source:
    """How predictions are made: an exported model folder in-process, or a model on a server."""

    model_dir: str | None = None
    server: str | None = None
    model_name: str = ""
    version: str = ""
    threads: int = 1  # onnxruntime intra-op threads per worker (in-process)
    chunk_rows: int = DEFAULT_CHUNK_ROWS


@dataclass(frozen=True)
class FilePlan:
    """What a file holds, read from its metadata only (no arrays)."""

    index: int
    path: str
    format: Literal["hdf5", "parquet"]
    kind: Literal["amplitude", "calorimeter"]
    process: str
    n_rows: int
    input_shape: tuple[int, ...]  # per event: (n, 4) momenta or (F,) features
    input_name: str  # HDF5 dataset name, momenta or features
    columns: tuple[str, ...]  # Parquet input columns (p1_E, ...) or feature names
    has_sigma: bool
    provenance_json: str  # DatasetProvenance as JSON ({} when the file carries none)


@dataclass(frozen=True)
class Partition:
    file: FilePlan
    number: int  # within its file
    start: int  # first row in the file
    stop: int
    row_groups: tuple[int, ...] = ()  # Parquet

    @property
    def rows(self) -> int:
        return self.stop - self.start

    @property
    def part_name(self) -> str:
        return PART_PATTERN.format(file=self.file.index, partition=self.number)


@dataclass(frozen=True)
class PartResult:
    part: str
    rows: int
    seconds: float  # read, predict and write, on the worker
    worker: str


# ---------------------------------------------------------------------------------------------------------------
# Planning (on the client: metadata only)


def plan_file(index: int, path: Path) -> FilePlan:
    from calsurr.training.data import DatasetFormatError, file_format

    try:
        fmt = file_format(path)
        return (_plan_hdf5 if fmt == "hdf5" else _plan_parquet)(index, Path(path))
    except DatasetFormatError as exc:
        raise PlanError(str(exc)) from None
    except (OSError, ValueError, KeyError) as exc:
        raise PlanError(f"{path}: {exc}") from None


def _process(metadata, kind: str, n_particles: int) -> str:
    from calsurr.training.data import CALORIMETER_PROCESS, _infer_process

    if metadata is not None:
        return metadata.process
    return CALORIMETER_PROCESS if kind == "calorimeter" else _infer_process(n_particles)


def _provenance_json(metadata) -> str:
    return "{}" if metadata is None else metadata.provenance().model_dump_json()


def _plan_hdf5(index: int, path: Path) -> FilePlan:
    import h5py

    from calsurr.training.data import FEATURE_NAMES, METADATA_KEY, _hdf5_kind, _parse_metadata, _text

    with h5py.File(path, "r") as f:
        kind, input_name = _hdf5_kind(f)
        shape = tuple(f[input_name].shape)
        if f["target"].shape != shape[:1]:
            raise ValueError(f"'target' has {f['target'].shape[0]} rows, '{input_name}' {shape[0]}")
        raw = f.attrs.get(METADATA_KEY)
        metadata = _parse_metadata(None if raw is None else _text(raw))
        stored = f[input_name].attrs.get("columns")
        has_sigma = "target_sigma" in f
    columns: tuple[str, ...] = ()
    if kind == "calorimeter":
        if stored is not None:
            columns = tuple(_text(n) for n in np.atleast_1d(stored))
        elif metadata is not None:
            columns = metadata.columns
        else:
            columns = FEATURE_NAMES if shape[1] == len(FEATURE_NAMES) else tuple(f"x{i}" for i in range(shape[1]))
    n_particles = shape[1] if kind == "amplitude" else 0
    return FilePlan(
        index, str(path), "hdf5", kind, _process(metadata, kind, n_particles), shape[0], shape[1:], input_name,
        columns, has_sigma, _provenance_json(metadata),
    )  # fmt: skip


def _plan_parquet(index: int, path: Path) -> FilePlan:
    import pyarrow.parquet as pq

    from calsurr.training.data import METADATA_KEY, MOMENTUM_COMPONENTS, _parquet_input_columns, _parse_metadata

    schema = pq.read_schema(path)
    metadata = _parse_metadata((schema.metadata or {}).get(METADATA_KEY.encode()))
    kind, columns = _parquet_input_columns(schema.empty_table(), metadata)
    missing = [c for c in (*columns, "target") if c not in schema.names]
    if missing:
        raise ValueError(f"expects the columns {', '.join(missing)}, found {schema.names}")
    n_rows = pq.ParquetFile(path).metadata.num_rows
    if kind == "amplitude":
        shape = (len(columns) // len(MOMENTUM_COMPONENTS), len(MOMENTUM_COMPONENTS))
    else:
        shape = (len(columns),)
    return FilePlan(
        index, str(path), "parquet", kind, _process(metadata, kind, shape[0]), n_rows, shape,
        "momenta" if kind == "amplitude" else "features", columns, "target_sigma" in schema.names,
        _provenance_json(metadata),
    )  # fmt: skip


def partitions(plan: FilePlan, partition_rows: int) -> list[Partition]:
    """Row ranges of at most `partition_rows` (HDF5), or whole row groups merged up to it (Parquet)."""
    if plan.format == "hdf5":
        edges = [*range(0, plan.n_rows, partition_rows), plan.n_rows]
        return [Partition(plan, i, a, b) for i, (a, b) in enumerate(zip(edges[:-1], edges[1:])) if b > a]
    import pyarrow.parquet as pq

    metadata = pq.ParquetFile(plan.path).metadata
    parts, groups, start, rows = [], [], 0, 0
    for group in range(metadata.num_row_groups):
        n = metadata.row_group(group).num_rows
        if groups and rows + n > partition_rows:
            parts.append(Partition(plan, len(parts), start, start + rows, tuple(groups)))
            start, groups, rows = start + rows, [], 0
        groups.append(group)
        rows += n
    if rows:
        parts.append(Partition(plan, len(parts), start, start + rows, tuple(groups)))
    return parts


def plan(paths: Sequence[Path], partition_rows: int = DEFAULT_PARTITION_ROWS) -> list[Partition]:
    """Every partition of every file, in input order; all files must hold the same kind of inputs."""
    plans = [plan_file(i, Path(p)) for i, p in enumerate(paths)]
    shapes = {(p.kind, p.input_shape) for p in plans}
    if len(shapes) > 1:
        described = "; ".join(f"{p.path}: {p.kind} {[-1, *p.input_shape]}" for p in plans)
        raise PlanError(f"the --data files hold different inputs ({described}); predict them in separate runs")
    return [part for p in plans for part in partitions(p, partition_rows)]


# ---------------------------------------------------------------------------------------------------------------
# One partition (on a worker)

_RUNNERS: dict[Source, Runner] = {}  # per worker process: one onnxruntime session or client per source


def _runner(source: Source) -> Runner:
    if source not in _RUNNERS:
        if source.server is not None:
            from calsurr.predict import server_runner

            run, _client, _shape = server_runner(source.server, source.model_name, source.version)
        else:
            from calsurr.predict import _cast
            from calsurr.service.card import CARD_FILENAME, MODEL_FILENAME, UNCERTAINTY_OUTPUTS, ModelCard
            from calsurr.service.runtime import OnnxModel, RuntimeOptions

            folder = Path(source.model_dir)
            card = ModelCard.read(folder / CARD_FILENAME)
            model = OnnxModel(folder / MODEL_FILENAME, card, RuntimeOptions(intra_op_threads=source.threads))
            spec, outputs = card.inputs[0], list(UNCERTAINTY_OUTPUTS)

            def run(rows: np.ndarray) -> dict[str, np.ndarray]:
                return model.run({spec.name: _cast(rows, spec.datatype)}, outputs)

        _RUNNERS[source] = run
    return _RUNNERS[source]


def read_partition(part: Partition):
    """The partition's rows as a Dataset (validated as `read_dataset` validates a whole file)."""
    from calsurr.training.data import AmplitudeDataset, CalorimeterDataset, DatasetProvenance

    plan = part.file
    if plan.format == "hdf5":
        import h5py

        with h5py.File(plan.path, "r") as f:
            inputs = np.asarray(f[plan.input_name][part.start : part.stop], dtype=np.float64)
            target = np.asarray(f["target"][part.start : part.stop], dtype=np.float64)
            sigma = np.asarray(f["target_sigma"][part.start : part.stop]) if plan.has_sigma else None
    else:
        import pyarrow.parquet as pq

        names = [*plan.columns, "target", *(["target_sigma"] if plan.has_sigma else [])]
        table = pq.ParquetFile(plan.path).read_row_groups(list(part.row_groups), columns=names)
        flat = np.column_stack([table.column(c).to_numpy().astype(np.float64, copy=False) for c in plan.columns])
        inputs = flat.reshape(len(flat), *plan.input_shape)
        target = table.column("target").to_numpy().astype(np.float64, copy=False)
        sigma = table.column("target_sigma").to_numpy() if plan.has_sigma else None
    provenance = DatasetProvenance.model_validate_json(plan.provenance_json)
    try:
        if plan.kind == "amplitude":
            return AmplitudeDataset(plan.process, inputs, target, sigma, provenance)
        return CalorimeterDataset(inputs, target, sigma, plan.columns, plan.process, provenance)
    except ValueError as exc:
        raise ValueError(f"{plan.path} rows {part.start}-{part.stop}: {exc}") from None


def predict_partition(part: Partition, source: Source, out_dir: str) -> PartResult:
    """Read, predict and write one partition; runs on a Dask worker (or anywhere)."""
    from calsurr.training.data import write_dataset

    started = time.perf_counter()
    dataset = read_partition(part)
    predictions = predict_dataset(dataset, _runner(source), source.chunk_rows, progress=False)
    write_dataset(Path(out_dir) / part.part_name, dataset, extra_columns=predictions)
    return PartResult(part.part_name, part.rows, time.perf_counter() - started, _worker_name())


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


# ---------------------------------------------------------------------------------------------------------------
# The run (on the client)


@dataclass
class BatchReport:
    rows: int
    parts: int
    files: int
    seconds: float
    workers: int
    scheduler: str

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("nan")


def connect(scheduler: str | None, workers: int):
    """A distributed Client: to the scheduler at `scheduler`, or to a new LocalCluster of `workers` processes."""
    from distributed import Client, LocalCluster

    if scheduler is not None:
        return Client(scheduler, timeout="30s")
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
    )
    return Client(cluster)


def run_batch(
    client,
    parts: Sequence[Partition],
    source: Source,
    out_dir: Path,
    progress: Callable[[PartResult], None] | None = None,
) -> BatchReport:
    """Submit every partition, collect results as they finish (calling `progress`), write the summary file."""
    from distributed import as_completed

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    futures = client.map(predict_partition, list(parts), source=source, out_dir=str(out_dir), pure=False)
    results: list[PartResult] = []
    try:
        for future in as_completed(futures):
            result = future.result()
            results.append(result)
            if progress is not None:
                progress(result)
    except BaseException:
        client.cancel(futures)
        raise
    seconds = time.perf_counter() - started
    workers = len(client.scheduler_info().get("workers", {}))
    address = client.scheduler.address if client.scheduler else "?"
    report = BatchReport(sum(r.rows for r in results), len(results), len({p.file.index for p in parts}), seconds,
                         workers, address)  # fmt: skip
    write_summary(out_dir, parts, source, report, results)
    return report


def write_summary(out_dir: Path, parts: Iterable[Partition], source: Source, report: BatchReport, results) -> None:
    parts = list(parts)
    files = {p.file.index: p.file for p in parts}
    summary = {
        "source": {k: v for k, v in asdict(source).items() if v not in (None, "")},
        "files": [{"index": f.index, "path": f.path, "rows": f.n_rows, "process": f.process} for f in files.values()],
        "parts": [{"part": p.part_name, "file": p.file.index, "start": p.start, "stop": p.stop} for p in parts],
        "rows": report.rows,
        "seconds": report.seconds,
        "rows_per_second": report.rows_per_second,
        "workers": report.workers,
        "by_worker": _by_worker(results),
    }
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def _by_worker(results: Iterable[PartResult]) -> dict[str, int]:
    rows: dict[str, int] = {}
    for r in results:
        rows[r.worker] = rows.get(r.worker, 0) + r.rows
    return rows


def existing_parts(out_dir: Path) -> list[Path]:
    """What a previous run left in `out_dir` (parts and summary), which --overwrite removes."""
    folder = Path(out_dir)
    if not folder.is_dir():
        return []
    return sorted([*folder.glob("part-*.parquet"), *folder.glob(SUMMARY_FILE)])


def read_output(out_dir: Path):
    """The output dataset as one pyarrow Table, parts in input order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = sorted(Path(out_dir).glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(p) for p in parts])
