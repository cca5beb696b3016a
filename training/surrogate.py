"""The whole surrogate as one torch module: raw four-momenta in, |M|^2 with sigma_stat and sigma_syst out.

This module is what gets exported to ONNX, so pre-processing, every member, the aggregation and the
mapping back to physical units live in one graph and training and serving cannot drift apart.

Mapping (members fit y = log |M|^2, standardised): with member means m_k and widths s_k in log space,
    mean_log = average(m_k),  stat_log^2 = sum (m_k - mean_log)^2 / (K - 1),  syst_log^2 = average(s_k^2),
    mean = exp(mean_log),  sigma_stat = mean * stat_log,  sigma_syst = mean * syst_log  (first order),
all times an optional recalibration factor; sigma_tot^2 = sigma_stat^2 + sigma_syst^2.
"""

from __future__ import annotations

from itertools import combinations

import torch
from torch import nn

from training.models import StackedMLP

MIN_FEATURE_SCALE = 1e-9  # a feature constant over the data (e.g. log s at fixed energy) is centred, not scaled
OUTPUT_NAMES = ("mean", "sigma_stat", "sigma_syst", "sigma_tot")


class InvariantFeatures(nn.Module):
    """Lorentz-invariant inputs: log s_12 and log(s_ij / s_12) of every other pair, standardised, in float64.

    s_ij = 2 p_i.p_j (massless), computed in float64 because float32 loses them near collinear limits.
    """

    def __init__(self, n_particles: int):
        super().__init__()
        i, j = zip(*combinations(range(n_particles), 2))
        self.register_buffer("i", torch.tensor(i))
        self.register_buffer("j", torch.tensor(j))
        self.register_buffer("metric", torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=torch.float64))
        n_pairs = len(i)
        self.register_buffer("shift", torch.zeros(n_pairs, dtype=torch.float64))
        self.register_buffer("scale", torch.ones(n_pairs, dtype=torch.float64))

    @property
    def n_features(self) -> int:
        return len(self.i)

    def raw(self, momenta: torch.Tensor) -> torch.Tensor:
        sij = 2.0 * (momenta[:, self.i] * momenta[:, self.j] * self.metric).sum(-1)
        log_s = torch.log(sij[:, :1])
        return torch.cat([log_s, torch.log(sij[:, 1:]) - log_s], dim=1)

    def fit(self, momenta: torch.Tensor) -> None:
        """Set the standardisation from training momenta."""
        raw = self.raw(momenta)
        std = raw.std(0)
        self.shift.copy_(raw.mean(0))
        self.scale.copy_(torch.where(std > MIN_FEATURE_SCALE, std, torch.ones_like(std)))

    def forward(self, momenta: torch.Tensor) -> torch.Tensor:
        return (self.raw(momenta) - self.shift) / self.scale


class AmplitudeSurrogate(nn.Module):
    def __init__(self, n_particles: int, members: int, hidden: int, layers: int, seed: int):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.features = InvariantFeatures(n_particles)
        self.ensemble = StackedMLP(members, self.features.n_features, hidden, layers, generator)
        self.register_buffer("target_shift", torch.zeros((), dtype=torch.float64))
        self.register_buffer("target_scale", torch.ones((), dtype=torch.float64))
        self.register_buffer("recalibration", torch.ones((), dtype=torch.float64))

    @property
    def members(self) -> int:
        return self.ensemble.members

    @property
    def network_dtype(self) -> torch.dtype:
        """float32 while training; float64 once trained, so that the exported graph reproduces the torch
        model to 1e-5 even in sigma_stat, a small difference of member means that float32 rounding blurs."""
        return self.ensemble.weights[0].dtype

    def fit_standardisation(self, momenta: torch.Tensor, target: torch.Tensor) -> None:
        self.features.fit(momenta)
        log_target = torch.log(target)
        self.target_shift.copy_(log_target.mean())
        self.target_scale.copy_(log_target.std())

    def standardise_target(self, target: torch.Tensor) -> torch.Tensor:
        return (torch.log(target) - self.target_shift) / self.target_scale

    def members_log(self, momenta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each member's mean and width of log |M|^2, shape (K, B) each."""
        out = self.ensemble(self.features(momenta).to(self.network_dtype)).to(torch.float64)
        mu = self.target_shift + self.target_scale * out[..., 0]
        sigma = self.target_scale * torch.exp(out[..., 1])
        return mu, sigma

    def forward(self, momenta: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mu, sigma = self.members_log(momenta)
        k = mu.shape[0]
        mean_log = mu.sum(0) / k
        stat_log = torch.sqrt(((mu - mean_log) ** 2).sum(0) / (k - 1))
        syst_log = torch.sqrt((sigma**2).sum(0) / k)
        value = torch.exp(mean_log)
        sigma_stat = value * stat_log * self.recalibration
        sigma_syst = value * syst_log * self.recalibration
        return value, sigma_stat, sigma_syst, torch.sqrt(sigma_stat**2 + sigma_syst**2)
