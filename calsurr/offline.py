"""The offline commands: train, export, report, predict. Wiring only; the work is in `training` and `service`.

Imports of torch-using modules stay inside the commands so that `calsurr serve` needs no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()


def train(
    out: Annotated[Path, typer.Option(help="run folder: surrogate.pt, test.h5, checkpoint.pt")],
    config: Annotated[
        Path | None, typer.Option(help="YAML training config (calsurr.training.pipeline.TrainingConfig)")
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="dataset file (.h5/.parquet); generated from the config if absent")
    ] = None,
    process: Annotated[str | None, typer.Option(help="override the config's process")] = None,
    method: Annotated[str | None, typer.Option(help="deep_ensemble, repulsive_ensemble or bayesian")] = None,
    seed: Annotated[int | None, typer.Option(help="override the config's seed")] = None,
) -> None:
    """Train a surrogate by the config's uncertainty method and save the run."""
    from calsurr.training.data import read_dataset
    from calsurr.training.pipeline import TrainingConfig, train_surrogate
    from calsurr.training.runs import save_run

    settings = TrainingConfig.from_yaml(config) if config else TrainingConfig()
    overrides = {k: v for k, v in {"process": process, "method": method, "seed": seed}.items() if v is not None}
    dataset = read_dataset(data) if data else None
    if dataset is not None:
        overrides["process"] = dataset.metadata.process
    settings = settings.model_copy(update=overrides)
    settings = TrainingConfig.model_validate(settings.model_dump())  # re-validate the overrides
    out.mkdir(parents=True, exist_ok=True)
    run = train_surrogate(settings, dataset, checkpoint=out / "checkpoint.pt")
    save_run(run, out)
    raw, cal = run.uncalibrated, run.calibration
    console.print(
        f"trained {settings.method} on {settings.process} in {run.training_seconds:.0f} s; held-out median |Delta| "
        f"{100 * cal.median_abs_rel_deviation:.3f} %, pulls {raw.pull_mean:+.2f} / {raw.pull_width:.2f} as learned, "
        f"{cal.pull_mean:+.2f} / {cal.pull_width:.2f} after recalibration by {cal.recalibration_factor:.3f}"
    )
    console.print(f"saved {out}")


def export(
    run: Annotated[Path, typer.Argument(help="run folder written by `calsurr train`")],
    repo: Annotated[Path, typer.Option(help="model repository")],
    name: Annotated[str, typer.Option(help="model name in the repository")],
    version: Annotated[int, typer.Option(help="integer version; existing versions are never overwritten")] = 1,
    members: Annotated[bool, typer.Option(help="also output member_mean and member_sigma, (batch, K)")] = False,
    fp32: Annotated[bool, typer.Option(help="float32 inputs and outputs (computed in float64 inside)")] = False,
) -> None:
    """Export a trained run to <repo>/<name>/<version>/{model.onnx, card.json}, checked against torch."""
    from calsurr.training.export import export_to_repository
    from calsurr.training.runs import load_run

    datatype = "FP32" if fp32 else "FP64"
    folder = export_to_repository(load_run(run), repo, name, version, with_members=members, io_datatype=datatype)
    console.print(f"exported {folder}")


def report(
    model: Annotated[Path, typer.Argument(help="exported model folder <repo>/<model>/<version>")],
    data: Annotated[Path, typer.Option(help="held-out dataset file (.h5/.parquet) with targets")],
    out: Annotated[Path, typer.Option(help="folder for summary.json and the PNG plots")],
) -> None:
    """Calibration report of an exported model on a dataset: JSON summary and plots."""
    from calsurr.predict import in_process_runner, predict_dataset
    from calsurr.training.data import AmplitudeDataset, read_dataset
    from calsurr.training.physics.phase_space import pair_invariants
    from calsurr.training.report import write_calibration_report

    dataset = read_dataset(data)
    runner, card = in_process_runner(model)
    predicted = predict_dataset(dataset, runner)
    variable, label = None, ""
    if isinstance(dataset, AmplitudeDataset):
        sij = pair_invariants(dataset.momenta)
        variable, label = sij.min(axis=1) / sij[:, 0], "min s_ij / s"
    factor = card.calibration.recalibration_factor if card.calibration else 1.0
    summary = write_calibration_report(
        out,
        dataset.target,
        predicted["mean"],
        predicted["sigma_stat"],
        predicted["sigma_syst"],
        variable,
        label,
        title=f"{card.name} v{card.version} ({card.uncertainty.method})",
        recalibration_factor=factor,
    )
    console.print(summary.model_dump_json(indent=2))
    console.print(f"wrote {out}")


def predict(
    data: Annotated[Path, typer.Option(help="input dataset file (.h5/.parquet)")],
    out: Annotated[Path, typer.Option(help="output file (.h5/.parquet): inputs plus mean and sigmas")],
    model: Annotated[Path | None, typer.Option(help="exported model folder <repo>/<model>/<version>")] = None,
    server: Annotated[str | None, typer.Option(help="HOST:PORT of a calsurr server instead of in-process")] = None,
    model_name: Annotated[str | None, typer.Option(help="model name on the server")] = None,
    chunk_rows: Annotated[int, typer.Option(help="rows per run or request")] = 16_384,
) -> None:
    """Predict mean, sigma_stat, sigma_syst and sigma_tot for every event of a file."""
    from calsurr.predict import predict_file

    predictions = predict_file(model, data, out, server, model_name, chunk_rows)
    console.print(f"wrote {len(predictions['mean'])} predictions to {out}")
