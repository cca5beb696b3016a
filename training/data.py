"""Amplitude datasets: phase-space points with their exact |M|^2, generated on a cut phase space."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from training.physics.phase_space import sample_cut_phase_space
from training.physics.processes import get_process

DEFAULT_SQRT_S_GEV = 1000.0  # shared/DESIGN.md: default domain sqrt(s) = 1 TeV
DEFAULT_MIN_SIJ_OVER_S = 0.01  # shared/DESIGN.md: every s_ij > 0.01 s


class PhaseSpaceDomain(BaseModel):
    """The region a surrogate is trained on; it goes into the model card."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sqrt_s_gev: float = Field(default=DEFAULT_SQRT_S_GEV, gt=0)
    min_sij_over_s: float = Field(default=DEFAULT_MIN_SIJ_OVER_S, ge=0, lt=1)

    def describe(self) -> str:
        return f"sqrt(s) = {self.sqrt_s_gev:g} GeV, every s_ij > {self.min_sij_over_s:g} s"


@dataclass(frozen=True)
class AmplitudeDataset:
    """`momenta` (N, n, 4) float64 in GeV and `target` (N,) float64 = |M|^2 in the process's unit."""

    process: str
    momenta: np.ndarray
    target: np.ndarray

    def __len__(self) -> int:
        return len(self.target)

    def subset(self, index: np.ndarray) -> AmplitudeDataset:
        return AmplitudeDataset(self.process, self.momenta[index], self.target[index])

    def sha256(self) -> str:
        digest = hashlib.sha256(self.process.encode())
        digest.update(np.ascontiguousarray(self.momenta).tobytes())
        digest.update(np.ascontiguousarray(self.target).tobytes())
        return digest.hexdigest()


def generate_amplitudes(
    process: str, n_events: int, seed: int, domain: PhaseSpaceDomain | None = None
) -> AmplitudeDataset:
    """`n_events` flat phase-space points inside the domain's cuts, with their exact |M|^2."""
    domain = domain or PhaseSpaceDomain()
    proc = get_process(process)
    rng = np.random.default_rng(seed)
    momenta = sample_cut_phase_space(proc.n_final, domain.sqrt_s_gev, n_events, domain.min_sij_over_s, rng)
    return AmplitudeDataset(process, momenta, proc.squared_amplitude(momenta))


def split(dataset: AmplitudeDataset, fractions: tuple[float, ...], seed: int) -> list[AmplitudeDataset]:
    """Disjoint random parts with the given fractions of the events (the last takes the rest)."""
    order = np.random.default_rng(seed).permutation(len(dataset))
    edges = [0, *np.cumsum([int(f * len(dataset)) for f in fractions[:-1]]), len(dataset)]
    return [dataset.subset(order[a:b]) for a, b in zip(edges[:-1], edges[1:])]
