"""The figures of an event run, as a dict (JSON, the LHE header) and as a rich table beside other runs."""

from __future__ import annotations

import math

from calsurr.events.unweighting import EventSample


def figures(sample: EventSample, standard: EventSample | None = None) -> dict[str, float | int | str]:
    """Everything a user reads off a run; with a standard run beside it, the measured f_eff too."""
    out: dict[str, float | int | str] = {
        "method": sample.method,
        "sampler": sample.sampler,
        "events": sample.n_events,
        "trials": sample.n_trials,
        "sigma_pb": sample.sigma_weighted.value,
        "sigma_error_pb": sample.sigma_weighted.error,
        "sigma_events_pb": sample.sigma_events.value,
        "sigma_events_error_pb": sample.sigma_events.error,
    }
    out.update(sample.efficiencies)
    out.update(
        {
            "kish": sample.kish,
            "overweight_fraction": sample.overweight_fraction,
            "max_overweight": float(sample.overweights.max()) if sample.n_events else math.nan,
            "exact_calls_per_point": sample.n_exact / max(sample.n_inside, 1),
            "t_ps_us": 1e6 * sample.t_ps,
            "t_surr_us": 1e6 * sample.t_surr,
            "t_exact_us": 1e6 * sample.t_exact,
            "generation_s": sample.seconds,
            "setup_s": sample.setup.seconds,
        }
    )
    setup = sample.setup
    for key in ("w_max", "s_max", "r_max", "gate_threshold"):
        value = getattr(setup, key)
        if value is not None:
            out[key] = value
    if standard is not None and sample.method != "standard":
        cost, reference = sample.cost_model(), standard.cost_model()
        t_ps = standard.t_ps
        t_surr, t_exact = sample.t_surr, standard.t_exact
        out["f_eff"] = cost.gain_over(reference, t_ps, t_surr, t_exact)
        out["f_eff_asymptotic"] = cost.asymptotic_gain(reference)
        out["break_even_t_exact_over_t_surr"] = cost.break_even_ratio(reference)
    return out


ROWS = [
    ("sigma_pb", "sigma [pb] (weighted sample)", "{:.5g}"),
    ("sigma_error_pb", "  MC error [pb]", "{:.2g}"),
    ("sigma_events_pb", "sigma [pb] (events)", "{:.5g}"),
    ("sigma_events_error_pb", "  MC error [pb]", "{:.2g}"),
    ("events", "events", "{:d}"),
    ("trials", "trial points", "{:d}"),
    ("eps_cut", "eps_cut (inside the cuts)", "{:.3g}"),
    ("eps_std", "eps_std", "{:.3g}"),
    ("eps_1", "eps_1 (surrogate stage)", "{:.3g}"),
    ("eps_2", "eps_2 (exact stage)", "{:.3g}"),
    ("gated_fraction", "gated fraction", "{:.3g}"),
    ("eps_gated", "eps of gated points", "{:.3g}"),
    ("eps", "events per point inside the cuts", "{:.3g}"),
    ("kish", "Kish factor", "{:.4f}"),
    ("overweight_fraction", "events with an overweight", "{:.3g}"),
    ("max_overweight", "largest overweight", "{:.3g}"),
    ("exact_calls_per_point", "exact |M|^2 calls per point", "{:.3g}"),
    ("t_ps_us", "t_ps [us/point]", "{:.3g}"),
    ("t_surr_us", "t_surr [us/point]", "{:.3g}"),
    ("t_exact_us", "t_exact [us/point]", "{:.3g}"),
    ("generation_s", "generation [s]", "{:.3g}"),
    ("setup_s", "setup: maxima, VEGAS [s]", "{:.3g}"),
    ("w_max", "w_max [pb]", "{:.4g}"),
    ("s_max", "s_max [pb]", "{:.4g}"),
    ("r_max", "r_max = max of w/s", "{:.4g}"),
    ("gate_threshold", "gate: sigma_tot/|mean| >", "{:.3g}"),
    ("f_eff", "f_eff over standard (measured times)", "{:.3g}"),
    ("f_eff_asymptotic", "f_eff for t_exact >> t_surr", "{:.3g}"),
    ("break_even_t_exact_over_t_surr", "break-even t_exact / t_surr", "{:.3g}"),
]


def table(runs: dict[str, dict[str, float | int | str]], title: str):
    """A rich Table, one column per run, the rows of ROWS that any run has (print it with markup off)."""
    from rich.table import Table

    out = Table(title=title)
    out.add_column("")
    for name in runs:
        out.add_column(name, justify="right")
    for key, label, fmt in ROWS:
        if not any(key in run for run in runs.values()):
            continue
        cells = []
        for run in runs.values():
            value = run.get(key)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                cells.append("")
            else:
                cells.append(fmt.format(value))
        out.add_row(label, *cells)
    return out
