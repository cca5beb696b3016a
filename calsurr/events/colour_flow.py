"""Leading-colour colour flows for multi-gluon events, as a parton shower needs them.

In the trace basis the n-gluon tree amplitude is M = sum over (n-1)! orderings sigma of Tr(T^a_sigma(1) ...
T^a_sigma(n)) A(sigma) (g_s = 1, Tr(T^a T^b) = delta^ab, DESIGN.md's colour.py), and at leading colour
    sum_colours |M|^2 = N^(n-2) (N^2 - 1) sum_sigma |A(sigma)|^2 (1 + O(1/N^2)),
exactly for n = 4 and 5. Each trace is one planar colour flow: the colour line of gluon sigma(k) continues as
the anticolour line of sigma(k+1), cyclically. An event's flow is drawn with probability proportional to
sum_helicities |A(sigma)|^2 (as Sherpa and MadGraph do in the leading-colour approximation).

The partial amplitudes come from the physics code: MHV and anti-MHV configurations in closed form (their
|A|^2 is s_ij^4 / prod |s_(k, k+1)| over the cyclic neighbours, Parke-Taylor), the rest (NMHV, from n = 6) by
Berends-Giele recursion with parity halving the work, as `gluon_amplitudes` does.
"""

from __future__ import annotations

from itertools import permutations

import numpy as np

from calsurr.training.physics.berends_giele import colour_ordered_amplitudes
from calsurr.training.physics.colour import N_ADJOINT, N_COLOURS
from calsurr.training.physics.gluon_amplitudes import beyond_mhv_helicities
from calsurr.training.physics.phase_space import pair_invariants
from calsurr.training.physics.spinors import all_outgoing

FIRST_COLOUR_TAG = 501  # LHE colour tags start above 500 by custom (MadGraph, Sherpa, Pythia examples)
BERENDS_GIELE_EVENTS = 64  # events per Berends-Giele call: bounds the memoised currents of 120 orderings


def trace_orderings(n: int) -> list[tuple[int, ...]]:
    """The (n-1)! orderings (0, sigma) of the trace basis, gluons numbered 0..n-1 in process order."""
    return [(0, *sigma) for sigma in permutations(range(1, n))]


def partial_amplitudes_squared(momenta: np.ndarray) -> np.ndarray:
    """sum_helicities |A(sigma)|^2 per trace ordering, shape (N, (n-1)!), for physical momenta (N, n, 4) in GeV.

    Units GeV^(8 - 2n); g_s = 1; no colour or helicity average.
    """
    outgoing = all_outgoing(momenta)
    n = outgoing.shape[1]
    orderings = trace_orderings(n)
    invariants = np.abs(pair_invariants(outgoing))  # |s_ij| of all-outgoing momenta, pairs i < j
    index = {pair: k for k, pair in enumerate((i, j) for i in range(n) for j in range(i + 1, n))}
    numerator = np.sum(invariants**4, axis=1)  # the MHV numerator sum_(i<j) s_ij^4, the same for every ordering
    n_classes = 1 if n == 4 else 2  # MHV and anti-MHV coincide at n = 4
    out = np.empty((len(outgoing), len(orderings)))
    for k, order in enumerate(orderings):
        neighbours = [tuple(sorted((order[m], order[(m + 1) % n]))) for m in range(n)]
        denominator = np.prod(invariants[:, [index[p] for p in neighbours]], axis=1)
        out[:, k] = n_classes * numerator / denominator
    helicities = beyond_mhv_helicities(n)
    if len(helicities):
        for start in range(0, len(outgoing), BERENDS_GIELE_EVENTS):
            chunk = outgoing[start : start + BERENDS_GIELE_EVENTS]
            amplitudes = colour_ordered_amplitudes(chunk, helicities, orderings)  # (S, H, N)
            out[start : start + len(chunk)] += 2.0 * np.sum(np.abs(amplitudes) ** 2, axis=1).T  # parity partners
    return out


def leading_colour_squared(momenta: np.ndarray) -> np.ndarray:
    """N^(n-2) (N^2 - 1) sum_sigma sum_h |A(sigma)|^2: the leading-colour colour- and helicity-summed |M|^2."""
    n = momenta.shape[1]
    return N_COLOURS ** (n - 2) * N_ADJOINT * partial_amplitudes_squared(momenta).sum(axis=1)


def choose_flows(momenta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One trace ordering per event, index into `trace_orderings(n)`, with probability ~ sum_h |A(sigma)|^2."""
    weights = partial_amplitudes_squared(momenta)
    cumulative = np.cumsum(weights, axis=1)
    u = rng.random(len(weights)) * cumulative[:, -1]
    return np.minimum((cumulative < u[:, None]).sum(axis=1), weights.shape[1] - 1)


def colour_tags(ordering: tuple[int, ...], n_incoming: int = 2) -> np.ndarray:
    """LHE (colour, anticolour) tags per gluon, shape (n, 2), for the planar flow of a trace ordering.

    All outgoing, line k joins the colour of gluon ordering[k] to the anticolour of ordering[k+1]. An incoming
    gluon is the crossed outgoing one, so its colour and anticolour swap; then every tag appears once as a
    colour and once as an anticolour among the outgoing, or as the colour of an incoming and an outgoing
    particle, as the Les Houches accord wants.
    """
    n = len(ordering)
    tags = np.zeros((n, 2), dtype=np.int64)
    for k, gluon in enumerate(ordering):
        line = FIRST_COLOUR_TAG + k
        tags[gluon, 0] = line
        tags[ordering[(k + 1) % n], 1] = line
    tags[:n_incoming] = tags[:n_incoming, ::-1]
    return tags
