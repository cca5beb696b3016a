"""Tree-level squared matrix elements of multi-gluon scattering, gg -> (n-2) g, summed over colours and helicities.

|M|^2 is summed over final-state and averaged over initial-state colours and helicities, with g_s = 1 (multiply by
g_s^(2n-4) = (4 pi alpha_s)^(n-2)) and without the symmetry factor 1/(n-2)! for identical final-state gluons.
Momenta are (E, px, py, pz) in GeV, shape (N, n, 4), incoming first; |M|^2 has units GeV^(8 - 2n).

Method: the full amplitude is decomposed in the adjoint (DDM) colour basis (see `colour`), so
sum_colours |M|^2 = A^dagger C A over the (n-2)! orderings (1, sigma, n). MHV and anti-MHV colour-ordered amplitudes
are Parke-Taylor, A = i <ij>^4 / (<12><23>...<n1>) for negative-helicity gluons i, j; their numerator is the same for
every ordering, so their helicity sum factorises into sum_{i<j} s_ij^4 times one colour quadratic form. The remaining
(NMHV, from n = 6) configurations come from Berends-Giele recursion; parity (flipping every helicity conjugates the
amplitudes up to an ordering-independent phase) halves that work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import product

import numpy as np

from calsurr.training.physics.berends_giele import colour_ordered_amplitudes
from calsurr.training.physics.colour import N_ADJOINT, ddm_colour_matrix, ddm_orderings
from calsurr.training.physics.phase_space import pair_invariants
from calsurr.training.physics.spinors import all_outgoing, spinor_products

N_HELICITIES = 2  # physical polarisations of a massless gluon
INITIAL_STATE_AVERAGE = 1.0 / (N_ADJOINT * N_HELICITIES) ** 2  # 1/256: two incoming gluons
PARKE_TAYLOR_CHUNK = 1 << 16  # events per block: bounds memory, keeps arrays near cache size
BERENDS_GIELE_CHUNK = 1 << 8  # currents of shape (4, 10, 256) stay cache-resident: fastest measured


def helicity_configurations(n: int) -> np.ndarray:
    """All 2^n helicity assignments of n gluons, shape (2^n, n) of +1/-1, in lexicographic order (+1 first)."""
    return np.array(list(product((1, -1), repeat=n)), dtype=np.int64)


def _is_mhv_class(helicities: Sequence[int]) -> bool:
    n_minus = sum(1 for h in helicities if h < 0)
    return n_minus in (2, len(helicities) - 2)


def parke_taylor(momenta: np.ndarray, helicities: Sequence[int], ordering: Sequence[int]) -> np.ndarray:
    """Colour-ordered MHV or anti-MHV amplitude, shape (N,) complex, GeV^(4 - n), for all-outgoing momenta (N, n, 4).

    MHV (negative helicities i, j): i <ij>^4 / (<12>...<n1>); anti-MHV (positive i, j): the same with [..] and the
    sign (-1)^n (parity image of MHV; Dixon, hep-ph/9601359). With the spinor and polarisation conventions of
    `spinors` these equal the Berends-Giele amplitudes including their phase. Raises for other configurations.
    """
    helicities = [int(h) for h in helicities]
    if not _is_mhv_class(helicities):
        raise ValueError(f"Parke-Taylor needs an MHV or anti-MHV configuration, got {helicities}")
    n = len(helicities)
    angles, squares = spinor_products(momenta)
    minus = [g for g in range(n) if helicities[g] < 0]
    if len(minus) == 2:
        brackets, (i, j), sign = angles, minus, 1.0
    else:
        brackets, (i, j), sign = squares, [g for g in range(n) if helicities[g] > 0], (-1.0) ** n
    return sign * 1j * brackets[:, i, j] ** 4 / _cyclic_product(brackets, ordering)


def _cyclic_product(brackets: np.ndarray, ordering: Sequence[int]) -> np.ndarray:
    """<s1 s2><s2 s3>...<sn s1> for an ordering s, from a bracket matrix (N, n, n)."""
    ordering = list(ordering)
    following = ordering[1:] + ordering[:1]
    return np.prod(brackets[:, ordering, following], axis=1)


def _colour_quadratic_form(amplitudes: np.ndarray, colour_matrix: np.ndarray) -> np.ndarray:
    """Re(A^dagger C A) over the leading ordering axis of amplitudes (S, ...), shape (...)."""
    flat = amplitudes.reshape(amplitudes.shape[0], -1)
    return np.einsum("sk,sk->k", flat.conj(), colour_matrix @ flat).real.reshape(amplitudes.shape[1:])


def _mhv_class_sum(momenta: np.ndarray, orderings: list[tuple[int, ...]], colour_matrix: np.ndarray) -> np.ndarray:
    """Colour- and helicity-summed |M|^2 of all MHV and anti-MHV configurations, shape (N,).

    For MHV with negatives i, j the ordering dependence is 1 / (<12>...<n1>) alone, so the sum is
    sum_{i<j} s_ij^4 u^dagger C u with u_sigma = 1/(cyclic product); anti-MHV is its parity image (same value).
    At n = 4 the two classes coincide and count once.
    """
    n = momenta.shape[1]
    angles, _ = spinor_products(momenta)
    inverse_denominators = np.stack([1.0 / _cyclic_product(angles, order) for order in orderings])
    numerators = np.sum(pair_invariants(momenta) ** 4, axis=1)
    n_classes = 1 if n == 4 else 2
    return n_classes * numerators * _colour_quadratic_form(inverse_denominators, colour_matrix)


def beyond_mhv_helicities(n: int) -> np.ndarray:
    """Helicity configurations that are neither vanishing nor (anti-)MHV, with gluon 1 positive (parity partner
    implied), shape (H, n); empty for n < 6."""
    configs = helicity_configurations(n)
    n_minus = (configs < 0).sum(axis=1)
    keep = (configs[:, 0] > 0) & (n_minus >= 3) & (n_minus <= n - 3)
    return configs[keep]


def _beyond_mhv_sum(momenta: np.ndarray, orderings: list[tuple[int, ...]], colour_matrix: np.ndarray) -> np.ndarray:
    """Colour- and helicity-summed |M|^2 of the NMHV (and beyond) configurations by Berends-Giele, shape (N,)."""
    helicities = beyond_mhv_helicities(momenta.shape[1])
    if len(helicities) == 0:
        return np.zeros(momenta.shape[0])
    amplitudes = colour_ordered_amplitudes(momenta, helicities, orderings)  # (S, H, N)
    return 2.0 * _colour_quadratic_form(amplitudes, colour_matrix).sum(axis=0)


def _summed_block(momenta: np.ndarray, with_berends_giele: bool) -> np.ndarray:
    n = momenta.shape[1]
    orderings, colour_matrix = ddm_orderings(n), ddm_colour_matrix(n)
    total = _mhv_class_sum(momenta, orderings, colour_matrix)
    if with_berends_giele:
        total = total + _beyond_mhv_sum(momenta, orderings, colour_matrix)
    return total


def colour_helicity_summed(momenta: np.ndarray) -> np.ndarray:
    """sum over all colours and helicities of |M|^2 (no averaging) for physical momenta (N, n, 4), GeV^(8 - 2n).

    Works for 4 <= n <= 6 (the DDM colour matrix is tabulated numerically up to six gluons). Events are processed in
    blocks so that memory stays bounded for millions of events.
    """
    momenta = np.asarray(momenta, dtype=np.float64)
    n = momenta.shape[1]
    if not 4 <= n <= 6:
        raise ValueError(f"supported multiplicities are 4 to 6 gluons, got {n}")
    outgoing = all_outgoing(momenta)
    chunk = PARKE_TAYLOR_CHUNK if n < 6 else BERENDS_GIELE_CHUNK
    blocks = [_summed_block(outgoing[start : start + chunk], n >= 6) for start in range(0, len(outgoing), chunk)]
    return np.concatenate(blocks) if blocks else np.zeros(0)


def _averaged(momenta: np.ndarray, n_gluons: int) -> np.ndarray:
    momenta = np.asarray(momenta, dtype=np.float64)
    if momenta.ndim != 3 or momenta.shape[1:] != (n_gluons, 4):
        raise ValueError(f"expected momenta of shape (N, {n_gluons}, 4), got {momenta.shape}")
    return INITIAL_STATE_AVERAGE * colour_helicity_summed(momenta)


def gg_gg(momenta: np.ndarray) -> np.ndarray:
    """Averaged |M|^2 of g g -> g g at g_s = 1, shape (N,), dimensionless; momenta (N, 4, 4) in GeV."""
    return _averaged(momenta, 4)


def gg_ggg(momenta: np.ndarray) -> np.ndarray:
    """Averaged |M|^2 of g g -> g g g at g_s = 1, shape (N,), in GeV^-2; momenta (N, 5, 4) in GeV."""
    return _averaged(momenta, 5)


def gg_gggg(momenta: np.ndarray) -> np.ndarray:
    """Averaged |M|^2 of g g -> g g g g at g_s = 1, shape (N,), in GeV^-4; momenta (N, 6, 4) in GeV."""
    return _averaged(momenta, 6)


AMPLITUDES: dict[str, Callable[[np.ndarray], np.ndarray]] = {"gg_gg": gg_gg, "gg_ggg": gg_ggg, "gg_gggg": gg_gggg}
