"""Colour-ordered tree amplitudes of n gluons by Berends-Giele recursion, vectorised over events and helicities.

An independent route to the amplitudes of `gluon_amplitudes`: off-shell currents built from explicit polarisation
vectors (Berends and Giele, Nucl. Phys. B306 (1988) 759), valid for every helicity configuration, NMHV included.
Colour-ordered Feynman rules in Feynman gauge, normalised as in Dixon (hep-ph/9601359) so that the
amplitudes are those that multiply Tr(T^a1 ... T^an) with Tr(T^a T^b) = delta^ab and g_s = 1:
    3-vertex  (i / sqrt2) [g_nr (p - q)_m + g_rm (q - k)_n + g_mn (k - p)_r],
    4-vertex  i g_mr g_ns - (i / 2) (g_mn g_rs + g_ms g_nr),
    propagator -i g_mn / P^2.
Every vertex of a current comes with one propagator, so the factors of i cancel in the currents and the amplitude
is A = i eps_n . (P^2 J(1..n-1)). Currents are stored component-first, shape (4, H, N): H helicity configurations
by N events, complex, in units GeV^(1 - m) for an m-gluon current.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from calsurr.training.physics.spinors import SQRT2, polarisation_vectors

Gluons = tuple[int, ...]  # an ordered tuple of gluon indices


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Minkowski product over the leading component axis, for complex or real (4, ...) arrays."""
    return a[0] * b[0] - a[1] * b[1] - a[2] * b[2] - a[3] * b[3]


class _Recursion:
    """Memoised Berends-Giele currents of ordered gluon tuples, shared between colour orderings.

    Current conservation, P(t) . J(t) = 0 (exact for on-shell, transverse external gluons), simplifies the
    three-vertex: with J_L (momentum P_L) and J_R (P_R),
        V3 = [(J_L.J_R)(P_L - P_R) + 2 (P_R.J_L) J_R - 2 (P_L.J_R) J_L] / sqrt2,
    and the 4-vertex on adjacent J_a, J_b, J_c is (J_a.J_c) J_b - [(J_b.J_c) J_a + (J_a.J_b) J_c] / 2. Products
    J_a.J_b recur across currents and orderings, so they are cached too. The three-vertex is odd and the four-vertex
    even under reversing the colour order, and an m-gluon current has m - 1 three-vertices modulo 2, hence the
    reflection identity used in `current`.
    """

    def __init__(self, momenta: np.ndarray, polarisations: np.ndarray) -> None:
        self._momenta = momenta  # (4, 1, N, n) real
        self._polarisations = polarisations  # (4, H, N, n) complex
        self._currents: dict[Gluons, np.ndarray] = {}
        self._sums: dict[Gluons, np.ndarray] = {}
        self._dots: dict[tuple[Gluons, Gluons], np.ndarray] = {}
        self._projections: dict[tuple[Gluons, int], tuple[np.ndarray, np.ndarray]] = {}

    def momentum(self, gluons: Gluons) -> np.ndarray:
        """Total outgoing momentum of the tuple, (4, 1, N) in GeV."""
        if gluons not in self._sums:
            self._sums[gluons] = self._momenta[..., list(gluons)].sum(axis=-1)
        return self._sums[gluons]

    def current(self, gluons: Gluons) -> np.ndarray:
        """J(t), using the reflection identity J(t reversed) = (-1)^(m-1) J(t) for an m-gluon tuple when it can."""
        if len(gluons) == 1:
            return self._polarisations[..., gluons[0]]
        if gluons not in self._currents:
            mirror = self._currents.get(gluons[::-1])
            if mirror is not None:
                self._currents[gluons] = mirror if len(gluons) % 2 else -mirror
            else:
                momentum = self.momentum(gluons)
                self._currents[gluons] = self._vertex_sum(gluons) / _dot(momentum, momentum)
        return self._currents[gluons]

    def dot(self, left: Gluons, right: Gluons) -> np.ndarray:
        """J(left) . J(right), (H, N), cached."""
        if (left, right) not in self._dots:
            self._dots[left, right] = _dot(self.current(left), self.current(right))
        return self._dots[left, right]

    @staticmethod
    def _splits(gluons: Gluons) -> tuple[list[tuple[Gluons, Gluons]], list[tuple[Gluons, Gluons, Gluons]]]:
        """Adjacent (left, right) cuts and (a, b, c) triple cuts of an ordered tuple."""
        m = len(gluons)
        cuts = [(gluons[:i], gluons[i:]) for i in range(1, m)]
        triples = [(gluons[:i], gluons[i:j], gluons[j:]) for i in range(1, m - 1) for j in range(i + 1, m)]
        return cuts, triples

    def _vertex_sum(self, gluons: Gluons) -> np.ndarray:
        """Sum of all vertex splittings of the tuple without its propagator, (4, H, N)."""
        cuts, triples = self._splits(gluons)
        cubic = np.zeros(self._polarisations.shape[:-1], dtype=complex)
        for left, right in cuts:
            j_left, j_right = self.current(left), self.current(right)
            p_left, p_right = self.momentum(left), self.momentum(right)
            cubic += self.dot(left, right) * (p_left - p_right)
            cubic += (2.0 * _dot(p_right, j_left)) * j_right
            cubic -= (2.0 * _dot(p_left, j_right)) * j_left
        cubic /= SQRT2
        for a, b, c in triples:
            cubic += self.dot(a, c) * self.current(b)
            cubic -= (0.5 * self.dot(b, c)) * self.current(a)
            cubic -= (0.5 * self.dot(a, b)) * self.current(c)
        return cubic

    def _project(self, gluons: Gluons, last: int) -> tuple[np.ndarray, np.ndarray]:
        """(eps_last . J(t), k_last . J(t)), cached."""
        key = (gluons, last)
        if key not in self._projections:
            j = self.current(gluons)
            self._projections[key] = (
                _dot(self._polarisations[..., last], j),
                _dot(self._momenta[..., last], j),
            )
        return self._projections[key]

    def amplitude(self, ordering: Gluons) -> np.ndarray:
        """A = i eps_n . (vertex sum of J(1..n-1)), contracted term by term, (H, N).

        With P_L + P_R = -k_n, current conservation and eps_n . k_n = 0 the three-vertex term becomes
        sqrt2 [(J_L.J_R)(eps_n.P_L) - (k_n.J_L)(eps_n.J_R) + (k_n.J_R)(eps_n.J_L)], which needs only scalars.
        """
        rest, last = ordering[:-1], ordering[-1]
        eps = self._polarisations[..., last]
        cuts, triples = self._splits(rest)
        cubic = 0.0
        for left, right in cuts:
            eps_left, k_left = self._project(left, last)
            eps_right, k_right = self._project(right, last)
            cubic = cubic + (
                self.dot(left, right) * _dot(eps, self.momentum(left)) - k_left * eps_right + k_right * eps_left
            )
        quartic = 0.0
        for a, b, c in triples:
            quartic = quartic + (
                self.dot(a, c) * self._project(b, last)[0]
                - 0.5 * (self.dot(b, c) * self._project(a, last)[0] + self.dot(a, b) * self._project(c, last)[0])
            )
        return 1j * (SQRT2 * cubic + quartic)


def default_references(momenta: np.ndarray) -> np.ndarray:
    """Reference momentum of each gluon's polarisation: the next gluon's momentum (cyclically), shape (N, n, 4)."""
    return np.roll(momenta, -1, axis=1)


def colour_ordered_amplitudes(
    momenta: np.ndarray,
    helicities: np.ndarray,
    orderings: Sequence[Sequence[int]],
    references: np.ndarray | None = None,
) -> np.ndarray:
    """Colour-ordered amplitudes A(ordering) for all-outgoing massless momenta, shape (n_orderings, H, N) complex.

    momenta: (N, n, 4) in GeV, all outgoing (sum to zero); helicities: (H, n) of +1/-1; orderings: permutations of
    range(n). Units GeV^(4 - n). references: null reference momenta (N, n, 4) for the polarisation vectors (default:
    the next gluon's momentum); the result does not depend on them (gauge invariance), which the tests exploit.
    """
    momenta = np.asarray(momenta, dtype=np.float64)
    helicities = np.atleast_2d(np.asarray(helicities))
    if references is None:
        references = default_references(momenta)
    plus = polarisation_vectors(momenta, references, +1)  # (N, n, 4)
    minus = polarisation_vectors(momenta, references, -1)
    eps = np.where(helicities[:, None, :, None] > 0, plus[None], minus[None])  # (H, N, n, 4)
    recursion = _Recursion(np.moveaxis(momenta, -1, 0)[:, None], np.moveaxis(eps, -1, 0))
    return np.stack([recursion.amplitude(tuple(int(g) for g in ordering)) for ordering in orderings])
