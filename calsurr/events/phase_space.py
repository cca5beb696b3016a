"""Phase-space samplers for event generation: flat RAMBO and adaptive VEGAS, both inside the cuts of a domain.

A sampler draws trial points with their phase-space weight J (GeV^(2n - 4) for n final-state particles), so
that integral dPhi_n f = E[J f]. Points outside the cuts carry J = 0: they cost a phase-space point and no
matrix element. Momenta follow DESIGN.md: (E, px, py, pz) in GeV, shape (N, 2 + n, 4), incoming first, in the
partonic centre-of-mass frame.

The VEGAS sampler works on the unit hypercube of the (3n - 4) variables of a chain of two-body decays
(`DecayChainMap`): n - 2 invariant masses and two angles per decay. The `vegas` package's adaptive map
(Lepage, J. Comput. Phys. 27 (1978) 192; vegas 6) learns a separable density on that hypercube from the
squared weights of training points, and the trial points are then drawn from it with their Jacobian.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from calsurr.training.physics.phase_space import incoming_pair, passes_cuts, rambo, rambo_weight

VEGAS_INCREMENTS = 100  # increments per axis of the adaptive map (vegas' own default is 1000 for large budgets)
VEGAS_DAMPING = 0.5  # alpha of vegas' grid refinement: 0.5 is its default, between stable and fast


@dataclass(frozen=True)
class PhaseSpaceBatch:
    """Trial points: momenta (N, 2 + n, 4) GeV and phase-space weights J (N,) in GeV^(2n - 4), 0 outside the cuts."""

    momenta: np.ndarray
    jacobian: np.ndarray

    @property
    def inside(self) -> np.ndarray:
        return self.jacobian > 0

    def __len__(self) -> int:
        return len(self.jacobian)


class FlatSampler:
    """RAMBO: every point has the same weight, the volume of massless n-body phase space; the cuts zero it."""

    name = "flat"

    def __init__(self, n_final: int, sqrt_s: float, min_sij_over_s: float):
        self.n_final, self.sqrt_s, self.min_sij_over_s = n_final, sqrt_s, min_sij_over_s
        self.volume = rambo_weight(n_final, sqrt_s)

    def sample(self, n_points: int, rng: np.random.Generator) -> PhaseSpaceBatch:
        momenta = rambo(self.n_final, self.sqrt_s, n_points, rng)
        return PhaseSpaceBatch(momenta, self.volume * passes_cuts(momenta, self.min_sij_over_s))


def _boost(p: np.ndarray, parent: np.ndarray, mass: np.ndarray) -> np.ndarray:
    """p (N, 4) given in the rest frame of `parent` (N, 4) of mass `mass` (N,), boosted to the frame of `parent`."""
    energy = (parent[:, 0] * p[:, 0] + np.einsum("ni,ni->n", parent[:, 1:], p[:, 1:])) / mass
    space = p[:, 1:] + parent[:, 1:] * ((energy + p[:, 0]) / (mass + parent[:, 0]))[:, None]
    return np.concatenate([energy[:, None], space], axis=1)


class DecayChainMap:
    """Massless n-body phase space from the unit hypercube of dimension 3n - 4, with its Jacobian.

    The centre-of-mass system decays as P -> p_1 + Q_(n-1), Q_(n-1) -> p_2 + Q_(n-2), ..., Q_2 -> p_(n-1) + p_n:
        dPhi_n = prod_(k=n..3) [dPhi_2(M_k; 0, M_(k-1)) dM_(k-1)^2 / (2 pi)] dPhi_2(M_2; 0, 0),
        dPhi_2(M; 0, m) = (1 - m^2 / M^2) dOmega / (32 pi^2),
    with M_n = sqrt(s). Variables: u_k = M_(k-1)^2 / M_k^2 = x^(1 / (k - 2)), which makes the mass factors of
    flat phase space (u^(k-3) du) flat in x, and per decay cos(theta) = 2x - 1, phi = 2 pi x, the angles of the
    emitted particle in the rest frame of its parent (axes parallel to the centre-of-mass ones).
    """

    def __init__(self, n_final: int, sqrt_s: float):
        if n_final < 2:
            raise ValueError(f"a decay chain needs at least 2 final-state particles, got {n_final}")
        self.n_final, self.sqrt_s = n_final, sqrt_s
        self.dimension = 3 * n_final - 4

    def momenta(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Full events (N, 2 + n, 4) in GeV and the Jacobian dPhi_n / d^(3n-4)x (N,) in GeV^(2n - 4)."""
        x = np.asarray(x, dtype=np.float64)
        n_points, n = len(x), self.n_final
        masses_x, angles_x = x[:, : n - 2], x[:, n - 2 :]
        jacobian = np.ones(n_points)
        parent = np.zeros((n_points, 4))
        parent[:, 0] = self.sqrt_s
        mass_sq = np.full(n_points, self.sqrt_s**2)
        final = []
        for step in range(n - 1):
            k = n - step  # particles in the decaying system
            if k > 2:
                power = 1.0 / (k - 2)
                u = masses_x[:, step] ** power
                # dM^2 / (2 pi) = M_k^2 du / (2 pi), du/dx = u / ((k - 2) x) = x^(power - 1) / (k - 2)
                jacobian *= mass_sq * masses_x[:, step] ** (power - 1.0) * power / (2.0 * math.pi)
                child_sq = u * mass_sq
            else:
                child_sq = np.zeros(n_points)
            mass = np.sqrt(mass_sq)
            cos_theta = 2.0 * angles_x[:, 2 * step] - 1.0
            phi = 2.0 * math.pi * angles_x[:, 2 * step + 1]
            jacobian *= (1.0 - child_sq / mass_sq) * 4.0 * math.pi / (32.0 * math.pi**2)
            p = (mass_sq - child_sq) / (2.0 * mass)
            sin_theta = np.sqrt(np.clip(1.0 - cos_theta**2, 0.0, None))
            emitted_rest = np.stack([p, p * sin_theta * np.cos(phi), p * sin_theta * np.sin(phi), p * cos_theta], 1)
            emitted = _boost(emitted_rest, parent, mass)
            final.append(emitted)
            parent = parent - emitted
            mass_sq = child_sq
        final.append(parent)  # the last particle: what the chain leaves, massless
        events = np.concatenate([incoming_pair(self.sqrt_s, n_points), np.stack(final, axis=1)], axis=1)
        return events, jacobian


class VegasSampler:
    """VEGAS importance sampling over `DecayChainMap`: adapt with `adapt`, then `sample` with the Jacobian.

    The adaptive map is `vegas.AdaptiveMap`; points are drawn here from a numpy Generator (uniform y, mapped to
    x), so that a seed fixes the sample. Cuts zero the weight, and the map learns to avoid those regions too.
    """

    name = "vegas"

    def __init__(self, n_final: int, sqrt_s: float, min_sij_over_s: float, increments: int = VEGAS_INCREMENTS):
        import vegas

        self.n_final, self.sqrt_s, self.min_sij_over_s = n_final, sqrt_s, min_sij_over_s
        self.chain = DecayChainMap(n_final, sqrt_s)
        self.map = vegas.AdaptiveMap([[0.0, 1.0]] * self.chain.dimension, ninc=increments)
        self.adaptation_history: list[tuple[float, float]] = []  # per iteration: integral estimate and its error

    @property
    def dimension(self) -> int:
        return self.chain.dimension

    def sample(self, n_points: int, rng: np.random.Generator) -> PhaseSpaceBatch:
        return self._sample(n_points, rng)[0]

    def _sample(self, n_points: int, rng: np.random.Generator) -> tuple[PhaseSpaceBatch, np.ndarray]:
        y = rng.random((n_points, self.dimension))
        x = np.empty_like(y)
        jac_map = np.empty(n_points)
        self.map.map(y, x, jac_map)
        momenta, jac_chain = self.chain.momenta(x)
        jacobian = jac_map * jac_chain * passes_cuts(momenta, self.min_sij_over_s)
        return PhaseSpaceBatch(momenta, jacobian), y

    def adapt(
        self,
        weight: Callable[[np.ndarray], np.ndarray],
        iterations: int,
        points: int,
        rng: np.random.Generator,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Adapt the map: per iteration `points` trial points, `weight(momenta)` (the integrand without J, on the
        points inside the cuts), training data (J weight)^2 as vegas prescribes, one refinement of the grid."""
        for iteration in range(iterations):
            batch, y = self._sample(points, rng)
            values = np.zeros(points)
            inside = batch.inside
            values[inside] = batch.jacobian[inside] * weight(batch.momenta[inside])
            self.map.add_training_data(y, values**2)
            self.map.adapt(alpha=VEGAS_DAMPING)
            mean = values.mean()
            self.adaptation_history.append((float(mean), float(values.std() / math.sqrt(points))))
            if progress is not None:
                progress(iteration + 1)


def make_sampler(name: str, n_final: int, sqrt_s: float, min_sij_over_s: float) -> FlatSampler | VegasSampler:
    if name == "flat":
        return FlatSampler(n_final, sqrt_s, min_sij_over_s)
    if name == "vegas":
        return VegasSampler(n_final, sqrt_s, min_sij_over_s)
    raise ValueError(f"unknown sampler '{name}'; known: flat, vegas")
