"""Dataset files and noise injection: exact round trips, foreign files, clear errors, the injected level."""

from __future__ import annotations

import json
import logging

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from calsurr.cli import app
from calsurr.training.data import (
    FEATURE_UNITS,
    METADATA_KEY,
    AmplitudeDataset,
    CalorimeterDataset,
    DatasetFormatError,
    PhaseSpaceDomain,
    generate_amplitudes,
    generate_calorimeter,
    generate_dataset,
    inject_noise,
    momentum_columns,
    read_dataset,
    split,
    squared_amplitude_unit,
    write_dataset,
)
from calsurr.training.physics.calorimeter import FEATURE_NAMES, CalorimeterConfig
from calsurr.training.physics.processes import PROCESSES, get_process

SUFFIXES = (".h5", ".hdf5", ".parquet")
N_NOISE = 100_000
NOISE_LEVEL = 0.1
NOISE_TOLERANCE = 0.03  # relative; the std of 1e5 log-normal draws at 10 % scatters by ~0.3 %


@pytest.fixture(scope="module")
def amplitudes() -> AmplitudeDataset:
    return generate_amplitudes("gg_ggg", 500, seed=3, domain=PhaseSpaceDomain(sqrt_s_gev=500.0))


@pytest.fixture(scope="module")
def clusters() -> CalorimeterDataset:
    return generate_calorimeter(500, seed=4)


def _same_bits(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _assert_identical(read, written) -> None:
    assert type(read) is type(written)
    assert read.metadata == written.metadata
    assert read.sha256() == written.sha256()
    inputs = "momenta" if isinstance(written, AmplitudeDataset) else "features"
    for name in (inputs, "target", "target_sigma"):
        assert _same_bits(getattr(read, name), getattr(written, name)), name


# ---------------------------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("kind", ["amplitude", "calorimeter"])
@pytest.mark.parametrize("noisy", [False, True])
def test_round_trip_is_exact(tmp_path, amplitudes, clusters, suffix, kind, noisy):
    dataset = amplitudes if kind == "amplitude" else clusters
    if noisy:
        dataset = inject_noise(dataset, NOISE_LEVEL, np.random.default_rng(0))
    read = read_dataset(write_dataset(tmp_path / f"data{suffix}", dataset))
    _assert_identical(read, dataset)
    assert read.metadata.notes == ()


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_empty_dataset_round_trips(tmp_path, amplitudes, suffix):
    empty = amplitudes.subset(np.array([], dtype=int))
    _assert_identical(read_dataset(write_dataset(tmp_path / f"empty{suffix}", empty)), empty)


def test_metadata_describes_the_arrays(amplitudes, clusters):
    meta = amplitudes.metadata
    assert (meta.kind, meta.process, meta.n_events, meta.seed) == ("amplitude", "gg_ggg", 500, 3)
    assert meta.columns[:5] == ("p1_E", "p1_px", "p1_py", "p1_pz", "p2_E") and len(meta.columns) == 20
    assert meta.units["p5_pz"] == "GeV" and meta.units["target"] == get_process("gg_ggg").unit
    assert meta.domain == PhaseSpaceDomain(sqrt_s_gev=500.0) and meta.code_version and meta.generator
    cal = clusters.metadata
    assert (cal.kind, cal.process, cal.columns) == ("calorimeter", "calorimeter", FEATURE_NAMES)
    assert cal.domain == CalorimeterConfig() and cal.units["center_lambda"] == "mm"
    assert clusters.target_sigma is not None and (clusters.target_sigma > 0).all()


def test_units_agree_with_the_physics_modules():
    assert set(FEATURE_UNITS) == set(FEATURE_NAMES)
    for process in PROCESSES.values():
        assert squared_amplitude_unit(process.n_particles) == process.unit


def test_parquet_holds_named_flat_columns(tmp_path, amplitudes):
    path = write_dataset(tmp_path / "data.parquet", amplitudes)
    table = pq.read_table(path)
    assert table.column_names == [*momentum_columns(5), "target"]
    assert np.array_equal(table.column("p3_px").to_numpy(), amplitudes.momenta[:, 2, 1])
    assert json.loads(table.schema.metadata[METADATA_KEY.encode()])["process"] == "gg_ggg"


def test_generation_is_chunked_reproducibly_with_progress():
    done: list[int] = []
    dataset = generate_amplitudes("gg_gg", 25_000, seed=5, progress=done.append)
    assert done == [10_000, 20_000, 25_000]
    assert np.array_equal(dataset.target, get_process("gg_gg").squared_amplitude(dataset.momenta))
    assert generate_amplitudes("gg_gg", 25_000, seed=5).sha256() == dataset.sha256()


def test_split_keeps_kind_and_provenance(clusters):
    parts = split(clusters, (0.5, 0.5), seed=0)
    assert [len(p) for p in parts] == [250, 250]
    assert all(isinstance(p, CalorimeterDataset) and p.provenance == clusters.provenance for p in parts)


# ---------------------------------------------------------------------------------------------------------------
# Files written by other codes


def test_foreign_hdf5_with_momenta_and_target_only(tmp_path, caplog):
    data = generate_amplitudes("gg_gg", 200, seed=1)
    path = tmp_path / "theirs.h5"
    with h5py.File(path, "w") as f:
        f["momenta"] = data.momenta
        f["target"] = data.target
    with caplog.at_level(logging.WARNING, logger="calsurr.training.data"):
        read = read_dataset(path)
    assert isinstance(read, AmplitudeDataset) and read.process == "gg_gg"
    assert _same_bits(read.momenta, data.momenta) and _same_bits(read.target, data.target)
    notes = " ".join(read.metadata.notes)
    assert "no calsurr metadata" in notes and "process 'gg_gg' assumed from 4 particles" in notes
    assert "sqrt(s) from 1000 to 1000 GeV" in notes
    assert "assumed from 4 particles" in caplog.text


def test_foreign_float32_momenta_are_widened_with_a_note(tmp_path):
    data = generate_amplitudes("gg_gg", 50, seed=1)
    path = tmp_path / "theirs.hdf5"
    with h5py.File(path, "w") as f:
        f["momenta"] = data.momenta.astype(np.float32)
        f["target"] = data.target
    read = read_dataset(path)
    assert read.momenta.dtype == np.float64
    assert any("below float64 precision" in note and "momenta" in note for note in read.metadata.notes)


def test_foreign_parquet_with_p_columns_and_target(tmp_path):
    data = generate_amplitudes("gg_ggg", 100, seed=2)
    flat = data.momenta.reshape(len(data), -1)
    columns = {name: flat[:, i] for i, name in enumerate(momentum_columns(5))}
    path = tmp_path / "theirs.parquet"
    pq.write_table(pa.table({"event_id": np.arange(100), **columns, "target": data.target}), path)
    read = read_dataset(path, process="gg_ggg")
    assert read.process == "gg_ggg" and _same_bits(read.momenta, data.momenta)
    assert not any("assumed" in note and "process" in note for note in read.metadata.notes)
    assert any("ignored: event_id" in note for note in read.metadata.notes)


def test_foreign_calorimeter_files(tmp_path, clusters):
    h5_path = tmp_path / "clusters.h5"
    with h5py.File(h5_path, "w") as f:
        f["features"] = clusters.features
        f["target"] = clusters.target
    read = read_dataset(h5_path)
    assert isinstance(read, CalorimeterDataset) and read.feature_names == FEATURE_NAMES
    assert read.target_sigma is None and any("assumed calsurr's" in note for note in read.metadata.notes)

    pq_path = tmp_path / "clusters.parquet"
    pq.write_table(
        pa.table({"e_em": clusters.features[:, 0], "n_pv": np.arange(500), "target": clusters.target}), pq_path
    )
    read = read_dataset(pq_path, process="test_beam")
    assert read.feature_names == ("e_em", "n_pv") and read.process == "test_beam"
    assert read.metadata.units["e_em"] == "unspecified" and read.features[:, 1].dtype == np.float64


def test_unknown_multiplicity_asks_for_the_process(tmp_path):
    path = tmp_path / "seven.h5"
    momenta = np.ones((3, 7, 4))
    with h5py.File(path, "w") as f:
        f["momenta"], f["target"] = momenta, np.ones(3)
    with pytest.raises(DatasetFormatError, match="pass process="):
        read_dataset(path)
    assert read_dataset(path, process="gg_ggggg").process == "gg_ggggg"
    with pytest.raises(DatasetFormatError, match=r"gg_gg expects shape \[-1, 4, 4\]"):
        read_dataset(path, process="gg_gg")


# ---------------------------------------------------------------------------------------------------------------
# Clear errors


def _h5(path, **arrays):
    with h5py.File(path, "w") as f:
        for name, values in arrays.items():
            f[name] = values
    return path


GOOD_MOMENTA = generate_amplitudes("gg_gg", 20, seed=0).momenta


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"momenta": GOOD_MOMENTA}, "expects a dataset 'target'"),
        ({"target": np.ones(20)}, "exactly one of the datasets 'momenta'"),
        (
            {"momenta": GOOD_MOMENTA[..., :3], "target": np.ones(20)},
            r"expects shape \[-1, n >= 4, 4\], got \[20, 4, 3\]",
        ),
        ({"momenta": GOOD_MOMENTA, "target": np.ones(19)}, r"'target' expects shape \[20\], got \[19\]"),
        (
            {"momenta": np.where(np.arange(20)[:, None, None] == 7, np.nan, GOOD_MOMENTA), "target": np.ones(20)},
            "first at row 7",
        ),
        ({"momenta": GOOD_MOMENTA, "target": np.linspace(-1, 1, 20)}, r"expects values > 0; 10 are <= 0"),
        ({"momenta": GOOD_MOMENTA, "target": np.zeros(20)}, r"\|M\|\^2\) expects values > 0"),
        ({"momenta": GOOD_MOMENTA, "target": np.ones(20), "target_sigma": -np.ones(20)}, "expects values >= 0"),
        ({"momenta": np.array(["a"] * 20).astype("S"), "target": np.ones(20)}, "'momenta' expects numbers"),
    ],
)
def test_invalid_hdf5_contents_are_named(tmp_path, arrays, message):
    path = _h5(tmp_path / "bad.h5", **arrays)
    with pytest.raises(DatasetFormatError, match=message) as info:
        read_dataset(path)
    assert str(path) in str(info.value)


def test_invalid_parquet_contents_are_named(tmp_path, amplitudes):
    flat = amplitudes.momenta.reshape(len(amplitudes), -1)
    columns = {name: flat[:, i] for i, name in enumerate(momentum_columns(5))}
    cases = [
        ({k: v for k, v in columns.items() if k != "p2_py"} | {"target": amplitudes.target}, "missing p2_py"),
        (columns, "expects a column 'target'"),
        ({"target": amplitudes.target}, "expects momentum columns p1_E"),
        (columns | {"target": pa.array([1.0] * 499 + [None])}, "'target' expects a value in every row, 1 are missing"),
        (columns | {"target": ["x"] * 500}, "'target' expects numbers, got type string"),
    ]
    for i, (table, message) in enumerate(cases):
        path = tmp_path / f"bad{i}.parquet"
        pq.write_table(pa.table(table), path)
        with pytest.raises(DatasetFormatError, match=message):
            read_dataset(path)


@pytest.mark.parametrize("suffix", [".h5", ".parquet"])
def test_corrupt_files_say_what_they_are_not(tmp_path, suffix):
    path = tmp_path / f"corrupt{suffix}"
    path.write_bytes(b"this is not a dataset" * 10)
    expected = "HDF5" if suffix == ".h5" else "Parquet"
    with pytest.raises(DatasetFormatError, match=f"not a readable {expected} file"):
        read_dataset(path)


def test_truncated_file_is_refused(tmp_path, amplitudes):
    path = write_dataset(tmp_path / "cut.parquet", amplitudes)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DatasetFormatError, match="not a readable Parquet file"):
        read_dataset(path)


def test_metadata_that_disagrees_with_the_arrays(tmp_path, amplitudes):
    path = write_dataset(tmp_path / "data.h5", amplitudes)
    with h5py.File(path, "r+") as f:
        meta = json.loads(f.attrs[METADATA_KEY])
        f.attrs[METADATA_KEY] = json.dumps(meta | {"n_events": 499})
    with pytest.raises(DatasetFormatError, match="metadata says n_events = 499, the arrays give 500"):
        read_dataset(path)
    with h5py.File(path, "r+") as f:
        f.attrs[METADATA_KEY] = json.dumps(meta | {"kind": "spectrum"})
    with pytest.raises(
        DatasetFormatError, match="does not follow the schema: kind: Input should be 'amplitude' or 'calorimeter'"
    ):
        read_dataset(path)
    with h5py.File(path, "r+") as f:
        f.attrs[METADATA_KEY] = json.dumps(meta)
    with pytest.raises(DatasetFormatError, match="metadata says process 'gg_ggg', the caller asked for 'gg_gg'"):
        read_dataset(path, process="gg_gg")


def test_paths_are_checked(tmp_path, amplitudes):
    with pytest.raises(DatasetFormatError, match=r"expect suffix .h5, .hdf5, .parquet, got '.csv'"):
        write_dataset(tmp_path / "data.csv", amplitudes)
    with pytest.raises(FileNotFoundError, match="no dataset file"):
        read_dataset(tmp_path / "missing.h5")
    assert list(tmp_path.iterdir()) == []  # no temporary left behind


# ---------------------------------------------------------------------------------------------------------------
# Noise injection


def test_injected_noise_has_the_stated_level():
    clean = generate_amplitudes("gg_gg", N_NOISE, seed=11)
    noisy = inject_noise(clean, NOISE_LEVEL, np.random.default_rng(12))
    ratio = noisy.target / clean.target - 1.0
    assert ratio.std() == pytest.approx(NOISE_LEVEL, rel=NOISE_TOLERANCE)
    assert abs(ratio.mean()) < 5 * NOISE_LEVEL / np.sqrt(N_NOISE)
    assert np.array_equal(noisy.target_sigma, NOISE_LEVEL * clean.target)
    assert noisy.provenance.injected_noise == NOISE_LEVEL and noisy.metadata.injected_noise == NOISE_LEVEL
    assert _same_bits(noisy.momenta, clean.momenta) and clean.target_sigma is None


def test_large_noise_keeps_amplitudes_positive(amplitudes):
    noisy = inject_noise(amplitudes, 3.0, np.random.default_rng(0))
    assert (noisy.target > 0).all()


def test_noise_on_calorimeter_adds_to_the_true_spread(clusters):
    noisy = inject_noise(clusters, NOISE_LEVEL, np.random.default_rng(1))
    assert np.allclose(noisy.target_sigma, np.hypot(clusters.target_sigma, NOISE_LEVEL * clusters.target))


def test_noise_is_refused_twice_or_out_of_range(amplitudes):
    noisy = inject_noise(amplitudes, NOISE_LEVEL, np.random.default_rng(0))
    with pytest.raises(ValueError, match="already carries injected noise 0.1"):
        inject_noise(noisy, NOISE_LEVEL, np.random.default_rng(0))
    for bad in (0.0, -0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite value > 0"):
            inject_noise(amplitudes, bad, np.random.default_rng(0))


def test_generate_dataset_noise_is_reproducible():
    a, b = (generate_dataset("calorimeter", 300, seed=8, noise=0.05) for _ in range(2))
    assert a.sha256() == b.sha256() and a.provenance.injected_noise == 0.05
    assert a.sha256() != generate_dataset("calorimeter", 300, seed=9, noise=0.05).sha256()


# ---------------------------------------------------------------------------------------------------------------
# The command


@pytest.mark.parametrize(("process", "suffix"), [("gg_gg", ".h5"), ("calorimeter", ".parquet")])
def test_cli_generate_writes_a_readable_noisy_file(tmp_path, process, suffix):
    out = tmp_path / "sub" / f"data{suffix}"
    args = ["generate", process, "--events", "300", "--out", str(out), "--noise", "0.1", "--seed", "7"]
    if process == "gg_gg":
        args += ["--sqrt-s", "200", "--min-sij-over-s", "0.02"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "wrote 300" in result.output
    dataset = read_dataset(out)
    assert len(dataset) == 300 and dataset.process == process and dataset.metadata.seed == 7
    assert dataset.metadata.injected_noise == 0.1 and dataset.target_sigma is not None
    if process == "gg_gg":
        assert dataset.metadata.domain == PhaseSpaceDomain(sqrt_s_gev=200.0, min_sij_over_s=0.02)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["gg_qq", "--events", "10", "--out", "x.h5"], "expected one of gg_gg, gg_ggg, gg_gggg, calorimeter"),
        (["gg_gg", "--events", "10", "--out", "x.csv"], "dataset files expect suffix"),
        (["gg_gg", "--events", "10", "--out", "x.h5", "--noise", "-1"], "finite value > 0"),
        (["gg_gg", "--events", "10", "--out", "x.h5", "--sqrt-s", "0"], "greater than 0"),
        (["calorimeter", "--events", "10", "--out", "x.h5", "--sqrt-s", "10"], "amplitude processes only"),
    ],
)
def test_cli_generate_rejects_bad_options(tmp_path, args, message):
    result = CliRunner().invoke(app, ["generate", *args])
    assert result.exit_code != 0
    assert message in " ".join(result.output.replace("│", " ").split())
