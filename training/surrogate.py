"""The whole surrogate as one torch module: raw physics inputs in, prediction with sigma_stat and sigma_syst out.

This module is what gets exported to ONNX, so pre-processing, every member, the aggregation and the
mapping back to physical units live in one graph and training and serving cannot drift apart.

Members fit a standardised y = T(target), T = log for amplitudes (they span orders of magnitude) and the
identity for calorimeter response. With member means m_k and widths s_k in T-space,
    centre = average(m_k),  stat^2 = sum (m_k - centre)^2 / (K - 1),  syst^2 = average(s_k^2);
identity: mean = centre and the sigmas as they are; log: mean = exp(centre) and each sigma times mean
(first-order propagation, so sigma/mean is a relative uncertainty). Both sigmas are multiplied by an
optional recalibration factor; sigma_tot^2 = sigma_stat^2 + sigma_syst^2.
"""

from __future__ import annotations

from itertools import combinations
from typing import Literal

import torch
from torch import nn

from calsurr.service.card import MEMBER_OUTPUTS, UNCERTAINTY_OUTPUTS

MIN_FEATURE_SCALE = 1e-9  # a feature constant over the data (e.g. log s at fixed energy) is centred, not scaled
OUTPUT_NAMES = UNCERTAINTY_OUTPUTS
MEMBER_OUTPUT_NAMES = MEMBER_OUTPUTS  # optional: (batch, K) per-member values and widths
TargetTransform = Literal["log", "identity"]


class Standardisation(nn.Module):
    """x -> (raw(x) - shift) / scale in float64, with shift and scale fitted on training inputs."""

    def __init__(self, n_features: int):
        super().__init__()
        self.register_buffer("shift", torch.zeros(n_features, dtype=torch.float64))
        self.register_buffer("scale", torch.ones(n_features, dtype=torch.float64))

    @property
    def n_features(self) -> int:
        return len(self.shift)

    def raw(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs

    def fit(self, inputs: torch.Tensor) -> None:
        raw = self.raw(inputs)
        std = raw.std(0)
        self.shift.copy_(raw.mean(0))
        self.scale.copy_(torch.where(std > MIN_FEATURE_SCALE, std, torch.ones_like(std)))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return (self.raw(inputs) - self.shift) / self.scale


class InvariantFeatures(Standardisation):
    """Lorentz-invariant inputs: log s_12 and log(s_ij / s_12) of every other pair, standardised, in float64.

    s_ij = 2 p_i.p_j (massless), computed in float64 because float32 loses them near collinear limits.
    """

    def __init__(self, n_particles: int):
        i, j = zip(*combinations(range(n_particles), 2))
        super().__init__(len(i))
        self.register_buffer("i", torch.tensor(i))
        self.register_buffer("j", torch.tensor(j))
        self.register_buffer("metric", torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=torch.float64))

    def raw(self, momenta: torch.Tensor) -> torch.Tensor:
        sij = 2.0 * (momenta[:, self.i] * momenta[:, self.j] * self.metric).sum(-1)
        log_s = torch.log(sij[:, :1])
        return torch.cat([log_s, torch.log(sij[:, 1:]) - log_s], dim=1)


class Surrogate(nn.Module):
    def __init__(self, features: Standardisation, network: nn.Module, target_transform: TargetTransform):
        """`network` maps standardised features (B, F) to (K, B, 2) = (mu, log sigma) per member."""
        super().__init__()
        self.features = features
        self.ensemble = network
        self.target_transform = target_transform
        self.register_buffer("target_shift", torch.zeros((), dtype=torch.float64))
        self.register_buffer("target_scale", torch.ones((), dtype=torch.float64))
        self.register_buffer("recalibration", torch.ones((), dtype=torch.float64))
        self.with_members = False  # also output each member's prediction and learned width (export option)
        self.io_dtype = torch.float64  # dtype of the graph's inputs and outputs; inside, everything is float64

    @property
    def output_names(self) -> tuple[str, ...]:
        return OUTPUT_NAMES + MEMBER_OUTPUT_NAMES if self.with_members else OUTPUT_NAMES

    @property
    def members(self) -> int:
        return self.ensemble.members

    @property
    def network_dtype(self) -> torch.dtype:
        """float32 while training; float64 once trained, so that the exported graph reproduces the torch
        model to 1e-5 even in sigma_stat, a small difference of member means that float32 rounding blurs."""
        return next(self.ensemble.parameters()).dtype

    def transform(self, target: torch.Tensor) -> torch.Tensor:
        return torch.log(target) if self.target_transform == "log" else target

    def fit_standardisation(self, inputs: torch.Tensor, target: torch.Tensor) -> None:
        self.features.fit(inputs)
        transformed = self.transform(target)
        self.target_shift.copy_(transformed.mean())
        self.target_scale.copy_(transformed.std())

    def standardise_target(self, target: torch.Tensor) -> torch.Tensor:
        return (self.transform(target) - self.target_shift) / self.target_scale

    def members_transformed(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each member's mean and width of T(target), shape (K, B) each."""
        out = self.ensemble(self.features(inputs).to(self.network_dtype)).to(torch.float64)
        mu = self.target_shift + self.target_scale * out[..., 0]
        sigma = self.target_scale * torch.exp(out[..., 1])
        return mu, sigma

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mu, sigma = self.members_transformed(inputs.to(torch.float64))
        k = mu.shape[0]
        centre = mu.sum(0) / k
        stat = torch.sqrt(((mu - centre) ** 2).sum(0) / (k - 1))
        syst = torch.sqrt((sigma**2).sum(0) / k)
        if self.target_transform == "log":
            value = torch.exp(centre)
            stat, syst = value * stat, value * syst
            member_value = torch.exp(mu)
            member_sigma = member_value * sigma
        else:
            value, member_value, member_sigma = centre, mu, sigma
        sigma_stat = stat * self.recalibration
        sigma_syst = syst * self.recalibration
        outputs = (value, sigma_stat, sigma_syst, torch.sqrt(sigma_stat**2 + sigma_syst**2))
        if self.with_members:  # each member's own learned width, not recalibrated
            outputs = outputs + (member_value.transpose(0, 1), member_sigma.transpose(0, 1))
        return tuple(o.to(self.io_dtype) for o in outputs)
