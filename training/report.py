"""The calibration report: plots and a summary of how honest a surrogate's error bars are on held-out points.

A pull width of 0.97 hides where a model fails; the plots show it: a bias in Delta, heavy pull tails,
under-coverage at high confidence, error bars that stop tracking the error near a collinear cut. The
conditional calibration (`conditional_calibration.png`, and `calibration.conditional` in the summary and the
card) gives pull mean, width and 68 / 95 % coverage in five equal-population bins each of the phase-space
variable, the prediction and the predicted relative sigma. The same module draws the noise-injection and
training-set scaling studies from numbers computed elsewhere.

Plots use matplotlib's object API (`Figure`, rendered by Agg): no pyplot, no global backend, no screen.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter
from numpy.typing import ArrayLike
from pydantic import BaseModel, ConfigDict, Field

from calsurr.service.card import CalibrationReport, ConditionalCalibration
from calsurr.training.calibration import (
    CONDITIONAL_BINS,
    PREDICTION,
    RELATIVE_SIGMA,
    calibration_report,
    pulls,
    relative_deviation,
)

SUMMARY_FILENAME = "summary.json"
DELTA_PLOT = "relative_deviation.png"
PULL_PLOT = "pulls.png"
COVERAGE_PLOT = "coverage.png"
SIGMA_VS_DELTA_PLOT = "sigma_vs_delta.png"
PHASE_SPACE_PLOT = "phase_space.png"
CONDITIONAL_PLOT = "conditional_calibration.png"
COVERAGE_68_TARGET = (0.60, 0.76)  # the science issue's band for the 68 % coverage in every bin
NOISE_STUDY_JSON = "noise_study.json"
NOISE_STUDY_PLOT = "noise_study.png"
SCALING_STUDY_JSON = "scaling_study.json"
SCALING_STUDY_PLOT = "scaling_study.png"
DEFAULT_PHASE_SPACE_LABEL = "min s_ij / s"

MIN_POINTS = 10  # fewer held-out points make every quantile and histogram below meaningless
# summary field -> |Delta| threshold: the accuracy levels quoted for amplitude surrogates
ACCURACY_THRESHOLDS = {
    "fraction_within_0p1_percent": 0.001,
    "fraction_within_1_percent": 0.01,
    "fraction_within_3_percent": 0.03,
}
UNIT_GAUSSIAN = NormalDist()
ONE_SIGMA_QUANTILES = (UNIT_GAUSSIAN.cdf(-1.0), UNIT_GAUSSIAN.cdf(1.0))  # 15.87 %, 84.13 %: central 68.27 %
MEDIAN_ABS_UNIT_GAUSSIAN = UNIT_GAUSSIAN.inv_cdf(0.75)  # 0.6745: calibrated => median |Delta| = 0.67 sigma
TAIL_PULL = 3.0
TAIL_FRACTION_GAUSSIAN = 2.0 * UNIT_GAUSSIAN.cdf(-TAIL_PULL)  # 0.27 %
NOMINAL_COVERAGE = np.linspace(0.0, 0.99, 100)
MARKED_COVERAGE = (0.6827, 0.95)
COVERAGE_BAND_SIGMAS = 2.0  # binomial band drawn around the diagonal

PULL_RANGE = 5.0
PULL_BINS = 50
DELTA_LINEAR_QUANTILE = 0.99  # the linear Delta panel spans +-this quantile of |Delta|; the rest is overflow
DELTA_BINS = 60
LOG_RANGE_QUANTILE = 0.001  # log axes start at this quantile, so one exact prediction does not stretch them
LOG_BINS = 50
PROFILE_BINS = 12  # equal-population bins for binned medians
MIN_POINTS_PER_BIN = 25  # fewer bins for small samples: a median of a handful of points is noise
LOG_AXIS_MIN_DECADES = 1.0  # a positive phase-space variable spanning more than this gets a log axis
MINOR_LABEL_MAX_DECADES = 2.5  # log axes spanning fewer decades label 2 and 5 between the powers of ten
MINOR_LABEL_MANTISSAS = (2.0, 5.0)
LEGEND_HEADROOM = 0.4  # log-y panels grow upward by this fraction of their span, so the legend covers no data
LINEAR_HEADROOM = 1.45  # linear-y panels reach this multiple of their highest bin, room for the legend
PERCENT = 100.0

PLOT_STYLE = {
    "font.size": 11,
    "axes.labelsize": 12,
    "axes.titlesize": 11,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "xtick.direction": "in",
    "ytick.direction": "in",
    "xtick.top": True,
    "ytick.right": True,
    "xtick.minor.visible": True,
    "ytick.minor.visible": True,
    "savefig.dpi": 120,
    "image.cmap": "Blues",
}
SINGLE = (5.6, 4.4)
WIDE = (10.5, 4.4)
DATA_COLOR, MODEL_COLOR, STAT_COLOR, SYST_COLOR = "black", "tab:red", "tab:blue", "tab:green"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReportSummary(_Strict):
    """`summary.json`: the card's calibration block plus the numbers the plots show."""

    title: str = ""
    calibration: CalibrationReport
    pull_median: float
    pull_core_width: float = Field(ge=0, description="half the 16-84 % range of the pulls: the width sans tails")
    pull_tail_fraction: float = Field(ge=0, le=1, description="fraction with |pull| > 3; Gaussian: 0.27 %")
    fraction_within_0p1_percent: float = Field(ge=0, le=1, description="fraction with |Delta| <= 0.001")
    fraction_within_1_percent: float = Field(ge=0, le=1, description="fraction with |Delta| <= 0.01")
    fraction_within_3_percent: float = Field(ge=0, le=1, description="fraction with |Delta| <= 0.03")
    mean_rel_sigma_stat: float = Field(ge=0, description="average of sigma_stat / |mean|")
    mean_rel_sigma_syst: float = Field(ge=0, description="average of sigma_syst / |mean|")
    mean_rel_sigma_tot: float = Field(ge=0, description="average of sigma_tot / |mean|")
    phase_space_label: str | None = Field(default=None, description="the variable of the phase-space plot")
    plots: tuple[str, ...] = Field(default=(), description="file names of the plots written beside it")


class NoisePoint(_Strict):
    injected_rel: float = Field(ge=0, description="relative std of the noise put on the labels (data.inject_noise)")
    learned_sigma_syst_rel: float = Field(gt=0, description="average sigma_syst / |mean| the network learned")
    ratio: float | None = Field(description="learned / injected; null without injected noise")


class NoiseStudySummary(_Strict):
    """`noise_study.json`: a calibrated sigma_syst follows the injected noise once it dominates."""

    title: str = ""
    points: tuple[NoisePoint, ...]


class ScalingPoint(_Strict):
    train_size: int = Field(ge=1)
    median_abs_delta: float = Field(gt=0)
    mean_rel_sigma_stat: float = Field(gt=0)


class ScalingStudySummary(_Strict):
    """`scaling_study.json`: accuracy and sigma_stat against training-set size, with log-log slopes."""

    title: str = ""
    points: tuple[ScalingPoint, ...]
    slope_median_abs_delta: float | None = Field(description="d log(median |Delta|) / d log N; null for one size")
    slope_mean_rel_sigma_stat: float | None = Field(description="d log(sigma_stat/|mean|) / d log N; ~ -1/2")


@dataclass(frozen=True)
class _HeldOut:
    """Validated held-out predictions and everything derived from them."""

    truth: np.ndarray
    mean: np.ndarray
    sigma_stat: np.ndarray
    sigma_syst: np.ndarray
    sigma_tot: np.ndarray
    delta: np.ndarray
    pull: np.ndarray

    @classmethod
    def validated(cls, truth: ArrayLike, mean: ArrayLike, sigma_stat: ArrayLike, sigma_syst: ArrayLike) -> _HeldOut:
        truth = _points_array("truth", truth)
        n = len(truth)
        mean = _points_array("mean", mean, n)
        stat, syst = _points_array("sigma_stat", sigma_stat, n), _points_array("sigma_syst", sigma_syst, n)
        _require(n >= MIN_POINTS, f"a calibration report needs at least {MIN_POINTS} held-out points, got {n}")
        _require(np.all(truth != 0), "'truth' must be nonzero: Delta is relative to it")
        _require(np.all(mean != 0), "'mean' must be nonzero: the widths are shown relative to it")
        _require(np.all(stat >= 0) and np.all(syst >= 0), "'sigma_stat' and 'sigma_syst' must be >= 0")
        tot = np.hypot(stat, syst)
        _require(np.all(tot > 0), f"sigma_tot must be > 0, got 0 at {np.count_nonzero(tot == 0)} points")
        return cls(truth, mean, stat, syst, tot, relative_deviation(mean, truth), pulls(mean, tot, truth))

    def relative(self, sigma: np.ndarray) -> np.ndarray:
        return sigma / np.abs(self.mean)


def _require(condition: bool | np.bool_, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _points_array(name: str, values: ArrayLike, n: int | None = None) -> np.ndarray:
    """A finite (n,) float64 array, or an error naming the argument and what came."""
    array = np.asarray(values, dtype=np.float64)
    expected = f"({n},)" if n is not None else "(N,)"
    _require(
        array.ndim == 1 and (n is None or len(array) == n), f"'{name}' expects shape {expected}, got {array.shape}"
    )
    bad = np.count_nonzero(~np.isfinite(array))
    _require(bad == 0, f"'{name}' must be finite, got {bad} NaN or inf of {len(array)}")
    return array


# ---------------------------------------------------------------------------------------------------------------
# public API


def summarise_calibration(
    truth: ArrayLike,
    mean: ArrayLike,
    sigma_stat: ArrayLike,
    sigma_syst: ArrayLike,
    recalibration_factor: float = 1.0,
    title: str = "",
    recalibration_applied: bool = False,
) -> ReportSummary:
    """The numbers of the calibration report without its plots (the sigmas as served: `recalibration_factor`
    is the factor fitted on a calibration split, `recalibration_applied` whether they include it)."""
    points = _HeldOut.validated(truth, mean, sigma_stat, sigma_syst)
    return _summary(points, recalibration_factor, title, applied=recalibration_applied)


def write_calibration_report(
    out_dir: Path,
    truth: ArrayLike,
    mean: ArrayLike,
    sigma_stat: ArrayLike,
    sigma_syst: ArrayLike,
    phase_space_variable: ArrayLike | None = None,
    phase_space_label: str = DEFAULT_PHASE_SPACE_LABEL,
    title: str = "",
    recalibration_factor: float = 1.0,
    recalibration_applied: bool = False,
) -> ReportSummary:
    """Write `summary.json` and the calibration plots of held-out predictions into `out_dir`.

    All arrays are (N,) in the target's physical unit; the sigmas are the ones served (multiplied by
    `recalibration_factor` when `recalibration_applied`; the factor is recorded either way). The phase-space
    plot is drawn when a variable is given; the conditional calibration bins in it, the prediction and the
    predicted relative sigma.
    """
    points = _HeldOut.validated(truth, mean, sigma_stat, sigma_syst)
    variable = None
    if phase_space_variable is not None:
        variable = _points_array("phase_space_variable", phase_space_variable, len(points.truth))
        _require(len(np.unique(variable)) > 1, "'phase_space_variable' must take at least two values to be binned")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [
        _plot_relative_deviation(points, out_dir / DELTA_PLOT, title),
        _plot_pulls(points, out_dir / PULL_PLOT, title),
        _plot_coverage(points, out_dir / COVERAGE_PLOT, title),
        _plot_sigma_vs_delta(points, out_dir / SIGMA_VS_DELTA_PLOT, title),
    ]
    if variable is not None:
        written.append(_plot_phase_space(points, variable, phase_space_label, out_dir / PHASE_SPACE_PLOT, title))
    variables = {phase_space_label: variable} if variable is not None else {}
    variables |= {PREDICTION: points.mean, RELATIVE_SIGMA: points.relative(points.sigma_tot)}
    summary = _summary(
        points,
        recalibration_factor,
        title,
        phase_space_label=phase_space_label if variable is not None else None,
        applied=recalibration_applied,
        variables=variables,
    )
    written.append(_plot_conditional(summary.calibration.conditional, out_dir / CONDITIONAL_PLOT, title))
    summary = summary.model_copy(update={"plots": tuple(path.name for path in written)})
    (out_dir / SUMMARY_FILENAME).write_text(summary.model_dump_json(indent=2) + "\n")
    return summary


def write_noise_study(
    out_dir: Path, injected_levels: ArrayLike, learned_sigma_syst_rel: ArrayLike, title: str = ""
) -> NoiseStudySummary:
    """Plot and record learned sigma_syst/|mean| against the relative noise injected on the training labels.

    Where the injected noise dominates the network's own error, a calibrated sigma_syst lies on the diagonal;
    below that it levels off at the accuracy the network reaches. A level of 0 (no noise) is drawn as a line.
    """
    injected = _points_array("injected_levels", injected_levels)
    learned = _points_array("learned_sigma_syst_rel", learned_sigma_syst_rel, len(injected))
    _require(np.all(injected >= 0), "'injected_levels' must be >= 0")
    _require(np.any(injected > 0), "'injected_levels' needs at least one level > 0 to draw on a log axis")
    _require(np.all(learned > 0), "'learned_sigma_syst_rel' must be > 0")
    summary = NoiseStudySummary(
        title=title,
        points=tuple(
            NoisePoint(injected_rel=i, learned_sigma_syst_rel=s, ratio=s / i if i > 0 else None)
            for i, s in zip(injected.tolist(), learned.tolist())
        ),
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _plot_noise_study(injected, learned, out_dir / NOISE_STUDY_PLOT, title)
    (out_dir / NOISE_STUDY_JSON).write_text(summary.model_dump_json(indent=2) + "\n")
    return summary


def write_scaling_study(
    out_dir: Path,
    train_sizes: ArrayLike,
    median_abs_delta: ArrayLike,
    mean_rel_sigma_stat: ArrayLike,
    title: str = "",
) -> ScalingStudySummary:
    """Plot and record accuracy and sigma_stat against training-set size, log-log, with fitted slopes.

    sigma_stat measures how well the training data pin the function down, so it should fall roughly as
    N^(-1/2); an accuracy that stops falling with it means the network, not the data, limits the surrogate.
    """
    sizes = _points_array("train_sizes", train_sizes)
    accuracy = _points_array("median_abs_delta", median_abs_delta, len(sizes))
    sigma_stat = _points_array("mean_rel_sigma_stat", mean_rel_sigma_stat, len(sizes))
    _require(np.all(sizes >= 1) and np.all(sizes == np.round(sizes)), "'train_sizes' must be positive integers")
    _require(np.all(accuracy > 0) and np.all(sigma_stat > 0), "accuracies and sigmas must be > 0 for log axes")
    order = np.argsort(sizes)
    sizes, accuracy, sigma_stat = sizes[order], accuracy[order], sigma_stat[order]
    summary = ScalingStudySummary(
        title=title,
        points=tuple(
            ScalingPoint(train_size=int(n), median_abs_delta=a, mean_rel_sigma_stat=s)
            for n, a, s in zip(sizes.tolist(), accuracy.tolist(), sigma_stat.tolist())
        ),
        slope_median_abs_delta=_log_log_slope(sizes, accuracy),
        slope_mean_rel_sigma_stat=_log_log_slope(sizes, sigma_stat),
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _plot_scaling_study(summary, out_dir / SCALING_STUDY_PLOT)
    (out_dir / SCALING_STUDY_JSON).write_text(summary.model_dump_json(indent=2) + "\n")
    return summary


# ---------------------------------------------------------------------------------------------------------------
# numbers


def _summary(
    points: _HeldOut,
    recalibration_factor: float,
    title: str,
    phase_space_label: str | None = None,
    plots: tuple[str, ...] = (),
    applied: bool = False,
    variables: dict[str, np.ndarray] | None = None,
) -> ReportSummary:
    abs_delta = np.abs(points.delta)
    low, high = np.quantile(points.pull, ONE_SIGMA_QUANTILES)
    if variables is None:
        variables = {PREDICTION: points.mean, RELATIVE_SIGMA: points.relative(points.sigma_tot)}
    calibration = calibration_report(
        points.mean, points.sigma_tot, points.truth, recalibration_factor, applied, variables, CONDITIONAL_BINS
    )
    return ReportSummary(
        title=title,
        calibration=calibration,
        pull_median=float(np.median(points.pull)),
        pull_core_width=float(high - low) / 2.0,
        pull_tail_fraction=float(np.mean(np.abs(points.pull) > TAIL_PULL)),
        **{name: float(np.mean(abs_delta <= limit)) for name, limit in ACCURACY_THRESHOLDS.items()},
        mean_rel_sigma_stat=float(np.mean(points.relative(points.sigma_stat))),
        mean_rel_sigma_syst=float(np.mean(points.relative(points.sigma_syst))),
        mean_rel_sigma_tot=float(np.mean(points.relative(points.sigma_tot))),
        phase_space_label=phase_space_label,
        plots=plots,
    )


def observed_coverage(pull: np.ndarray, nominal: np.ndarray = NOMINAL_COVERAGE) -> np.ndarray:
    """Fraction of points whose central interval mean +- z(p) sigma holds the truth, for each probability p."""
    z = np.array([UNIT_GAUSSIAN.inv_cdf((1.0 + p) / 2.0) for p in nominal])
    return np.searchsorted(np.sort(np.abs(pull)), z, side="left") / len(pull)


def _log_log_slope(x: np.ndarray, y: np.ndarray) -> float | None:
    if len(np.unique(x)) < 2:
        return None
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def _equal_population_bins(x: np.ndarray, n_bins: int = PROFILE_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Bin edges holding about equally many points, and each point's bin index."""
    n_bins = max(1, min(n_bins, len(x) // MIN_POINTS_PER_BIN))
    edges = np.unique(np.quantile(x, np.linspace(0.0, 1.0, n_bins + 1)))
    index = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
    return edges, index


def _binned(values: np.ndarray, index: np.ndarray, n_bins: int, statistic) -> np.ndarray:
    return np.array([statistic(values[index == b]) if np.any(index == b) else np.nan for b in range(n_bins)])


def _log_edges(*samples: np.ndarray, n_bins: int = LOG_BINS) -> np.ndarray:
    """Log-spaced edges over the positive values of the samples, from a low quantile to the maximum."""
    positive = np.concatenate([s[s > 0] for s in samples])
    if positive.size == 0:  # nothing to show on a log axis; keep the plot drawable
        positive = np.ones(1)
    low, high = np.quantile(positive, LOG_RANGE_QUANTILE), positive.max()
    if high <= low:
        low, high = low / 2.0, high * 2.0
    return np.geomspace(low, high, n_bins + 1)


# ---------------------------------------------------------------------------------------------------------------
# plots


@contextmanager
def _figure(path: Path, title: str, figsize: tuple[float, float] = SINGLE) -> Iterator[Figure]:
    """A figure in the report's style, saved to `path` when the block ends."""
    with matplotlib.rc_context(PLOT_STYLE):
        figure = Figure(figsize=figsize, layout="constrained")
        yield figure
        if title:
            figure.suptitle(title)
        figure.savefig(path)


def _plain_log_axis(axis) -> None:
    """Plain numbers (0.01, 0.1, 1) instead of powers of ten on a log axis; 2 and 5 too when it spans few decades."""

    def minor(value: float, _) -> str:
        low, high = axis.get_view_interval()
        mantissa = value / 10 ** np.floor(np.log10(value) + 1e-9)
        labelled = np.isclose(mantissa, MINOR_LABEL_MANTISSAS).any()
        return f"{value:g}" if labelled and np.log10(high / low) < MINOR_LABEL_MAX_DECADES else ""

    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(FuncFormatter(minor))


def _plot_relative_deviation(points: _HeldOut, path: Path, title: str) -> Path:
    """Signed Delta on a linear axis (bias, core) and |Delta| per sign on a log axis (tails over decades)."""
    with _figure(path, title, WIDE) as figure:
        linear, logarithmic = figure.subplots(1, 2)
        _signed_delta_panel(linear, PERCENT * points.delta)
        _abs_delta_panel(logarithmic, PERCENT * points.delta)
    return path


def _signed_delta_panel(ax: Axes, delta: np.ndarray) -> None:
    limit = float(np.quantile(np.abs(delta), DELTA_LINEAR_QUANTILE))
    limit = limit if limit > 0 else 1.0  # all but a percent exact: any axis will do
    counts, _, _ = ax.hist(delta, bins=np.linspace(-limit, limit, DELTA_BINS + 1), histtype="step", color=DATA_COLOR)
    ax.axvline(0.0, color="grey", lw=0.8)
    _note(ax, f"N = {len(delta)}")
    _note(ax, f"median $\\Delta$ = {np.median(delta):.3g} %")
    _note(ax, f"outside the axis: {np.count_nonzero(np.abs(delta) > limit)}")
    ax.set(xlabel=r"$\Delta = (\mathrm{pred} - \mathrm{true}) / \mathrm{true}$  [%]", ylabel="points / bin")
    ax.set(xlim=(-limit, limit), ylim=(0.0, counts.max() * LINEAR_HEADROOM))
    ax.legend(loc="upper left")


def _abs_delta_panel(ax: Axes, delta: np.ndarray) -> None:
    edges = _log_edges(np.abs(delta))
    over, under = delta[delta > 0], -delta[delta < 0]
    high = max(np.histogram(over, edges)[0].max(), np.histogram(under, edges)[0].max(), 1)
    ax.hist(over, bins=edges, histtype="step", color=MODEL_COLOR, label=rf"$\Delta > 0$: {len(over)}")
    ax.hist(under, bins=edges, histtype="step", color=STAT_COLOR, label=rf"$\Delta < 0$: {len(under)}")
    for quantile, style in ((0.5, "--"), (0.9, "-."), (0.99, ":")):
        value = np.quantile(np.abs(delta), quantile)
        name = "median" if quantile == 0.5 else f"{quantile:.0%} quantile"
        ax.axvline(value, color="grey", ls=style, label=f"{name}: {value:.3g} %")
    ax.set_xscale("log")
    _plain_log_axis(ax.xaxis)
    ax.set(xlabel=r"$|\Delta|$  [%]", ylabel="points / bin (log-spaced bins)", ylim=(0.0, high * LINEAR_HEADROOM))
    ax.legend(loc="upper left")


def _note(ax: Axes, text: str) -> Line2D:
    """A legend line carrying text only."""
    return ax.plot([], [], " ", label=text)[0]


def _log_ylim_with_headroom(ax: Axes, low: float, high: float) -> None:
    ax.set_ylim(low, high * (high / low) ** LEGEND_HEADROOM)


def _plot_pulls(points: _HeldOut, path: Path, title: str) -> Path:
    """Pull histogram against N(0, 1): the core on a linear axis, the tails on a log axis."""
    with _figure(path, title, WIDE) as figure:
        linear, logarithmic = figure.subplots(1, 2)
        _pull_panel(linear, points.pull, log=False)
        _pull_panel(logarithmic, points.pull, log=True)
    return path


def _pull_panel(ax: Axes, pull: np.ndarray, log: bool) -> None:
    edges = np.linspace(-PULL_RANGE, PULL_RANGE, PULL_BINS + 1)
    counts, _ = np.histogram(pull, bins=edges)
    norm = len(pull) * (edges[1] - edges[0])  # density of all points, so points off the axis show as a deficit
    centres, filled = (edges[:-1] + edges[1:]) / 2.0, counts > 0
    grid = np.linspace(-PULL_RANGE, PULL_RANGE, 401)
    mu, sd = float(np.mean(pull)), float(np.std(pull))
    handles = [
        ax.errorbar(
            centres[filled], counts[filled] / norm, np.sqrt(counts[filled]) / norm, fmt="o", ms=3, color=DATA_COLOR
        ),
        ax.plot(grid, _gaussian(grid, 0.0, 1.0), color=MODEL_COLOR)[0],
        # all pulls equal (exact predictions) have no Gaussian of their moments to draw
        ax.plot(grid, _gaussian(grid, mu, sd) if sd > 0 else np.full_like(grid, np.nan), color=STAT_COLOR, ls="--")[0],
    ]
    labels = [
        f"pulls, N = {len(pull)}",
        r"$\mathcal{N}(0, 1)$",
        f"Gaussian of the moments: mean {mu:.2f}, std {sd:.2f}",
    ]
    peak = max(counts.max() / norm, _gaussian(0.0, 0.0, 1.0))
    if log:
        tails = np.mean(np.abs(pull) > TAIL_PULL)
        outside = np.count_nonzero(np.abs(pull) > PULL_RANGE)
        handles += [_note(ax, ""), _note(ax, "")]
        labels += [
            f"|pull| > {TAIL_PULL:g}: {tails:.2%} (Gaussian {TAIL_FRACTION_GAUSSIAN:.2%})",
            f"|pull| > {PULL_RANGE:g}, off the axis: {outside}",
        ]
        ax.set_yscale("log")
        _log_ylim_with_headroom(ax, 0.5 / norm, peak)
    else:
        low, median, high = np.quantile(pull, (ONE_SIGMA_QUANTILES[0], 0.5, ONE_SIGMA_QUANTILES[1]))
        handles.append(_note(ax, ""))
        labels.append(f"median {median:.2f}, core width {(high - low) / 2:.2f} (16-84 %)")
        ax.set_ylim(0.0, peak * LINEAR_HEADROOM)
    ax.set(xlabel=r"pull = (pred $-$ true) / $\sigma_\mathrm{tot}$", ylabel="density", xlim=(-PULL_RANGE, PULL_RANGE))
    ax.legend(handles, labels, loc="upper left")


def _gaussian(x: np.ndarray | float, mu: float, sd: float) -> np.ndarray:
    return np.exp(-0.5 * ((np.asarray(x) - mu) / sd) ** 2) / (sd * np.sqrt(2.0 * np.pi))


def _plot_coverage(points: _HeldOut, path: Path, title: str) -> Path:
    """Observed against nominal coverage of central intervals; above the diagonal the sigmas are too large."""
    n = len(points.pull)
    band = COVERAGE_BAND_SIGMAS * np.sqrt(NOMINAL_COVERAGE * (1.0 - NOMINAL_COVERAGE) / n)
    with _figure(path, title, (6.0, 7.0)) as figure:
        ax = figure.subplots()
        ax.fill_between(
            NOMINAL_COVERAGE,
            NOMINAL_COVERAGE - band,
            NOMINAL_COVERAGE + band,
            color="grey",
            alpha=0.3,
            lw=0,
            label=f"$\\pm${COVERAGE_BAND_SIGMAS:g}$\\sigma$ binomial, N = {n}",
        )
        ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfect calibration")
        ax.plot(
            NOMINAL_COVERAGE,
            observed_coverage(points.pull),
            color=DATA_COLOR,
            lw=2,
            label=r"intervals from $\sigma_\mathrm{tot}$",
        )
        for sigma, color, name in ((points.sigma_stat, STAT_COLOR, "stat"), (points.sigma_syst, SYST_COLOR, "syst")):
            if np.all(sigma > 0):
                partial = observed_coverage(pulls(points.mean, sigma, points.truth))
                ax.plot(
                    NOMINAL_COVERAGE, partial, color=color, ls=":", label=f"from $\\sigma_\\mathrm{{{name}}}$ alone"
                )
        marked = observed_coverage(points.pull, np.array(MARKED_COVERAGE))
        ax.plot(MARKED_COVERAGE, marked, "o", color=MODEL_COLOR, ms=6, zorder=3)
        for nominal, seen in zip(MARKED_COVERAGE, marked):
            ax.annotate(
                f"{seen:.1%} at {nominal:.0%}", (nominal, seen), (-8, 6), textcoords="offset points", ha="right"
            )
        ax.text(0.03, 0.96, r"over-covering: $\sigma$ too large", color="grey", fontsize=9, va="top")
        ax.text(0.97, 0.03, r"under-covering: $\sigma$ too small", color="grey", fontsize=9, ha="right")
        ax.set(xlabel="nominal probability of the central interval", ylabel="observed coverage")
        ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    return path


def _plot_sigma_vs_delta(points: _HeldOut, path: Path, title: str) -> Path:
    """Claimed relative error against actual |Delta| per point; calibrated: median |Delta| = 0.67 sigma per row."""
    abs_delta, rel_sigma = PERCENT * np.abs(points.delta), PERCENT * points.relative(points.sigma_tot)
    x_edges, y_edges = _log_edges(abs_delta), _log_edges(rel_sigma)
    counts, _, _ = np.histogram2d(abs_delta, rel_sigma, bins=(x_edges, y_edges))
    sigma_edges, index = _equal_population_bins(rel_sigma)
    n_bins = len(sigma_edges) - 1
    with _figure(path, title, (6.4, 5.2)) as figure:
        ax = figure.subplots()
        mesh = ax.pcolormesh(
            x_edges,
            y_edges,
            np.ma.masked_equal(counts.T, 0),
            norm=LogNorm(vmin=1, vmax=max(counts.max(), 2)),
            rasterized=True,
        )
        figure.colorbar(mesh, ax=ax, label="points / bin")
        span = np.array([min(x_edges[0], y_edges[0]), max(x_edges[-1], y_edges[-1])])
        ax.plot(span, span, color="grey", ls="--", lw=1, label=r"$|\Delta| = \sigma_\mathrm{tot}/|\mathrm{mean}|$")
        ax.plot(
            MEDIAN_ABS_UNIT_GAUSSIAN * span,
            span,
            color=MODEL_COLOR,
            lw=1,
            label=rf"calibrated: median $|\Delta|$ = {MEDIAN_ABS_UNIT_GAUSSIAN:.2f} $\sigma_\mathrm{{tot}}$",
        )
        ax.plot(
            _binned(abs_delta, index, n_bins, np.median),
            _binned(rel_sigma, index, n_bins, np.median),
            "o",
            color=DATA_COLOR,
            ms=5,
            label=r"median $|\Delta|$ in bins of $\sigma_\mathrm{tot}$",
        )
        ax.set(xscale="log", yscale="log", xlim=(x_edges[0], x_edges[-1]), ylim=(y_edges[0], y_edges[-1]))
        _plain_log_axis(ax.xaxis)
        _plain_log_axis(ax.yaxis)
        ax.set(xlabel=r"$|\Delta| = |\mathrm{pred} - \mathrm{true}| / |\mathrm{true}|$  [%]")
        ax.set(ylabel=r"$\sigma_\mathrm{tot} / |\mathrm{mean}|$  [%]")
        ax.legend(loc="upper left")
    return path


def _plot_phase_space(points: _HeldOut, variable: np.ndarray, label: str, path: Path, title: str) -> Path:
    """|Delta| and the relative sigmas in bins of a phase-space variable, and the local pull RMS below."""
    edges, index = _equal_population_bins(variable)
    n_bins = len(edges) - 1
    centre = _binned(variable, index, n_bins, np.median)
    with _figure(path, title, (6.4, 6.4)) as figure:
        top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1))
        for values, color, name in (
            (np.abs(points.delta), DATA_COLOR, r"$|\Delta|$"),
            (points.relative(points.sigma_tot), MODEL_COLOR, r"$\sigma_\mathrm{tot}/|\mathrm{mean}|$"),
        ):
            low, median, high = (
                PERCENT * _binned(values, index, n_bins, lambda v, q=q: np.quantile(v, q)) for q in (0.16, 0.5, 0.84)
            )
            top.plot(centre, median, "o-", color=color, ms=4, label=f"{name}: median, 16-84 % band")
            top.fill_between(centre, low, high, color=color, alpha=0.15, lw=0)
        for sigma, color, style, name in (
            (points.sigma_stat, STAT_COLOR, "--", "stat"),
            (points.sigma_syst, SYST_COLOR, ":", "syst"),
        ):
            median = PERCENT * _binned(points.relative(sigma), index, n_bins, np.median)
            top.plot(
                centre, median, ls=style, color=color, label=f"$\\sigma_\\mathrm{{{name}}}/|\\mathrm{{mean}}|$: median"
            )
        top.set_yscale("log")
        _log_ylim_with_headroom(top, *top.get_ylim())
        _plain_log_axis(top.yaxis)
        top.set_ylabel("relative deviation or uncertainty  [%]")
        top.legend(loc="upper right")
        rms = _binned(points.pull, index, n_bins, lambda v: np.sqrt(np.mean(v**2)))
        counts = np.bincount(index, minlength=n_bins)
        bottom.errorbar(centre, rms, yerr=rms / np.sqrt(2.0 * counts), fmt="o", ms=4, color=DATA_COLOR)
        bottom.axhline(1.0, color="grey", ls="--", lw=1)
        bottom.set(ylabel="pull RMS", xlabel=_axis_label(label), ylim=(0.0, max(2.0, np.nanmax(rms) * 1.15)))
        if np.all(variable > 0) and np.log10(variable.max() / variable.min()) > LOG_AXIS_MIN_DECADES:
            bottom.set_xscale("log")
            _plain_log_axis(bottom.xaxis)
        bottom.set_xlim(edges[0], edges[-1])
    return path


def _plot_conditional(conditional: tuple[ConditionalCalibration, ...], path: Path, title: str) -> Path:
    """Per binning variable (columns): 68 and 95 % coverage per bin against the target band (top), pull mean
    and width per bin (bottom). Bins are equal-population; points sit at the bin's index, edges are labelled."""
    n = len(conditional)
    with _figure(path, title, (4.2 * n, 7.0)) as figure:
        axes = figure.subplots(2, n, squeeze=False, sharey="row")
        pull_high = 1.5
        for column, block in enumerate(conditional):
            top, bottom = axes[0, column], axes[1, column]
            x = np.arange(len(block.bins))
            size = np.array([b.n_points for b in block.bins])
            top.axhspan(*COVERAGE_68_TARGET, color="grey", alpha=0.2, lw=0, label="target for 68 %: 60-76 %")
            for nominal, values, color, name in (
                (MARKED_COVERAGE[0], [b.coverage_68 for b in block.bins], DATA_COLOR, "68 %"),
                (MARKED_COVERAGE[1], [b.coverage_95 for b in block.bins], MODEL_COLOR, "95 %"),
            ):
                top.axhline(nominal, color=color, ls="--", lw=0.8)
                error = np.sqrt(nominal * (1.0 - nominal) / size)
                top.errorbar(x, values, error, fmt="o", ms=4, color=color, label=f"{name} interval, per bin")
            top.set(ylim=(0.0, 1.05), title=_conditional_label(block.variable))
            bottom.axhspan(0.9, 1.1, color="grey", alpha=0.2, lw=0, label="width 0.9-1.1")
            bottom.axhline(1.0, color="grey", ls="--", lw=0.8)
            bottom.axhline(0.0, color="grey", lw=0.8)
            width = np.array([b.pull_width for b in block.bins])
            means = np.array([b.pull_mean for b in block.bins])
            bottom.errorbar(
                x - 0.08, width, width / np.sqrt(2.0 * size), fmt="s", ms=4, color=DATA_COLOR, label="pull width"
            )
            bottom.errorbar(x + 0.08, means, width / np.sqrt(size), fmt="^", ms=4, color=STAT_COLOR, label="pull mean")
            pull_high = max(pull_high, float(np.max(width)) * 1.1)
            edges = [f"{b.low:.3g}" for b in block.bins] + [f"{block.bins[-1].high:.3g}"]
            bottom.set_xticks(np.arange(len(edges)) - 0.5, edges, rotation=45, fontsize=8)
            bottom.set(xlabel="equal-population bins (edges)", xlim=(-0.6, len(block.bins) - 0.4))
            top.set(xlim=(-0.6, len(block.bins) - 0.4))
            top.set_xticks(np.arange(len(edges)) - 0.5, [""] * len(edges))
            for ax in (top, bottom):
                ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        axes[1, 0].set_ylim(
            min(-0.5, float(np.min([b.pull_mean for c in conditional for b in c.bins])) - 0.1), pull_high
        )
        axes[0, 0].set_ylabel("observed coverage")
        axes[1, 0].set_ylabel("pulls")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        more, more_labels = axes[1, 0].get_legend_handles_labels()
        figure.legend(handles + more, labels + more_labels, loc="outside lower center", ncol=3)
    return path


def _conditional_label(variable: str) -> str:
    """Axis titles of the conditional calibration's variables."""
    return {"mean": "prediction (mean)", "sigma_tot / |mean|": r"predicted $\sigma_\mathrm{tot}$ / |mean|"}.get(
        variable, _axis_label(variable)
    )


def _axis_label(label: str) -> str:
    """The default 's_ij' label typeset; any other label as given."""
    return r"min $s_{ij}$ / s" if label == DEFAULT_PHASE_SPACE_LABEL else label


def _plot_noise_study(injected: np.ndarray, learned: np.ndarray, path: Path, title: str) -> Path:
    """Learned against injected relative noise in percent, log-log, with the learned/injected ratio below."""
    noisy = injected > 0
    order = np.argsort(injected[noisy])
    x, y = PERCENT * injected[noisy][order], PERCENT * learned[noisy][order]
    with _figure(path, title, (6.0, 6.0)) as figure:
        top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1))
        span = np.array([min(x.min(), PERCENT * learned.min()) / 2.0, max(x.max(), PERCENT * learned.max()) * 2.0])
        top.plot(span, span, color="grey", ls="--", lw=1, label="learned = injected")
        top.plot(x, y, "o-", color=DATA_COLOR, label=r"learned $\sigma_\mathrm{syst}/|\mathrm{mean}|$")
        for level in PERCENT * learned[~noisy]:
            top.axhline(level, color=STAT_COLOR, ls=":", label=f"no injected noise: {level:.2g} %")
        top.set(xscale="log", yscale="log", ylim=span, ylabel=r"learned $\sigma_\mathrm{syst} / |\mathrm{mean}|$  [%]")
        _plain_log_axis(top.yaxis)
        top.legend(loc="upper left")
        bottom.plot(x, y / x, "o-", color=DATA_COLOR)
        bottom.axhline(1.0, color="grey", ls="--", lw=1)
        bottom.set(xlabel="injected relative noise on the training labels  [%]", ylabel="learned / injected")
        bottom.set_xlim(x.min() / 1.5, x.max() * 1.5)
        bottom.set_ylim(0.0, max(2.0, float(np.max(y / x)) * 1.15))
        _plain_log_axis(bottom.xaxis)
    return path


def _plot_scaling_study(summary: ScalingStudySummary, path: Path) -> Path:
    """Median |Delta| and mean sigma_stat/|mean| in percent against training-set size, with an N^(-1/2) guide."""
    sizes = np.array([p.train_size for p in summary.points], dtype=np.float64)
    accuracy = PERCENT * np.array([p.median_abs_delta for p in summary.points])
    sigma_stat = PERCENT * np.array([p.mean_rel_sigma_stat for p in summary.points])
    with _figure(path, summary.title, SINGLE) as figure:
        ax = figure.subplots()
        for values, slope, color, name in (
            (accuracy, summary.slope_median_abs_delta, DATA_COLOR, r"median $|\Delta|$"),
            (sigma_stat, summary.slope_mean_rel_sigma_stat, STAT_COLOR, r"mean $\sigma_\mathrm{stat}/|\mathrm{mean}|$"),
        ):
            suffix = f", log-log slope {slope:.2f}" if slope is not None else ""
            ax.plot(sizes, values, "o-", color=color, label=name + suffix)
        ax.plot(sizes, sigma_stat[0] * np.sqrt(sizes[0] / sizes), color="grey", ls=":", label=r"$\propto N^{-1/2}$")
        ax.set(xscale="log", yscale="log", xlabel="training-set size N")
        ax.set_ylabel("relative deviation or uncertainty  [%]")
        _plain_log_axis(ax.yaxis)
        ax.legend(loc="upper right")
    return path
