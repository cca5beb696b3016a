"""Batch prediction rows/s: `calsurr predict` on a Dask LocalCluster beside the single-process run, same files.

    .venv/bin/python bench/dask_predict.py                          # 2M gg -> ggg events in 8 files, 1 and 2 workers
    .venv/bin/python bench/dask_predict.py --model repository/gg_ggg/1 --events 4000000 --workers 1,2,4
    .venv/bin/python bench/dask_predict.py --quick                  # the harness in seconds (tests; no timing)

Both sides do the same work per file: read it, predict every event in-process with onnxruntime, write the
inputs and the four outputs. Single process: `calsurr.predict.predict_file` file after file, onnxruntime with
its default threads (every core). Dask: the files cut into `--partition-rows` partitions on a LocalCluster of N
worker processes (one onnxruntime thread each), started before the clock starts (a cluster is long-lived).
Every Dask run is checked row for row against the single-process predictions. Without --model a small
deep ensemble is trained first (torch, here in bench/ only). Results: results.json and results.md in --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from calsurr import batch  # noqa: E402
from calsurr.predict import predict_file  # noqa: E402
from calsurr.service.card import UNCERTAINTY_OUTPUTS  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "dask_predict"
RTOL = 1e-12  # partition boundaries move onnxruntime's results by a few units in the last place
FULL = {"process": "gg_ggg", "events": 2_000_000, "files": 8, "workers": "1,2", "partition_rows": 125_000}
QUICK = {"process": "gg_gg", "events": 20_000, "files": 2, "workers": "2", "partition_rows": 4_000}
MODEL = {"n_events": 4_000, "members": 4, "hidden": 64, "layers": 3, "epochs": 5}
QUICK_MODEL = {"n_events": 2_000, "members": 3, "hidden": 16, "layers": 2, "epochs": 2}


def train_model(process: str, settings: dict, repo: Path) -> Path:
    from calsurr.training.export import export_to_repository
    from calsurr.training.fit import FitConfig
    from calsurr.training.pipeline import TrainingConfig, train_surrogate

    config = TrainingConfig(
        process=process,
        n_events=settings["n_events"],
        members=settings["members"],
        hidden=settings["hidden"],
        layers=settings["layers"],
        fit=FitConfig(epochs=settings["epochs"], seed=3),
        seed=3,
    )
    run = train_surrogate(config, show_progress=False)
    return Path(export_to_repository(run, repo, process, version=1, member_dtype="float64"))  # rows to RTOL


def write_inputs(process: str, events: int, files: int, folder: Path) -> list[Path]:
    """`files` files of equal size, alternately HDF5 and Parquet, as a generator grid leaves them."""
    from calsurr.training.data import generate_dataset, write_dataset

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, rows in enumerate(np.diff(np.linspace(0, events, files + 1).astype(int))):
        suffix = ".h5" if i % 2 == 0 else ".parquet"
        paths.append(write_dataset(folder / f"events-{i:03d}{suffix}", generate_dataset(process, int(rows), seed=i)))
    return paths


def single_process(model: Path, inputs: list[Path], out: Path) -> tuple[float, list[dict]]:
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    predictions = [predict_file(model, path, out / f"{path.stem}.parquet", progress=False) for path in inputs]
    return time.perf_counter() - started, predictions


def on_dask(model: Path, inputs: list[Path], out: Path, workers: int, partition_rows: int) -> batch.BatchReport:
    client = batch.connect(None, workers)
    try:
        client.wait_for_workers(workers, timeout=60)
        started = time.perf_counter()
        parts = batch.plan(inputs, partition_rows)
        report = batch.run_batch(client, parts, batch.Source(model_dir=str(model.resolve()), threads=1), out)
        report.seconds = time.perf_counter() - started  # planning included
        return report
    finally:
        client.close()
        client.cluster.close()


def check_rows(out: Path, expected: list[dict]) -> int:
    table = batch.read_output(out)
    for name in UNCERTAINTY_OUTPUTS:
        reference = np.concatenate([p[name] for p in expected])
        np.testing.assert_allclose(table.column(name).to_numpy(), reference, rtol=RTOL, atol=0)
    return table.num_rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny model and 20k events: checks the harness")
    parser.add_argument("--model", type=Path, help="an exported <repo>/<model>/<version> folder; else one is trained")
    parser.add_argument("--process", help="process of the generated events (the model's)")
    parser.add_argument("--events", type=int, help="events in all files together")
    parser.add_argument("--files", type=int, help="number of input files")
    parser.add_argument("--workers", help="comma-separated Dask worker counts, e.g. 1,2,4")
    parser.add_argument("--partition-rows", type=int, help="rows per Dask partition")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    settings = {k: getattr(args, k) if getattr(args, k, None) is not None else v for k, v in defaults.items()}
    workers = [int(w) for w in str(settings["workers"]).split(",")]
    args.out.mkdir(parents=True, exist_ok=True)

    scratch = Path(tempfile.mkdtemp(prefix="calsurr-dask-bench-"))
    try:
        model = args.model or train_model(settings["process"], QUICK_MODEL if args.quick else MODEL, scratch / "repo")
        inputs = write_inputs(settings["process"], settings["events"], settings["files"], scratch / "inputs")
        seconds, expected = single_process(model, inputs, scratch / "single")
        rows = sum(len(p["mean"]) for p in expected)
        runs = [{"mode": "single process", "workers": 1, "seconds": seconds, "rows_per_second": rows / seconds}]
        print(f"single process: {rows} rows in {seconds:.2f} s, {rows / seconds:,.0f} rows/s", flush=True)
        for n in workers:
            out = scratch / f"dask-{n}"
            report = on_dask(model, inputs, out, n, settings["partition_rows"])
            assert check_rows(out, expected) == rows == report.rows
            runs.append(
                {"mode": "dask", "workers": n, "seconds": report.seconds, "rows_per_second": report.rows_per_second}
            )
            print(f"dask, {n} workers: {report.rows_per_second:,.0f} rows/s ({report.parts} partitions)", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    results = {
        "settings": settings,
        "model": str(args.model) if args.model else f"trained: {QUICK_MODEL if args.quick else MODEL}",
        "rows": rows,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "runs": runs,
        "checked": "every Dask row against the single-process prediction, rtol 1e-12",
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["| mode | workers | seconds | rows/s |", "|---|---|---|---|"]
    lines += [f"| {r['mode']} | {r['workers']} | {r['seconds']:.2f} | {r['rows_per_second']:,.0f} |" for r in runs]
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
