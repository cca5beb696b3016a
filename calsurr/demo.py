"""The main job on its embedded default: train, export, serve and query a gg -> ggg surrogate.

gg -> ggg, not the 1-D gg -> gg: there a small ensemble's error is a smooth function of the one angle, not
noise, so its pulls follow that function's shape (an arcsine-like distribution: the 68 % interval held 52 %
of points, the 95 % one all of them) however well the error bars' size is learned. Over the 5-dimensional
gg -> ggg phase space the errors behave as a calibrated Gaussian width promises, which the summary shows.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from calsurr.offline import published_versions
from calsurr.service.client import InferenceClient
from calsurr.service.config import ServerSettings
from calsurr.service.server import BackgroundServer
from calsurr.training.calibration import calibration_report, pulls
from calsurr.training.export import export_to_repository
from calsurr.training.physics.phase_space import pair_invariants
from calsurr.training.pipeline import TrainingConfig, train_surrogate

DEMO_PROCESS = "gg_ggg"


def _points_table(process: str, momenta: np.ndarray, truth: np.ndarray, prediction) -> Table:
    name = process.replace("_", " -> ", 1)
    table = Table(title=f"{name} through the server: |M|^2 (g_s = 1) with its uncertainties")
    for column in ("#", "E_3", "cos theta_3", "min s_ij/s", "true |M|^2", "mean", "sigma_stat", "sigma_syst", "pull"):
        table.add_column(column, justify="right")
    p3 = momenta[:, 2]
    cos_theta = p3[:, 3] / np.linalg.norm(p3[:, 1:], axis=1)
    sij = pair_invariants(momenta)
    min_ratio = sij.min(axis=1) / sij[:, 0]
    pull = pulls(prediction.mean, prediction.sigma_tot, truth)
    for i in range(len(truth)):
        table.add_row(
            str(i),
            f"{p3[i, 0]:.1f}",
            f"{cos_theta[i]:+.4f}",
            f"{min_ratio[i]:.4f}",
            f"{truth[i]:.5g}",
            f"{prediction.mean[i]:.5g}",
            f"{prediction.sigma_stat[i]:.2g}",
            f"{prediction.sigma_syst[i]:.2g}",
            f"{pull[i]:+.2f}",
        )
    return table


def run_demo(config: TrainingConfig, workdir: Path | None, rows: int) -> int:
    """Train, export, serve, query and print; returns the version published. A `workdir` whose repository
    already holds versions of the model (an earlier run) gets the next one: versions are immutable."""
    console = Console(width=None if Console().is_terminal else 120)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="calsurr-demo-") as tmp:
        repo = (workdir or Path(tmp)) / "repository"
        model_name = config.process
        versions = published_versions(repo / model_name)
        version = max(versions, default=0) + 1
        if versions:
            console.print(f"{repo / model_name} has versions {versions}; this run publishes version {version}")
        console.rule(f"1/4 train: {config.members}-member deep ensemble on {config.n_events} {config.process} events")
        run = train_surrogate(config)
        raw, cal = run.uncalibrated, run.calibration
        console.print(
            f"trained in {run.training_seconds:.1f} s (best epoch {run.history.best_epoch + 1}); held-out pulls as "
            f"learned: mean {raw.pull_mean:+.2f}, width {raw.pull_width:.2f}; the factor a separate calibration "
            f"split would rescale the sigmas by: {cal.recalibration_factor:.3f} "
            + ("(applied)" if cal.recalibration_applied else "(a check, not applied)")
        )

        console.rule("2/4 export: the whole function to ONNX, checked against torch")
        folder = export_to_repository(run, repo, model_name, version=version)
        console.print(f"wrote {folder}/model.onnx and card.json")

        console.rule("3/4 serve: gRPC (Open Inference Protocol) on a free loopback port")
        settings = ServerSettings(repo=repo, host="127.0.0.1", port=0, metrics_port=0, version_policy="latest")
        with BackgroundServer(settings) as server:
            console.print(f"serving on {server.address}")
            console.rule(f"4/4 query version {version} through the Python client")
            with InferenceClient(server.address) as client:
                prediction = client.predict(model_name, run.test.momenta, version=str(version))
        test = run.test
        console.print(_points_table(config.process, test.momenta[:rows], test.target[:rows], prediction[:rows]))
        report = calibration_report(prediction.mean, prediction.sigma_tot, test.target)
        console.print(
            f"all {report.n_points} held-out points through the server: median |Delta| = "
            f"{100 * report.median_abs_rel_deviation:.3f} %, 90 % within {100 * report.q90_abs_rel_deviation:.2f} %; "
            f"pull mean {report.pull_mean:+.2f}, width {report.pull_width:.2f}; "
            f"68 % interval covers {100 * report.coverage_68:.0f} %, 95 % covers {100 * report.coverage_95:.0f} %"
        )
    console.print(f"demo finished in {time.perf_counter() - started:.1f} s")
    return version
