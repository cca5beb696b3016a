"""The science benchmark: accuracy and calibration of every process and method against the targets.

    .venv/bin/python bench/science.py                 # everything (hours on 2 cores)
    .venv/bin/python bench/science.py --only gg_ggg_deep_ensemble --only noise
    .venv/bin/python bench/science.py --quick         # the harness in about a minute, tiny budgets

Each entry trains from a YAML config in `configs/`, writes its calibration report (JSON and plots) under
`--out`, and one `results.json` plus `results.md` table, each target marked met or missed. Studies:
`noise` (gg -> gg trained at injected label noise 0, 1 %, 5 %: learned sigma_syst against the level) and
`scaling` (gg -> gg accuracy and sigma_stat against training-set size).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from calsurr.training.data import AmplitudeDataset  # noqa: E402
from calsurr.training.fit import FitConfig  # noqa: E402
from calsurr.training.physics.phase_space import pair_invariants  # noqa: E402
from calsurr.training.pipeline import SPLIT_FRACTIONS, TrainingConfig, predict, train_surrogate  # noqa: E402
from calsurr.training.report import write_calibration_report, write_noise_study, write_scaling_study  # noqa: E402
from calsurr.training.runs import save_run  # noqa: E402

METHODS = ("deep_ensemble", "repulsive_ensemble", "bayesian")
PROCESSES = ("gg_ggg", "gg_gggg", "calorimeter")
NOISE_LEVELS = (0.0, 0.01, 0.05)
SCALING_SIZES = (5_000, 20_000, 80_000)  # training points; the run generates them / TRAIN_FRACTION
TRAIN_FRACTION = SPLIT_FRACTIONS[0]

# Targets of the science issue, per process: (median |Delta| at most, (quantile fraction, |Delta| at most)).
ACCURACY_TARGETS = {"gg_ggg": (1e-3, (0.99, 1e-2)), "gg_gggg": (1e-2, (0.90, 3e-2))}
PULL_WIDTH_RANGE = (0.9, 1.1)
PULL_MEAN_LIMIT = 0.1
COVERAGE_68_RANGE = (0.60, 0.76)
SIGMA_SYST_TOLERANCE = 0.15  # learned sigma_syst within 15 % of the injected / simulated spread


@dataclass
class Row:
    name: str
    process: str
    method: str
    train_seconds: float
    median_abs_delta: float
    q90_abs_delta: float
    q99_abs_delta: float
    pull_mean_raw: float
    pull_width_raw: float
    coverage_68_raw: float
    recalibration_factor: float
    pull_mean: float
    pull_width: float
    coverage_68: float
    coverage_95: float
    rel_sigma_stat: float  # median sigma_stat / |mean|, recalibrated
    rel_sigma_syst_learned: float  # median sigma_syst / |mean| as the likelihood learned it (no recalibration)
    sigma_syst_ratio: float | None = None  # learned sigma_syst / known spread (noise or simulation)
    checks: dict[str, bool] = field(default_factory=dict)


def _quick(config: TrainingConfig) -> TrainingConfig:
    fit = FitConfig(epochs=2, batch_size=256, seed=config.fit.seed)
    return config.model_copy(update={"n_events": 2_000, "hidden": 16, "layers": 2, "fit": fit})


def _phase_space_variable(test) -> tuple[np.ndarray | None, str]:
    if not isinstance(test, AmplitudeDataset):
        return None, ""
    sij = pair_invariants(test.momenta)
    return sij.min(axis=1) / sij[:, 0], "min s_ij / s"


def run_entry(name: str, config: TrainingConfig, out: Path, known_spread=None, save: bool = False) -> Row:
    """Train, report, and check one configuration. `known_spread(test, mean)` gives the true sigma per point;
    `save` keeps the run under `out/name/run` for `calsurr export` (the serving benchmark's model)."""
    started = time.perf_counter()
    run = train_surrogate(config, show_progress=True)
    seconds = time.perf_counter() - started
    if save:
        save_run(run, out / name / "run")
    test = run.test
    mean, sigma_stat, sigma_syst, _ = predict(run.model, test.inputs)
    variable, label = _phase_space_variable(test)
    write_calibration_report(
        out / name,
        test.target,
        mean,
        sigma_stat,
        sigma_syst,
        variable,
        label or "min s_ij / s",
        title=f"{config.process} {config.method}",
        recalibration_factor=run.calibration.recalibration_factor,
    )
    raw, cal = run.uncalibrated, run.calibration
    # sigma_syst as learned, before the recalibration factor that also absorbs sigma_stat's double count
    learned = sigma_syst / cal.recalibration_factor
    row = Row(
        name,
        config.process,
        config.method,
        seconds,
        cal.median_abs_rel_deviation,
        cal.q90_abs_rel_deviation,
        cal.q99_abs_rel_deviation,
        raw.pull_mean,
        raw.pull_width,
        raw.coverage_68,
        cal.recalibration_factor,
        cal.pull_mean,
        cal.pull_width,
        cal.coverage_68,
        cal.coverage_95,
        float(np.median(sigma_stat / np.abs(mean))),
        float(np.median(learned / np.abs(mean))),
    )
    if known_spread is not None:
        row.sigma_syst_ratio = float(np.median(learned / known_spread(test, mean)))
        row.checks["sigma_syst within 15 %"] = abs(row.sigma_syst_ratio - 1) <= SIGMA_SYST_TOLERANCE
    _check_calibration(row)
    if config.process in ACCURACY_TARGETS:
        median_limit, (fraction, limit) = ACCURACY_TARGETS[config.process]
        abs_delta = np.abs(mean / test.target - 1)
        row.checks[f"median |Delta| <= {100 * median_limit:g} %"] = row.median_abs_delta <= median_limit
        row.checks[f"{100 * fraction:g} % within {100 * limit:g} %"] = bool(np.mean(abs_delta <= limit) >= fraction)
    return row


def _check_calibration(row: Row) -> None:
    for label, (width, pull_mean, coverage) in {
        "as learned": (row.pull_width_raw, row.pull_mean_raw, row.coverage_68_raw),
        "recalibrated": (row.pull_width, row.pull_mean, row.coverage_68),
    }.items():
        row.checks[f"pulls {label}"] = (
            PULL_WIDTH_RANGE[0] <= width <= PULL_WIDTH_RANGE[1]
            and abs(pull_mean) <= PULL_MEAN_LIMIT
            and COVERAGE_68_RANGE[0] <= coverage <= COVERAGE_68_RANGE[1]
        )


def _noise_spread(level: float):
    return lambda test, mean: level * np.abs(mean)


def _calorimeter_spread(test, mean):
    return test.target_sigma


def process_entries(quick: bool) -> dict[str, tuple[TrainingConfig, object]]:
    entries = {}
    for process in PROCESSES:
        for method in METHODS:
            config = TrainingConfig.from_yaml(ROOT / "configs" / f"{process}_{method}.yaml")
            spread = _calorimeter_spread if process == "calorimeter" else None
            entries[f"{process}_{method}"] = (_quick(config) if quick else config, spread)
    return entries


def noise_study(out: Path, quick: bool) -> list[Row]:
    rows = []
    for level in NOISE_LEVELS:
        config = TrainingConfig(process="gg_gg", n_events=40_000, noise=level, fit=FitConfig(epochs=100))
        config = _quick(config) if quick else config
        rows.append(run_entry(f"noise_{level:g}", config, out / "noise", _noise_spread(level) if level else None))
    learned = [r.rel_sigma_syst_learned for r in rows]
    write_noise_study(out / "noise", NOISE_LEVELS, learned, title="gg -> gg, deep ensemble")
    return rows


def scaling_study(out: Path, quick: bool) -> list[Row]:
    rows = []
    for size in SCALING_SIZES:
        config = TrainingConfig(process="gg_gg", n_events=int(size / TRAIN_FRACTION), fit=FitConfig(epochs=100))
        if quick:
            config = _quick(config).model_copy(update={"n_events": int(size / TRAIN_FRACTION)})
        rows.append(run_entry(f"scaling_{size}", config, out / "scaling"))
    accuracy, sigma_stat = [r.median_abs_delta for r in rows], [r.rel_sigma_stat for r in rows]
    write_scaling_study(out / "scaling", SCALING_SIZES, accuracy, sigma_stat, title="gg -> gg")
    return rows


def markdown(rows: list[Row]) -> str:
    columns = [
        "entry",
        "train s",
        "median abs Delta",
        "q99 abs Delta",
        "pulls as learned (mean/width/cov68)",
        "factor",
        "pulls recalibrated (mean/width/cov68/cov95)",
        "sigma_syst / known",
        "targets",
    ]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        ratio = f"{r.sigma_syst_ratio:.2f}" if r.sigma_syst_ratio is not None else "-"
        checks = "; ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in r.checks.items())
        cells = [
            r.name,
            f"{r.train_seconds:.0f}",
            f"{100 * r.median_abs_delta:.3f} %",
            f"{100 * r.q99_abs_delta:.2f} %",
            f"{r.pull_mean_raw:+.2f} / {r.pull_width_raw:.2f} / {r.coverage_68_raw:.2f}",
            f"{r.recalibration_factor:.3f}",
            f"{r.pull_mean:+.2f} / {r.pull_width:.2f} / {r.coverage_68:.2f} / {r.coverage_95:.2f}",
            ratio,
            checks,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "science")
    parser.add_argument("--quick", action="store_true", help="tiny budgets: checks the harness, not the science")
    parser.add_argument("--only", action="append", help="entry names (e.g. gg_ggg_bayesian), 'noise' or 'scaling'")
    parser.add_argument("--save-runs", action="store_true", help="keep each entry's run for `calsurr export`")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    wanted = set(args.only or [])
    rows: list[Row] = []
    for name, (config, spread) in process_entries(args.quick).items():
        if not wanted or name in wanted:
            rows.append(run_entry(name, config, args.out, spread, args.save_runs))
    if not wanted or "noise" in wanted:
        rows += noise_study(args.out, args.quick)
    if not wanted or "scaling" in wanted:
        rows += scaling_study(args.out, args.quick)
    table = markdown(rows)
    (args.out / "results.json").write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    (args.out / "results.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
