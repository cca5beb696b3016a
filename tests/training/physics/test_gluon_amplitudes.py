"""Multi-gluon matrix elements: normalisation, symmetries, soft limits and independent cross-checks.

Independent routes compared here: Parke-Taylor (spinor products) vs Berends-Giele (polarisation vectors); the DDM
colour matrix (numerical SU(3) structure constants) vs the trace-basis matrix (U(N) cycle counting); closed-form
results (textbook gg -> gg, the exact five-gluon colour sum, the split-helicity six-gluon NMHV amplitude).
"""

from __future__ import annotations

import math
from itertools import permutations

import numpy as np
import pytest

from calsurr.training.physics.berends_giele import colour_ordered_amplitudes
from calsurr.training.physics.colour import (
    C_ADJOINT,
    N_ADJOINT,
    N_COLOURS,
    ddm_colour_correlators,
    ddm_colour_matrix,
    ddm_orderings,
    trace_colour_matrix,
    trace_orderings,
)
from calsurr.training.physics.gluon_amplitudes import (
    AMPLITUDES,
    INITIAL_STATE_AVERAGE,
    beyond_mhv_helicities,
    colour_helicity_summed,
    gg_gg,
    gg_ggg,
    gg_gggg,
    helicity_configurations,
    parke_taylor,
)
from calsurr.training.physics.phase_space import minkowski_dot, pair_invariants, sample_cut_phase_space
from calsurr.training.physics.spinors import all_outgoing, polarisation_vectors, spinor_products

SQRT_S = 500.0  # GeV
MIN_SIJ_OVER_S = 0.01  # keeps events away from soft/collinear regions where cancellations cost digits
N_GLUONS = {"gg_gg": 4, "gg_ggg": 5, "gg_gggg": 6}
TIGHT = 1e-10


def events(n_gluons: int, n_events: int, seed: int) -> np.ndarray:
    return sample_cut_phase_space(n_gluons - 2, SQRT_S, n_events, MIN_SIJ_OVER_S, np.random.default_rng(seed))


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a) / np.asarray(b) - 1.0)))


def lorentz_transform(momenta: np.ndarray, rapidity: float, rng: np.random.Generator) -> np.ndarray:
    """A random rotation followed by a boost of the given rapidity along a random axis."""
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rotation *= np.sign(np.linalg.det(rotation))
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    boost = np.eye(4)
    gamma, gamma_beta = math.cosh(rapidity), math.sinh(rapidity)
    boost[0, 0] = gamma
    boost[0, 1:] = boost[1:, 0] = gamma_beta * axis
    boost[1:, 1:] += (gamma - 1.0) * np.outer(axis, axis)
    transform = boost.copy()
    transform[:, 1:] = boost[:, 1:] @ rotation
    return momenta @ transform.T


def boost_from_rest_frame(total: np.ndarray, momenta: np.ndarray) -> np.ndarray:
    """Boost momenta (N, m, 4) from the rest frame of `total` (N, 4) to the frame where it has that momentum."""
    mass = np.sqrt(minkowski_dot(total, total))
    beta = total[:, 1:] / total[:, :1]
    gamma = total[:, 0] / mass
    beta2 = np.sum(beta**2, axis=1)
    coefficient = (gamma - 1.0) / np.where(beta2 > 0.0, beta2, 1.0)
    beta_p = np.einsum("nj,nij->ni", beta, momenta[..., 1:])
    energy = gamma[:, None] * (momenta[..., 0] + beta_p)
    vector = (
        momenta[..., 1:]
        + (coefficient[:, None] * beta_p + gamma[:, None] * momenta[..., 0])[..., None] * beta[:, None, :]
    )
    return np.concatenate([energy[..., None], vector], axis=-1)


def with_soft_gluon(born: np.ndarray, fraction: float, direction: np.ndarray) -> np.ndarray:
    """Append a gluon of energy fraction * sqrt(s)/2; the final state recoils by a boost and a rescaling."""
    total = born[:, 0] + born[:, 1]
    sqrt_s = np.sqrt(minkowski_dot(total, total))
    unit = np.asarray(direction, dtype=float) / np.linalg.norm(direction)
    soft = (0.5 * fraction * sqrt_s)[:, None] * np.concatenate([[1.0], unit])[None]
    rest = total - soft
    scale = np.sqrt(minkowski_dot(rest, rest)) / sqrt_s
    final = boost_from_rest_frame(rest, born[:, 2:] * scale[:, None, None])
    return np.concatenate([born[:, :2], final, soft[:, None]], axis=1)


def beams(sqrt_s: float) -> np.ndarray:
    half = 0.5 * sqrt_s
    return np.array([[half, 0.0, 0.0, half], [half, 0.0, 0.0, -half]])


def transverse_star(sqrt_s: float, n_final: int, phase: float) -> np.ndarray:
    """n_final gluons of equal energy, evenly spaced in azimuth in the plane transverse to the beams, (1, n, 4)."""
    energy = sqrt_s / n_final
    phi = phase + 2.0 * np.pi * np.arange(n_final) / n_final
    final = energy * np.stack([np.ones(n_final), np.cos(phi), np.sin(phi), np.zeros(n_final)], axis=-1)
    return np.concatenate([beams(sqrt_s), final])[None]


# --- spinors and polarisations -----------------------------------------------------------------------------------


def test_spinor_products_reproduce_invariants_for_crossed_momenta() -> None:
    k = all_outgoing(events(6, 8, seed=1))
    angles, squares = spinor_products(k)
    s = 2.0 * minkowski_dot(k[:, :, None], k[:, None, :])
    np.testing.assert_allclose(angles * np.swapaxes(squares, 1, 2), s, atol=1e-9 * SQRT_S**2)
    np.testing.assert_allclose(np.abs(angles) ** 2, np.abs(s), atol=1e-9 * SQRT_S**2)


def test_polarisation_vectors_are_transverse_and_normalised() -> None:
    k = all_outgoing(events(5, 8, seed=2))
    q = np.roll(k, 2, axis=1)
    plus, minus = polarisation_vectors(k, q, +1), polarisation_vectors(k, q, -1)
    np.testing.assert_allclose(minkowski_dot(plus, minus), -1.0, atol=1e-12)
    for eps in (plus, minus):
        np.testing.assert_allclose(minkowski_dot(eps, eps), 0.0, atol=1e-12)
        np.testing.assert_allclose(minkowski_dot(eps, k) / SQRT_S, 0.0, atol=1e-12)
        np.testing.assert_allclose(minkowski_dot(eps, q) / SQRT_S, 0.0, atol=1e-12)


# --- normalisation and fixed points -------------------------------------------------------------------------------


def textbook_gg_gg(momenta: np.ndarray) -> np.ndarray:
    """(9/2) (3 - tu/s^2 - su/t^2 - st/u^2) at g_s = 1.

    E.g. Ellis, Stirling and Webber, QCD and Collider Physics, ch. 7.
    """
    p1, p2, p3, p4 = (momenta[:, i] for i in range(4))
    s = minkowski_dot(p1 + p2, p1 + p2)
    t = minkowski_dot(p1 - p3, p1 - p3)
    u = minkowski_dot(p1 - p4, p1 - p4)
    return 4.5 * (3.0 - t * u / s**2 - s * u / t**2 - s * t / u**2)


def test_gg_gg_matches_textbook() -> None:
    momenta = events(4, 200, seed=3)
    assert relative(gg_gg(momenta), textbook_gg_gg(momenta)) < TIGHT


@pytest.mark.parametrize("sqrt_s", [1.0, 91.1876, 13000.0])
def test_gg_gg_at_90_degrees(sqrt_s: float) -> None:
    """t = u = -s/2: (9/2)(3 - 1/4 + 2 + 2) = 30.375, for any energy (|M|^2 is dimensionless)."""
    momenta = transverse_star(sqrt_s, 2, phase=0.7)
    assert relative(gg_gg(momenta), np.array([4.5 * (3.0 - 0.25 + 2.0 + 2.0)])) < TIGHT


@pytest.mark.parametrize("sqrt_s", [1.0, 250.0, 7000.0])
def test_gg_ggg_at_transverse_mercedes_point(sqrt_s: float) -> None:
    """Three gluons at 120 degrees in the transverse plane: every s_ij = s/3 except s_12 = s.

    The exact five-gluon colour sum (below) gives sum_{i<j} s_ij^4 = (10/9) s^4 and sum over the 24 orderings of
    1/(cyclic product) = (12*81 + 12*243)/s^5, so <|M|^2> = 2*27*8*(10/9)*3888/256 / s = 7290 / s.
    """
    momenta = transverse_star(sqrt_s, 3, phase=0.3)
    assert relative(gg_ggg(momenta), np.array([7290.0 / sqrt_s**2])) < TIGHT


# <|M|^2> * s^2 for four gluons on a square in the transverse plane: a regression value computed by this code and
# reproduced (to 1e-15) by the independent trace-basis route of test_ddm_basis_equals_trace_basis; being a rational
# kinematic point it comes out as an integer.
GG_GGGG_SQUARE_POINT = 7700751.0


def test_gg_gggg_regression_point() -> None:
    momenta = transverse_star(1.0, 4, phase=0.1)
    assert relative(gg_gggg(momenta), np.array([GG_GGGG_SQUARE_POINT])) < 1e-9
    assert relative(gg_gggg(transverse_star(100.0, 4, phase=1.1)), np.array([GG_GGGG_SQUARE_POINT / 1e8])) < 1e-9


def test_gg_ggg_matches_exact_five_gluon_colour_sum() -> None:
    """For n = 5 the subleading colour terms cancel (Mangano-Parke, Phys. Rept. 200 (1991) 301):
    sum |M|^2 = N^3 (N^2 - 1) * 2 sum_{i<j} s_ij^4 * sum_{sigma in S_4} 1 / |s_1s2 s_s2s3 s_s3s4 s_s4s5 s_s51|.
    Uses invariants only: no spinors, no colour matrix."""
    momenta = events(5, 50, seed=4)
    k = all_outgoing(momenta)
    s = 2.0 * minkowski_dot(k[:, :, None], k[:, None, :])
    inverse = sum(
        1.0 / np.abs(np.prod([s[:, o[i], o[(i + 1) % 5]] for i in range(5)], axis=0)) for o in trace_orderings(5)
    )
    expected = N_COLOURS**3 * N_ADJOINT * 2.0 * np.sum(pair_invariants(momenta) ** 4, axis=1) * inverse
    assert relative(colour_helicity_summed(momenta), expected) < TIGHT


# --- Berends-Giele versus Parke-Taylor ----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [4, 5, 6])
def test_berends_giele_matches_parke_taylor_for_every_mhv_configuration(n: int) -> None:
    k = all_outgoing(events(n, 4, seed=10 + n))
    helicities = [h for h in helicity_configurations(n) if (h < 0).sum() in (2, n - 2)]
    orderings = ddm_orderings(n)
    recursion = colour_ordered_amplitudes(k, np.array(helicities), orderings)
    for index, hel in enumerate(helicities):
        for o, ordering in enumerate(orderings):
            analytic = parke_taylor(k, hel, ordering)
            assert relative(np.abs(recursion[o, index]) ** 2, np.abs(analytic) ** 2) < 1e-9
            # same phase conventions (Dixon's polarisation vectors and spinors), so even the phases agree
            assert np.max(np.abs(recursion[o, index] - analytic)) < 1e-9 * np.max(np.abs(analytic))


def test_berends_giele_is_independent_of_reference_vectors() -> None:
    k = all_outgoing(events(6, 4, seed=20))
    helicities = helicity_configurations(6)
    orderings = ddm_orderings(6)[:6]
    default = colour_ordered_amplitudes(k, helicities, orderings)
    other = colour_ordered_amplitudes(k, helicities, orderings, references=np.roll(k, 3, axis=1))
    assert np.max(np.abs(default - other)) < 1e-12 * np.max(np.abs(default))


@pytest.mark.parametrize("n", [4, 5, 6])
def test_berends_giele_reflection_identity(n: int) -> None:
    """A(n, ..., 1) = (-1)^n A(1, ..., n): amputating a different gluon exercises different currents."""
    k = all_outgoing(events(n, 4, seed=22 + n))
    helicities = helicity_configurations(n)
    forward, backward = colour_ordered_amplitudes(k, helicities, [tuple(range(n)), tuple(reversed(range(n)))])
    assert np.max(np.abs(backward - (-1) ** n * forward)) < 1e-11 * np.max(np.abs(forward))


def test_helicity_bookkeeping_for_six_gluons() -> None:
    """64 configurations: 14 vanish (all or all-but-one equal), 30 are (anti-)MHV, 20 NMHV = 10 parity pairs."""
    assert len(beyond_mhv_helicities(6)) == 10
    assert len(beyond_mhv_helicities(5)) == 0


def test_berends_giele_matches_split_helicity_nmhv_formula() -> None:
    """A(1+,2+,3+,4-,5-,6-) = i [<6|1+2|3]^3 / (<61><12>[34][45] s_612 <2|6+1|5])
    + <4|5+6|1]^3 / (<23><34>[56][61] s_561 <2|6+1|5])], the BCFW result (e.g. Dixon, arXiv:1310.5353)."""
    k = all_outgoing(events(6, 6, seed=21))
    a, b = spinor_products(k)

    def sandwich(i: int, middle: list[int], j: int) -> np.ndarray:
        return sum(a[:, i, m] * b[:, m, j] for m in middle)

    def s(*gluons: int) -> np.ndarray:
        total = k[:, list(gluons)].sum(axis=1)
        return minkowski_dot(total, total)

    common = sandwich(1, [5, 0], 4)
    analytic = 1j * (
        sandwich(5, [0, 1], 2) ** 3 / (a[:, 5, 0] * a[:, 0, 1] * b[:, 2, 3] * b[:, 3, 4] * s(5, 0, 1) * common)
        + sandwich(3, [4, 5], 0) ** 3 / (a[:, 1, 2] * a[:, 2, 3] * b[:, 4, 5] * b[:, 5, 0] * s(4, 5, 0) * common)
    )
    recursion = colour_ordered_amplitudes(k, np.array([[1, 1, 1, -1, -1, -1]]), [tuple(range(6))])[0, 0]
    assert relative(np.abs(recursion) ** 2, np.abs(analytic) ** 2) < 1e-9


# --- full colour: two independent routes --------------------------------------------------------------------------


def full_colour_by_berends_giele(momenta: np.ndarray, orderings: list, colour_matrix: np.ndarray) -> np.ndarray:
    """sum over every helicity (no parity shortcut) and colour of |M|^2, all amplitudes from Berends-Giele."""
    k = all_outgoing(momenta)
    amplitudes = colour_ordered_amplitudes(k, helicity_configurations(k.shape[1]), orderings)  # (S, H, N)
    return np.einsum("shn,st,thn->n", amplitudes.conj(), colour_matrix, amplitudes).real


def test_gg_ggg_parke_taylor_equals_berends_giele_with_colour_matrix() -> None:
    momenta = events(5, 20, seed=30)
    by_recursion = INITIAL_STATE_AVERAGE * full_colour_by_berends_giele(momenta, ddm_orderings(5), ddm_colour_matrix(5))
    assert relative(gg_ggg(momenta), by_recursion) < TIGHT


@pytest.mark.parametrize("n", [4, 5, 6])
def test_ddm_basis_equals_trace_basis(n: int) -> None:
    """DDM ((n-2)! orderings, SU(3) structure constants) vs trace basis ((n-1)! orderings, U(N) cycle counting)."""
    momenta = events(n, 2, seed=40 + n)
    by_traces = full_colour_by_berends_giele(momenta, trace_orderings(n), trace_colour_matrix(n))
    assert relative(colour_helicity_summed(momenta), by_traces) < 1e-9


# --- colour algebra -----------------------------------------------------------------------------------------------


def test_four_gluon_colour_matrix_closed_form() -> None:
    """(F^a F^b F^a) = (C_A/2) F^b in the f~ normalisation gives C = N^2 (N^2 - 1) [[4, 2], [2, 4]]."""
    expected = N_COLOURS**2 * N_ADJOINT * np.array([[4.0, 2.0], [2.0, 4.0]])
    np.testing.assert_allclose(ddm_colour_matrix(4), expected, rtol=1e-12)


@pytest.mark.parametrize("n", [4, 5, 6])
def test_ddm_colour_matrix_properties(n: int) -> None:
    matrix = ddm_colour_matrix(n)
    orderings = ddm_orderings(n)
    assert matrix.shape == (math.factorial(n - 2),) * 2
    np.testing.assert_allclose(matrix, matrix.T, rtol=0, atol=1e-12 * matrix.max())
    assert np.linalg.eigvalsh(matrix).min() > 0.0  # DDM amplitudes are independent: C is positive definite
    # sum_a F^a F^a = 2 N in the f~ normalisation, so every diagonal entry is (2N)^(n-2) Tr(1_adjoint)
    np.testing.assert_allclose(np.diag(matrix), (2 * N_COLOURS) ** (n - 2) * N_ADJOINT, rtol=1e-12)
    # relabelling the middle gluons only renames summed colour indices
    index = {order: i for i, order in enumerate(orderings)}
    for relabel in list(permutations(range(1, n - 1)))[1:4]:
        mapping = {0: 0, n - 1: n - 1, **{g: relabel[g - 1] for g in range(1, n - 1)}}
        image = [index[tuple(mapping[g] for g in order)] for order in orderings]
        np.testing.assert_allclose(matrix[np.ix_(image, image)], matrix, rtol=0, atol=1e-12 * matrix.max())


@pytest.mark.parametrize("n", [4, 5])
def test_colour_correlators_conserve_colour(n: int) -> None:
    correlators = ddm_colour_correlators(n)
    scale = np.abs(correlators).max()
    np.testing.assert_allclose(correlators.sum(axis=1), 0.0, atol=1e-12 * scale)
    for i in range(n):
        np.testing.assert_allclose(correlators[i, i], C_ADJOINT * ddm_colour_matrix(n), rtol=0, atol=1e-12 * scale)


# --- symmetries ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(AMPLITUDES))
def test_bose_symmetry(name: str) -> None:
    n = N_GLUONS[name]
    momenta = events(n, 5, seed=50 + n)
    reference = AMPLITUDES[name](momenta)
    final_orders = list(permutations(range(2, n)))
    for final in final_orders[1:] if n < 6 else final_orders[1::5]:
        assert relative(AMPLITUDES[name](momenta[:, [0, 1, *final]]), reference) < 1e-10
    assert relative(AMPLITUDES[name](momenta[:, [1, 0, *range(2, n)]]), reference) < 1e-10


@pytest.mark.parametrize("name", list(AMPLITUDES))
def test_lorentz_invariance(name: str) -> None:
    n = N_GLUONS[name]
    rng = np.random.default_rng(60 + n)
    momenta = events(n, 5, seed=60 + n)
    for rapidity in (0.3, 1.5):
        assert relative(AMPLITUDES[name](lorentz_transform(momenta, rapidity, rng)), AMPLITUDES[name](momenta)) < 1e-9


@pytest.mark.parametrize("name", list(AMPLITUDES))
def test_output_is_positive_finite_float64(name: str) -> None:
    n = N_GLUONS[name]
    values = AMPLITUDES[name](events(n, 64, seed=70 + n))
    assert values.shape == (64,) and values.dtype == np.float64
    assert np.all(np.isfinite(values)) and np.all(values > 0.0)


def test_wrong_multiplicity_is_rejected() -> None:
    with pytest.raises(ValueError):
        gg_ggg(events(4, 2, seed=80))


# --- soft-gluon limits --------------------------------------------------------------------------------------------

SOFT_DIRECTION = np.array([0.3, -0.5, 0.8])


@pytest.mark.parametrize("helicity", [+1, -1])
def test_colour_ordered_soft_limit(helicity: int) -> None:
    """A_5(1, 2, 3, 4, s) -> Soft(4, s, 1) A_4(1, 2, 3, 4), |Soft|^2 = s_41 / (s_4s s_s1), at leading power."""
    born = events(4, 3, seed=90)
    k_born = all_outgoing(born)
    for fraction in (1e-4, 1e-6):
        k = all_outgoing(with_soft_gluon(born, fraction, SOFT_DIRECTION))
        s = 2.0 * minkowski_dot(k[:, :, None], k[:, None, :])
        eikonal = np.abs(s[:, 3, 0] / (s[:, 3, 4] * s[:, 4, 0]))
        for born_helicity in ([1, 1, -1, -1], [-1, 1, -1, 1]):
            five = colour_ordered_amplitudes(k, np.array([[*born_helicity, helicity]]), [tuple(range(5))])[0, 0]
            four = colour_ordered_amplitudes(k_born, np.array([born_helicity]), [tuple(range(4))])[0, 0]
            assert relative(np.abs(five) ** 2, eikonal * np.abs(four) ** 2) < 20.0 * fraction


def test_gg_ggg_scales_as_inverse_square_of_soft_energy() -> None:
    born = events(4, 3, seed=91)
    scaled = [f**2 * gg_ggg(with_soft_gluon(born, f, SOFT_DIRECTION)) for f in (1e-3, 1e-4, 1e-5)]
    assert relative(scaled[1], scaled[2]) < 1e-3
    assert relative(scaled[0], scaled[2]) < 1e-2


@pytest.mark.parametrize(("function", "n_born"), [(gg_ggg, 4), (gg_gggg, 5)])
def test_full_colour_soft_limit(function, n_born: int) -> None:
    """|M_(n+1)|^2 -> -sum_{i != j} (k_i.k_j) / ((k_i.q)(k_j.q)) <M_n| T_i.T_j |M_n> at g_s = 1 (eikonal limit in
    the colour-charge notation of Catani and Seymour, hep-ph/9605323), with colour-correlated Borns from
    Berends-Giele amplitudes and the DDM colour correlators."""
    born = events(n_born, 3, seed=92 + n_born)
    k = all_outgoing(born)
    amplitudes = colour_ordered_amplitudes(k, helicity_configurations(n_born), ddm_orderings(n_born))
    correlated = np.einsum("shn,ijst,thn->nij", amplitudes.conj(), ddm_colour_correlators(n_born), amplitudes).real
    off_diagonal = ~np.eye(n_born, dtype=bool)
    for fraction in (1e-4, 1e-5):
        q = all_outgoing(with_soft_gluon(born, fraction, SOFT_DIRECTION))[:, -1]
        kq = minkowski_dot(k, q[:, None])
        eikonal = minkowski_dot(k[:, :, None], k[:, None, :]) / (kq[:, :, None] * kq[:, None, :])
        expected = -INITIAL_STATE_AVERAGE * np.sum(np.where(off_diagonal, eikonal * correlated, 0.0), axis=(1, 2))
        assert relative(function(with_soft_gluon(born, fraction, SOFT_DIRECTION)), expected) < 20.0 * fraction
