"""The science benchmark: accuracy and calibration of every process and method against the targets.

    .venv/bin/python bench/science.py                 # everything (hours on 2 cores)
    .venv/bin/python bench/science.py --only gg_ggg_deep_ensemble --only noise
    .venv/bin/python bench/science.py --quick         # the harness in about a minute, tiny budgets

Each entry trains from a YAML config in `configs/`, writes its calibration report (JSON and plots) under
`--out`, and one `results.json` plus `results.md` table, each target marked met or missed. Studies:
`noise` (gg -> gg trained at injected label noise 0, 1 %, 5 %: learned sigma_syst against the level) and
`scaling` (gg -> gg accuracy and sigma_stat against training-set size); `levers_gg_ggg` and `levers_gg_gggg`
(the precision levers one at a time against a small base, then together: what each bought).

Uncertainties are checked as learned (training/surrogate.py's aggregation, no factor applied); the factor a
calibration split would fit is reported as a check (target 0.9-1.1), with the pulls it would give beside.
The conditional calibration (68 % coverage in five bins each of min s_ij / s or the cluster energy, of the
prediction and of the predicted relative sigma) is checked bin by bin.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.member_precision import in_process_rows_per_second  # noqa: E402
from calsurr.training.calibration import pulls  # noqa: E402
from calsurr.training.data import AmplitudeDataset  # noqa: E402
from calsurr.training.export import ExportMismatch, export_to_repository  # noqa: E402
from calsurr.training.fit import FitConfig  # noqa: E402
from calsurr.training.physics.phase_space import pair_invariants  # noqa: E402
from calsurr.training.pipeline import SPLIT_FRACTIONS, TrainingConfig, predict, reaggregate, train_surrogate  # noqa: E402
from calsurr.training.report import write_calibration_report, write_noise_study, write_scaling_study  # noqa: E402
from calsurr.training.runs import SURROGATE_FILE, load_run, save_run  # noqa: E402

METHODS = ("deep_ensemble", "repulsive_ensemble", "bayesian")
PROCESSES = ("gg_ggg", "gg_gggg", "calorimeter")
NOISE_LEVELS = (0.0, 0.01, 0.05)
SCALING_SIZES = (5_000, 20_000, 80_000)  # training points; the run generates them / TRAIN_FRACTION
TRAIN_FRACTION = SPLIT_FRACTIONS[0]

# Targets of the science issue, per process: (median |Delta| at most, (quantile fraction, |Delta| at most)).
ACCURACY_TARGETS = {"gg_ggg": (1e-4, (0.999, 1e-2)), "gg_gggg": (1e-3, (0.90, 3e-3))}
TRAIN_SECONDS_LIMIT = 1200.0  # each precision entry trained within 20 minutes on the 2 cores
PULL_WIDTH_RANGE = (0.9, 1.1)
PULL_MEAN_LIMIT = 0.1
COVERAGE_68_RANGE = (0.60, 0.76)  # globally and in every bin of the conditional calibration
FACTOR_RANGE = (0.9, 1.1)  # the recalibration factor a calibration split fits, as a check
SIGMA_SYST_TOLERANCE = 0.05  # learned sigma_syst within 5 % of the injected / simulated spread
SERVING_THREADS, SERVING_BATCH, SERVING_SECONDS = 2, 1024, 2.0  # a lever's serving cost, measured in-process


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
    coverage_95_raw: float = 0.0
    # variable -> (lowest, highest) 68 % coverage over its five bins, as learned
    conditional_coverage_68: dict[str, tuple[float, float]] = field(default_factory=dict)
    aggregation: str = "ambiguity"
    within_1_percent: float = 0.0  # share of test points with |Delta| <= 1 %
    lever: str = ""  # in a lever study: the change against the study's base
    # in a lever study: the exported graph (float32 members) in-process, onnxruntime on SERVING_THREADS threads
    served_rows_per_second: float | None = None  # at batch SERVING_BATCH
    served_batch1_us: float | None = None  # one row per call
    served_member_dtype: str = ""  # what the members ran in (`serving_cost`)
    # each member's mean squared pull in five equal-population bins of its own width (test split), averaged
    # over the members, lowest-highest bin: 1 everywhere when the widths are calibrated where they are small too
    member_pull2_by_width: tuple[float, float] = (0.0, 0.0)
    # sigma_syst^2 = min(c (W / W_0)^g, 1) W and sigma_stat^2 = (alpha V + (1 - alpha) rho W) / K as fitted on the
    # validation split; None under other aggregations
    shared_share: tuple[float, float, float] | None = None  # c, g and the spread's weight alpha
    checks: dict[str, bool] = field(default_factory=dict)


def _quick(config: TrainingConfig) -> TrainingConfig:
    fit = FitConfig(epochs=2, batch_size=256, seed=config.fit.seed)
    return config.model_copy(update={"n_events": 2_000, "hidden": 16, "layers": 2, "fit": fit})


def _phase_space_variable(test) -> tuple[np.ndarray | None, str]:
    if not isinstance(test, AmplitudeDataset):
        if "log_energy_em" in tuple(getattr(test, "feature_names", ())):
            return test.inputs[:, list(test.feature_names).index("log_energy_em")], "log_energy_em"
        return None, ""
    sij = pair_invariants(test.momenta)
    return sij.min(axis=1) / sij[:, 0], "min s_ij / s"


def member_pulls_by_width(run, n_bins: int = 5) -> tuple[float, float]:
    """(lowest, highest) over `n_bins` equal-population bins of each member's own width of its mean squared pull
    (m_k - T(y))^2 / s_k^2 on the test split, the bins' values averaged over the members."""
    import torch

    with torch.no_grad():
        mu, sigma = (t.numpy() for t in run.model.members_transformed(torch.from_numpy(run.test.inputs)))
    target = run.model.transform(torch.from_numpy(run.test.target)).numpy()
    pull2 = (mu - target) ** 2 / sigma**2
    per_bin = []
    for member_pull2, width in zip(pull2, sigma, strict=True):
        index = np.digitize(width, np.quantile(width, np.linspace(0, 1, n_bins + 1)[1:-1]))
        per_bin.append([member_pull2[index == b].mean() for b in range(n_bins)])
    averaged = np.mean(per_bin, axis=0)
    return float(averaged.min()), float(averaged.max())


def serving_cost(run) -> tuple[float, float, str]:
    """(rows/s at batch SERVING_BATCH, microseconds per call at batch 1, member dtype) of the run's exported
    graph in the server's onnxruntime wrapper on SERVING_THREADS: as `calsurr export` writes it, with float32
    members, or with float64 members where float32 ones miss the export's bounds (FLOAT32_MEMBER_RTOL)."""
    with tempfile.TemporaryDirectory() as repo:
        try:
            member_dtype, folder = "float32", export_to_repository(run, Path(repo), "lever", 1)
        except ExportMismatch as mismatch:
            print(f"{mismatch}: timing the graph with float64 members instead", flush=True)
            member_dtype, folder = "float64", export_to_repository(run, Path(repo), "lever", 2, member_dtype="float64")
        x = np.resize(run.test.inputs, (SERVING_BATCH, *run.test.inputs.shape[1:]))
        rates = in_process_rows_per_second(folder, x, [SERVING_BATCH, 1], SERVING_THREADS, SERVING_SECONDS)
    return rates[SERVING_BATCH], 1e6 / rates[1], member_dtype


def run_entry(
    name: str,
    config: TrainingConfig,
    out: Path,
    known_spread=None,
    save: bool = False,
    reuse: bool = False,
    measure_serving: bool = False,
) -> Row:
    """Train, report, and check one configuration. `known_spread(test, mean)` gives the true sigma per point;
    `save` keeps the run under `out/name/run` for `calsurr export` (the serving benchmark's model); `reuse`
    takes the members of a run saved there instead of training (same config and data, checked by hash) and
    aggregates and calibrates them with the current code; the training time is the saved run's.
    `measure_serving`: also export the run and time its graph (`serving_cost`)."""
    saved = out / name / "run"
    if reuse and (saved / SURROGATE_FILE).is_file():
        run = reaggregate(load_run(saved), config.aggregation)
        seconds = run.training_seconds
    else:
        started = time.perf_counter()
        run = train_surrogate(config, show_progress=True)
        seconds = time.perf_counter() - started
    if save:
        save_run(run, saved)
    test = run.test
    mean, sigma_stat, sigma_syst, sigma_tot = predict(run.model, test.inputs)
    raw, cal = run.uncalibrated, run.calibration
    factor, applied = cal.recalibration_factor, cal.recalibration_applied
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
        recalibration_factor=factor,
        recalibration_applied=applied,
    )
    # as learned: without the factor, if the config applied it
    learned_stat, learned_syst = (s / factor for s in (sigma_stat, sigma_syst)) if applied else (sigma_stat, sigma_syst)
    learned_tot = np.hypot(learned_stat, learned_syst)
    recalibrated = pulls(mean, factor * learned_tot, test.target)
    row = Row(
        name,
        config.process,
        config.method,
        seconds,
        raw.median_abs_rel_deviation,
        raw.q90_abs_rel_deviation,
        raw.q99_abs_rel_deviation,
        raw.pull_mean,
        raw.pull_width,
        raw.coverage_68,
        factor,
        float(np.mean(recalibrated)),
        float(np.std(recalibrated)),
        float(np.mean(np.abs(recalibrated) < 1.0)),
        float(np.mean(np.abs(recalibrated) < 1.959964)),
        float(np.median(learned_stat / np.abs(mean))),
        float(np.median(learned_syst / np.abs(mean))),
        coverage_95_raw=raw.coverage_95,
        conditional_coverage_68={
            c.variable: (min(b.coverage_68 for b in c.bins), max(b.coverage_68 for b in c.bins))
            for c in raw.conditional or ()
        },
        aggregation=config.aggregation,
        within_1_percent=float(np.mean(np.abs(mean / test.target - 1) <= 1e-2)),
    )
    row.member_pull2_by_width = member_pulls_by_width(run)
    if config.aggregation == "ambiguity":
        row.shared_share = tuple(
            float(b) for b in (run.model.shared_share, run.model.share_power, run.model.spread_weight)
        )
    if measure_serving:
        row.served_rows_per_second, row.served_batch1_us, row.served_member_dtype = serving_cost(run)
    if known_spread is not None:
        row.sigma_syst_ratio = float(np.median(learned_syst / known_spread(test, mean)))
        row.checks[f"sigma_syst within {100 * SIGMA_SYST_TOLERANCE:g} %"] = (
            abs(row.sigma_syst_ratio - 1) <= SIGMA_SYST_TOLERANCE
        )
    _check_calibration(row)
    if config.process in ACCURACY_TARGETS:
        median_limit, (fraction, limit) = ACCURACY_TARGETS[config.process]
        abs_delta = np.abs(mean / test.target - 1)
        row.checks[f"median |Delta| <= {100 * median_limit:g} %"] = row.median_abs_delta <= median_limit
        row.checks[f"{100 * fraction:g} % within {100 * limit:g} %"] = bool(np.mean(abs_delta <= limit) >= fraction)
        row.checks[f"trained within {TRAIN_SECONDS_LIMIT / 60:g} min"] = seconds <= TRAIN_SECONDS_LIMIT
    return row


def _check_calibration(row: Row) -> None:
    row.checks["pulls as learned"] = (
        PULL_WIDTH_RANGE[0] <= row.pull_width_raw <= PULL_WIDTH_RANGE[1]
        and abs(row.pull_mean_raw) <= PULL_MEAN_LIMIT
        and COVERAGE_68_RANGE[0] <= row.coverage_68_raw <= COVERAGE_68_RANGE[1]
    )
    row.checks["factor 0.9-1.1"] = FACTOR_RANGE[0] <= row.recalibration_factor <= FACTOR_RANGE[1]
    for variable, (low, high) in row.conditional_coverage_68.items():
        row.checks[f"68 % coverage 60-76 % in every bin of {variable}"] = (
            COVERAGE_68_RANGE[0] <= low and high <= COVERAGE_68_RANGE[1]
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


# The lever studies: a base small enough to train in a few minutes, then one change at a time, then the
# changes that paid together. (name, what changes, TrainingConfig fields, FitConfig fields)
Lever = tuple[str, str, dict, dict]


def _lever_base(process: str, n_events: int) -> TrainingConfig:
    fit = FitConfig(epochs=60, batch_size=1024, learning_rate=2e-3, patience=60)  # every lever its 60 epochs
    return TrainingConfig(process=process, n_events=n_events, members=2, hidden=128, layers=4, fit=fit)


# a Lorentz-equivariant transformer in place of each MLP member, on the four-momenta (training/models.py)
LGATR_LEVER: Lever = (
    "lgatr",
    "L-GATr-slim members on the momenta: 2 blocks, 32 scalar and 8 vector channels per particle",
    {"network": "lgatr", "hidden": 32, "layers": 2},
    {},
)
LEVER_BASES = {"gg_ggg": _lever_base("gg_ggg", 100_000), "gg_gggg": _lever_base("gg_gggg", 50_000)}
LEVERS: dict[str, list[Lever]] = {
    "gg_ggg": [
        ("base", "2 x (4 x 128) SiLU, 70k points, 60 epochs of 1024, cosine", {}, {}),
        ("canonical", "identical gluons ordered (symmetry: canonical)", {"symmetry": "canonical"}, {}),
        ("gelu", "GELU instead of SiLU", {"activation": "gelu"}, {}),
        ("wider", "4 x 256", {"hidden": 256}, {}),
        ("deeper", "6 x 128", {"layers": 6}, {}),
        ("warmup_cosine", "cosine with 5 % linear warm-up", {}, {"schedule": "warmup_cosine"}),
        ("one_cycle", "one-cycle, peak 4e-3", {}, {"schedule": "one_cycle", "learning_rate": 4e-3}),
        ("beta1_0.99", "Adam beta_1 0.99", {}, {"beta1": 0.99}),
        ("batch_256", "batches of 256", {}, {"batch_size": 256}),
        ("bfloat16", "forward passes in bfloat16 (torch.autocast)", {}, {"autocast": "bfloat16"}),
        LGATR_LEVER,
        (
            "lgatr+warmup",
            "the same, learning rate 1e-3 after a 5 % linear warm-up (as transformers are usually trained)",
            LGATR_LEVER[2],
            {"schedule": "warmup_cosine", "learning_rate": 1e-3},
        ),
        ("data_x0.5", "35k training points", {"n_events": 50_000}, {}),
        ("data_x2", "140k training points", {"n_events": 200_000}, {}),
        ("data_x4", "280k training points", {"n_events": 400_000}, {}),
        ("base_seed1", "the base, another seed (data, split and initialisation)", {"seed": 1}, {}),
        ("base_seed2", "the base, a third seed", {"seed": 2}, {}),
        ("canonical+batch_256", "both", {"symmetry": "canonical"}, {"batch_size": 256}),
        (
            "paid",
            "canonical, GELU, batches of 256",
            {"symmetry": "canonical", "activation": "gelu"},
            {"batch_size": 256},
        ),
        (
            "paid+beta1_0.99",
            "canonical, GELU, batches of 256, beta_1 0.99",
            {"symmetry": "canonical", "activation": "gelu"},
            {"batch_size": 256, "beta1": 0.99},
        ),
        (
            "paid+beta1_0.99+bfloat16",
            "canonical, GELU, batches of 256, beta_1 0.99, forward passes in bfloat16",
            {"symmetry": "canonical", "activation": "gelu"},
            {"batch_size": 256, "beta1": 0.99, "autocast": "bfloat16"},
        ),
        (
            "paid+data_x4",
            "canonical, GELU, batches of 256, 280k training points",
            {"symmetry": "canonical", "activation": "gelu", "n_events": 400_000},
            {"batch_size": 256},
        ),
    ],
    "gg_gggg": [
        ("base", "2 x (4 x 128) SiLU, 35k points, 60 epochs of 1024, cosine", {}, {}),
        ("parke_taylor", "target |M|^2 / P, P the Parke-Taylor sum", {"target_prefactor": "parke_taylor"}, {}),
        ("canonical", "identical gluons ordered", {"symmetry": "canonical"}, {}),
        LGATR_LEVER,
        (
            "parke_taylor+canonical",
            "both",
            {"target_prefactor": "parke_taylor", "symmetry": "canonical"},
            {},
        ),
        (
            "paid",
            "Parke-Taylor target, canonical, GELU, batches of 256",
            {"target_prefactor": "parke_taylor", "symmetry": "canonical", "activation": "gelu"},
            {"batch_size": 256},
        ),
    ],
}


def lever_config(base: TrainingConfig, fields: dict, fit_fields: dict) -> TrainingConfig:
    return base.model_copy(update={**fields, "fit": base.fit.model_copy(update=fit_fields)})


def lever_study(process: str, out: Path, quick: bool, only: set[str] | None = None) -> list[Row]:
    """Each lever against the base, one at a time; rows (and the table) written after every run. With `only`,
    the base and those levers run and replace their rows in the folder's earlier results, the others kept."""
    base = _quick(LEVER_BASES[process]) if quick else LEVER_BASES[process]
    folder = out / f"levers_{process}"
    order = [name for name, *_ in LEVERS[process]]
    earlier = folder / "results.json"
    kept = {r["name"]: Row(**r) for r in json.loads(earlier.read_text())} if only and earlier.is_file() else {}
    ran: list[Row] = []
    for name, change, fields, fit_fields in LEVERS[process]:
        if only and name not in only and name != "base":
            continue
        config = lever_config(
            base, fields if not quick else {k: v for k, v in fields.items() if k != "n_events"}, fit_fields
        )
        row = run_entry(name, config, folder, measure_serving=True)
        row.lever = change
        ran.append(row)
        kept[name] = row
        rows = sorted(kept.values(), key=lambda r: order.index(r.name) if r.name in order else len(order))
        folder.mkdir(parents=True, exist_ok=True)
        earlier.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
        (folder / "results.md").write_text(lever_markdown(rows))
    return ran


def lever_markdown(rows: list[Row]) -> str:
    """What each lever bought: accuracy against the base row (the first), with the cost in training time and in
    serving (the exported graph in-process: rows/s at batch 1024, microseconds at batch 1)."""
    base = rows[0]
    lines = [
        "| lever | change | train s | median abs Delta | x base | within 1 % | q99 abs Delta | pull width as learned "
        "| served rows/s | served batch-1 us |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rate = f"{r.served_rows_per_second:.3g}" if r.served_rows_per_second else "-"
        if r.served_member_dtype == "float64":
            rate += " (float64 members)"
        latency = f"{r.served_batch1_us:.0f}" if r.served_batch1_us else "-"
        lines.append(
            f"| {r.name} | {r.lever} | {r.train_seconds:.0f} | {100 * r.median_abs_delta:.4f} % | "
            f"{base.median_abs_delta / r.median_abs_delta:.2f} | {100 * r.within_1_percent:.2f} % | "
            f"{100 * r.q99_abs_delta:.3f} % | {r.pull_width_raw:.2f} | {rate} | {latency} |"
        )
    return "\n".join(lines) + "\n"


def markdown(rows: list[Row]) -> str:
    columns = [
        "entry",
        "train s",
        "median abs Delta",
        "q99 abs Delta",
        "pulls as learned (mean/width/cov68/cov95)",
        "68 % coverage per bin, lowest-highest",
        "member pull^2 in bins of own width",
        "shared share c / power g / spread weight alpha",
        "fitted factor (check)",
        "pulls with the factor (mean/width/cov68)",
        "sigma_syst / known",
        "targets",
    ]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        ratio = f"{r.sigma_syst_ratio:.3f}" if r.sigma_syst_ratio is not None else "-"
        checks = "; ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in r.checks.items())
        conditional = ", ".join(f"{k}: {lo:.2f}-{hi:.2f}" for k, (lo, hi) in r.conditional_coverage_68.items())
        cells = [
            r.name,
            f"{r.train_seconds:.0f}",
            f"{100 * r.median_abs_delta:.3f} %",
            f"{100 * r.q99_abs_delta:.2f} %",
            f"{r.pull_mean_raw:+.2f} / {r.pull_width_raw:.2f} / {r.coverage_68_raw:.2f} / {r.coverage_95_raw:.2f}",
            conditional or "-",
            "{:.2f}-{:.2f}".format(*r.member_pull2_by_width),
            "{:.2f} / {:+.2f} / {:.2f}".format(*r.shared_share) if r.shared_share else "-",
            f"{r.recalibration_factor:.3f}",
            f"{r.pull_mean:+.2f} / {r.pull_width:.2f} / {r.coverage_68:.2f}",
            ratio,
            checks,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "science")
    parser.add_argument("--quick", action="store_true", help="tiny budgets: checks the harness, not the science")
    parser.add_argument(
        "--only",
        action="append",
        help="entry names (e.g. gg_ggg_bayesian), 'noise', 'scaling', 'levers_gg_ggg', 'levers_gg_gggg'",
    )
    parser.add_argument("--lever", action="append", help="in a lever study, run only these levers (and the base)")
    parser.add_argument("--save-runs", action="store_true", help="keep each entry's run for `calsurr export`")
    parser.add_argument(
        "--reuse-runs", action="store_true", help="re-aggregate an entry's saved run instead of training it anew"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    wanted = set(args.only or [])
    rows: list[Row] = []
    for name, (config, spread) in process_entries(args.quick).items():
        if not wanted or name in wanted:
            rows.append(run_entry(name, config, args.out, spread, args.save_runs, args.reuse_runs))
    if not wanted or "noise" in wanted:
        rows += noise_study(args.out, args.quick)
    if not wanted or "scaling" in wanted:
        rows += scaling_study(args.out, args.quick)
    for process in LEVERS:
        if not wanted or f"levers_{process}" in wanted:
            rows += lever_study(process, args.out, args.quick, set(args.lever or []))
    table = markdown(rows)
    (args.out / "results.json").write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    (args.out / "results.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
