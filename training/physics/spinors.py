"""Massless Weyl spinors, spinor products and gluon polarisation vectors, vectorised over events.

Conventions follow L. Dixon, "Calculating scattering amplitudes efficiently", hep-ph/9601359 (TASI 1995):
a massless momentum k factorises as the bispinor k_mu sigma^mu = lambda lambda~, the spinor products are
<ij> = lambda_i^1 lambda_j^2 - lambda_i^2 lambda_j^1 and [ij] with the sign that makes <ij>[ji] = s_ij = 2 k_i.k_j.
Amplitudes use the all-outgoing convention: incoming momenta are crossed (k = -p, negative energy) and their spinors
are continued analytically, lambda(k) = i lambda(-k), lambda~(k) = i lambda~(-k), so that lambda lambda~ = k still
holds and [ij] = sign(k_i^0 k_j^0) <ji>^*. Momenta are (E, px, py, pz) in GeV; spinors carry GeV^(1/2).
"""

from __future__ import annotations

import numpy as np

SQRT2 = np.sqrt(2.0)
N_INCOMING = 2  # hadron-collider partonic processes: two incoming partons, listed first


def all_outgoing(momenta: np.ndarray, n_incoming: int = N_INCOMING) -> np.ndarray:
    """Cross the incoming particles (p -> -p) so that every momentum is outgoing and they sum to zero, in GeV."""
    crossed = np.array(momenta, dtype=np.float64, copy=True)
    crossed[..., :n_incoming, :] *= -1.0
    return crossed


def weyl_spinors(momenta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The spinors (lambda, lambda~) of massless momenta (..., 4), each of shape (..., 2) complex, in GeV^(1/2).

    The light-cone component used in the denominator is the larger of E + pz and E - pz, so momenta along either
    beam axis are safe; the two choices differ by a little-group phase, which drops out of |A|^2.
    """
    momenta = np.asarray(momenta, dtype=np.float64)
    negative = momenta[..., 0] < 0.0
    k = np.where(negative[..., None], -momenta, momenta)
    plus = k[..., 0] + k[..., 3]
    minus = k[..., 0] - k[..., 3]
    perp = k[..., 1] + 1j * k[..., 2]
    use_plus = plus >= minus
    root = np.sqrt(np.where(use_plus, plus, minus))
    lam = np.stack([np.where(use_plus, root, perp.conj() / root), np.where(use_plus, perp / root, root)], axis=-1)
    phase = np.where(negative, 1j, 1.0)[..., None]
    return lam * phase, lam.conj() * phase


def angle(lam_i: np.ndarray, lam_j: np.ndarray) -> np.ndarray:
    """<ij> from the holomorphic spinors (..., 2), in GeV."""
    return lam_i[..., 0] * lam_j[..., 1] - lam_i[..., 1] * lam_j[..., 0]


def square(lamt_i: np.ndarray, lamt_j: np.ndarray) -> np.ndarray:
    """[ij] from the antiholomorphic spinors (..., 2), signed so that <ij>[ji] = s_ij, in GeV."""
    return lamt_i[..., 1] * lamt_j[..., 0] - lamt_i[..., 0] * lamt_j[..., 1]


def spinor_products(momenta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Matrices of <ij> and [ij] for momenta (N, n, 4): two complex arrays of shape (N, n, n), in GeV."""
    lam, lamt = weyl_spinors(momenta)
    return angle(lam[:, :, None], lam[:, None, :]), square(lamt[:, :, None], lamt[:, None, :])


def bispinor_to_vector(lam: np.ndarray, lamt: np.ndarray) -> np.ndarray:
    """The complex four-vector v with v_mu sigma^mu = lam lamt (outer product), shape (..., 4).

    Inverts k_mu sigma^mu = [[E + pz, px - i py], [px + i py, E - pz]]; v(lambda_k, lambda~_k) = k.
    """
    m00 = lam[..., 0] * lamt[..., 0]
    m01 = lam[..., 0] * lamt[..., 1]
    m10 = lam[..., 1] * lamt[..., 0]
    m11 = lam[..., 1] * lamt[..., 1]
    return 0.5 * np.stack([m00 + m11, m01 + m10, 1j * (m01 - m10), m00 - m11], axis=-1)


def polarisation_vectors(momenta: np.ndarray, references: np.ndarray, helicity: int) -> np.ndarray:
    """Outgoing gluon polarisation vectors eps^h(k; q), shape (..., 4) complex, dimensionless.

    eps^+ = <q|gamma^mu|k] / (sqrt2 <qk>) and eps^- = [q|gamma^mu|k> / (sqrt2 [kq]), so that
    eps^+ . eps^- = -1, eps . k = eps . q = 0. Changing the null reference q shifts eps by a multiple of k, which
    gauge invariance removes from every amplitude; q must not be parallel to k.
    """
    lam_k, lamt_k = weyl_spinors(momenta)
    lam_q, lamt_q = weyl_spinors(references)
    if helicity > 0:
        return SQRT2 * bispinor_to_vector(lam_q, lamt_k) / angle(lam_q, lam_k)[..., None]
    return SQRT2 * bispinor_to_vector(lam_k, lamt_q) / square(lamt_k, lamt_q)[..., None]
