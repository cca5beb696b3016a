"""Massless phase space: RAMBO sampling, pair invariants and the cuts that define a training domain.

Conventions (shared/DESIGN.md): four-momenta (E, px, py, pz) in GeV, shape (N, n, 4), float64, incoming
particles first, in the partonic centre-of-mass frame with particle 1 along +z and particle 2 along -z.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np

METRIC = np.array([1.0, -1.0, -1.0, -1.0])


def minkowski_dot(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """p.q with metric (+,-,-,-) over the last axis, in GeV^2."""
    return np.einsum("...i,i,...i->...", p, METRIC, q)


def incoming_pair(sqrt_s: float, n_events: int) -> np.ndarray:
    """The two massless beams of the partonic CM frame, shape (N, 2, 4)."""
    half = 0.5 * sqrt_s
    beams = np.array([[half, 0.0, 0.0, half], [half, 0.0, 0.0, -half]])
    return np.broadcast_to(beams, (n_events, 2, 4)).copy()


def rambo(n_final: int, sqrt_s: float, n_events: int, rng: np.random.Generator) -> np.ndarray:
    """Flat massless n-body phase space by RAMBO (Kleiss, Stirling, Ellis, Comput. Phys. Commun. 40 (1986) 359).

    Returns the full event, incoming pair first: shape (N, 2 + n_final, 4), float64, in GeV. Every event has
    the same phase-space weight, `rambo_weight(n_final, sqrt_s)`, so unweighted samples come for free.
    """
    if n_final < 2:
        raise ValueError(f"RAMBO needs at least 2 final-state particles, got {n_final}")
    r = rng.random((n_events, n_final, 4))
    cos_theta = 2.0 * r[..., 0] - 1.0
    sin_theta = np.sqrt(1.0 - cos_theta**2)
    phi = 2.0 * np.pi * r[..., 1]
    energy = -np.log(r[..., 2] * (1.0 - r[..., 3]))  # 1 - r avoids log(0); same distribution
    q = np.stack(
        [energy, energy * sin_theta * np.cos(phi), energy * sin_theta * np.sin(phi), energy * cos_theta],
        axis=-1,
    )
    total = q.sum(axis=1)  # (N, 4)
    mass = np.sqrt(minkowski_dot(total, total))
    b = -total[:, 1:] / mass[:, None]
    x = sqrt_s / mass
    gamma = total[:, 0] / mass
    a = 1.0 / (1.0 + gamma)
    bq = np.einsum("nj,nij->ni", b, q[..., 1:])
    p0 = x[:, None] * (gamma[:, None] * q[..., 0] + bq)
    pvec = x[:, None, None] * (q[..., 1:] + b[:, None, :] * q[..., :1] + (a[:, None] * bq)[..., None] * b[:, None, :])
    final = np.concatenate([p0[..., None], pvec], axis=-1)
    return np.concatenate([incoming_pair(sqrt_s, n_events), final], axis=1)


def rambo_weight(n_final: int, sqrt_s: float) -> float:
    """Volume of massless n-body phase space, (2 pi)^(4 - 3n) included, in GeV^(2n - 4)."""
    n = n_final
    return (
        (2.0 * np.pi) ** (4 - 3 * n)
        * (np.pi / 2.0) ** (n - 1)
        * sqrt_s ** (2 * n - 4)
        / (math.factorial(n - 1) * math.factorial(n - 2))
    )


def pair_indices(n_particles: int) -> list[tuple[int, int]]:
    """All pairs (i, j), i < j, in the order `pair_invariants` uses."""
    return list(combinations(range(n_particles), 2))


def pair_invariants(momenta: np.ndarray) -> np.ndarray:
    """s_ij = 2 p_i.p_j for every pair of massless particles, shape (N, n(n-1)/2), in GeV^2.

    With physical (positive-energy) momenta every s_ij is non-negative; for an incoming-outgoing pair it is
    minus the usual t-type invariant. Computed in float64: near collinear limits float32 loses them.
    """
    momenta = np.asarray(momenta, dtype=np.float64)
    i, j = np.array(pair_indices(momenta.shape[1])).T
    return 2.0 * minkowski_dot(momenta[:, i], momenta[:, j])


def passes_cuts(momenta: np.ndarray, min_sij_over_s: float) -> np.ndarray:
    """Mask of events whose every pair has s_ij > min_sij_over_s * s, away from soft and collinear limits."""
    s = 2.0 * minkowski_dot(momenta[:, 0], momenta[:, 1])
    return np.all(pair_invariants(momenta) > min_sij_over_s * s[:, None], axis=1)


def sample_cut_phase_space(
    n_final: int, sqrt_s: float, n_events: int, min_sij_over_s: float, rng: np.random.Generator
) -> np.ndarray:
    """Exactly `n_events` RAMBO events inside the cuts, drawn by rejection (still flat inside the cuts)."""
    accepted: list[np.ndarray] = []
    have = 0
    efficiency = 0.5
    while have < n_events:
        batch = max(1024, int(1.2 * (n_events - have) / efficiency))
        events = rambo(n_final, sqrt_s, batch, rng)
        mask = passes_cuts(events, min_sij_over_s)
        efficiency = max(mask.mean(), 1e-3)
        accepted.append(events[mask])
        have += int(mask.sum())
    return np.concatenate(accepted)[:n_events]
