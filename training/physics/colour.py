"""SU(3) colour algebra for multi-gluon amplitudes: the DDM colour matrix, the trace-basis matrix, colour correlators.

Normalisation: fundamental generators T^a = lambda^a / sqrt2 with Tr(T^a T^b) = delta^ab, so the colour-ordered
amplitudes are those of Parke-Taylor in the conventions of Dixon (hep-ph/9601359) and
f~^abc = Tr([T^a, T^b] T^c) = i sqrt2 f^abc, where f^abc are the textbook structure constants ([t^a, t^b] =
i f^abc t^c with t = lambda / 2). The full tree amplitude in the adjoint (Del Duca-Dixon-Maltoni) basis,
hep-ph/9910563, is
    M(1..n) = g^(n-2) sum_{sigma in S_(n-2)} (F^a_sigma(2) ... F^a_sigma(n-1))_{a_1 a_n} A(1, sigma, n),
with (F^a)_bc = f~^bac, and the colour sum is sum_colours |M|^2 = g^(2n-4) A^dagger C A.
"""

from __future__ import annotations

import math
from functools import cache
from itertools import permutations

import numpy as np

N_COLOURS = 3  # SU(3) of QCD
N_ADJOINT = N_COLOURS**2 - 1  # gluon colour states
C_ADJOINT = float(N_COLOURS)  # Casimir C_A = N of the adjoint, with Tr(t^a t^b) = delta^ab / 2
F_TILDE_OVER_F = 1j * math.sqrt(2.0)  # f~ = i sqrt2 f (DDM normalisation), see module docstring


@cache
def gell_mann_matrices() -> np.ndarray:
    """The eight Gell-Mann matrices lambda^a, shape (8, 3, 3) complex (Gell-Mann, Phys. Rev. 125 (1962) 1067)."""
    lam = np.zeros((N_ADJOINT, N_COLOURS, N_COLOURS), dtype=complex)
    lam[0][0, 1] = lam[0][1, 0] = 1.0
    lam[1][0, 1], lam[1][1, 0] = -1j, 1j
    lam[2][0, 0], lam[2][1, 1] = 1.0, -1.0
    lam[3][0, 2] = lam[3][2, 0] = 1.0
    lam[4][0, 2], lam[4][2, 0] = -1j, 1j
    lam[5][1, 2] = lam[5][2, 1] = 1.0
    lam[6][1, 2], lam[6][2, 1] = -1j, 1j
    lam[7] = np.diag([1.0, 1.0, -2.0]) / math.sqrt(3.0)
    lam.setflags(write=False)
    return lam


@cache
def structure_constants() -> np.ndarray:
    """f^abc of SU(3), shape (8, 8, 8) real, from f^abc = -2i Tr([t^a, t^b] t^c) with t = lambda / 2."""
    t = gell_mann_matrices() / 2.0
    commutator = np.einsum("aij,bjk->abik", t, t) - np.einsum("bij,ajk->abik", t, t)
    f = (-2j * np.einsum("abik,cki->abc", commutator, t)).real
    f.setflags(write=False)
    return f


def ddm_orderings(n: int) -> list[tuple[int, ...]]:
    """The (n-2)! orderings (0, sigma, n-1) of the DDM basis, zero-based, in lexicographic order of sigma."""
    return [(0, *sigma, n - 1) for sigma in permutations(range(1, n - 1))]


def _real_chains(n: int) -> np.ndarray:
    """Real DDM colour tensors c_sigma(a_1..a_n) = (F^a_sigma(2) ... F^a_sigma(n-1))_{a_1 a_n} / F_TILDE_OVER_F^(n-2).

    Shape (S, 8, ..., 8) with one axis per gluon, in process order.
    """
    adjoint = np.transpose(structure_constants(), (1, 0, 2))  # adjoint[a][b, c] = f^bac
    chain = np.eye(N_ADJOINT)[None]  # axes: middle gluons in chain order..., a_1, a_n
    for _ in range(n - 2):
        chain = np.einsum("...ij,ajk->...aik", chain, adjoint).reshape(-1, N_ADJOINT, N_ADJOINT)
    chain = chain.reshape((N_ADJOINT,) * (n - 2) + (N_ADJOINT, N_ADJOINT))
    # put the axes in process order (a_1, a_2, ..., a_n) for each ordering of the middle gluons
    tensors = []
    for order in ddm_orderings(n):
        middle = order[1:-1]  # gluon at chain position p is middle[p]
        axes_of_gluon = [n - 2] + [middle.index(g) for g in range(1, n - 1)] + [n - 1]
        tensors.append(np.transpose(chain, axes_of_gluon))
    return np.stack(tensors)


@cache
def ddm_colour_matrix(n: int) -> np.ndarray:
    """C_{sigma tau} = sum over colours c_sigma^* c_tau of the DDM basis, shape ((n-2)!, (n-2)!), real symmetric.

    Computed numerically from the SU(3) structure constants and cached; feasible up to n = 6 (8^6 colour states).
    """
    flat = _real_chains(n).reshape(math.factorial(n - 2), -1)
    matrix = abs(F_TILDE_OVER_F) ** (2 * (n - 2)) * (flat @ flat.T)
    matrix.setflags(write=False)
    return matrix


def trace_orderings(n: int) -> list[tuple[int, ...]]:
    """The (n-1)! orderings (0, sigma) of the trace basis Tr(T^a_1 T^a_sigma(2) ... T^a_sigma(n)), zero-based."""
    return [(0, *sigma) for sigma in permutations(range(1, n))]


def _count_cycles(mapping: list[int]) -> int:
    """Number of cycles of a permutation given as its list of images."""
    seen = [False] * len(mapping)
    cycles = 0
    for start in range(len(mapping)):
        if not seen[start]:
            cycles += 1
            node = start
            while not seen[node]:
                seen[node] = True
                node = mapping[node]
    return cycles


def _successor_map(order: tuple[int, ...]) -> list[int]:
    """rho(g) = the gluon that follows g cyclically in the trace."""
    successor = [0] * len(order)
    for position, gluon in enumerate(order):
        successor[gluon] = order[(position + 1) % len(order)]
    return successor


@cache
def trace_colour_matrix(n: int) -> np.ndarray:
    """Colour matrix of the trace basis, sum over colours Tr(sigma)^* Tr(tau), shape ((n-1)!, (n-1)!).

    Uses U(N) generators (Fierz: sum_a (T^a)_ij (T^a)_kl = delta_il delta_kj), for which the sum is N^(number of
    cycles of rho_sigma o rho_tau^-1), rho_sigma being the cyclic successor map of the ordering sigma. The extra U(1)
    gluon decouples from colour-ordered sums (photon decoupling), so this is an independent check of the DDM matrix.
    """
    successors = [_successor_map(order) for order in trace_orderings(n)]
    inverses = [[succ.index(g) for g in range(n)] for succ in successors]
    exponents = [[_count_cycles([rho[inv[g]] for g in range(n)]) for inv in inverses] for rho in successors]
    matrix = float(N_COLOURS) ** np.array(exponents, dtype=float)
    matrix.setflags(write=False)
    return matrix


@cache
def ddm_colour_correlators(n: int) -> np.ndarray:
    """<c_sigma| T_i . T_j |c_tau> for every pair of gluons, shape (n, n, S, S) real.

    T_i is the colour charge of outgoing gluon i, (T^e)_ab = -i f^eab, so T_i . T_i = C_A = N_COLOURS and colour
    conservation gives sum_j T_i . T_j = 0. Used for the soft-gluon (eikonal) limit. Feasible up to n = 5.
    """
    f = structure_constants()
    chains = _real_chains(n)
    n_orders = chains.shape[0]
    flat = chains.reshape(n_orders, -1)
    scale = abs(F_TILDE_OVER_F) ** (2 * (n - 2))
    correlators = np.empty((n, n, n_orders, n_orders))
    for i in range(n):
        for j in range(n):
            acted = C_ADJOINT * chains if i == j else _apply_pair(f, chains, i, j)
            correlators[i, j] = scale * (flat @ acted.reshape(n_orders, -1).T)
    correlators.setflags(write=False)
    return correlators


def _apply_pair(f: np.ndarray, chains: np.ndarray, i: int, j: int) -> np.ndarray:
    """(T_i . T_j c)(.., a_i, .., a_j, ..) = -sum_{e, b_i, b_j} f^{e a_i b_i} f^{e a_j b_j} c(.., b_i, .., b_j, ..)."""
    axis_i, axis_j = i + 1, j + 1  # axis 0 is the ordering
    moved = np.moveaxis(chains, (axis_i, axis_j), (-2, -1))
    acted = -np.einsum("eab,ecd,...bd->...ac", f, f, moved, optimize=True)
    return np.moveaxis(acted, (-2, -1), (axis_i, axis_j))
