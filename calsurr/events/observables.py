"""Observables of multi-gluon events, weighted histograms and the chi2 comparison of two samples.

Observables (momenta (N, 2 + n, 4) GeV, final state from index 2):
    leading_pt         transverse momentum of the hardest final-state gluon, GeV
    leading_rapidity   its rapidity y = ln((E + pz) / (E - pz)) / 2
    min_delta_r        smallest Delta R = sqrt(Delta y^2 + Delta phi^2) over final-state pairs
    min_sij_over_s     smallest s_ij / s over every pair, incoming ones included (the cut variable)

Two independent samples are compared bin by bin in shape (normalised histograms), with a chi2 over
equal-population bins of the pooled samples (every bin well filled) and n_bins - 1 degrees of freedom; the
cross sections are compared separately.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from calsurr.training.physics.phase_space import pair_invariants

N_BINS = 20


def _rapidity(p: np.ndarray) -> np.ndarray:
    return 0.5 * np.log((p[..., 0] + p[..., 3]) / (p[..., 0] - p[..., 3]))


def _leading(momenta: np.ndarray) -> np.ndarray:
    final = momenta[:, 2:]
    index = np.argmax(np.hypot(final[..., 1], final[..., 2]), axis=1)
    return final[np.arange(len(final)), index]


def leading_pt(momenta: np.ndarray) -> np.ndarray:
    lead = _leading(momenta)
    return np.hypot(lead[:, 1], lead[:, 2])


def leading_rapidity(momenta: np.ndarray) -> np.ndarray:
    return _rapidity(_leading(momenta))


def min_delta_r(momenta: np.ndarray) -> np.ndarray:
    final = momenta[:, 2:]
    y, phi = _rapidity(final), np.arctan2(final[..., 2], final[..., 1])
    i, j = np.triu_indices(final.shape[1], k=1)
    dphi = np.abs(phi[:, i] - phi[:, j])
    dphi = np.minimum(dphi, 2.0 * math.pi - dphi)
    return np.sqrt((y[:, i] - y[:, j]) ** 2 + dphi**2).min(axis=1)


def min_sij_over_s(momenta: np.ndarray) -> np.ndarray:
    invariants = pair_invariants(momenta)
    return invariants.min(axis=1) / invariants[:, 0]  # pair (0, 1) first: s_12 = s


OBSERVABLES: dict[str, tuple[Callable[[np.ndarray], np.ndarray], str]] = {
    "leading_pt": (leading_pt, r"leading gluon $p_T$ [GeV]"),
    "leading_rapidity": (leading_rapidity, r"leading gluon rapidity $y$"),
    "min_delta_r": (min_delta_r, r"min $\Delta R$ of final-state gluons"),
    "min_sij_over_s": (min_sij_over_s, r"min $s_{ij}/s$"),
}


@dataclass(frozen=True)
class Histogram:
    """Weighted histogram: sums of weights and of squared weights per bin, over `edges`."""

    edges: np.ndarray
    sum_w: np.ndarray
    sum_w2: np.ndarray

    @classmethod
    def fill(cls, values: np.ndarray, weights: np.ndarray, edges: np.ndarray) -> Histogram:
        values = np.clip(values, edges[0], edges[-1])  # pooled-sample edges: only rounding can fall outside
        sum_w, _ = np.histogram(values, edges, weights=weights)
        sum_w2, _ = np.histogram(values, edges, weights=np.square(weights))
        return cls(edges, sum_w, sum_w2)

    def density(self) -> tuple[np.ndarray, np.ndarray]:
        """Normalised shape per unit of the observable and its error (1/sigma dsigma/dx)."""
        total = self.sum_w.sum()
        fraction = self.sum_w / total
        variance = (self.sum_w2 * (1.0 - 2.0 * fraction) + fraction**2 * self.sum_w2.sum()) / total**2
        widths = np.diff(self.edges)
        return fraction / widths, np.sqrt(np.clip(variance, 0.0, None)) / widths


def pooled_edges(samples: list[np.ndarray], n_bins: int = N_BINS) -> np.ndarray:
    """Equal-population bin edges of the pooled values (the outermost ones at the extremes)."""
    pooled = np.concatenate(samples)
    edges = np.quantile(pooled, np.linspace(0.0, 1.0, n_bins + 1))
    return np.unique(edges)


@dataclass(frozen=True)
class Comparison:
    observable: str
    chi2: float
    ndf: int

    @property
    def probability(self) -> float:
        """P(chi2 >= observed) for ndf degrees of freedom."""
        from scipy.stats import chi2

        return float(chi2.sf(self.chi2, self.ndf))


def compare_shapes(reference: Histogram, other: Histogram, observable: str) -> Comparison:
    ref, ref_err = reference.density()
    oth, oth_err = other.density()
    variance = ref_err**2 + oth_err**2
    good = variance > 0
    chi2 = float(np.sum((ref[good] - oth[good]) ** 2 / variance[good]))
    return Comparison(observable, chi2, int(np.sum(good)) - 1)


def histograms(samples: dict[str, tuple[np.ndarray, np.ndarray]], n_bins: int = N_BINS):
    """For each observable: the pooled edges and a Histogram per sample; samples: name -> (momenta, weights)."""
    out: dict[str, dict[str, Histogram]] = {}
    for name, (function, _) in OBSERVABLES.items():
        values = {label: function(momenta) for label, (momenta, _) in samples.items()}
        edges = pooled_edges(list(values.values()), n_bins)
        out[name] = {label: Histogram.fill(values[label], samples[label][1], edges) for label in samples}
    return out


def compare_samples(
    reference: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray], n_bins: int = N_BINS
) -> list[Comparison]:
    """chi2 per observable between two (momenta, weights) samples."""
    hists = histograms({"reference": reference, "other": other}, n_bins)
    return [compare_shapes(h["reference"], h["other"], name) for name, h in hists.items()]
