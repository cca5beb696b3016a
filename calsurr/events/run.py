"""One `calsurr events` run: sampler, maxima, unweighting, colour flows, the LHE file, the summary and plots."""

from __future__ import annotations

import datetime
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from calsurr import __version__
from calsurr.events.colour_flow import choose_flows
from calsurr.events.lhe import write_lhe
from calsurr.events.observables import compare_samples
from calsurr.events.phase_space import make_sampler
from calsurr.events.summary import figures, table
from calsurr.events.surrogates import Surrogate
from calsurr.events.unweighting import EventGenerator, EventSample
from calsurr.training.physics.processes import get_process


@dataclass(frozen=True)
class EventRunOptions:
    process: str
    n_events: int
    method: str = "two-stage"
    sampler: str = "flat"
    seed: int = 0
    sqrt_s: float = 1000.0
    min_sij_over_s: float = 0.01
    max_quantile: float = 0.5
    optimisation_points: int = 50_000
    gate_threshold: float | None = None
    adapt_on: str = "exact"
    vegas_iterations: int = 5
    vegas_points: int = 20_000
    batch_points: int = 16_384
    beam_energy: float = 6500.0
    compare: bool = False


def _progress(console: Console) -> Progress:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, TimeRemainingColumn(), console=console)


def generate_sample(
    options: EventRunOptions,
    surrogate: Surrogate | None,
    method: str,
    rng: np.random.Generator,
    progress: Progress | None = None,
    sampler=None,
) -> tuple[EventSample, object]:
    """Adapt (VEGAS, unless `sampler` comes adapted), optimise and generate one sample; returns it and the sampler."""
    process = get_process(options.process)
    adapted = sampler is not None
    sampler = sampler or make_sampler(options.sampler, process.n_final, options.sqrt_s, options.min_sij_over_s)
    generator = EventGenerator(
        process.squared_amplitude,
        sampler,
        method,
        surrogate if method != "standard" or options.adapt_on == "surrogate" else None,
        max_quantile=options.max_quantile,
        gate_threshold=options.gate_threshold,
        batch_points=options.batch_points,
    )
    adapt_seconds = 0.0
    if options.sampler == "vegas" and not adapted:
        task = progress.add_task("VEGAS adaptation", total=options.vegas_iterations) if progress else None
        adapt_seconds = generator.adapt_sampler(
            options.vegas_iterations,
            options.vegas_points,
            rng,
            options.adapt_on,
            (lambda done: progress.update(task, completed=done)) if progress else None,
        )
    setup = generator.optimise(options.optimisation_points, rng)
    setup.seconds += adapt_seconds
    task = progress.add_task(f"{method}: {options.process} events", total=options.n_events) if progress else None
    sample = generator.generate(
        options.n_events, setup, rng, (lambda done: progress.update(task, completed=done)) if progress else None
    )
    return sample, sampler


def header_info(options: EventRunOptions, sample: EventSample, where: str) -> dict[str, object]:
    fig = figures(sample)
    return {
        "generator": f"calsurr {__version__} (calsurr events)",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "process": options.process,
        "partonic_energy": f"fixed sqrt(s) = {options.sqrt_s:g} GeV in the partonic CM frame (no PDFs sampled); "
        f"x1 = x2 = sqrt(s) / (2 E_beam) with E_beam = {options.beam_energy:g} GeV",
        "coupling": "g_s = 1 (alpha_s = 1/(4 pi)): multiply the weights by (4 pi alpha_s)^(n-2) for physical ones",
        "cuts": f"every s_ij > {options.min_sij_over_s:g} s",
        "cross_section": "sigma = (1/2s) (1/n_f!) integral |M|^2 dPhi_n over the cuts, pb; XSECUP from the weighted "
        "sample, the average of XWGTUP from the events",
        "colour_flows": "leading colour, one planar flow per event with probability ~ sum_hel |A(sigma)|^2",
        "unweighting": f"{sample.method}; overweights kept as event weights (rwgt 'overweight' = W / W_max)",
        "maxima": f"quantile {options.max_quantile:g} of the maxima of 10 batches of {options.optimisation_points} "
        "optimisation points",
        "sampler": options.sampler
        + (f", adapted on the {options.adapt_on} |M|^2" if options.sampler == "vegas" else ""),
        "surrogate": where,
        "seed": options.seed,
        **{key: value for key, value in fig.items() if key not in ("method", "sampler")},
    }


def run_events(
    options: EventRunOptions, surrogate: Surrogate | None, out: Path, plots: Path | None = None
) -> dict[str, object]:
    """The whole run; prints progress, the summary table and (with a standard run beside it) the closure."""
    console = Console(markup=False, highlight=False)  # labels hold [pb], paths may hold brackets
    rng = np.random.default_rng(options.seed)
    where = getattr(surrogate, "where", "none") if surrogate is not None else "none"
    with _progress(console) as progress:
        sample, sampler = generate_sample(options, surrogate, options.method, rng, progress)
        reference = None
        if options.compare:  # an independent standard sample from the same (adapted) sampler
            reference_rng = np.random.default_rng(options.seed + 1)
            reference, _ = generate_sample(options, surrogate, "standard", reference_rng, progress, sampler)
    flows = choose_flows(sample.momenta, rng)
    write_lhe(
        out,
        sample.momenta,
        sample.lhe_weights,
        sample.overweights,
        flows,
        sample.sigma_weighted.value,
        sample.sigma_weighted.error,
        header_info(options, sample, where),
        options.beam_energy,
    )
    result: dict[str, object] = {"options": asdict(options), "run": figures(sample, reference)}
    runs = {sample.method: result["run"]}
    if reference is not None:
        result["standard"] = figures(reference)
        runs["standard (seed + 1)"] = result["standard"]
    console.print(table(runs, f"{options.process}, {options.sampler} phase space, surrogate: {where}"))
    if reference is not None:
        pull = sample.sigma_weighted.pull(reference.sigma_weighted)
        comparisons = compare_samples((reference.momenta, reference.weights), (sample.momenta, sample.weights))
        result["closure"] = {
            "sigma_pull": pull,
            "chi2": {c.observable: {"chi2": c.chi2, "ndf": c.ndf, "probability": c.probability} for c in comparisons},
        }
        text = ", ".join(f"{c.observable} p = {c.probability:.2f}" for c in comparisons)
        console.print(
            f"closure against standard: sigma differs by {pull:+.2f} sigma; shapes (chi2 probability): {text}"
        )
        if plots is not None:
            from calsurr.events.plots import plot_observables

            samples = {
                "standard": (reference.momenta, reference.weights),
                sample.method: (sample.momenta, sample.weights),
            }
            title = f"{options.process}, {options.sampler}, {options.n_events} events each"
            files, _ = plot_observables(samples, plots, title, reference="standard")
            result["plots"] = [str(f) for f in files]
            console.print(f"wrote {len(files)} plots to {plots}")
    console.print(
        f"wrote {sample.n_events} {options.process} events to {out}: sigma = {sample.sigma_weighted} pb "
        f"(events: {sample.sigma_events} pb), Kish factor {sample.kish:.4f}"
    )
    return result
