"""Event-generation benchmark: closure of two-stage and gated unweighting against standard, and the gain.

    .venv/bin/python bench/events.py                       # trains small surrogates, then every cell (minutes)
    .venv/bin/python bench/events.py --model-ggg repository/gg_ggg/1 --model-gggg repository/gg_gggg/1
    .venv/bin/python bench/events.py --quick               # the harness in about a minute, tiny budgets

For gg -> ggg and gg -> gggg, flat and VEGAS phase space: standard, two-stage and gated unweighting of the
same number of events (independent seeds), the surrogate served by a `calsurr serve` subprocess and called
batched through the client, as a generator would. Per cell: eps_std, eps_1, eps_2, Kish factor, t_exact,
t_surr, f_eff (measured times), the asymptotic f_eff and the break-even t_exact / t_surr; closure: the cross
sections' pulls against standard and the chi2 probability of each observable's shape (tight bounds here:
|pull| < 3, p > 0.01). Also gg -> gg against the textbook 1-D integral. Writes results.json, results.md, the
observable plots per cell and gain.png (f_eff against t_exact / t_surr) under --out.

Without --model-*, small deep ensembles are trained here with calsurr.training (torch: bench/ only; the event
tool itself never imports it) and exported to <out>/repository.
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from calsurr.events.bookkeeping import GEV2_TO_PB, Estimate  # noqa: E402
from calsurr.events.observables import compare_samples  # noqa: E402
from calsurr.events.phase_space import make_sampler  # noqa: E402
from calsurr.events.summary import figures  # noqa: E402
from calsurr.events.surrogates import ServedSurrogate  # noqa: E402
from calsurr.events.unweighting import EventGenerator  # noqa: E402
from calsurr.training.physics.processes import get_process  # noqa: E402

SQRT_S, CUT = 1000.0, 0.01
PULL_BOUND, CHI2_PROBABILITY_BOUND = 3.0, 0.01  # the bench's tight closure bounds
GAIN_RATIOS = np.logspace(0, 7, 71)  # t_exact / t_surr for the f_eff curve
# Where one-loop amplitudes lie: seconds per phase-space point assumed for numerical one-loop 2 -> 3 and 2 -> 4
# QCD amplitudes (OpenLoops, NJet, Recola class of codes): 1 ms to 1 s. An order-of-magnitude band, stated as
# such in the README; not a figure re-measured or re-read from a timing table here.
ONE_LOOP_SECONDS = (1e-3, 1.0)

# Per process: surrogate training (small, minutes on 2 cores) and event budgets.
FULL = {
    "gg_ggg": {
        "train": {"n_events": 60_000, "members": 4, "hidden": 64, "layers": 3, "epochs": 60, "batch_size": 512},
        "events": 5_000,
        "optimisation_points": 50_000,
        "vegas": (5, 20_000),
    },
    "gg_gggg": {
        "train": {"n_events": 30_000, "members": 4, "hidden": 64, "layers": 3, "epochs": 60, "batch_size": 512},
        "events": 1_000,
        "optimisation_points": 20_000,
        "vegas": (4, 5_000),
    },
}
QUICK = {
    "gg_ggg": {
        "train": {"n_events": 1_000, "members": 2, "hidden": 8, "layers": 1, "epochs": 2, "batch_size": 256},
        "events": 100,
        "optimisation_points": 2_000,
        "vegas": (1, 1_000),
    },
    "gg_gggg": {
        "train": {"n_events": 300, "members": 2, "hidden": 8, "layers": 1, "epochs": 2, "batch_size": 256},
        "events": 10,
        "optimisation_points": 500,
        "vegas": (1, 200),
    },
}
METHOD_SEEDS = {"standard": 1, "two-stage": 2, "gated": 3}


def train_and_export(process: str, settings: dict, repo: Path) -> Path:
    """A small deep ensemble for `process`, exported to <repo>/<process>/1 (torch lives here, in bench/ only)."""
    from calsurr.training.export import export_to_repository
    from calsurr.training.fit import FitConfig
    from calsurr.training.pipeline import TrainingConfig, train_surrogate

    fit = FitConfig(epochs=settings["epochs"], batch_size=settings["batch_size"], seed=7, patience=15)
    config = TrainingConfig(
        process=process,
        n_events=settings["n_events"],
        members=settings["members"],
        hidden=settings["hidden"],
        layers=settings["layers"],
        fit=fit,
        seed=7,
    )
    start = time.perf_counter()
    run = train_surrogate(config, show_progress=False)
    folder = export_to_repository(run, repo, process, version=1, member_dtype="float64")  # as the README measured
    cal = run.calibration
    print(
        f"trained {process} in {time.perf_counter() - start:.0f} s: median |Delta| "
        f"{100 * cal.median_abs_rel_deviation:.2f} %, q99 {100 * cal.q99_abs_rel_deviation:.1f} %",
        flush=True,
    )
    return Path(folder)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(repo: Path) -> tuple[subprocess.Popen, str]:
    """`calsurr serve` on a free port, waited for until ready."""
    from calsurr.service.client import InferenceClient

    port = free_port()
    calsurr = Path(sys.executable).with_name("calsurr")
    command = [str(calsurr), "serve", "--repo", str(repo), "--host", "127.0.0.1", "--port", str(port), "--no-metrics"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    with InferenceClient(address, timeout=2.0) as client:
        while time.monotonic() < deadline:
            try:
                if client.is_ready():
                    return process, address
            except Exception:  # not listening yet
                pass
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError("calsurr serve did not become ready in 60 s")


def run_cell(process: str, sampler_name: str, surrogate, budget: dict) -> dict:
    """standard, two-stage and gated samples on one (adapted) sampler; figures, closure and the samples."""
    proc = get_process(process)
    sampler = make_sampler(sampler_name, proc.n_final, SQRT_S, CUT)
    adapt_seconds = 0.0
    if sampler_name == "vegas":
        iterations, points = budget["vegas"]
        generator = EventGenerator(proc.squared_amplitude, sampler, "standard")
        adapt_seconds = generator.adapt_sampler(iterations, points, np.random.default_rng(0), "exact")
    samples = {}
    for method, seed in METHOD_SEEDS.items():
        rng = np.random.default_rng(seed)
        generator = EventGenerator(proc.squared_amplitude, sampler, method, surrogate if method != "standard" else None)
        setup = generator.optimise(budget["optimisation_points"], rng)
        samples[method] = generator.generate(budget["events"], setup, rng)
        print(f"  {process} {sampler_name} {method}: {samples[method].seconds:.1f} s", flush=True)
    standard = samples["standard"]
    cell = {"process": process, "sampler": sampler_name, "vegas_adaptation_s": adapt_seconds, "methods": {}}
    for method, sample in samples.items():
        entry = figures(sample, standard if method != "standard" else None)
        if method != "standard":
            comparisons = compare_samples((standard.momenta, standard.weights), (sample.momenta, sample.weights))
            entry["closure"] = {
                "sigma_pull": sample.sigma_weighted.pull(standard.sigma_weighted),
                "sigma_events_pull": sample.sigma_events.pull(standard.sigma_weighted),
                "chi2": {c.observable: [c.chi2, c.ndf, c.probability] for c in comparisons},
            }
            cost, reference = sample.cost_model(), standard.cost_model()
            entry["gain_curve"] = cost.gain_curve(reference, GAIN_RATIOS).tolist()
        cell["methods"][method] = entry
    cell["samples"] = samples
    return cell


def textbook_check(n_events: int) -> dict:
    """gg -> gg with the cut: standard unweighting against the 1-D integral of the textbook dsigma/dt."""
    from scipy.integrate import quad

    s = SQRT_S**2

    def dsigma_dt(t):
        u = -s - t
        return 4.5 * (3.0 - t * u / s**2 - s * u / t**2 - s * t / u**2) / (16.0 * math.pi * s**2)

    value, _ = quad(dsigma_dt, -(1.0 - CUT) * s, -CUT * s, limit=200)
    reference = 0.5 * value * GEV2_TO_PB
    proc = get_process("gg_gg")
    rng = np.random.default_rng(5)
    generator = EventGenerator(proc.squared_amplitude, make_sampler("flat", 2, SQRT_S, CUT), "standard")
    sample = generator.generate(n_events, generator.optimise(min(50_000, 50 * n_events), rng), rng)
    return {
        "textbook_pb": reference,
        "sigma_pb": sample.sigma_weighted.value,
        "sigma_error_pb": sample.sigma_weighted.error,
        "pull": sample.sigma_weighted.pull(Estimate(reference, 0.0)),
    }


def write_markdown(results: dict, path: Path) -> None:
    lines = ["# calsurr events: closure and measured gain", ""]
    tb = results["textbook"]
    lines += [
        f"gg -> gg, every s_ij > {CUT} s, sqrt(s) = {SQRT_S:g} GeV, g_s = 1: textbook 1-D integral "
        f"{tb['textbook_pb']:.2f} pb, standard unweighting {tb['sigma_pb']:.1f} +- {tb['sigma_error_pb']:.1f} pb "
        f"(pull {tb['pull']:+.2f}).",
        "",
        "| process | sampler | method | sigma [pb] | eps_std / eps_1 | eps_2 | gated | Kish | t_exact [us] "
        "| t_surr [us] | f_eff | f_eff (t_exact >> t_surr) | break-even t_exact/t_surr |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cell in results["cells"]:
        for method, e in cell["methods"].items():
            eps = e.get("eps_std", e.get("eps_1"))
            lines.append(
                f"| {cell['process']} | {cell['sampler']} | {method} "
                f"| {e['sigma_pb']:.1f} +- {e['sigma_error_pb']:.1f} "
                f"| {eps:.3g} | {e.get('eps_2', float('nan')):.3g} | {e.get('gated_fraction', 0):.3g} "
                f"| {e['kish']:.3f} | {e['t_exact_us']:.3g} | {e.get('t_surr_us', float('nan')):.3g} "
                f"| {e.get('f_eff', float('nan')):.3g} | {e.get('f_eff_asymptotic', float('nan')):.3g} "
                f"| {e.get('break_even_t_exact_over_t_surr', float('nan')):.3g} |"
            )
    lines += ["", "Closure against standard (tight bounds: |pull| < 3, chi2 probability > 0.01):", ""]
    lines += ["| process | sampler | method | sigma pull | chi2 probabilities (pT, y, min dR, min s_ij/s) | status |"]
    lines += ["|---|---|---|---|---|---|"]
    for cell in results["cells"]:
        for method, e in cell["methods"].items():
            if "closure" not in e:
                continue
            c = e["closure"]
            probabilities = [v[2] for v in c["chi2"].values()]
            ok = abs(c["sigma_pull"]) < PULL_BOUND and min(probabilities) > CHI2_PROBABILITY_BOUND
            text = ", ".join(f"{p:.2f}" for p in probabilities)
            status = "met" if ok else "missed"
            lines.append(
                f"| {cell['process']} | {cell['sampler']} | {method} | {c['sigma_pull']:+.2f} | {text} | {status} |"
            )
    path.write_text("\n".join(lines) + "\n")


def plot_gain(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    plt.style.use(mplhep.style.ATLAS)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    styles = {"two-stage": "-", "gated": "--"}
    colours = {("gg_ggg", "flat"): "tab:blue", ("gg_ggg", "vegas"): "tab:cyan"}
    colours |= {("gg_gggg", "flat"): "tab:red", ("gg_gggg", "vegas"): "tab:orange"}
    t_surr = []
    for cell in results["cells"]:
        key = (cell["process"], cell["sampler"])
        for method, e in cell["methods"].items():
            if method == "standard":
                continue
            label = f"{cell['process']}, {cell['sampler']}, {method}"
            ax.plot(GAIN_RATIOS, e["gain_curve"], styles[method], color=colours.get(key, "grey"), label=label)
            measured = cell["methods"]["standard"]["t_exact_us"] / e["t_surr_us"]
            ax.plot([measured], [e["f_eff"]], "o", color=colours.get(key, "grey"), ms=6)
            t_surr.append(e["t_surr_us"] * 1e-6)
    if t_surr:
        low, high = ONE_LOOP_SECONDS[0] / max(t_surr), ONE_LOOP_SECONDS[1] / min(t_surr)
        ax.axvspan(low, high, color="grey", alpha=0.15, label="one-loop amplitudes, 1 ms - 1 s a point")
    ax.axhline(1.0, color="black", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$t_{exact} / t_{surr}$")
    ax.set_ylabel(r"$f_{eff}$ over standard unweighting")
    ax.legend(fontsize="xx-small", loc="upper left")
    ax.set_title("dots: measured with our tree amplitudes", fontsize="small", loc="right")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets: checks the harness")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "events")
    parser.add_argument("--model-ggg", type=Path, help="exported gg_ggg model <repo>/<name>/<version>")
    parser.add_argument("--model-gggg", type=Path, help="exported gg_gggg model <repo>/<name>/<version>")
    parser.add_argument("--samplers", default="flat,vegas", help="comma-separated: flat, vegas")
    parser.add_argument("--processes", default="gg_ggg,gg_gggg", help="comma-separated")
    args = parser.parse_args(argv)
    budgets = QUICK if args.quick else FULL
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    repo = out / "repository"
    given = {"gg_ggg": args.model_ggg, "gg_gggg": args.model_gggg}
    processes = [p for p in args.processes.split(",") if p]
    for process in processes:
        model = given.get(process)
        if model is None and not (repo / process / "1").is_dir():
            train_and_export(process, budgets[process]["train"], repo)
        elif model is not None:
            link = repo / process / "1"
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(Path(model).resolve(), target_is_directory=True)
    server, address = start_server(repo)
    results: dict = {"quick": args.quick, "server": address, "cells": []}
    try:
        results["textbook"] = textbook_check(300 if args.quick else 20_000)
        for process in processes:
            surrogate = ServedSurrogate(address, process)
            try:
                for sampler in [s for s in args.samplers.split(",") if s]:
                    cell = run_cell(process, sampler, surrogate, budgets[process])
                    samples = cell.pop("samples")
                    results["cells"].append(cell)
                    if args.quick and len(results["cells"]) > 1:
                        continue  # --quick plots its first cell only: the harness, not the figures
                    from calsurr.events.plots import plot_observables

                    plot_observables(
                        {m: (s.momenta, s.weights) for m, s in samples.items()},
                        out / f"{process}_{sampler}",
                        f"{process}, {sampler}, {budgets[process]['events']} events per method",
                        reference="standard",
                    )
            finally:
                surrogate.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
    write_markdown(results, out / "results.md")
    plot_gain(results, out / "gain.png")
    print((out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
