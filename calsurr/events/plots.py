"""Observable distributions of event samples in mplhep style, each with a ratio panel to the reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from calsurr.events.observables import OBSERVABLES, Comparison, Histogram, compare_shapes, histograms

COLOURS = ("black", "tab:blue", "tab:orange", "tab:green", "tab:red")


def plot_observables(
    samples: dict[str, tuple[np.ndarray, np.ndarray]], out_dir: Path, title: str, reference: str | None = None
) -> tuple[list[Path], list[Comparison]]:
    """One PNG per observable in `out_dir`: normalised distributions with error bars and the ratio of every
    sample to `reference` (the first sample by default); returns the files and the chi2 of each sample to it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    plt.style.use(mplhep.style.ATLAS)
    reference = reference or next(iter(samples))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files, comparisons = [], []
    for name, per_sample in histograms(samples).items():
        fig, (top, bottom) = plt.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05})
        ref_density, _ = per_sample[reference].density()
        for colour, (label, hist) in zip(COLOURS, per_sample.items()):
            text = label
            if label != reference:
                comparison = compare_shapes(per_sample[reference], hist, name)
                comparisons.append(comparison)
                text += f" ($\\chi^2$/ndf = {comparison.chi2:.1f}/{comparison.ndf}, p = {comparison.probability:.2f})"
            _draw(top, bottom, hist, ref_density, colour, text)
        top.set_ylabel(r"$1/\sigma\ d\sigma/dx$")
        top.set_yscale("log" if name in ("leading_pt", "min_sij_over_s", "min_delta_r") else "linear")
        top.legend(fontsize="x-small", loc="best")
        top.set_title(title, fontsize="small", loc="left")
        bottom.axhline(1.0, color="grey", lw=1)
        bottom.set_ylabel(f"ratio to\n{reference}", fontsize="small")
        bottom.set_xlabel(OBSERVABLES[name][1])
        bottom.set_ylim(0.5, 1.5)
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        files.append(path)
    return files, comparisons


def _draw(top, bottom, hist: Histogram, ref_density: np.ndarray, colour: str, label: str) -> None:
    import mplhep

    density, error = hist.density()
    mplhep.histplot(density, hist.edges, yerr=error, ax=top, color=colour, label=label, histtype="errorbar")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio, ratio_err = density / ref_density, error / ref_density
    centres = 0.5 * (hist.edges[1:] + hist.edges[:-1])
    half = 0.5 * np.diff(hist.edges)
    bottom.errorbar(centres, ratio, yerr=ratio_err, xerr=half, fmt="o", ms=3, color=colour, lw=1)
