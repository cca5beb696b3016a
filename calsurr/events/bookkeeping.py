"""Cross sections, efficiencies, the Kish factor and the cost model of surrogate unweighting.

sigma = (1 / 2s) (1 / n_f!) integral |M|^2 dPhi_n over the cut domain, n_f! for n_f identical final-state gluons
(DESIGN.md: |M|^2 carries no symmetry factor), with g_s = 1. A trial point's weight w = |M|^2 J / (2 s n_f!)
converted to pb, J its phase-space weight, so that sigma = E[w] over trial points.

The cost model (README "Events"; the form of Danziger et al., arXiv:2109.11964): per trial point inside the
cuts a method spends t_ps + n_s t_surr + n_x t_exact and keeps an event with probability eps; a sample of N
events with weights W_i is worth N alpha events of unit weight, alpha the Kish factor. At equal statistical
power the effective gain of a method over standard unweighting is
    f_eff = [(t_ps + t_exact) / (eps_std alpha_std)] / [(t_ps + n_s t_surr + n_x t_exact) / (eps alpha)].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GEV2_TO_PB = 0.3893794e9  # (hbar c)^2 = 0.3893794 GeV^2 mb (PDG, Physical constants): 1 GeV^-2 in pb


def weight_normalisation(sqrt_s: float, n_final: int) -> float:
    """pb per unit of |M|^2 J: GEV2_TO_PB / (2 s n_f!), so that w = normalisation |M|^2 J is in pb."""
    return GEV2_TO_PB / (2.0 * sqrt_s**2 * math.factorial(n_final))


@dataclass(frozen=True)
class Estimate:
    """A Monte Carlo estimate and its one-sigma error, in the unit of the summed values (pb here)."""

    value: float
    error: float

    def pull(self, other: Estimate) -> float:
        """(self - other) / sqrt(err^2 + err'^2): how many sigma two independent estimates differ by."""
        scale = math.hypot(self.error, other.error)
        return (self.value - other.value) / scale if scale > 0 else 0.0

    def __str__(self) -> str:
        return f"{self.value:.6g} +- {self.error:.2g}"


class RunningMean:
    """Sum and sum of squares of per-trial values over n trials (zeros included): the mean and its MC error."""

    def __init__(self) -> None:
        self.n = 0
        self.total = 0.0
        self.total_sq = 0.0

    def add(self, values: np.ndarray, n_trials: int) -> None:
        """`values` are the non-zero contributions of `n_trials` trials (the other trials contribute zero)."""
        self.n += int(n_trials)
        self.total += float(np.sum(values))
        self.total_sq += float(np.sum(np.square(values)))

    def estimate(self) -> Estimate:
        if self.n == 0:
            return Estimate(0.0, 0.0)
        mean = self.total / self.n
        variance = max(self.total_sq / self.n - mean**2, 0.0)
        return Estimate(mean, math.sqrt(variance / self.n) if self.n > 1 else 0.0)


def kish_factor(weights: np.ndarray) -> float:
    """alpha = (sum w)^2 / (N sum w^2): the effective sample size over the number of events (1 for equal weights)."""
    weights = np.asarray(weights, dtype=np.float64)
    if len(weights) == 0 or not np.any(weights):
        return 0.0
    return float(np.sum(weights) ** 2 / (len(weights) * np.sum(weights**2)))


@dataclass(frozen=True)
class CostModel:
    """Per trial point inside the cuts: surrogate calls n_s, exact calls n_x, acceptance eps; Kish factor alpha."""

    surrogate_calls: float
    exact_calls: float
    efficiency: float
    kish: float

    def cost_per_event(self, t_ps: float, t_surr: float, t_exact: float) -> float:
        """Seconds per unweighted event of unit-weight worth: (t_ps + n_s t_surr + n_x t_exact) / (eps alpha)."""
        worth = self.efficiency * self.kish
        spent = t_ps + self.surrogate_calls * t_surr + self.exact_calls * t_exact
        return spent / worth if worth > 0 else math.inf

    def gain_over(self, standard: CostModel, t_ps: float, t_surr: float, t_exact: float) -> float:
        """f_eff of this method over `standard` at the given per-point times (seconds)."""
        return standard.cost_per_event(t_ps, t_surr, t_exact) / self.cost_per_event(t_ps, t_surr, t_exact)

    def gain_curve(self, standard: CostModel, ratios: np.ndarray) -> np.ndarray:
        """f_eff as a function of r = t_exact / t_surr, phase space free (t_ps = 0), t_surr = 1."""
        return np.array([self.gain_over(standard, 0.0, 1.0, float(r)) for r in np.asarray(ratios)])

    def asymptotic_gain(self, standard: CostModel) -> float:
        """f_eff for t_exact >> t_surr, t_ps: (eps alpha / n_x) / (eps_std alpha_std)."""
        return (self.efficiency * self.kish / self.exact_calls) / (standard.efficiency * standard.kish)

    def break_even_ratio(self, standard: CostModel) -> float:
        """The r = t_exact / t_surr at which f_eff = 1 (phase space free); inf if the method never gains."""
        a = self.efficiency * self.kish / (standard.efficiency * standard.kish)  # f_eff = a r / (1 + n_x r)
        if a <= self.exact_calls:
            return math.inf
        return 1.0 / (a - self.exact_calls)
