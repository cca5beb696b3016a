"""Datasets: generation, one file schema (HDF5 or Parquet), validation on read, and noise injection.

File schema, version 1 (shared/DESIGN.md), all arrays float64, N events:

- amplitude:   `momenta` (N, n, 4) in GeV, (E, px, py, pz) per particle in process order, incoming first;
               `target` (N,) = |M|^2 in GeV^(8 - 2n) (> 0); optional `target_sigma` (N,), same unit.
- calorimeter: `features` (N, F) with named columns (units in `FEATURE_UNITS`); `target` (N,) = R = E_EM/E_dep;
               `target_sigma` (N,) = the simulation's true std[R | x].
- HDF5 (.h5, .hdf5): those names are root datasets; `features` carries its column names in attribute `columns`.
- Parquet (.parquet): one float64 column per number: momenta as `p1_E, p1_px, p1_py, p1_pz, p2_E, ...`
  (particles numbered from 1 in process order), features under their own names, then `target`, `target_sigma`.
- Metadata: `DatasetMetadata` as JSON under key `calsurr` (HDF5 root attribute; Parquet schema key-value
  metadata). It is optional: a file written by another code is read with what can be inferred (kind from the
  arrays, n particles from shape or columns, process from the caller or from n) and the defaults taken are
  logged and kept in `metadata.notes`.

Noise injection multiplies the target by a log-normal factor of mean 1 and standard deviation `relative`
(see `lognormal_factors`), so targets keep their sign and |M|^2 stays positive.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, TypeVar

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from calsurr.training import __version__
from calsurr.training.physics.calorimeter import FEATURE_NAMES, CalorimeterConfig, simulate_clusters
from calsurr.training.physics.phase_space import pair_invariants, sample_cut_phase_space
from calsurr.training.physics.processes import PROCESSES, get_process

logger = logging.getLogger(__name__)

DEFAULT_SQRT_S_GEV = 1000.0  # shared/DESIGN.md: default domain sqrt(s) = 1 TeV
DEFAULT_MIN_SIJ_OVER_S = 0.01  # shared/DESIGN.md: every s_ij > 0.01 s

SCHEMA_VERSION = 1
METADATA_KEY = "calsurr"  # HDF5 root attribute and Parquet key-value metadata holding the JSON metadata
HDF5_SUFFIXES = (".h5", ".hdf5")
PARQUET_SUFFIXES = (".parquet",)
MOMENTUM_COMPONENTS = ("E", "px", "py", "pz")
MOMENTUM_UNIT = "GeV"
MIN_PARTICLES = 4  # a 2 -> 2 process at least
CALORIMETER_PROCESS = "calorimeter"
UNSPECIFIED_UNIT = "unspecified"
FEATURE_UNITS: dict[str, str] = {
    "log_energy_em": "ln(E/GeV)",
    "eta": "1",
    "center_lambda": "mm",
    "eng_frac_em": "1",
    "eng_frac_core": "1",
    "log_energy_density": "log10(rho/(GeV cm^-3))",
    "lateral": "1",
    "longitudinal": "1",
    "isolation": "1",
    "n_pv": "1",
    "mu": "1",
}
AMPLITUDE_CHUNK_EVENTS = 10_000  # gg_gggg: ~3 s per chunk, so a progress bar moves; results do not depend on it
NOISE_STREAM = 1  # second seed word: noise draws independent of the generation stream of the same seed

DatasetKind = Literal["amplitude", "calorimeter"]
FileFormat = Literal["hdf5", "parquet"]
ProgressCallback = Callable[[int], None]  # called with the number of events done so far


class DatasetFormatError(ValueError):
    """A dataset file that does not follow the schema; the message names the file and what was expected."""


class PhaseSpaceDomain(BaseModel):
    """The region a surrogate is trained on; it goes into the model card."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sqrt_s_gev: float = Field(default=DEFAULT_SQRT_S_GEV, gt=0)
    min_sij_over_s: float = Field(default=DEFAULT_MIN_SIJ_OVER_S, ge=0, lt=1)

    def describe(self) -> str:
        return f"sqrt(s) = {self.sqrt_s_gev:g} GeV, every s_ij > {self.min_sij_over_s:g} s"


class DatasetProvenance(BaseModel):
    """Where a dataset came from: what its arrays cannot tell. Carried by the dataset, written to its file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    domain: PhaseSpaceDomain | CalorimeterConfig | None = Field(
        default=None, description="phase-space cuts (amplitude) or simulation config (calorimeter); None: unknown"
    )
    seed: int | None = Field(default=None, description="seed of the generator; None: unknown")
    injected_noise: float = Field(default=0.0, ge=0, description="relative noise calsurr injected into target")
    generator: str | None = Field(default=None, description="the function that produced the data")
    code_version: str | None = Field(default=None, description="calsurr version that produced the data")
    notes: tuple[str, ...] = Field(default=(), description="defaults taken when reading an incomplete file")


class DatasetDescription(BaseModel):
    """What the arrays hold; derived from them, so a file's copy is checked against them on read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    kind: DatasetKind
    process: str = Field(min_length=1)
    n_events: int = Field(ge=0)
    columns: tuple[str, ...] = Field(description="input columns in order: p1_E, p1_px, ... or feature names")
    units: dict[str, str] = Field(description="unit of every column, of target and of target_sigma")


class DatasetMetadata(DatasetProvenance, DatasetDescription):
    """A file's metadata: the description of its arrays, then their provenance (JSON in this field order)."""

    @model_validator(mode="after")
    def _domain_matches_kind(self) -> DatasetMetadata:
        expected = PhaseSpaceDomain if self.kind == "amplitude" else CalorimeterConfig
        if self.domain is not None and not isinstance(self.domain, expected):
            raise ValueError(f"a {self.kind} dataset's domain must be a {expected.__name__}")
        return self

    def provenance(self) -> DatasetProvenance:
        return DatasetProvenance(**{name: getattr(self, name) for name in DatasetProvenance.model_fields})


# ---------------------------------------------------------------------------------------------------------------
# Datasets in memory


def momentum_columns(n_particles: int) -> tuple[str, ...]:
    """Flat column names of (N, n, 4) momenta: p1_E, p1_px, p1_py, p1_pz, p2_E, ..."""
    return tuple(f"p{i}_{c}" for i in range(1, n_particles + 1) for c in MOMENTUM_COMPONENTS)


def squared_amplitude_unit(n_particles: int) -> str:
    """|M|^2 with n external massless particles has mass dimension 8 - 2n (as `Process.unit`)."""
    power = 2 * n_particles - 8
    return "1" if power == 0 else f"GeV^-{power}"


def _as_float64(name: str, values: np.ndarray | None) -> np.ndarray | None:
    if values is None:
        return None
    array = np.asarray(values)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"'{name}' expects numbers, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float64)


def _check_finite(name: str, values: np.ndarray) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        rows = np.flatnonzero(bad.reshape(len(values), -1).any(axis=1)) if values.ndim > 1 else np.flatnonzero(bad)
        raise ValueError(f"'{name}' expects finite values; {len(rows)} rows hold NaN or inf (first at row {rows[0]})")


def _check_targets(target: np.ndarray, target_sigma: np.ndarray | None, n_events: int, positive: bool) -> None:
    for name, values in (("target", target), ("target_sigma", target_sigma)):
        if values is None:
            continue
        if values.shape != (n_events,):
            raise ValueError(f"'{name}' expects shape [{n_events}], got {list(values.shape)}")
        _check_finite(name, values)
    if positive and (target <= 0).any():
        rows = np.flatnonzero(target <= 0)
        raise ValueError(
            f"'target' (|M|^2) expects values > 0; {len(rows)} are <= 0 (first at row {rows[0]}: {target[rows[0]]:g})"
        )
    if target_sigma is not None and (target_sigma < 0).any():
        raise ValueError(f"'target_sigma' expects values >= 0; {(target_sigma < 0).sum()} are negative")


def _check_momenta_shape(momenta: np.ndarray) -> None:
    m = momenta
    if m.ndim != 3 or m.shape[1] < MIN_PARTICLES or m.shape[2] != len(MOMENTUM_COMPONENTS):
        raise ValueError(f"'momenta' expects shape [-1, n >= {MIN_PARTICLES}, 4], got {list(m.shape)}")


@dataclass(frozen=True)
class AmplitudeDataset:
    """`momenta` (N, n, 4) float64 in GeV and `target` (N,) float64 = |M|^2 in the process's unit.

    `target_sigma` (N,), when given, is the known standard deviation of each target (e.g. injected noise).
    Arrays are checked (shape, finite, |M|^2 > 0) and stored as float64 on construction.
    """

    process: str
    momenta: np.ndarray
    target: np.ndarray
    target_sigma: np.ndarray | None = None
    provenance: DatasetProvenance = field(default_factory=DatasetProvenance)

    kind: ClassVar[DatasetKind] = "amplitude"

    def __post_init__(self) -> None:
        for name in ("momenta", "target", "target_sigma"):
            object.__setattr__(self, name, _as_float64(name, getattr(self, name)))
        m = self.momenta
        _check_momenta_shape(m)
        if self.process in PROCESSES and PROCESSES[self.process].n_particles != m.shape[1]:
            expected = PROCESSES[self.process].n_particles
            raise ValueError(f"'momenta' of {self.process} expects shape [-1, {expected}, 4], got {list(m.shape)}")
        _check_finite("momenta", m)
        _check_targets(self.target, self.target_sigma, len(m), positive=True)

    def __len__(self) -> int:
        return len(self.target)

    @property
    def n_particles(self) -> int:
        return self.momenta.shape[1]

    @property
    def metadata(self) -> DatasetMetadata:
        columns = momentum_columns(self.n_particles)
        unit = squared_amplitude_unit(self.n_particles)
        units = {**dict.fromkeys(columns, MOMENTUM_UNIT), "target": unit, "target_sigma": unit}
        return DatasetMetadata(
            kind="amplitude",
            process=self.process,
            n_events=len(self),
            columns=columns,
            units=units,
            **dict(self.provenance),
        )

    @property
    def inputs(self) -> np.ndarray:
        """What a surrogate takes: the four-momenta."""
        return self.momenta

    def subset(self, index: np.ndarray) -> AmplitudeDataset:
        sigma = None if self.target_sigma is None else self.target_sigma[index]
        return AmplitudeDataset(self.process, self.momenta[index], self.target[index], sigma, self.provenance)

    def sha256(self) -> str:
        digest = hashlib.sha256(self.process.encode())
        for values in (self.momenta, self.target, self.target_sigma):
            if values is not None:
                digest.update(np.ascontiguousarray(values).tobytes())
        return digest.hexdigest()


@dataclass(frozen=True)
class CalorimeterDataset:
    """`features` (N, F) float64 with columns `feature_names`, `target` (N,) = R = E_EM / E_dep.

    `target_sigma` (N,) is the true std[R | x] of the simulation (what a calibrated regression should learn).
    """

    features: np.ndarray
    target: np.ndarray
    target_sigma: np.ndarray | None = None
    feature_names: tuple[str, ...] = FEATURE_NAMES
    process: str = CALORIMETER_PROCESS
    provenance: DatasetProvenance = field(default_factory=DatasetProvenance)

    kind: ClassVar[DatasetKind] = "calorimeter"

    def __post_init__(self) -> None:
        for name in ("features", "target", "target_sigma"):
            object.__setattr__(self, name, _as_float64(name, getattr(self, name)))
        object.__setattr__(self, "feature_names", tuple(self.feature_names))
        names, f = self.feature_names, self.features
        if len(set(names)) != len(names) or {"target", "target_sigma"} & set(names):
            raise ValueError(f"feature names must be unique and not 'target'/'target_sigma', got {names}")
        if f.ndim != 2 or f.shape[1] != len(names):
            raise ValueError(f"'features' expects shape [-1, {len(names)}] ({', '.join(names)}), got {list(f.shape)}")
        _check_finite("features", f)
        _check_targets(self.target, self.target_sigma, len(f), positive=False)

    def __len__(self) -> int:
        return len(self.target)

    @property
    def metadata(self) -> DatasetMetadata:
        units = {name: FEATURE_UNITS.get(name, UNSPECIFIED_UNIT) for name in self.feature_names}
        return DatasetMetadata(
            kind="calorimeter",
            process=self.process,
            n_events=len(self),
            columns=self.feature_names,
            units={**units, "target": "1", "target_sigma": "1"},
            **dict(self.provenance),
        )

    @property
    def inputs(self) -> np.ndarray:
        """What a surrogate takes: the cluster features."""
        return self.features

    def subset(self, index: np.ndarray) -> CalorimeterDataset:
        sigma = None if self.target_sigma is None else self.target_sigma[index]
        return dataclasses.replace(self, features=self.features[index], target=self.target[index], target_sigma=sigma)

    def sha256(self) -> str:
        digest = hashlib.sha256(self.process.encode())
        digest.update("\0".join(self.feature_names).encode())
        for values in (self.features, self.target, self.target_sigma):
            if values is not None:
                digest.update(np.ascontiguousarray(values).tobytes())
        return digest.hexdigest()


Dataset = AmplitudeDataset | CalorimeterDataset
D = TypeVar("D", AmplitudeDataset, CalorimeterDataset)


# ---------------------------------------------------------------------------------------------------------------
# Generation


def generate_amplitudes(
    process: str,
    n_events: int,
    seed: int,
    domain: PhaseSpaceDomain | None = None,
    progress: ProgressCallback | None = None,
) -> AmplitudeDataset:
    """`n_events` flat phase-space points inside the domain's cuts, with their exact |M|^2.

    |M|^2 is evaluated in chunks of `AMPLITUDE_CHUNK_EVENTS` (reporting to `progress`); per-event evaluation
    makes the result identical to one call.
    """
    domain = domain or PhaseSpaceDomain()
    proc = get_process(process)
    rng = np.random.default_rng(seed)
    momenta = sample_cut_phase_space(proc.n_final, domain.sqrt_s_gev, n_events, domain.min_sij_over_s, rng)
    target = np.empty(n_events, dtype=np.float64)
    for start in range(0, n_events, AMPLITUDE_CHUNK_EVENTS):
        stop = min(start + AMPLITUDE_CHUNK_EVENTS, n_events)
        target[start:stop] = proc.squared_amplitude(momenta[start:stop])
        if progress is not None:
            progress(stop)
    provenance = DatasetProvenance(
        domain=domain, seed=seed, generator="calsurr.training.data.generate_amplitudes", code_version=__version__
    )
    return AmplitudeDataset(process, momenta, target, provenance=provenance)


def generate_calorimeter(n_events: int, seed: int, config: CalorimeterConfig | None = None) -> CalorimeterDataset:
    """`n_events` simulated clusters (`simulate_clusters`) with R and its true conditional spread."""
    config = config or CalorimeterConfig()
    sample = simulate_clusters(n_events, np.random.default_rng(seed), config)
    provenance = DatasetProvenance(
        domain=config, seed=seed, generator="calsurr.training.data.generate_calorimeter", code_version=__version__
    )
    return CalorimeterDataset(
        sample.features, sample.target, sample.target_sigma, sample.feature_names, provenance=provenance
    )


def generate_dataset(
    process: str,
    n_events: int,
    seed: int,
    *,
    domain: PhaseSpaceDomain | CalorimeterConfig | None = None,
    noise: float | None = None,
    progress: ProgressCallback | None = None,
) -> Dataset:
    """An amplitude process (`gg_gg`, ...) or `calorimeter`, with optional relative noise on the target.

    The noise draws use `default_rng([seed, NOISE_STREAM])`, reproducible and independent of the events.
    """
    if process == CALORIMETER_PROCESS:
        if domain is not None and not isinstance(domain, CalorimeterConfig):
            raise TypeError(f"calorimeter expects a CalorimeterConfig, got {type(domain).__name__}")
        dataset: Dataset = generate_calorimeter(n_events, seed, domain)
        if progress is not None:
            progress(n_events)
    else:
        if domain is not None and not isinstance(domain, PhaseSpaceDomain):
            raise TypeError(f"{process} expects a PhaseSpaceDomain, got {type(domain).__name__}")
        dataset = generate_amplitudes(process, n_events, seed, domain, progress)
    if noise is not None:
        dataset = inject_noise(dataset, noise, np.random.default_rng([seed, NOISE_STREAM]))
    return dataset


def split(dataset: D, fractions: tuple[float, ...], seed: int) -> list[D]:
    """Disjoint random parts with the given fractions of the events (the last takes the rest)."""
    order = np.random.default_rng(seed).permutation(len(dataset))
    edges = [0, *np.cumsum([int(f * len(dataset)) for f in fractions[:-1]]), len(dataset)]
    return [dataset.subset(order[a:b]) for a, b in zip(edges[:-1], edges[1:])]


# ---------------------------------------------------------------------------------------------------------------
# Noise injection


def lognormal_factors(relative: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """Positive factors exp(s z - s^2 / 2), z ~ N(0, 1), s^2 = ln(1 + relative^2): mean 1, std `relative`.

    The same first two moments as 1 + relative * N(0, 1), which it equals to first order, but never <= 0, so
    |M|^2 stays positive at any level. A fit of log target sees Gaussian noise of width s (~ relative) centred
    at -s^2 / 2: its exp(mean) is the median, below the clean value by ~ relative^2 / 2.
    """
    s = math.sqrt(math.log1p(relative**2))
    return np.exp(s * rng.standard_normal(size) - 0.5 * s**2)


def check_relative_noise(relative: float) -> None:
    """A relative noise level must be finite and > 0 (0 would claim a known zero spread)."""
    if not (math.isfinite(relative) and relative > 0):
        raise ValueError(f"relative noise expects a finite value > 0, got {relative}")


def inject_noise(dataset: D, relative: float, rng: np.random.Generator) -> D:
    """Multiply the target by `lognormal_factors` (relative std `relative`) and record the known level.

    `target_sigma` becomes relative * |clean target|, combined in quadrature with any spread the data already
    carried (for calorimeter data the simulation's std[R | x]: the result's square averages to the noisy
    label's conditional variance). `relative` goes into the provenance; injecting twice is refused, since the
    second call would take noisy targets for clean ones.
    """
    check_relative_noise(relative)
    if dataset.provenance.injected_noise > 0:
        raise ValueError(
            f"dataset already carries injected noise {dataset.provenance.injected_noise:g}; inject into clean data"
        )
    clean = dataset.target
    injected = relative * np.abs(clean)
    sigma = injected if dataset.target_sigma is None else np.hypot(dataset.target_sigma, injected)
    provenance = dataset.provenance.model_copy(update={"injected_noise": float(relative)})
    noisy = clean * lognormal_factors(relative, len(clean), rng)
    return dataclasses.replace(dataset, target=noisy, target_sigma=sigma, provenance=provenance)


# ---------------------------------------------------------------------------------------------------------------
# Files: writing


def file_format(path: Path | str) -> FileFormat:
    """'hdf5' or 'parquet' from the file's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix in HDF5_SUFFIXES:
        return "hdf5"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    raise DatasetFormatError(
        f"{path}: dataset files expect suffix {', '.join(HDF5_SUFFIXES + PARQUET_SUFFIXES)}, got '{suffix}'"
    )


def _input_array(dataset: Dataset) -> tuple[str, np.ndarray]:
    return ("momenta" if isinstance(dataset, AmplitudeDataset) else "features"), dataset.inputs


def _write_hdf5(path: Path, dataset: Dataset, metadata_json: str, extra: Mapping[str, np.ndarray]) -> None:
    name, inputs = _input_array(dataset)
    with h5py.File(path, "w") as f:
        f.attrs[METADATA_KEY] = metadata_json
        written = f.create_dataset(name, data=inputs)
        if isinstance(dataset, CalorimeterDataset):
            written.attrs["columns"] = list(dataset.feature_names)
        f.create_dataset("target", data=dataset.target)
        if dataset.target_sigma is not None:
            f.create_dataset("target_sigma", data=dataset.target_sigma)
        for column, values in extra.items():
            f.create_dataset(column, data=values)


def _write_parquet(path: Path, dataset: Dataset, metadata_json: str, extra: Mapping[str, np.ndarray]) -> None:
    _, inputs = _input_array(dataset)
    names = dataset.metadata.columns
    flat = inputs.reshape(len(inputs), len(names))
    columns = {name: flat[:, i] for i, name in enumerate(names)}
    columns["target"] = dataset.target
    if dataset.target_sigma is not None:
        columns["target_sigma"] = dataset.target_sigma
    columns.update(extra)
    table = pa.table(columns).replace_schema_metadata({METADATA_KEY: metadata_json})
    pq.write_table(table, path)


def write_dataset(path: Path | str, dataset: Dataset, extra_columns: Mapping[str, np.ndarray] | None = None) -> Path:
    """Write the dataset and its metadata; HDF5 or Parquet by suffix. Atomic: a reader never sees half a file.

    `extra_columns`: more per-event (N,) arrays stored beside the schema's, e.g. a surrogate's predictions;
    `read_dataset` ignores them.
    """
    extra = dict(extra_columns or {})
    clash = [c for c in extra if c in ("momenta", "features", "target", "target_sigma")]
    if clash or any(np.shape(v) != (len(dataset),) for v in extra.values()):
        raise ValueError(f"extra columns must be new names of shape ({len(dataset)},); got {list(extra)}")
    path = Path(path)
    fmt = file_format(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    metadata_json = dataset.metadata.model_dump_json()
    try:
        (_write_hdf5 if fmt == "hdf5" else _write_parquet)(temporary, dataset, metadata_json, extra)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


# Files: reading


@dataclass
class _RawFile:
    """What a format reader found, before inference and validation."""

    kind: DatasetKind
    inputs: np.ndarray  # momenta (N, n, 4) or features (N, F)
    target: np.ndarray
    target_sigma: np.ndarray | None
    metadata: DatasetMetadata | None
    feature_names: tuple[str, ...] | None = None  # calorimeter columns as stored, if stored
    notes: list[str] = field(default_factory=list)


class _Arrays:
    """Converts what a file stores to float64 copies, noting the names stored at lower precision."""

    def __init__(self) -> None:
        self.low_precision: list[str] = []

    def convert(self, name: str, values: np.ndarray) -> np.ndarray:
        if np.issubdtype(values.dtype, np.floating) and values.dtype.itemsize < np.dtype(np.float64).itemsize:
            self.low_precision.append(name)
        return np.array(_as_float64(name, values), dtype=np.float64)

    def notes(self) -> list[str]:
        if not self.low_precision:
            return []
        return [f"stored below float64 precision, converted (no precision regained): {', '.join(self.low_precision)}"]


def _parse_metadata(text: str | bytes | None) -> DatasetMetadata | None:
    if text is None:
        return None
    try:
        return DatasetMetadata.model_validate_json(text)
    except ValidationError as exc:
        errors = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'metadata'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"metadata '{METADATA_KEY}' does not follow the schema: {errors}") from None


def _text(value: str | bytes | np.generic) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _hdf5_kind(f: h5py.File) -> tuple[DatasetKind, str]:
    present = sorted(f.keys())
    found = [(kind, name) for kind, name in (("amplitude", "momenta"), ("calorimeter", "features")) if name in f]
    if len(found) != 1:
        raise ValueError(
            f"expects exactly one of the datasets 'momenta' (amplitude) or 'features' (calorimeter), found {present}"
        )
    for name in (found[0][1], "target", "target_sigma"):
        if name == "target" and name not in f:
            raise ValueError(f"expects a dataset 'target', found {present}")
        if name in f and not isinstance(f[name], h5py.Dataset):
            raise ValueError(f"'{name}' expects an HDF5 dataset, found a {type(f[name]).__name__}")
    return found[0]


def _read_hdf5(path: Path) -> _RawFile:
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"not a readable HDF5 file ({exc})") from None
    with f:
        kind, input_name = _hdf5_kind(f)
        arrays = _Arrays()
        values = {
            name: arrays.convert(name, np.asarray(f[name][()]))
            for name in (input_name, "target", "target_sigma")
            if name in f
        }
        stored_names = f[input_name].attrs.get("columns")
        raw_metadata = f.attrs.get(METADATA_KEY)
    return _RawFile(
        kind=kind,
        inputs=values[input_name],
        target=values["target"],
        target_sigma=values.get("target_sigma"),
        metadata=_parse_metadata(None if raw_metadata is None else _text(raw_metadata)),
        feature_names=None if stored_names is None else tuple(_text(n) for n in np.atleast_1d(stored_names)),
        notes=arrays.notes(),
    )


_MOMENTUM_COLUMN = re.compile(r"p(\d+)_(E|px|py|pz)")
_TARGET_COLUMNS = ("target", "target_sigma")


def _parquet_column(table: pa.Table, name: str, arrays: _Arrays) -> np.ndarray:
    if name not in table.column_names:
        raise ValueError(f"expects a column '{name}', found {table.column_names}")
    column = table.column(name)
    if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
        raise ValueError(f"column '{name}' expects numbers, got type {column.type}")
    if column.null_count:
        raise ValueError(f"column '{name}' expects a value in every row, {column.null_count} are missing")
    return arrays.convert(name, column.to_numpy())


def _parquet_input_columns(table: pa.Table, metadata: DatasetMetadata | None) -> tuple[DatasetKind, tuple[str, ...]]:
    """The kind and the input columns: from the metadata, else p-columns 1..n (amplitude), else the rest."""
    names = table.column_names
    if metadata is not None:
        expected = momentum_columns(len(metadata.columns) // len(MOMENTUM_COMPONENTS))
        if metadata.kind == "amplitude" and metadata.columns != expected:
            raise ValueError(f"metadata columns expect p1_E, p1_px, ... in order, got {metadata.columns}")
        return metadata.kind, metadata.columns
    numbers = [int(m.group(1)) for c in names if (m := _MOMENTUM_COLUMN.fullmatch(c))]
    if numbers:
        expected = momentum_columns(max(numbers))
        missing = [c for c in expected if c not in names]
        if missing:
            raise ValueError(f"expects momentum columns {', '.join(expected)}; missing {', '.join(missing)}")
        return "amplitude", expected
    features = tuple(c for c in names if c not in _TARGET_COLUMNS)
    if not features:
        raise ValueError(
            f"expects momentum columns p1_E, p1_px, ... (amplitude) or feature columns (calorimeter), found {names}"
        )
    return "calorimeter", features


def _read_parquet(path: Path) -> _RawFile:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"not a readable Parquet file ({exc})") from None
    metadata = _parse_metadata((table.schema.metadata or {}).get(METADATA_KEY.encode()))
    kind, names = _parquet_input_columns(table, metadata)
    arrays = _Arrays()
    flat = np.empty((table.num_rows, len(names)), dtype=np.float64)
    for i, name in enumerate(names):
        flat[:, i] = _parquet_column(table, name, arrays)
    target = _parquet_column(table, "target", arrays)
    sigma = _parquet_column(table, "target_sigma", arrays) if "target_sigma" in table.column_names else None
    notes = arrays.notes()
    ignored = [c for c in table.column_names if c not in names and c not in _TARGET_COLUMNS]
    if ignored:
        notes.append(f"columns outside the schema ignored: {', '.join(ignored)}")
    n_particles = len(names) // len(MOMENTUM_COMPONENTS)
    return _RawFile(
        kind=kind,
        inputs=flat.reshape(len(flat), n_particles, len(MOMENTUM_COMPONENTS)) if kind == "amplitude" else flat,
        target=target,
        target_sigma=sigma,
        metadata=metadata,
        feature_names=None if kind == "amplitude" else names,
        notes=notes,
    )


def _infer_process(n_particles: int) -> str:
    matches = [name for name, p in PROCESSES.items() if p.n_particles == n_particles]
    if len(matches) != 1:
        raise ValueError(
            f"no metadata names the process, and {len(matches)} known processes have {n_particles} particles;"
            f" pass process= (known: {sorted(PROCESSES)})"
        )
    return matches[0]


def _observed_domain(momenta: np.ndarray) -> str:
    """What the momenta say about an unrecorded domain: their sqrt(s) range and smallest s_ij / s."""
    if len(momenta) == 0:
        return "no events"
    sij = pair_invariants(momenta)
    unphysical = int((sij[:, 0] <= 0).sum())
    if unphysical:
        return f"{unphysical} events with s <= 0 (momenta not in the schema's convention?)"
    sqrt_s = np.sqrt(sij[:, 0])
    smallest = (sij / sij[:, :1]).min()
    return f"sqrt(s) from {sqrt_s.min():.6g} to {sqrt_s.max():.6g} GeV, smallest s_ij/s = {smallest:.4g}"


def _foreign_feature_names(raw: _RawFile, notes: list[str]) -> tuple[str, ...]:
    if raw.feature_names is not None:
        return raw.feature_names
    n_features = raw.inputs.shape[1] if raw.inputs.ndim == 2 else 0
    if n_features == len(FEATURE_NAMES):
        notes.append(f"feature columns not named: assumed calsurr's {', '.join(FEATURE_NAMES)}")
        return FEATURE_NAMES
    names = tuple(f"x{i}" for i in range(n_features))
    notes.append(f"feature columns not named: called {', '.join(names)}, units unspecified")
    return names


def _foreign_dataset(raw: _RawFile, process: str | None) -> Dataset:
    """A file without metadata: infer what the arrays tell, note every default taken."""
    notes = ["no calsurr metadata: domain, seed and generator unknown", *raw.notes]
    if raw.kind == "calorimeter":
        names = _foreign_feature_names(raw, notes)
        provenance = DatasetProvenance(notes=tuple(notes))
        return CalorimeterDataset(
            raw.inputs, raw.target, raw.target_sigma, names, process or CALORIMETER_PROCESS, provenance
        )
    _check_momenta_shape(raw.inputs)
    n_particles = raw.inputs.shape[1]
    if process is None:
        process = _infer_process(n_particles)
        notes.append(f"process '{process}' assumed from {n_particles} particles per event")
    notes.append(f"momenta taken in {MOMENTUM_UNIT}; observed {_observed_domain(raw.inputs)}")
    provenance = DatasetProvenance(notes=tuple(notes))
    return AmplitudeDataset(process, raw.inputs, raw.target, raw.target_sigma, provenance)


def _described_dataset(raw: _RawFile, meta: DatasetMetadata, process: str | None) -> Dataset:
    """A file with metadata: build the dataset it describes and check the description against the arrays."""
    if meta.kind != raw.kind:
        raise ValueError(f"metadata says kind '{meta.kind}', the arrays hold a {raw.kind} dataset")
    if process is not None and process != meta.process:
        raise ValueError(f"metadata says process '{meta.process}', the caller asked for '{process}'")
    provenance = meta.provenance()
    if raw.notes:
        provenance = provenance.model_copy(update={"notes": (*provenance.notes, *raw.notes)})
    if raw.kind == "amplitude":
        dataset: Dataset = AmplitudeDataset(meta.process, raw.inputs, raw.target, raw.target_sigma, provenance)
    else:
        names = raw.feature_names if raw.feature_names is not None else meta.columns
        dataset = CalorimeterDataset(raw.inputs, raw.target, raw.target_sigma, names, meta.process, provenance)
    described = dataset.metadata
    for name in ("n_events", "columns", "units"):
        said, found = getattr(meta, name), getattr(described, name)
        if said != found:
            raise ValueError(f"metadata says {name} = {said}, the arrays give {found}")
    return dataset


def read_dataset(path: Path | str, process: str | None = None) -> Dataset:
    """Read and validate a dataset file (HDF5 or Parquet, by suffix), with or without calsurr metadata.

    `process` names the process of a file without metadata (otherwise inferred from the particle count, or
    `calorimeter`); with metadata it must agree. Defaults taken are logged and kept in `metadata.notes`.
    Raises `DatasetFormatError` naming the file and what was expected.
    """
    path = Path(path)
    fmt = file_format(path)
    if not path.is_file():
        raise FileNotFoundError(f"no dataset file at {path}")
    try:
        raw = _read_hdf5(path) if fmt == "hdf5" else _read_parquet(path)
        if raw.metadata is None:
            dataset = _foreign_dataset(raw, process)
            taken = list(dataset.provenance.notes)
        else:
            dataset = _described_dataset(raw, raw.metadata, process)
            taken = raw.notes
    except ValueError as exc:
        raise DatasetFormatError(f"{path}: {exc}") from None
    for note in taken:
        logger.warning("%s: %s", path, note)
    return dataset
