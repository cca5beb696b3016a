"""How honest are the error bars? Pulls, interval coverage and accuracy on held-out points."""

from __future__ import annotations

import numpy as np

from calsurr.service.card import CalibrationReport

Z_68 = 1.0  # half-width of the central 68.27 % interval of a unit Gaussian
Z_95 = 1.959964  # half-width of the central 95 % interval of a unit Gaussian


def relative_deviation(mean: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Delta = (prediction - truth) / truth."""
    return (mean - truth) / truth


def pulls(mean: np.ndarray, sigma_tot: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(prediction - truth) / sigma_tot: a unit Gaussian when the uncertainties are calibrated."""
    return (mean - truth) / sigma_tot


def calibration_report(
    mean: np.ndarray, sigma_tot: np.ndarray, truth: np.ndarray, recalibration_factor: float = 1.0
) -> CalibrationReport:
    pull = pulls(mean, sigma_tot, truth)
    abs_delta = np.abs(relative_deviation(mean, truth))
    return CalibrationReport(
        n_points=len(truth),
        pull_mean=float(np.mean(pull)),
        pull_width=float(np.std(pull)),
        coverage_68=float(np.mean(np.abs(pull) < Z_68)),
        coverage_95=float(np.mean(np.abs(pull) < Z_95)),
        median_abs_rel_deviation=float(np.median(abs_delta)),
        q90_abs_rel_deviation=float(np.quantile(abs_delta, 0.90)),
        q99_abs_rel_deviation=float(np.quantile(abs_delta, 0.99)),
        recalibration_factor=recalibration_factor,
    )


def fit_recalibration_factor(mean: np.ndarray, sigma_tot: np.ndarray, truth: np.ndarray) -> float:
    """The factor f that makes pulls on a calibration split have unit root-mean-square when sigma -> f sigma.

    A deep ensemble on noise-free labels double-counts: each member's learned width already holds that
    member's own error, and the members' spread is added on top, so raw pulls come out narrow.
    """
    return float(np.sqrt(np.mean(pulls(mean, sigma_tot, truth) ** 2)))
