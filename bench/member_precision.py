"""float32 against float64 members in the exported graph: speed in-process and served, and the agreement.

    .venv/bin/python bench/member_precision.py                   # trains a demo-size K = 8, 4x128 gg -> ggg ensemble
    .venv/bin/python bench/member_precision.py --run runs/ggg    # a run folder written by `calsurr train`
    .venv/bin/python bench/member_precision.py --quick           # the harness in seconds (a tiny gg -> gg model)

Both graphs are exported from the same run (`calsurr export --member-dtype float32|float64`), so they differ
only in the precision the members run in (features and aggregation stay float64). Measured side by side in
one run: in-process onnxruntime rows/s at several batch sizes, with onnxruntime's default threads and with
one thread, and through `calsurr serve` with our client (batch 1 at concurrency 1, batch 1024 at concurrency
8); agreement: the largest relative difference of each output between the two graphs on held-out points.
Writes results.json and results.md under bench/results/member_precision/ (`--out`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from serving import ServerProcess, _calsurr_command, _closed_loop, _free_port, _unary_call  # noqa: E402

from calsurr.service.card import MODEL_FILENAME, ModelCard  # noqa: E402
from calsurr.service.client import AsyncInferenceClient, RetryPolicy  # noqa: E402
from calsurr.service.runtime import OnnxModel, RuntimeOptions  # noqa: E402

OUTPUTS = ("mean", "sigma_stat", "sigma_syst", "sigma_tot")
RESULTS = ROOT / "bench" / "results" / "member_precision"


def _train(quick: bool):
    from calsurr.training.fit import FitConfig
    from calsurr.training.pipeline import TrainingConfig, train_surrogate

    if quick:
        config = TrainingConfig(
            process="gg_gg", n_events=2_000, members=3, hidden=16, layers=2, fit=FitConfig(epochs=3, seed=1), seed=1
        )
    else:
        fit = FitConfig(epochs=5, batch_size=1024, seed=1)
        config = TrainingConfig(process="gg_ggg", n_events=20_000, members=8, hidden=128, layers=4, fit=fit, seed=1)
    print(f"training a demo-size {config.process} ensemble, K = {config.members}, {config.layers}x{config.hidden}")
    return train_surrogate(config, show_progress=False)


def in_process_rows_per_second(
    folder: Path, x: np.ndarray, batches: list[int], threads: int, seconds: float
) -> dict[int, float]:
    """Rows/s of an exported version folder in the server's onnxruntime wrapper, per batch size, each batch
    run for `seconds` after one warm-up call."""
    card = ModelCard.read(folder / "card.json")
    model = OnnxModel(folder / MODEL_FILENAME, card, RuntimeOptions(intra_op_threads=threads))
    name = card.inputs[0].name
    rows_per_s = {}
    for batch in batches:
        chunk = np.ascontiguousarray(x[:batch])
        model.run({name: chunk})  # warm
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            model.run({name: chunk})
            done += batch
        rows_per_s[batch] = done / (time.perf_counter() - started)
    return rows_per_s


def _served(repo: Path, card: ModelCard, x: np.ndarray, cells: list[tuple[int, int]], seconds: float, log: Path):
    port = _free_port()
    command = _calsurr_command(repo, port, 0, ["CPUExecutionProvider"], True)
    results = {}
    with ServerProcess(command, port, card.name, log, env={"PYTHONPATH": str(ROOT)}) as server:

        async def drive():
            async with AsyncInferenceClient(server.address, timeout=60, retry=RetryPolicy(max_attempts=1)) as client:
                for batch, concurrency in cells:
                    call = _unary_call(client, card.name, card.inputs[0].name, np.ascontiguousarray(x[:batch]))
                    await _closed_loop(call, concurrency, seconds / 5)  # warm
                    timing = await _closed_loop(call, concurrency, seconds)
                    p50 = float(np.percentile(timing.latencies, 50)) * 1e3 if timing.latencies else float("nan")
                    results[f"b{batch} c{concurrency}"] = {
                        "rows_per_s": len(timing.latencies) * batch / timing.seconds,
                        "p50_ms": p50,
                        "errors": timing.errors,
                    }

        asyncio.run(drive())
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="run folder written by `calsurr train` [default: train one]")
    parser.add_argument("--quick", action="store_true", help="tiny model, short cells: the harness only")
    parser.add_argument("--seconds", type=float, help="seconds per cell")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    from calsurr.training.export import export_to_repository
    from calsurr.training.runs import load_run

    seconds = args.seconds or (0.3 if args.quick else 3.0)
    batches = [1, 64, 1024] if args.quick else [1, 64, 1024, 4096]
    run = load_run(args.run) if args.run else _train(args.quick)
    x = np.ascontiguousarray(np.resize(run.test.inputs, (max(batches), *run.test.inputs.shape[1:])))
    report: dict = {"load_average_at_start": [round(v, 2) for v in os.getloadavg()], "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="calsurr-precision-") as tmp:
        folders = {}
        for dtype in ("float64", "float32"):
            repo = Path(tmp) / dtype
            folders[dtype] = export_to_repository(run, repo, run.config.process, 1, member_dtype=dtype)
        card = ModelCard.read(folders["float64"] / "card.json")
        report["model"] = {"process": card.process, "members": card.uncertainty.members}
        sessions = {d: OnnxModel(f / MODEL_FILENAME, ModelCard.read(f / "card.json")) for d, f in folders.items()}
        name = card.inputs[0].name
        held_out = np.ascontiguousarray(run.test.inputs)
        out = {d: s.run({name: held_out}, list(OUTPUTS)) for d, s in sessions.items()}
        report["agreement_max_relative"] = {
            o: float(np.max(np.abs(out["float32"][o] - out["float64"][o]) / np.abs(out["float64"][o]))) for o in OUTPUTS
        }
        report["in_process"] = {
            f"{d} threads={t}": in_process_rows_per_second(folders[d], x, batches, t, seconds)
            for t in (0, 1)
            for d in ("float64", "float32")
        }
        cells = [(1, 1), (1024, 8)]
        report["served"] = {
            d: _served(folders[d].parents[1], card, x, cells, seconds, Path(tmp) / f"{d}.log") for d in folders
        }
    lines = [
        "# float32 against float64 members",
        "",
        f"{report['model']}; {report['cpus']} CPUs, load average at start {report['load_average_at_start']}",
        "",
        "agreement (largest relative difference, float32 graph vs float64 graph, held-out points): "
        + ", ".join(f"{o} {v:.2e}" for o, v in report["agreement_max_relative"].items()),
        "",
        "| in-process rows/s | " + " | ".join(f"batch {b}" for b in batches) + " |",
        "|---|" + "---:|" * len(batches),
    ]
    for key, values in report["in_process"].items():
        lines.append(f"| {key} | " + " | ".join(f"{values[b]:,.0f}" for b in batches) + " |")
    for t in (0, 1):
        ratios = [
            report["in_process"][f"float32 threads={t}"][b] / report["in_process"][f"float64 threads={t}"][b]
            for b in batches
        ]
        lines.append(f"| float32 / float64, threads={t} | " + " | ".join(f"{r:.2f}x" for r in ratios) + " |")
    lines += ["", "| served (calsurr serve, our client) | rows/s | p50 ms |", "|---|---:|---:|"]
    for dtype, cells_out in report["served"].items():
        for cell, figures in cells_out.items():
            lines.append(f"| {dtype} {cell} | {figures['rows_per_s']:,.0f} | {figures['p50_ms']:.3f} |")
    table = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "results.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
