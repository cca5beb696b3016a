"""The calibration report on synthetic predictions whose true error is known, so the expected numbers are too."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from calsurr.training.report import (
    CONDITIONAL_PLOT,
    COVERAGE_PLOT,
    DELTA_PLOT,
    NOISE_STUDY_JSON,
    NOISE_STUDY_PLOT,
    PHASE_SPACE_PLOT,
    PULL_PLOT,
    SCALING_STUDY_JSON,
    SCALING_STUDY_PLOT,
    SIGMA_VS_DELTA_PLOT,
    SUMMARY_FILENAME,
    NoiseStudySummary,
    ReportSummary,
    ScalingStudySummary,
    observed_coverage,
    summarise_calibration,
    write_calibration_report,
    write_noise_study,
    write_scaling_study,
)

N_POINTS = 20_000
REL_SIGMA = 0.01  # the true relative error of the synthetic predictions
STAT_SHARE, SYST_SHARE = 0.6, 0.8  # sigma_stat, sigma_syst as fractions of sigma_tot (0.6^2 + 0.8^2 = 1)
# statistical tolerances for N_POINTS Gaussian pulls: several standard errors of each estimate
WIDTH_TOL = 0.03  # std error of a std: 1/sqrt(2N) = 0.005
COVERAGE_TOL = 0.015  # binomial std error at 68 %: 0.0033
# unit-Gaussian probabilities the summary should reproduce when pull = z exactly
P_WITHIN_1_SIGMA, P_WITHIN_2_SIGMA, P_WITHIN_3_SIGMA = 0.682689, 0.954500, 0.997300
P_WITHIN_0P1_SIGMA = 0.079656
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MIN_PNG_BYTES = 10_000  # a plot with axes, labels and data; an empty canvas is far smaller
MIN_PNG_PIXELS = 400
CALIBRATION_PLOTS = (DELTA_PLOT, PULL_PLOT, COVERAGE_PLOT, SIGMA_VS_DELTA_PLOT)


def synthetic(sigma_scale: float = 1.0, seed: int = 0) -> dict[str, np.ndarray]:
    """|M|^2-like truths over six decades, predictions off by REL_SIGMA * N(0, 1) relative to the truth.

    The sigmas are REL_SIGMA * truth * sigma_scale, so for sigma_scale = 1 the pulls are exactly the N(0, 1)
    draws, and for sigma_scale = 2 they are half of them.
    """
    rng = np.random.default_rng(seed)
    truth = 10.0 ** rng.uniform(-3.0, 3.0, N_POINTS)
    z = rng.standard_normal(N_POINTS)
    sigma_tot = sigma_scale * REL_SIGMA * truth
    return {
        "truth": truth,
        "mean": truth * (1.0 + REL_SIGMA * z),
        "sigma_stat": STAT_SHARE * sigma_tot,
        "sigma_syst": SYST_SHARE * sigma_tot,
    }


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    assert len(data) > MIN_PNG_BYTES, f"{path.name} has only {len(data)} bytes"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk follows the signature
    assert min(width, height) >= MIN_PNG_PIXELS, f"{path.name} is {width} x {height}"


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, ReportSummary]:
    out = tmp_path_factory.mktemp("report")
    arrays = synthetic()
    variable = np.random.default_rng(1).uniform(0.01, 0.3, N_POINTS)
    summary = write_calibration_report(
        out, **arrays, phase_space_variable=variable, title="synthetic", recalibration_factor=1.25
    )
    return out, summary


def test_calibrated_sigmas_give_unit_pulls_and_nominal_coverage(report):
    _, summary = report
    cal = summary.calibration
    assert cal.n_points == N_POINTS
    assert abs(cal.pull_mean) < WIDTH_TOL
    assert cal.pull_width == pytest.approx(1.0, abs=WIDTH_TOL)
    assert summary.pull_core_width == pytest.approx(1.0, abs=WIDTH_TOL)
    assert cal.coverage_68 == pytest.approx(P_WITHIN_1_SIGMA, abs=COVERAGE_TOL)
    assert cal.coverage_95 == pytest.approx(0.95, abs=COVERAGE_TOL)
    assert summary.pull_tail_fraction == pytest.approx(1.0 - P_WITHIN_3_SIGMA, abs=0.002)
    assert cal.recalibration_factor == 1.25


def test_accuracy_fractions_and_relative_sigmas_follow_the_known_error(report):
    _, summary = report
    # |Delta| = REL_SIGMA |z|, so |Delta| <= 1 % means |z| <= 1, <= 3 % means |z| <= 3, <= 0.1 % means |z| <= 0.1
    assert summary.fraction_within_1_percent == pytest.approx(P_WITHIN_1_SIGMA, abs=COVERAGE_TOL)
    assert summary.fraction_within_3_percent == pytest.approx(P_WITHIN_3_SIGMA, abs=0.002)
    assert summary.fraction_within_0p1_percent == pytest.approx(P_WITHIN_0P1_SIGMA, abs=0.01)
    assert summary.calibration.median_abs_rel_deviation == pytest.approx(0.6745 * REL_SIGMA, rel=0.03)
    # sigma / |mean| = REL_SIGMA / (1 + REL_SIGMA z): REL_SIGMA to O(REL_SIGMA^2)
    assert summary.mean_rel_sigma_stat == pytest.approx(STAT_SHARE * REL_SIGMA, rel=1e-3)
    assert summary.mean_rel_sigma_syst == pytest.approx(SYST_SHARE * REL_SIGMA, rel=1e-3)
    assert summary.mean_rel_sigma_tot == pytest.approx(REL_SIGMA, rel=1e-3)


def test_overestimated_sigmas_give_narrow_pulls_and_over_coverage():
    summary = summarise_calibration(**synthetic(sigma_scale=2.0))
    assert summary.calibration.pull_width == pytest.approx(0.5, abs=WIDTH_TOL / 2)
    assert summary.calibration.coverage_68 == pytest.approx(P_WITHIN_2_SIGMA, abs=COVERAGE_TOL)
    assert summary.calibration.coverage_95 > 0.999
    assert summary.plots == () and summary.phase_space_label is None


def test_conditional_calibration_holds_in_every_bin_of_calibrated_predictions(report):
    _, summary = report
    conditional = summary.calibration.conditional
    assert [c.variable for c in conditional] == ["min s_ij / s", "mean", "sigma_tot / |mean|"]
    for block in conditional:
        assert len(block.bins) == 5 and sum(b.n_points for b in block.bins) == N_POINTS
        assert all(b.n_points == N_POINTS // 5 for b in block.bins)  # equal population
        assert [b.low for b in block.bins[1:]] == [b.high for b in block.bins[:-1]]
    # not in bins of sigma / |mean|: this synthetic builds sigma from the truth, so sigma / |mean| =
    # REL_SIGMA / (1 + REL_SIGMA z) selects on the error itself (a model's sigma is a function of its inputs)
    for block in conditional[:2]:
        for b in block.bins:  # 4000 points a bin: binomial std error 0.0074 at 68 %
            assert b.coverage_68 == pytest.approx(P_WITHIN_1_SIGMA, abs=0.03), (block.variable, b)
            assert b.pull_width == pytest.approx(1.0, abs=0.05) and abs(b.pull_mean) < 0.06


def test_conditional_calibration_finds_a_region_the_global_width_hides():
    """Sigmas half the error below the median truth and twice it above: a global width near 1.58 / 0.5 mix,
    and in the bins of the prediction 0.38 coverage at the bottom, 0.95 at the top."""
    arrays = synthetic()
    low = arrays["truth"] < np.median(arrays["truth"])
    scale = np.where(low, 0.5, 2.0)
    arrays["sigma_stat"], arrays["sigma_syst"] = arrays["sigma_stat"] * scale, arrays["sigma_syst"] * scale
    summary = summarise_calibration(**arrays)
    by_prediction = {c.variable: c for c in summary.calibration.conditional}["mean"]
    assert by_prediction.bins[0].coverage_68 == pytest.approx(0.383, abs=0.03)
    assert by_prediction.bins[0].pull_width == pytest.approx(2.0, abs=0.1)
    assert by_prediction.bins[-1].coverage_68 == pytest.approx(0.954, abs=0.02)
    assert by_prediction.bins[-1].pull_width == pytest.approx(0.5, abs=0.03)


def test_coverage_curve_is_the_diagonal_for_unit_gaussian_pulls():
    pull = np.random.default_rng(2).standard_normal(N_POINTS)
    nominal = np.linspace(0.0, 0.99, 34)
    np.testing.assert_allclose(observed_coverage(pull, nominal), nominal, atol=COVERAGE_TOL)


def test_report_writes_valid_pngs_and_a_summary_that_validates(report):
    out, summary = report
    assert summary.plots == (*CALIBRATION_PLOTS, PHASE_SPACE_PLOT, CONDITIONAL_PLOT)
    for name in summary.plots:
        assert_png(out / name)
    assert ReportSummary.model_validate_json((out / SUMMARY_FILENAME).read_text()) == summary
    assert summary.phase_space_label == "min s_ij / s" and summary.title == "synthetic"


def test_phase_space_plot_only_with_a_variable(tmp_path):
    summary = write_calibration_report(tmp_path, **synthetic())
    assert summary.plots == (*CALIBRATION_PLOTS, CONDITIONAL_PLOT)
    assert [c.variable for c in summary.calibration.conditional] == ["mean", "sigma_tot / |mean|"]
    assert not (tmp_path / PHASE_SPACE_PLOT).exists()
    assert json.loads((tmp_path / SUMMARY_FILENAME).read_text())["phase_space_label"] is None


def test_a_few_exact_predictions_do_not_break_the_log_axes(tmp_path):
    arrays = synthetic()
    arrays["mean"][:5] = arrays["truth"][:5]
    write_calibration_report(tmp_path, **arrays)
    assert_png(tmp_path / DELTA_PLOT)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mean": np.ones(3)}, "'mean' expects shape (20000,), got (3,)"),
        ({"truth": np.ones((N_POINTS, 2))}, "'truth' expects shape (N,), got (20000, 2)"),
        ({"sigma_syst": np.full(N_POINTS, np.nan)}, "'sigma_syst' must be finite"),
        ({"sigma_stat": np.zeros(N_POINTS), "sigma_syst": np.zeros(N_POINTS)}, "sigma_tot must be > 0"),
        ({"truth": np.zeros(N_POINTS)}, "'truth' must be nonzero"),
    ],
)
def test_bad_inputs_are_named(tmp_path, change, message):
    arrays = synthetic() | change
    with pytest.raises(ValueError, match=re.escape(message)):
        write_calibration_report(tmp_path, **arrays)
    assert not any(tmp_path.iterdir()), "nothing is written for bad input"


def test_bad_phase_space_variable_is_named(tmp_path):
    with pytest.raises(ValueError, match="'phase_space_variable' expects shape"):
        write_calibration_report(tmp_path, **synthetic(), phase_space_variable=np.ones(7))


def test_noise_study(tmp_path):
    injected = [0.0, 0.001, 0.01, 0.1]
    learned = [0.004, 0.0041, 0.011, 0.098]
    summary = write_noise_study(tmp_path, injected, learned, title="noise")
    assert_png(tmp_path / NOISE_STUDY_PLOT)
    assert NoiseStudySummary.model_validate_json((tmp_path / NOISE_STUDY_JSON).read_text()) == summary
    assert summary.points[0].ratio is None
    assert summary.points[-1].ratio == pytest.approx(0.98)
    with pytest.raises(ValueError, match="at least one level > 0"):
        write_noise_study(tmp_path, [0.0], [0.004])


def test_scaling_study_recovers_the_power_laws(tmp_path):
    sizes = np.array([1_000, 3_000, 10_000, 30_000, 100_000])
    sigma_stat = 0.02 * (sizes / sizes[0]) ** -0.5
    accuracy = 0.03 * (sizes / sizes[0]) ** -0.3
    summary = write_scaling_study(tmp_path, sizes[::-1], accuracy[::-1], sigma_stat[::-1])
    assert_png(tmp_path / SCALING_STUDY_PLOT)
    assert ScalingStudySummary.model_validate_json((tmp_path / SCALING_STUDY_JSON).read_text()) == summary
    assert [p.train_size for p in summary.points] == sizes.tolist()
    assert summary.slope_mean_rel_sigma_stat == pytest.approx(-0.5)
    assert summary.slope_median_abs_delta == pytest.approx(-0.3)
    assert write_scaling_study(tmp_path, [1000], [0.03], [0.02]).slope_median_abs_delta is None
